"""Rebuilding a customer's business vault from staging, visitor by visitor (`onevault vault rebuild`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from onevault import sqlfile

Q = sqlfile.load(__package__, "rebuild.sql")


@dataclass(frozen=True)
class Chunk:
    """Visitors rebuilt and committed together, and the events they cover."""

    visitors: int
    events: int


def tenant_key(conn: psycopg.Connection, customer_id: str) -> bytes | None:
    """The customer's tenant hash key; None for a customer that is not registered."""
    row = conn.execute(Q["tenant_key"], {"customer_id": customer_id}).fetchone()
    return bytes(row[0]) if row else None


def visitor_count(conn: psycopg.Connection, tenant_hk: bytes) -> int:
    """How many visitors a rebuild of the tenant goes through, as it starts."""
    row = conn.execute(Q["visitor_count"], {"tenant_hk": tenant_hk}).fetchone()
    return int(row[0]) if row else 0


def visitor_chunks(
    conn: psycopg.Connection, statement: sql.SQL, tenant_hk: bytes, chunk_size: int
) -> Iterator[dict[str, Any]]:
    """Run `statement` on the tenant's visitors in key order, `chunk_size` per transaction; yield its results.

    The statement takes `tenant_hk`, `after` (the last visitor key done, NULL first) and `limit`,
    and returns {"visitors": n, "last": hex of its last visitor key or null, ...}. Each chunk is
    committed before it is yielded, so a run stopped half-way keeps what it did. `conn` must not be
    inside a transaction: the chunks' transactions would become savepoints of it.
    """
    after: bytes | None = None
    while True:
        with conn.transaction():
            row = conn.execute(
                statement, {"tenant_hk": tenant_hk, "after": after, "limit": chunk_size}
            ).fetchone()
        done: dict[str, Any] = row[0] if row else {}
        last = done.get("last")
        if int(done.get("visitors") or 0):
            yield done
        if not int(done.get("visitors") or 0) or last is None:
            return
        after = bytes.fromhex(last)


def rebuild(conn: psycopg.Connection, tenant_hk: bytes, chunk_size: int) -> Iterator[Chunk]:
    """Rebuild every visitor of the tenant, `chunk_size` per transaction; yield each chunk.

    Running it again is harmless: a rebuild inserts only rows that differ.
    """
    for done in visitor_chunks(conn, Q["rebuild_chunk"], tenant_hk, chunk_size):
        yield Chunk(int(done["visitors"]), int(done.get("events") or 0))
