"""The running totals behind status and dashboard agree with counting every row."""

from __future__ import annotations

import psycopg
from tests.helpers.tenants import make_tenant


def _status(conn: psycopg.Connection, customer_id: str) -> dict[str, object]:
    row = conn.execute("SELECT staging.get_pipeline_status(%s)", (customer_id,)).fetchone()
    assert row is not None
    return dict(row[0])


def _counted(conn: psycopg.Connection, customer_id: str) -> dict[str, object]:
    row = conn.execute(
        """
        SELECT count(*),
               count(*) FILTER (WHERE staging_status = 'INVALID'),
               count(*) FILTER (WHERE business_status = '✅ Complete Pipeline'),
               count(*) FILTER (WHERE staging_status = 'PENDING')
        FROM staging.pipeline_dashboard WHERE customer_id = %s
        """,
        (customer_id,),
    ).fetchone()
    assert row is not None
    return dict(
        zip(("raw_events_total", "quarantined", "business_events_total", "raw_pending"), row, strict=True)
    )


def test_totals_match_row_counts_through_quarantine_requeue_and_replay(conn: psycopg.Connection) -> None:
    """Processing, quarantine, requeue and reprocessing keep the totals equal to the rows, per tenant."""
    for customer in ("one_spa", "other_co"):
        make_tenant(conn, customer)
    for n in range(6):
        conn.execute("SELECT api.track_site_event('one_spa', %s)", (f"https://a.test/{n}",))
    conn.execute("SELECT api.track_site_event('one_spa', 'not a url')")
    conn.execute("SELECT api.track_site_event('other_co', 'https://b.test/')")
    conn.execute("SELECT staging.trigger_pipeline_now(NULL)")
    conn.execute("SELECT api.track_site_event('one_spa', 'https://a.test/late')")

    for customer in ("one_spa", "other_co"):
        status, counted = _status(conn, customer), _counted(conn, customer)
        assert {k: status[k] for k in counted} == counted
    assert _counted(conn, "one_spa") == {
        "raw_events_total": 8,
        "quarantined": 1,
        "business_events_total": 6,
        "raw_pending": 1,
    }

    conn.execute("SELECT staging.requeue_failed(util.tenant_hk('one_spa'))")
    conn.execute("SELECT staging.trigger_pipeline_now('one_spa')")
    status, counted = _status(conn, "one_spa"), _counted(conn, "one_spa")
    assert (
        {k: status[k] for k in counted}
        == counted
        == {
            "raw_events_total": 8,
            "quarantined": 1,
            "business_events_total": 7,
            "raw_pending": 0,
        }
    )
    assert status["business_events_today"] == 7


ORPHAN_CHECKS = {
    "site_event_session_l": ("site_event_hk", "site_event_h"),
    "site_event_page_l": ("site_page_hk", "site_page_h"),
    "site_session_visitor_l": ("site_visitor_hk", "site_visitor_h"),
    "site_event_details_s": ("site_event_hk", "site_event_h"),
    "site_page_details_s": ("site_page_hk", "site_page_h"),
    "site_visitor_details_s": ("site_visitor_hk", "site_visitor_h"),
    "site_session_summary_s": ("site_session_hk", "site_session_h"),
    "site_event_session_eff_s": ("site_session_hk", "site_session_h"),
    "site_session_visitor_eff_s": ("site_visitor_hk", "site_visitor_h"),
    "site_session_state": ("site_session_hk", "site_session_h"),
}


def test_links_and_satellites_always_have_their_hubs(conn: psycopg.Connection) -> None:
    """The vault has no foreign keys; the loader keeps every reference (to hubs, to tenants) whole."""
    make_tenant(conn, "one_spa")
    for n in range(20):
        conn.execute(
            "SELECT api.track_site_event('one_spa', %s, 'page_view', %s::jsonb)",
            (f"https://a.test/{n % 4}", f'{{"visitor_id": "v{n % 3}"}}'),
        )
    conn.execute("SELECT api.track_site_event('one_spa', 'not a url')")
    # Two sessions of one visitor, merged by a late event between them: effectivity rows.
    merge = """SELECT api.track_site_event('one_spa', 'https://a.test/m', 'page_view', jsonb_build_object(
                   'visitor_id', 'v-merge', 'timestamp', now() - %s * interval '1 minute'))"""
    for minutes in (60, 0):
        conn.execute(merge, (minutes,))
    # A session seen with two visitors: effectivity says which holds it.
    for visitor in ("v-anon", "v-known"):
        conn.execute(
            "SELECT api.track_site_event('one_spa', 'https://a.test/s', 'page_view', %s::jsonb)",
            (f'{{"visitor_id": "{visitor}", "session_id": "s-shared"}}',),
        )
    conn.execute("SELECT staging.trigger_pipeline_now('one_spa')")
    conn.execute(merge, (30,))
    conn.execute("SELECT staging.trigger_pipeline_now('one_spa')")
    conn.execute("SELECT staging.requeue_failed(NULL)")
    conn.execute("SELECT staging.trigger_pipeline_now(NULL)")
    for table, (key, hub) in ORPHAN_CHECKS.items():
        orphans = conn.execute(
            f"SELECT count(*) FROM business.{table} x "
            f"WHERE NOT EXISTS (SELECT 1 FROM business.{hub} h WHERE h.{key} = x.{key})"
        ).fetchone()
        assert orphans == (0,), table
        assert conn.execute(f"SELECT count(*) FROM business.{table}").fetchone() != (0,), table
    for table in ("site_visitor_h", "site_session_h", "site_page_h", "site_event_h"):
        # The ghost page (the zero key, docs/vault.md) belongs to no customer.
        unknown_tenant = conn.execute(
            f"SELECT count(*) FROM business.{table} x WHERE x.tenant_hk <> %s "
            "AND NOT EXISTS (SELECT 1 FROM auth.tenant_h t WHERE t.tenant_hk = x.tenant_hk)",
            (bytes(32),),
        ).fetchone()
        assert unknown_tenant == (0,), table
