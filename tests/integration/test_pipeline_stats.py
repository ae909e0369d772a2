"""The running totals behind status and dashboard agree with counting every row."""

from __future__ import annotations

import psycopg
from tests.conftest import make_tenant


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
