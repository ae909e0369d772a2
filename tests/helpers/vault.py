"""What the vault holds: raw events counted, staging rows, and business events whole and linked once."""

from __future__ import annotations

from typing import Any

import psycopg

from tests.helpers.pipeline import CUSTOMER
from tests.helpers.queries import rows


def raw_count(conn: psycopg.Connection) -> int:
    """How many events the raw layer holds."""
    row = conn.execute("SELECT count(*) FROM raw.site_tracking_events_r").fetchone()
    assert row is not None
    return int(row[0])


def staged(conn: psycopg.Connection, raw_event_id: int) -> dict[str, Any]:
    """The staging row of a raw event."""
    found = rows(
        conn, "SELECT * FROM staging.site_tracking_events_s WHERE raw_event_id = %s", (raw_event_id,)
    )
    assert len(found) == 1, f"raw event {raw_event_id} staged {len(found)} times"
    return found[0]


def assert_complete(conn: psycopg.Connection, event_id: str, customer: str = CUSTOMER) -> None:
    """The event is in every business table it belongs to, exactly once."""
    found = rows(
        conn,
        """
        SELECT r.processing_status, s.business_loaded_at IS NOT NULL AS loaded,
               (SELECT count(*) FROM business.site_event_h h WHERE h.site_event_hk = s.site_event_hk) AS hub,
               (SELECT count(*) FROM business.site_event_details_s d WHERE d.site_event_hk = s.site_event_hk)
                   AS details,
               (SELECT count(*) FROM business.site_event_session_l l
                WHERE l.site_event_hk = s.site_event_hk AND l.site_session_hk = s.site_session_hk)
                   AS session_link,
               (SELECT count(*) FROM business.site_event_page_l l
                WHERE l.site_event_hk = s.site_event_hk AND l.site_page_hk = s.site_page_hk) AS page_link,
               (SELECT count(*) FROM business.site_session_visitor_l l
                WHERE l.site_session_hk = s.site_session_hk AND l.site_visitor_hk = s.site_visitor_hk)
                   AS visitor_link
        FROM raw.site_tracking_events_r r
        JOIN staging.site_tracking_events_s s USING (raw_event_id)
        WHERE r.tenant_hk = util.tenant_hk(%s) AND r.event_id = %s
        """,
        (customer, event_id),
    )
    assert found == [
        {
            "processing_status": "PROCESSED",
            "loaded": True,
            "hub": 1,
            "details": 1,
            "session_link": 1,
            "page_link": 1,
            "visitor_link": 1,
        }
    ], event_id


def assert_each_event_linked_once(conn: psycopg.Connection, customer: str = CUSTOMER) -> None:
    """Every business event of the tenant is in one session, and on one page when it has a URL.

    The link tables' primary keys are hashes of the (event, session) and (event, page) pairs, so
    nothing in the schema stops an event from landing in two sessions, two pages, or none: a
    visitor would see it counted twice, or not at all, in the stats.
    """
    found = rows(
        conn,
        """
        SELECT h.site_event_bk AS event_id,
               (SELECT count(*) FROM business.site_event_session_l l
                WHERE l.site_event_hk = h.site_event_hk) AS sessions,
               (SELECT count(*) FROM business.site_event_page_l l
                WHERE l.site_event_hk = h.site_event_hk) AS pages,
               (SELECT count(*) FROM business.site_event_details_s d
                WHERE d.site_event_hk = h.site_event_hk AND d.page_url IS NOT NULL) AS pages_expected
        FROM business.site_event_h h
        WHERE h.tenant_hk = util.tenant_hk(%s)
        ORDER BY 1
        """,
        (customer,),
    )
    assert found, f"tenant {customer} has no business events"
    wrong = [e for e in found if e["sessions"] != 1 or e["pages"] != min(e["pages_expected"], 1)]
    assert not wrong, f"events not linked to exactly one session and page: {wrong}"
    orphans = rows(
        conn,
        """
        SELECT 'site_event_session_l' AS link, count(*) AS orphans FROM business.site_event_session_l l
        WHERE l.tenant_hk = util.tenant_hk(%(c)s)
          AND NOT EXISTS (SELECT FROM business.site_event_h h WHERE h.site_event_hk = l.site_event_hk)
        UNION ALL
        SELECT 'site_event_page_l', count(*) FROM business.site_event_page_l l
        WHERE l.tenant_hk = util.tenant_hk(%(c)s)
          AND NOT EXISTS (SELECT FROM business.site_event_h h WHERE h.site_event_hk = l.site_event_hk)
        """,
        {"c": customer},
    )
    assert all(o["orphans"] == 0 for o in orphans), f"links to events the hub lacks: {orphans}"
