"""A customer's information marts as comparable values (without hash keys, which embed the customer),
and their rebuild through the SQL functions `onevault mart rebuild` calls."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from tests.helpers.queries import rows, scalar

# The rows of mart.visitor_key_days of the customer's visitors whose days it keeps that differ from
# their facts ('extra': only in the table, 'missing': only in the facts), with the visitor's key.
KEY_DAYS_DIFFERENCES = """
WITH kept AS (
    SELECT DISTINCT f.site_visitor_hk FROM mart.session_f f
    WHERE f.tenant_hk = util.tenant_hk(%s)
      AND EXISTS (SELECT FROM mart.visitor_key_days m WHERE m.site_visitor_hk = f.site_visitor_hk)
), session_days AS (
    SELECT DISTINCT f.*, e.hour::date AS day
    FROM mart.session_f f JOIN mart.session_event_f e USING (site_session_hk)
    WHERE f.site_visitor_hk IN (SELECT site_visitor_hk FROM kept)
), facts AS (
    SELECT site_visitor_hk, dimension, value, day, count(*)::integer AS sessions
    FROM (SELECT s.site_visitor_hk, v.dimension, v.value, s.day
          FROM session_days s, LATERAL (VALUES (0, ''), (3, s.entry_page), (4, s.exit_page), (5, s.referrer),
                                               (6, s.channel), (7, s.utm_source), (8, s.utm_medium),
                                               (9, s.utm_campaign), (10, s.browser), (11, s.os),
                                               (12, s.device)) v(dimension, value)
          UNION ALL
          SELECT p.site_visitor_hk, p.dimension, p.value, p.day
          FROM (SELECT DISTINCT f.site_session_hk, f.site_visitor_hk, v.dimension, v.value,
                       e.hour::date AS day
                FROM mart.session_f f JOIN mart.session_event_f e USING (site_session_hk),
                     LATERAL (VALUES (1, e.page), (2, e.event_type)) v(dimension, value)
                WHERE f.site_visitor_hk IN (SELECT site_visitor_hk FROM kept)) p) x
    GROUP BY 1, 2, 3, 4
), stored AS (
    SELECT m.site_visitor_hk, m.dimension::integer, m.value::text, m.day, m.sessions
    FROM mart.visitor_key_days m WHERE m.site_visitor_hk IN (SELECT site_visitor_hk FROM kept)
)
(SELECT 'extra', encode(site_visitor_hk, 'hex'), dimension, value, day::text, sessions FROM stored
 EXCEPT SELECT 'extra', encode(site_visitor_hk, 'hex'), dimension, value, day::text, sessions FROM facts)
UNION ALL
(SELECT 'missing', encode(site_visitor_hk, 'hex'), dimension, value, day::text, sessions FROM facts
 EXCEPT SELECT 'missing', encode(site_visitor_hk, 'hex'), dimension, value, day::text, sessions FROM stored)
"""


@dataclass(frozen=True)
class MartState:
    """Every rollup row that counts something, and the facts, sorted."""

    hourly: list[tuple[Any, ...]]
    daily: list[tuple[Any, ...]]
    visitor_days: list[tuple[Any, ...]]
    sessions: list[tuple[Any, ...]]
    # The last of each: whether the row's visitor byte is its session's visitor's.
    events: list[tuple[Any, ...]]
    # Always empty where the marts are right (see KEY_DAYS_DIFFERENCES).
    visitor_key_days: list[tuple[Any, ...]]


def _tuples(conn: psycopg.Connection, query: str, customer_id: str) -> list[tuple[Any, ...]]:
    return sorted(tuple(r.values()) for r in rows(conn, query, (customer_id,)))


def mart_state(conn: psycopg.Connection, customer_id: str) -> MartState:
    """The customer's marts; rows a change left at zero are not counted (queries skip them too)."""
    return MartState(
        hourly=_tuples(
            conn,
            "SELECT hour::text, visitors, visits, bounces, duration_seconds, visit_pageviews, pageviews,"
            " events FROM mart.traffic_hourly WHERE tenant_hk = util.tenant_hk(%s)"
            " AND (visitors, visits, pageviews, events) <> (0, 0, 0, 0)",
            customer_id,
        ),
        daily=_tuples(
            conn,
            "SELECT dimension, day::text, value, visits, bounces, duration_seconds, visit_pageviews,"
            " pageviews, events FROM mart.traffic_daily WHERE tenant_hk = util.tenant_hk(%s)"
            " AND (visits, pageviews, events) <> (0, 0, 0)",
            customer_id,
        ),
        visitor_days=_tuples(
            conn,
            "SELECT dimension, day::text, value, prev_day::text, visitors FROM mart.visitor_days"
            " WHERE tenant_hk = util.tenant_hk(%s) AND visitors <> 0",
            customer_id,
        ),
        sessions=_tuples(
            conn,
            "SELECT started_at::text, ended_at::text, start_hour::text, pageviews, events, duration_seconds,"
            " is_bounce, entry_page, exit_page, referrer, channel, utm_source, utm_medium, utm_campaign,"
            " browser, os, device FROM mart.session_f WHERE tenant_hk = util.tenant_hk(%s)",
            customer_id,
        ),
        events=_tuples(
            conn,
            "SELECT s.started_at::text, e.hour::text, e.page, e.event_type, e.events, e.pageviews,"
            " e.visitor_byte = get_byte(s.site_visitor_hk, 0) AS of_its_visitor"
            " FROM mart.session_event_f e JOIN mart.session_f s USING (site_session_hk)"
            " WHERE e.tenant_hk = util.tenant_hk(%s)",
            customer_id,
        ),
        visitor_key_days=_tuples(conn, KEY_DAYS_DIFFERENCES, customer_id),
    )


def rebuild_marts(conn: psycopg.Connection, customer_id: str, limit: int = 1000) -> int:
    """mart.clear_tenant, then mart.rebuild_visitors until none is left; the chunks it took."""
    scalar(conn, "SELECT mart.clear_tenant(util.tenant_hk(%s))", (customer_id,))
    after: bytes | None = None
    for chunks in range(1, 10_000):
        result: dict[str, Any] = scalar(
            conn,
            "SELECT mart.rebuild_visitors(util.tenant_hk(%s), %s::bytea, %s)",
            (customer_id, after, limit),
        )
        if result["last"] is None:
            return chunks
        after = bytes.fromhex(str(result["last"]))
    raise AssertionError("mart.rebuild_visitors never reports the last visitor")


def set_zone(conn: psycopg.Connection, customer_id: str, time_zone: str) -> None:
    """Record the customer's time zone (before any of its events is loaded, no rebuild is needed)."""
    conn.execute(
        "INSERT INTO auth.tenant_zone_s (tenant_hk, time_zone, record_source)"
        " VALUES (util.tenant_hk(%s), %s, 'test')",
        (customer_id, time_zone),
    )
