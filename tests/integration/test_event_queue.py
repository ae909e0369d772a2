"""The queue of unprocessed events, raw.event_queue (migration 0015): it holds exactly the raw events
that are not processed, whoever changes them (ingestion, runs, failures, requeues, erasure, psql),
an entry left behind is taken off by the next run without processing its event twice, and the
upgrade fills it from raw."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from tests.helpers.pipeline import CUSTOMER, ingest
from tests.helpers.queries import rows, scalar
from tests.helpers.tenants import make_tenant
from tests.helpers.vault_load import process_all, process_batch

from onevault import migrations

BEFORE_QUEUE = 14

QUEUE = (
    "SELECT tenant_hk, raw_event_id, received_timestamp, processing_lane, processing_status, next_attempt_at"
    " FROM raw.event_queue ORDER BY raw_event_id"
)
UNPROCESSED = (
    "SELECT tenant_hk, raw_event_id, received_timestamp, processing_lane, processing_status, next_attempt_at"
    " FROM raw.site_tracking_events_r WHERE processing_status <> 'PROCESSED' ORDER BY raw_event_id"
)


@pytest.fixture
def customer(conn: psycopg.Connection) -> str:
    make_tenant(conn, CUSTOMER)
    return CUSTOMER


def _assert_queue_is_raws_unprocessed(conn: psycopg.Connection) -> list[dict[str, Any]]:
    queued = rows(conn, QUEUE)
    assert queued == rows(conn, UNPROCESSED)
    return queued


def _page(n: int, visitor: str = "v-1") -> dict[str, Any]:
    return {"page_url": f"https://example.com/p{n}", "visitor_id": visitor}


def test_the_queue_holds_exactly_the_unprocessed_events(conn: psycopg.Connection, customer: str) -> None:
    """Through every change of an event's state, the queue is raw's unprocessed events, lane and
    retry time included."""
    ids = ingest(conn, [_page(n) for n in range(6)], [f"e{n}" for n in range(6)])
    assert [q["raw_event_id"] for q in _assert_queue_is_raws_unprocessed(conn)] == ids

    assert process_batch(conn, CUSTOMER, 4)["claimed"] == 4
    assert [q["raw_event_id"] for q in _assert_queue_is_raws_unprocessed(conn)] == ids[4:]

    # A failure retried later, and one retried no more, as staging.process_batch records them.
    conn.execute(
        "UPDATE raw.site_tracking_events_r SET processing_status = 'ERROR', retry_count = 1,"
        " next_attempt_at = now() + interval '1 hour' WHERE raw_event_id = %s",
        (ids[4],),
    )
    conn.execute(
        "UPDATE raw.site_tracking_events_r SET processing_status = 'ERROR', retry_count = 5,"
        " next_attempt_at = NULL WHERE raw_event_id = %s",
        (ids[5],),
    )
    _assert_queue_is_raws_unprocessed(conn)
    assert process_batch(conn, CUSTOMER)["claimed"] == 0
    assert scalar(conn, "SELECT errors FROM raw.queue_counts()") == 2

    assert (
        scalar(conn, "SELECT staging.requeue_failed(util.tenant_hk(%s))", (CUSTOMER,))["requeued_errors"] == 2
    )
    assert {q["processing_status"] for q in _assert_queue_is_raws_unprocessed(conn)} == {"PENDING"}

    # Processed again by hand (psql), then deleted by hand: queued, then gone.
    conn.execute(
        "UPDATE raw.site_tracking_events_r SET processing_status = 'PENDING' WHERE raw_event_id = ANY (%s)",
        (ids[:2],),
    )
    assert len(_assert_queue_is_raws_unprocessed(conn)) == 4
    conn.execute(
        "UPDATE raw.site_tracking_events_r SET received_timestamp = received_timestamp - interval '1 hour'"
        " WHERE raw_event_id = %s",
        (ids[1],),
    )
    _assert_queue_is_raws_unprocessed(conn)
    conn.execute("DELETE FROM raw.site_tracking_events_r WHERE raw_event_id = %s", (ids[0],))
    assert len(_assert_queue_is_raws_unprocessed(conn)) == 3

    assert process_all(conn, CUSTOMER) == 3
    assert _assert_queue_is_raws_unprocessed(conn) == []


def test_erasing_a_visitor_takes_their_waiting_events_off_the_queue(
    conn: psycopg.Connection, customer: str
) -> None:
    """Erasure deletes the person's events that were still waiting; the others stay queued."""
    ingest(conn, [_page(1, "v-gone"), _page(2, "v-stays"), _page(3, "v-gone")], ["a", "b", "c"])
    report = scalar(
        conn, "SELECT privacy.erase_visitor(util.tenant_hk(%s), 'v-gone', NULL, 'test')", (CUSTOMER,)
    )
    assert report["events"] == 2
    queued = _assert_queue_is_raws_unprocessed(conn)
    assert scalar(
        conn,
        "SELECT array_agg(event_id) FROM raw.site_tracking_events_r WHERE raw_event_id = ANY (%s)",
        ([q["raw_event_id"] for q in queued],),
    ) == ["b"]


