"""Feeding the SQL pipeline: events tracked or ingested as the service stores them, and a run triggered."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from tests.helpers.queries import scalar

CUSTOMER = "one_spa"
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)


def track(
    conn: psycopg.Connection,
    page_url: str | None = "https://example.com/",
    event_type: str = "page_view",
    event_data: dict[str, Any] | None = None,
    client_ip: str | None = "203.0.113.7",
    user_agent: str | None = CHROME,
    event_id: str | None = None,
    customer: str = CUSTOMER,
) -> int:
    """Track one event through api.track_site_event; its raw_event_id."""
    result = scalar(
        conn,
        "SELECT api.track_site_event(%s::text, %s::text, %s::text, %s::jsonb, %s::inet, %s::text, %s::text)",
        (customer, page_url, event_type, Jsonb(event_data or {}), client_ip, user_agent, event_id),
    )
    assert result["success"] is True
    return int(result["raw_event_id"])


def ingest(
    conn: psycopg.Connection,
    payloads: list[dict[str, Any]],
    event_ids: list[str],
    customer: str = CUSTOMER,
    user_agent: str | None = CHROME,
    client_ip: str | None = "203.0.113.7",
    received: list[datetime] | None = None,
) -> list[int]:
    """Store events with raw.ingest_site_events in one call; their raw_event_ids in input order."""
    n = len(payloads)
    result = conn.execute(
        "SELECT raw_event_id FROM raw.ingest_site_events("
        " array_fill(util.tenant_hk(%s), ARRAY[%s]), %s::text[], %s::jsonb[],"
        " array_fill(%s::text, ARRAY[%s]), array_fill(%s::inet, ARRAY[%s]),"
        " coalesce(%s::timestamptz[], array_fill(clock_timestamp(), ARRAY[%s])),"
        " array_fill('test:ingest'::text, ARRAY[%s])) ORDER BY ord",
        (customer, n, event_ids, [Jsonb(p) for p in payloads], user_agent, n, client_ip, n, received, n, n),
    ).fetchall()
    return [r[0] for r in result]


def trigger(conn: psycopg.Connection, customer: str | None = CUSTOMER) -> dict[str, Any]:
    """staging.trigger_pipeline_now's result."""
    result: dict[str, Any] = scalar(conn, "SELECT staging.trigger_pipeline_now(%s)", (customer,))
    return result
