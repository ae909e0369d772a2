"""Erasing one person's data from every layer (`onevault visitor erase`, `DELETE /api/v1/visitors/…`).

The work is one SQL function, `privacy.erase_visitor`, run as one statement: its own transaction on
an autocommit connection, so an erasure is complete or has not happened.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from onevault import sqlfile

Q = sqlfile.load(__package__, "queries.sql")
# What the audit records name as the source of an erasure by `onevault visitor erase`.
CLI_RECORD_SOURCE = "cli"


# The layers in the order data flows through them, for reports.
LAYERS = ("raw", "staging", "business", "mart")


def _layer_order(item: tuple[str, int]) -> tuple[int, str]:
    schema = item[0].partition(".")[0]
    return (LAYERS.index(schema) if schema in LAYERS else len(LAYERS), item[0])


@dataclass(frozen=True)
class Erasure:
    """What one erasure removed: its audit record's id, and rows per `schema.table`."""

    erasure_id: int
    visitors: int
    sessions: int
    events: int
    rows: dict[str, int]

    @classmethod
    def of(cls, result: dict[str, Any]) -> Erasure:
        """From privacy.erase_visitor's JSON answer."""
        return cls(
            erasure_id=int(result["erasure_id"]),
            visitors=int(result["visitors"]),
            sessions=int(result["sessions"]),
            events=int(result["events"]),
            rows=dict(sorted(((str(k), int(v)) for k, v in result["rows"].items()), key=_layer_order)),
        )


def _params(
    tenant_hk: bytes, visitor_id: str | None, user_id: str | None, erased_by: str, record_source: str
) -> dict[str, Any]:
    if (visitor_id is None) == (user_id is None):
        raise ValueError("name the person by a visitor id or by a user id, not both")
    return {
        "tenant_hk": tenant_hk,
        "visitor_id": visitor_id,
        "user_id": user_id,
        "erased_by": erased_by,
        "record_source": record_source,
    }


def erase(
    conn: psycopg.Connection,
    tenant_hk: bytes,
    *,
    visitor_id: str | None = None,
    user_id: str | None = None,
    erased_by: str,
    record_source: str,
) -> Erasure:
    """Erase a visitor's (or a user id's visitors') data of the tenant; `conn` must be in autocommit mode."""
    row = conn.execute(
        Q["erase_visitor"], _params(tenant_hk, visitor_id, user_id, erased_by, record_source)
    ).fetchone()
    assert row is not None
    return Erasure.of(row[0])


async def aerase(
    conn: psycopg.AsyncConnection[Any],
    tenant_hk: bytes,
    *,
    visitor_id: str | None = None,
    user_id: str | None = None,
    erased_by: str,
    record_source: str,
) -> Erasure:
    """`erase` on an asynchronous connection (the service's pool)."""
    cur = await conn.execute(
        Q["erase_visitor"], _params(tenant_hk, visitor_id, user_id, erased_by, record_source)
    )
    row = await cur.fetchone()
    assert row is not None
    return Erasure.of(row[0])