def test_an_entry_left_behind_is_taken_off_by_the_next_run_without_processing_twice(
    conn: psycopg.Connection, customer: str
) -> None:
    """An entry whose event is processed (set by hand) or gone is claimed by the next run of its lane,
    which finds nothing left to do for it and takes it off: no second staging row, no loop."""
    done, gone = ingest(conn, [_page(1), _page(2)], ["done", "gone"])
    process_all(conn, CUSTOMER)
    vault = scalar(conn, "SELECT count(*) FROM business.site_event_h")
    conn.execute(
        "INSERT INTO raw.event_queue (tenant_hk, raw_event_id, received_timestamp, processing_lane)"
        " SELECT tenant_hk, raw_event_id, received_timestamp, processing_lane FROM raw.site_tracking_events_r"
        " WHERE raw_event_id = ANY (%s)",
        ([done, gone],),
    )
    conn.execute("DELETE FROM raw.event_queue WHERE raw_event_id = %s", (gone,))
    conn.execute(
        "ALTER TABLE raw.site_tracking_events_r DISABLE TRIGGER site_tracking_events_r_unqueue_deleted"
    )
    conn.execute("DELETE FROM raw.site_tracking_events_r WHERE raw_event_id = %s", (gone,))
    conn.execute(
        "ALTER TABLE raw.site_tracking_events_r ENABLE TRIGGER site_tracking_events_r_unqueue_deleted"
    )
    conn.execute(
        "INSERT INTO raw.event_queue (tenant_hk, raw_event_id, received_timestamp, processing_lane)"
        " VALUES (util.tenant_hk(%s), %s, now(), 0)",
        (CUSTOMER, gone),
    )

    first = process_batch(conn, CUSTOMER)
    assert (first["claimed"], first["staged"], first["loaded"], first["errors"]) == (2, 0, 0, 0)
    assert scalar(conn, "SELECT count(*) FROM raw.event_queue") == 0
    assert process_batch(conn, CUSTOMER)["claimed"] == 0
    assert (
        scalar(conn, "SELECT count(*) FROM staging.site_tracking_events_s WHERE raw_event_id = %s", (done,))
        == 1
    )
    assert scalar(conn, "SELECT count(*) FROM business.site_event_h") == vault


def test_the_upgrade_queues_every_unprocessed_event_and_processing_goes_on(empty_db_url: str) -> None:
    """A database of 0014 (its queue the partial index of raw) holding pending, failed and processed
    events: the upgrade queues exactly the pending and failed ones, and processing goes on."""
    migrations.upgrade(empty_db_url)
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        make_tenant(conn, CUSTOMER)
        ids = ingest(conn, [_page(n, f"v-{n}") for n in range(10)], [f"e{n}" for n in range(10)])
        process_batch(conn, CUSTOMER, 4)
        conn.execute(
            "UPDATE raw.site_tracking_events_r SET processing_status = 'ERROR', retry_count = 1,"
            " next_attempt_at = now() - interval '1 minute' WHERE raw_event_id = %s",
            (ids[4],),
        )
        conn.execute(
            "UPDATE raw.site_tracking_events_r SET processing_status = 'ERROR', retry_count = 5"
            " WHERE raw_event_id = %s",
            (ids[5],),
        )
        before = _assert_queue_is_raws_unprocessed(conn)
        assert len(before) == 6

    migrations.rollback(empty_db_url, to=BEFORE_QUEUE)
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        assert scalar(conn, "SELECT to_regclass('raw.event_queue')") is None
        assert scalar(conn, "SELECT to_regclass('raw.site_tracking_events_r_pending_idx')") is not None
    migrations.upgrade(empty_db_url)

    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        assert _assert_queue_is_raws_unprocessed(conn) == before
        assert scalar(conn, "SELECT to_regclass('raw.site_tracking_events_r_pending_idx')") is None
        # The pending ones and the failure due for its retry; the one retried no more stays.
        assert process_all(conn, CUSTOMER) == 5
        assert [q["raw_event_id"] for q in _assert_queue_is_raws_unprocessed(conn)] == [ids[5]]
        more = ingest(conn, [_page(20)], ["after"])
        assert process_all(conn, CUSTOMER) == 1
        assert (
            scalar(
                conn, "SELECT processing_status FROM raw.site_tracking_events_r WHERE raw_event_id = %s", more
            )
            == "PROCESSED"
        )


def test_an_events_id_never_changes_in_place_and_storing_it_again_keeps_the_queue(
    conn: psycopg.Connection, customer: str
) -> None:
    """Moving a row to another partition is a delete and an insert that no UPDATE row trigger sees, so
    an update of an event's id (or tenant) is refused; deleting and storing it again is followed."""
    (stored,) = ingest(conn, [_page(1)], ["moved"])
    for change in ("raw_event_id = raw_event_id + 1", "tenant_hk = util.tenant_hk('someone-else')"):
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="never change"):
            conn.execute(f"UPDATE raw.site_tracking_events_r SET {change} WHERE raw_event_id = %s", (stored,))
    conn.execute(
        "WITH gone AS (DELETE FROM raw.site_tracking_events_r WHERE raw_event_id = %s RETURNING *)"
        " INSERT INTO raw.site_tracking_events_r (raw_event_id, tenant_hk, event_id, raw_payload,"
        " received_timestamp, record_source, processing_lane)"
        " SELECT raw_event_id + 1, tenant_hk, event_id, raw_payload, received_timestamp, record_source,"
        " processing_lane FROM gone",
        (stored,),
    )
    assert [q["raw_event_id"] for q in _assert_queue_is_raws_unprocessed(conn)] == [stored + 1]
    assert process_all(conn, CUSTOMER) == 1
