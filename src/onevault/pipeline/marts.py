"""Rebuilding a customer's information marts from the business vault (`onevault mart rebuild`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import psycopg

from onevault import sqlfile
from onevault.pipeline.rebuild import visitor_chunks

Q = sqlfile.load(__package__, "marts.sql")


@dataclass(frozen=True)
class Counted:
    """What a customer's marts count: sessions in force that are not a bot's, and their events."""

    sessions: int
    events: int


def rebuild(conn: psycopg.Connection, tenant_hk: bytes, chunk_size: int) -> Iterator[int]:
    """Empty the tenant's marts, refill them `chunk_size` visitors per transaction; yield each chunk's size.

    The pipeline may run meanwhile: its refreshes and the chunks serialise on the customer's mart
    lock, and the marts always equal the sum of their facts, so the numbers are partial until the
    last chunk and exact after it. `conn` must not be inside a transaction.
    """
    with conn.transaction():
        conn.execute(Q["clear"], {"tenant_hk": tenant_hk})
    for done in visitor_chunks(conn, Q["rebuild_chunk"], tenant_hk, chunk_size):
        yield int(done["visitors"])


def counted(conn: psycopg.Connection, tenant_hk: bytes) -> Counted:
    """The sessions and events the tenant's marts count."""
    row = conn.execute(Q["counted"], {"tenant_hk": tenant_hk}).fetchone()
    return Counted(int(row[0]), int(row[1])) if row else Counted(0, 0)
