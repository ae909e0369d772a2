"""The SQL pipeline raw → staging → business: completeness, replay, exactly-once, quarantine, retries."""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import errors, sql
from psycopg.types.json import Jsonb
from tests.helpers.pipeline import CHROME, CUSTOMER, ingest, track, trigger
from tests.helpers.queries import rows, scalar
from tests.helpers.tenants import Tenant, make_tenant
from tests.helpers.vault import assert_complete, assert_each_event_linked_once, staged

from onevault import dbcode
from onevault.monitoring.pipeline import Q as MONITORING
from onevault.pipeline.runner import Q as PIPELINE
from onevault.pipeline.runner import lane_groups

HUBS = ("site_event_h", "site_visitor_h", "site_session_h", "site_page_h")
LINKS = ("site_event_session_l", "site_event_page_l", "site_session_visitor_l")
SATELLITES = (
    "site_event_details_s",
    "site_page_details_s",
    "site_visitor_details_s",
    "site_session_summary_s",
)
BUSINESS_TABLES = (*HUBS, *LINKS, *SATELLITES)
# The zero key: the ghost page's hub and details rows (docs/vault.md).
GHOST_KEY = bytes(32)
NO_WORK = "No processing needed - all events up to date"


def bulk_insert(conn: psycopg.Connection, customer: str, count: int, visitors: int = 300) -> None:
    """`count` page views of `visitors` visitors, one second apart over the last hours, in one statement."""
    conn.execute(
        """
        SELECT count(*) FROM raw.ingest_site_events(
            array_fill(util.tenant_hk(%(c)s), ARRAY[%(n)s]),
            ARRAY(SELECT 'bulk-' || g FROM generate_series(1, %(n)s) g ORDER BY g),
            ARRAY(SELECT jsonb_build_object(
                        'event_type', 'page_view',
                        'page_url', 'https://shop.example/p/' || g %% 97,
                        'event_data', jsonb_build_object(
                            'visitor_id', 'visitor-' || g %% %(v)s,
                            'timestamp', now() - make_interval(secs => %(n)s - g)))
                  FROM generate_series(1, %(n)s) g ORDER BY g),
            array_fill(%(ua)s::text, ARRAY[%(n)s]), array_fill(NULL::inet, ARRAY[%(n)s]),
            array_fill(now(), ARRAY[%(n)s]), array_fill('test:bulk'::text, ARRAY[%(n)s]))
        """,
        {"c": customer, "n": count, "v": visitors, "ua": CHROME},
    )


def auto_process(
    conn: psycopg.Connection,
    customer: str | None = CUSTOMER,
    batch: int = 1000,
    lanes: Sequence[int] | None = None,
) -> dict[str, Any]:
    """staging.auto_process_if_needed's result (for `lanes`, default all)."""
    result: dict[str, Any] = scalar(
        conn,
        "SELECT staging.auto_process_if_needed(%s, %s, %s::smallint[])",
        (customer, batch, None if lanes is None else list(lanes)),
    )
    return result


def status(conn: psycopg.Connection, customer: str | None = CUSTOMER) -> dict[str, Any]:
    """staging.get_pipeline_status's result."""
    result: dict[str, Any] = scalar(conn, "SELECT staging.get_pipeline_status(%s)", (customer,))
    return result


def table_counts(conn: psycopg.Connection) -> dict[str, int]:
    """Row count of the staging table and of every business table (the ghost page's rows aside)."""
    counts = {"staging": scalar(conn, "SELECT count(*) FROM staging.site_tracking_events_s")}
    for table in BUSINESS_TABLES:
        counts[table] = scalar(
            conn, f"SELECT count(*) FROM business.{table} WHERE tenant_hk <> %s", (GHOST_KEY,)
        )
    return counts


def raw_status(conn: psycopg.Connection) -> dict[str, str]:
    """processing_status of every raw event by event_id."""
    return dict(conn.execute("SELECT event_id, processing_status FROM raw.site_tracking_events_r").fetchall())


def business_events(conn: psycopg.Connection, customer: str = CUSTOMER) -> dict[str, int]:
    """Business event keys of a tenant with how many hub rows and details rows each has."""
    found = conn.execute(
        "SELECT h.site_event_bk, (SELECT count(*) FROM business.site_event_details_s d "
        "                         WHERE d.site_event_hk = h.site_event_hk) "
        "FROM business.site_event_h h WHERE h.tenant_hk = util.tenant_hk(%s)",
        (customer,),
    ).fetchall()
    return {bk: n for bk, n in found}


# --- 1. end to end --------------------------------------------------------------------------------------


def test_event_flows_from_raw_to_business(conn: psycopg.Connection, tenant: Tenant) -> None:
    """One tracked event ends up validated in staging and in every hub, link and satellite of the vault."""
    raw_id = track(
        conn,
        "https://Example.com/pricing?plan=pro",
        event_data={"visitor_id": "vis-1", "session_id": "sess-1", "page_title": "Pricing", "user_id": "u-9"},
        event_id="evt-e2e",
    )
    assert raw_status(conn) == {"evt-e2e": "PENDING"}

    result = trigger(conn)

    assert set(result) == {"triggered_at", "results"}
    datetime.fromisoformat(result["triggered_at"])
    res = result["results"]
    assert {k: res[k] for k in res if k not in ("processing_summary", "quarantined_count")} == {
        "total_processed": 1,
        "raw_to_staging_count": 1,
        "staging_to_business_count": 1,
        "total_success_count": 1,
        "total_error_count": 0,
    }
    assert re.search(r"\b1 event", res["processing_summary"]), res["processing_summary"]

    s = staged(conn, raw_id)
    assert s["validation_status"] == "VALID"
    assert s["validation_reasons"] == []
    assert s["page_url"] == "https://example.com/pricing?plan=pro"
    assert (s["page_host"], s["page_path"], s["page_query"]) == ("example.com", "/pricing", "plan=pro")
    assert (s["page_title"], s["event_type"], s["user_id"]) == ("Pricing", "page_view", "u-9")
    assert (s["session_id"], s["visitor_id"], s["session_derived"], s["visitor_derived"]) == (
        "sess-1",
        "vis-1",
        False,
        False,
    )
    assert (s["browser_family"], s["os_family"], s["device_type"], s["is_bot"]) == (
        "Chrome",
        "Windows",
        "desktop",
        False,
    )
    assert s["referrer_class"] == "direct"
    assert s["occurred_at"] == s["received_at"]

    counts = table_counts(conn)
    assert counts == dict.fromkeys(counts, 1)
    tenant_hk = scalar(conn, "SELECT util.tenant_hk('one_spa')")
    keys = {
        "site_event_h": ("site_event_bk", "evt-e2e"),
        "site_visitor_h": ("site_visitor_bk", "vis-1"),
        "site_session_h": ("site_session_bk", "sess-1"),
        "site_page_h": ("site_page_bk", "https://example.com/pricing"),
    }
    for hub, (bk_col, bk) in keys.items():
        hk_col = bk_col.replace("_bk", "_hk")
        hub_row = rows(
            conn,
            f"SELECT {hk_col} AS hk, {bk_col} AS bk, tenant_hk FROM business.{hub} WHERE tenant_hk <> %s",
            (GHOST_KEY,),
        )[0]
        assert hub_row["bk"] == bk, hub
        assert hub_row["tenant_hk"] == tenant_hk, hub
        assert hub_row["hk"] == scalar(conn, "SELECT util.hash_key(%s, %s)", (tenant_hk, bk)), hub
    assert_complete(conn, "evt-e2e")
    details = rows(conn, "SELECT * FROM business.site_event_details_s")[0]
    assert (details["raw_event_id"], details["page_url"], details["user_id"], details["is_bot"]) == (
        raw_id,
        "https://example.com/pricing?plan=pro",
        "u-9",
        False,
    )
    page = rows(
        conn,
        "SELECT page_host, page_path, page_title FROM business.site_page_details_s WHERE tenant_hk <> %s",
        (GHOST_KEY,),
    )
    assert page == [{"page_host": "example.com", "page_path": "/pricing", "page_title": "Pricing"}]
    summary = rows(conn, "SELECT page_views, event_count, is_bounce FROM business.site_session_summary_s")
    assert summary == [{"page_views": 1, "event_count": 1, "is_bounce": True}]
    assert raw_status(conn) == {"evt-e2e": "PROCESSED"}

    # the deployment guide's debugging queries, verbatim
    recent = rows(conn, "SELECT * FROM staging.pipeline_dashboard ORDER BY raw_load_date DESC LIMIT 10;")
    assert len(recent) == 1
    assert recent[0]["raw_event_id"] == raw_id
    assert recent[0]["customer_id"] == CUSTOMER
    assert recent[0]["staging_status"] == "PROCESSED"
    assert recent[0]["business_status"] == "✅ Complete Pipeline"
    assert recent[0]["processing_latency_ms"] >= 0
    counted = conn.execute(
        """SELECT COUNT(*) AS raw_events,
       COUNT(CASE WHEN staging_status = 'PROCESSED' THEN 1 END) AS staged,
       COUNT(CASE WHEN business_status = '✅ Complete Pipeline' THEN 1 END) AS completed
FROM staging.pipeline_dashboard;"""
    ).fetchone()
    assert counted == (1, 1, 1)

    again = trigger(conn)["results"]
    assert again["total_processed"] == 0
    assert again["total_error_count"] == 0
    idle = auto_process(conn)
    assert idle["processed"] is False
    assert idle["message"] == NO_WORK
    assert table_counts(conn) == counts


def test_one_run_processes_a_bounded_batch(conn: psycopg.Connection, tenant: Tenant) -> None:
    """auto_process_if_needed handles at most batch_size events per call, oldest first."""
    ids = ingest(
        conn, [{"page_url": f"https://example.com/{i}"} for i in range(7)], [f"b{i}" for i in range(7)]
    )
    first = auto_process(conn, batch=3)
    assert (first["processed"], first["events_processed"], first["staging_to_business"]) == (True, 3, 3)
    processed = scalar(
        conn,
        "SELECT array_agg(raw_event_id ORDER BY raw_event_id) FROM raw.site_tracking_events_r "
        "WHERE processing_status = 'PROCESSED'",
    )
    assert processed == ids[:3]
    assert status(conn)["raw_pending"] == 4
    assert auto_process(conn, batch=3)["events_processed"] == 3
    assert auto_process(conn, batch=3)["events_processed"] == 1
    assert auto_process(conn, batch=3)["message"] == NO_WORK


# --- 2. replay ------------------------------------------------------------------------------------------


def test_replaying_processed_events_inserts_nothing(conn: psycopg.Connection, tenant: Tenant) -> None:
    """Re-running the loaders, or re-queueing processed events, adds no staging or business rows."""
    t0 = datetime.now().astimezone() - timedelta(hours=1)
    for i in range(6):
        track(
            conn,
            f"https://example.com/page/{i % 3}",
            event_data={"visitor_id": f"v{i % 2}", "timestamp": (t0 + timedelta(minutes=i)).isoformat()},
            event_id=f"r{i}",
        )
    trigger(conn)
    ids = [r[0] for r in conn.execute("SELECT raw_event_id FROM raw.site_tracking_events_r").fetchall()]
    before = table_counts(conn)
    assert before["site_event_h"] == 6
    assert before["site_session_h"] == 2

    assert scalar(conn, "SELECT staged FROM staging.stage_events(%s)", (ids,)) == 0
    assert scalar(conn, "SELECT staging.load_business(%s)", (ids,)) == 0
    assert table_counts(conn) == before

    conn.execute("UPDATE raw.site_tracking_events_r SET processing_status = 'PENDING', processed_at = NULL")
    replay = trigger(conn)["results"]
    assert replay["total_processed"] == 6
    assert replay["total_error_count"] == 0
    assert table_counts(conn) == before
    assert set(raw_status(conn).values()) == {"PROCESSED"}

    # the loader itself, run again on the same staging rows, finds every key and hash_diff known
    assert scalar(conn, "SELECT staging.load_business(%s)", (ids,)) == 0
    assert table_counts(conn) == before
    assert_each_event_linked_once(conn)


def test_same_event_id_twice_is_one_business_event(conn: psycopg.Connection, tenant: Tenant) -> None:
    """An event sent again (before or after processing, or twice in one batch) is one business event."""
    track(conn, event_id="dup-1")
    track(conn, event_id="dup-1")
    ingest(conn, [{"page_url": "https://example.com/a"}] * 2, ["dup-2", "dup-2"])
    trigger(conn)
    track(conn, event_id="dup-1")
    ingest(conn, [{"page_url": "https://example.com/a"}], ["dup-2"])
    assert trigger(conn)["results"]["total_processed"] == 0
    assert business_events(conn) == {"dup-1": 1, "dup-2": 1}
    assert scalar(conn, "SELECT count(*) FROM staging.site_tracking_events_s") == 2


# --- 3. exactly once under concurrency ------------------------------------------------------------------


def run_concurrently(
    db_url: str,
    customers: list[str | None],
    batch: int,
    lanes: Sequence[Sequence[int] | None] | None = None,
) -> list[int]:
    """A thread per entry looping auto_process_if_needed (on its lanes) until idle; events each processed."""
    lanes = lanes or [None] * len(customers)
    barrier = threading.Barrier(len(customers))
    processed = [0] * len(customers)
    failures: list[BaseException] = []

    def worker(index: int, customer: str | None) -> None:
        try:
            with psycopg.connect(db_url, autocommit=True) as own:
                barrier.wait()
                for _ in range(500):
                    result = auto_process(own, customer, batch, lanes[index])
                    if not result["processed"]:
                        return
                    assert result["errors"] == 0, result
                    processed[index] += result["events_processed"]
                raise AssertionError("auto_process_if_needed never reported idle")
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(i, c)) for i, c in enumerate(customers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert not failures, failures
    return processed


def assert_exactly_once(conn: psycopg.Connection, customer: str, count: int, visitors: int) -> None:
    """Every event of a tenant processed once: one staging row, hub row and details row, links once."""
    found = rows(
        conn,
        """
        SELECT (SELECT count(*) FROM staging.site_tracking_events_s WHERE tenant_hk = t.hk) AS staged,
               (SELECT count(DISTINCT raw_event_id) FROM staging.site_tracking_events_s
                WHERE tenant_hk = t.hk) AS staged_distinct,
               (SELECT count(*) FROM staging.site_tracking_events_s
                WHERE tenant_hk = t.hk AND business_loaded_at IS NULL) AS not_loaded,
               (SELECT count(*) FROM raw.site_tracking_events_r
                WHERE tenant_hk = t.hk AND processing_status = 'PROCESSED') AS raw_processed,
               (SELECT count(*) FROM business.site_event_h WHERE tenant_hk = t.hk) AS event_h,
               (SELECT count(*) FROM business.site_event_details_s WHERE tenant_hk = t.hk) AS event_details,
               (SELECT count(*) FROM business.site_event_session_l WHERE tenant_hk = t.hk) AS event_session_l,
               (SELECT count(*) FROM business.site_event_page_l WHERE tenant_hk = t.hk) AS event_page_l,
               (SELECT count(*) FROM business.site_page_h WHERE tenant_hk = t.hk) AS page_h,
               (SELECT count(*) FROM business.site_visitor_h WHERE tenant_hk = t.hk) AS visitor_h,
               (SELECT count(*) FROM business.site_session_h WHERE tenant_hk = t.hk) AS session_h,
               (SELECT count(*) FROM business.site_session_visitor_l WHERE tenant_hk = t.hk)
                   AS session_visitor_l
        FROM (SELECT util.tenant_hk(%s) AS hk) t
        """,
        (customer,),
    )
    # a visitor's events are minutes apart: one session each, however the batches fell
    assert found == [
        {
            "staged": count,
            "staged_distinct": count,
            "not_loaded": 0,
            "raw_processed": count,
            "event_h": count,
            "event_details": count,
            "event_session_l": count,
            "event_page_l": count,
            "page_h": 97,
            "visitor_h": visitors,
            "session_h": visitors,
            "session_visitor_l": visitors,
        }
    ]
    assert_each_event_linked_once(conn, customer)


def test_concurrent_runs_process_each_event_exactly_once(
    db_url: str, conn: psycopg.Connection, tenant: Tenant
) -> None:
    """Four concurrent auto_process loops over 10,000 events load each event exactly once."""
    bulk_insert(conn, CUSTOMER, 10_000)
    processed = run_concurrently(db_url, [CUSTOMER] * 4, 500)
    assert sum(processed) == 10_000
    assert_exactly_once(conn, CUSTOMER, 10_000, 300)
    assert status(conn)["raw_pending"] == 0


def test_parallel_lanes_keep_sessions_whole_and_process_each_event_once(
    db_url: str, conn: psycopg.Connection, tenant: Tenant
) -> None:
    """Runs on disjoint groups of lanes, as background processing does them, side by side."""
    bulk_insert(conn, CUSTOMER, 10_000)
    groups: list[Sequence[int] | None] = list(lane_groups(4))
    processed = run_concurrently(db_url, [CUSTOMER] * len(groups), 250, groups)
    assert sum(processed) == 10_000
    assert all(n > 0 for n in processed), processed  # each group processed its own lanes
    assert_exactly_once(conn, CUSTOMER, 10_000, 300)  # one session per visitor, not split by lanes
    assert status(conn)["raw_pending"] == 0


def test_lanes_follow_the_keys_sessions_hang_on(conn: psycopg.Connection, tenant: Tenant) -> None:
    """A client session's events share a lane whoever sends them, a visitor's sessionless events too.

    The session id decides (canonical: trimmed, any case), else the visitor id, else IP and user agent.
    """

    def lane(payload: dict[str, Any], ip_hash: bytes | None = None, agent: str | None = None) -> int:
        found: int = scalar(conn, "SELECT raw.processing_lane(%s, %s, %s)", (Jsonb(payload), ip_hash, agent))
        return found

    visitor = lane({"visitor_id": "v-1"})
    assert lane({"event_data": {"visitor_id": " V-1 "}}, b"\x01", CHROME) == visitor
    assert lane({"visitor_id": "v-1", "session_id": "  "}) == visitor
    session = lane({"session_id": "s-9"})
    assert lane({"event_data": {"visitor_id": "v-1"}, "session_id": "S-9 "}, b"\x01", CHROME) == session
    assert lane({"session_id": "s-9", "event_data": {"session_id": "other"}}) == lane({"session_id": "s-9"})
    assert lane({"page_url": "https://a.test/"}, b"\x01", CHROME) == lane({}, b"\x01", CHROME)
    spread = {lane({"visitor_id": f"v-{n}"}) for n in range(200)}
    assert spread == set(range(8))

    ids = ingest(
        conn, [{"event_data": {"visitor_id": f"v-{n}"}} for n in range(20)], [f"e-{n}" for n in range(20)]
    )
    stored = conn.execute(
        "SELECT raw_event_id, processing_lane, raw.processing_lane(raw_payload, client_ip_hash, user_agent)"
        " FROM raw.site_tracking_events_r WHERE raw_event_id = ANY (%s)",
        (ids,),
    ).fetchall()
    assert len(stored) == 20 and all(r[1] == r[2] for r in stored)


def test_concurrent_all_tenant_and_per_tenant_runs(db_url: str, conn: psycopg.Connection) -> None:
    """Runs for every tenant (NULL customer) racing per-tenant runs still process each event once."""
    for customer in ("tenant_a", "tenant_b"):
        make_tenant(conn, customer)
        bulk_insert(conn, customer, 2_000, visitors=50)
    processed = run_concurrently(db_url, [None, "tenant_a", None, "tenant_b", "tenant_a"], 250)
    assert sum(processed) == 4_000
    for customer in ("tenant_a", "tenant_b"):
        assert_exactly_once(conn, customer, 2_000, 50)


# --- 4. quarantine --------------------------------------------------------------------------------------


def test_invalid_events_are_quarantined_without_blocking_others(
    conn: psycopg.Connection, tenant: Tenant
) -> None:
    """Invalid events are quarantined with reasons; valid events of the same batch still complete."""
    track(conn, event_id="ok-before")
    bad_url = track(conn, "not a url", event_id="bad-url")
    bad_time = track(conn, event_data={"timestamp": "3000-01-01T00:00:00Z"}, event_id="bad-time")
    for i in range(3):
        track(conn, f"https://example.com/after/{i}", event_id=f"ok-after-{i}")

    res = trigger(conn)["results"]
    assert (res["total_processed"], res["staging_to_business_count"], res["total_error_count"]) == (6, 4, 0)
    assert res["quarantined_count"] == 2

    assert staged(conn, bad_url)["validation_status"] == "INVALID"
    assert "page_url is not an absolute http(s) URL" in staged(conn, bad_url)["validation_reasons"]
    assert staged(conn, bad_time)["validation_status"] == "INVALID"
    assert "timestamp is in the future" in staged(conn, bad_time)["validation_reasons"]
    assert set(raw_status(conn).values()) == {"PROCESSED"}
    dashboard = {
        r["event_id"]: (r["staging_status"], r["business_status"])
        for r in rows(conn, "SELECT * FROM staging.pipeline_dashboard")
    }
    assert dashboard["bad-url"] == ("INVALID", "❌ Quarantined")
    assert dashboard["bad-time"] == ("INVALID", "❌ Quarantined")
    assert dashboard["ok-after-2"] == ("PROCESSED", "✅ Complete Pipeline")
    assert set(business_events(conn)) == {"ok-before", "ok-after-0", "ok-after-1", "ok-after-2"}
    for event_id in ("ok-before", "ok-after-0", "ok-after-1", "ok-after-2"):
        assert_complete(conn, event_id)
    assert status(conn)["quarantined"] == 2
    counts = table_counts(conn)

    requeued = scalar(conn, "SELECT staging.requeue_failed(util.tenant_hk('one_spa'))")
    assert requeued == {"requeued_quarantined": 2, "requeued_errors": 0}
    assert raw_status(conn)["bad-url"] == "PENDING"
    assert raw_status(conn)["bad-time"] == "PENDING"
    assert raw_status(conn)["ok-before"] == "PROCESSED"

    again = trigger(conn)["results"]
    assert (again["total_processed"], again["quarantined_count"], again["staging_to_business_count"]) == (
        2,
        2,
        0,
    )
    assert staged(conn, bad_url)["validation_status"] == "INVALID"
    assert staged(conn, bad_time)["validation_status"] == "INVALID"
    assert table_counts(conn) == counts


# --- 5. unexpected errors -------------------------------------------------------------------------------

POISON_TRIGGER = """
CREATE FUNCTION public.refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.site_event_bk = 'poison' THEN
        RAISE EXCEPTION 'test trigger refuses the poison event';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER refuse_poison BEFORE INSERT ON business.site_event_h
    FOR EACH ROW EXECUTE FUNCTION public.refuse_poison();
"""


def poison_row(conn: psycopg.Connection) -> dict[str, Any]:
    """The raw row of the poison event, with next_attempt_at relative to now."""
    return rows(
        conn,
        "SELECT processing_status, error_message, retry_count, next_attempt_at, "
        "       extract(epoch FROM next_attempt_at - now()) AS wait_s "
        "FROM raw.site_tracking_events_r WHERE event_id = 'poison'",
    )[0]


def test_unexpected_error_marks_one_event_and_retries_with_backoff(
    conn: psycopg.Connection, tenant: Tenant
) -> None:
    """An event hitting an unexpected error is ERROR with its message and retried later; others complete."""
    conn.execute(POISON_TRIGGER)
    for event_id in ("good-1", "good-2", "poison", "good-3", "good-4"):
        track(conn, f"https://example.com/{event_id}", event_id=event_id)

    res = trigger(conn)["results"]
    assert (res["total_processed"], res["total_success_count"], res["total_error_count"]) == (5, 4, 1)
    assert res["staging_to_business_count"] == 4

    row = poison_row(conn)
    assert row["processing_status"] == "ERROR"
    assert "test trigger refuses the poison event" in row["error_message"]
    assert row["retry_count"] == 1
    assert row["next_attempt_at"] is not None
    assert 0 < row["wait_s"] <= 3600
    for event_id in ("good-1", "good-2", "good-3", "good-4"):
        assert_complete(conn, event_id)
    assert "poison" not in business_events(conn)
    assert scalar(conn, "SELECT count(*) FROM staging.site_tracking_events_s WHERE event_id = 'poison'") == 0
    dashboard = rows(conn, "SELECT * FROM staging.pipeline_dashboard WHERE event_id = 'poison'")[0]
    assert (dashboard["staging_status"], dashboard["business_status"]) == ("ERROR", "⏳ Pending")
    assert "test trigger refuses the poison event" in dashboard["error_message"]
    st = status(conn)
    assert (st["raw_errors"], st["raw_pending"]) == (1, 0)

    # not due yet: nobody retries it
    idle = auto_process(conn)
    assert (idle["processed"], idle["message"]) == (False, NO_WORK)
    assert trigger(conn)["results"]["total_processed"] == 0
    assert poison_row(conn)["retry_count"] == 1

    # due again and still failing: the wait grows
    conn.execute(
        "UPDATE raw.site_tracking_events_r SET next_attempt_at = now() - interval '1 second' "
        "WHERE event_id = 'poison'"
    )
    assert auto_process(conn)["errors"] == 1
    second = poison_row(conn)
    assert second["retry_count"] == 2
    assert second["wait_s"] > row["wait_s"]

    # after the fix an operator re-queues it and it goes through
    conn.execute("DROP TRIGGER refuse_poison ON business.site_event_h")
    requeued = scalar(conn, "SELECT staging.requeue_failed(util.tenant_hk('one_spa'))")
    assert requeued == {"requeued_quarantined": 0, "requeued_errors": 1}
    assert trigger(conn)["results"]["total_success_count"] == 1
    assert_complete(conn, "poison")
    assert business_events(conn) == dict.fromkeys(("good-1", "good-2", "poison", "good-3", "good-4"), 1)


def test_retries_stop_after_the_fifth_failure(conn: psycopg.Connection, tenant: Tenant) -> None:
    """After its fifth failure an event stays ERROR with no next attempt until re-queued by command."""
    conn.execute(POISON_TRIGGER)
    track(conn, event_id="poison")
    track(conn, event_id="fine")
    trigger(conn)
    conn.execute(
        "UPDATE raw.site_tracking_events_r SET retry_count = 4, "
        "next_attempt_at = now() - interval '1 minute' WHERE event_id = 'poison'"
    )
    assert auto_process(conn)["errors"] == 1
    row = poison_row(conn)
    assert (row["processing_status"], row["retry_count"], row["next_attempt_at"]) == ("ERROR", 5, None)
    assert auto_process(conn)["message"] == NO_WORK
    assert trigger(conn)["results"]["total_processed"] == 0
    assert_complete(conn, "fine")


# --- 8. tenant isolation --------------------------------------------------------------------------------


def test_tenants_are_isolated(conn: psycopg.Connection) -> None:
    """Equal business keys of two tenants are separate hub rows; status and processing stay per tenant."""
    for customer in ("acme", "beta"):
        make_tenant(conn, customer)
        track(
            conn,
            "https://shared.example/landing",
            event_data={"session_id": "s-1", "visitor_id": "v-1"},
            event_id="same-event",
            customer=customer,
        )
    track(conn, "https://shared.example/other", event_id="beta-only", customer="beta")

    assert (status(conn, "acme")["raw_pending"], status(conn, "beta")["raw_pending"]) == (1, 2)
    assert status(conn, None)["raw_pending"] == 3
    assert trigger(conn, "acme")["results"]["total_processed"] == 1
    assert raw_status_by_tenant(conn) == {
        ("acme", "same-event"): "PROCESSED",
        ("beta", "same-event"): "PENDING",
        ("beta", "beta-only"): "PENDING",
    }
    acme = status(conn, "acme")
    assert (acme["raw_pending"], acme["business_events_total"]) == (0, 1)
    assert status(conn, "beta")["business_events_total"] == 0
    assert trigger(conn, "beta")["results"]["total_processed"] == 2

    for hub, bk in (
        ("site_event_h", "same-event"),
        ("site_session_h", "s-1"),
        ("site_visitor_h", "v-1"),
        ("site_page_h", "https://shared.example/landing"),
    ):
        found = conn.execute(
            f"SELECT t.tenant_bk, h.{hub[:-2]}_hk FROM business.{hub} h "
            f"JOIN auth.tenant_h t USING (tenant_hk) WHERE h.{hub[:-2]}_bk = %s ORDER BY 1",
            (bk,),
        ).fetchall()
        assert [t for t, _ in found] == ["acme", "beta"], hub
        assert found[0][1] != found[1][1], hub
    assert status(conn, "acme")["business_events_total"] == 1
    assert status(conn, "beta")["business_events_total"] == 2
    assert business_events(conn, "acme") == {"same-event": 1}

    for call in (
        "SELECT staging.trigger_pipeline_now('nobody')",
        "SELECT staging.auto_process_if_needed('nobody')",
        "SELECT staging.get_pipeline_status('nobody')",
        "SELECT api.track_site_event('nobody', 'https://x.example/')",
    ):
        with pytest.raises(errors.InvalidParameterValue, match="unknown customer id"):
            conn.execute(call)


def raw_status_by_tenant(conn: psycopg.Connection) -> dict[tuple[str, str], str]:
    """processing_status of every raw event by (customer, event_id)."""
    found = conn.execute(
        "SELECT t.tenant_bk, r.event_id, r.processing_status FROM raw.site_tracking_events_r r "
        "JOIN auth.tenant_h t USING (tenant_hk)"
    ).fetchall()
    return {(c, e): s for c, e, s in found}


# --- 9. pipeline status ---------------------------------------------------------------------------------


def percentile_cont(values: list[float], fraction: float) -> float:
    """PostgreSQL's percentile_cont: linear interpolation between the closest ranks."""
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def test_pipeline_status_counts_a_known_mix(conn: psycopg.Connection, tenant: Tenant) -> None:
    """get_pipeline_status reports pending, errors, quarantine, business totals and latency correctly."""
    make_tenant(conn, "other")
    track(conn, event_id="other-1", customer="other")
    conn.execute(POISON_TRIGGER)
    now = scalar(conn, "SELECT now()")
    ingest(
        conn,
        [{"page_url": f"https://example.com/{i}"} for i in range(4)] + [{"page_url": "nope"}],
        ["v0", "v1", "v2", "poison", "invalid"],
        received=[now - timedelta(seconds=s) for s in (1, 2, 6, 0, 0)],
    )
    trigger(conn)
    ingest(conn, [{"page_url": "https://example.com/late"}] * 2, ["late-1", "late-2"])

    st = status(conn)
    # staging rows are loaded in the transaction that stages them, so nothing waits between layers
    assert {k: st[k] for k in ("raw_pending", "raw_errors", "staging_pending", "quarantined")} == {
        "raw_pending": 2,
        "raw_errors": 1,
        "staging_pending": 0,
        "quarantined": 1,
    }
    assert (st["business_events_total"], st["business_events_today"]) == (3, 3)
    loaded = conn.execute(
        "SELECT s.business_loaded_at, extract(epoch FROM s.business_loaded_at - r.received_timestamp) * 1000 "
        "FROM staging.site_tracking_events_s s JOIN raw.site_tracking_events_r r USING (raw_event_id) "
        "WHERE s.business_loaded_at IS NOT NULL"
    ).fetchall()
    assert len(loaded) == 3
    assert datetime.fromisoformat(st["last_processed_at"]) == max(at for at, _ in loaded)
    latencies = [float(ms) for _, ms in loaded]
    assert min(latencies) >= 1000
    assert st["latency_ms_avg"] == pytest.approx(sum(latencies) / 3, abs=0.06)
    assert st["latency_ms_p95"] == pytest.approx(percentile_cont(latencies, 0.95), abs=0.06)
    assert 5000 < st["latency_ms_p95"] < max(latencies) + 0.06

    everyone = status(conn, None)
    assert (everyone["raw_pending"], everyone["business_events_total"]) == (3, 3)
    assert status(conn, "other")["raw_pending"] == 1


def test_sessions_waiting_for_the_marts_are_reported_until_refreshed(
    conn: psycopg.Connection, tenant: Tenant
) -> None:
    """A run that leaves the marts to later (background runs, /track) leaves its sessions counted as
    pending for the marts, per customer in the status and for all of them in the backlog (/metrics),
    until the marts are refreshed."""
    make_tenant(conn, "other")
    page = "https://example.com/"
    ingest(
        conn,
        [{"page_url": page, "visitor_id": f"v{i % 3}", "session_id": f"s{i % 3}"} for i in range(6)],
        list("abcdef"),
    )
    ingest(conn, [{"page_url": page, "visitor_id": "w"}], ["other-1"], customer="other")
    for customer in (CUSTOMER, "other"):
        conn.execute(
            PIPELINE["auto_process"],
            {
                "customer_id": customer,
                "batch_size": 1000,
                "lanes": None,
                "wait": True,
                "refresh_marts": False,
            },
        )
    assert (status(conn)["marts_pending"], status(conn, "other")["marts_pending"]) == (3, 1)
    assert status(conn, None)["marts_pending"] == 4
    backlog = conn.execute(MONITORING["backlog"]).fetchone()
    assert backlog is not None and backlog[2] == 4

    conn.execute(PIPELINE["refresh_marts"], {"customer_id": CUSTOMER, "caught_up": True})
    assert (status(conn)["marts_pending"], status(conn, "other")["marts_pending"]) == (0, 1)
    assert scalar(conn, "SELECT count(*) FROM mart.session_f") == 3


# --- 10. automation layer rollback ----------------------------------------------------------------------

PRODUCT_SCHEMAS = ["raw", "staging", "business", "mart", "privacy", "api", "auth", "util"]


def catalog(conn: psycopg.Connection) -> set[str]:
    """Every function, relation and view of the product's schemas."""
    functions = conn.execute(
        "SELECT 'function ' || p.oid::regprocedure::text FROM pg_proc p "
        "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = ANY(%s)",
        (PRODUCT_SCHEMAS,),
    ).fetchall()
    views = conn.execute(
        "SELECT 'view ' || schemaname || '.' || viewname FROM pg_views WHERE schemaname = ANY(%s)",
        (PRODUCT_SCHEMAS,),
    ).fetchall()
    relations = conn.execute(
        "SELECT 'relation ' || n.nspname || '.' || c.relname || ' ' || c.relkind::text FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ANY(%s) AND c.relkind <> 'v'",
        (PRODUCT_SCHEMAS,),
    ).fetchall()
    return {r[0] for r in (*functions, *views, *relations)}


def test_automation_layer_remove_and_install(conn: psycopg.Connection, tenant: Tenant) -> None:
    """Removing the automation layer drops exactly it; ingestion goes on; installing it drains the backlog."""
    track(conn, event_id="before")
    trigger(conn)
    before = catalog(conn)

    dbcode.remove(conn, dbcode.AUTOMATION)

    after = catalog(conn)
    assert before - after == {
        "function api.track_site_event(text,text,text,jsonb,inet,text,text)",
        "function staging.auto_process_if_needed(text,integer,smallint[],boolean,boolean)",
        "function staging.trigger_pipeline_now(text)",
        "function staging.get_pipeline_status(text)",
        "function staging.resolve_tenants(text)",
        "view staging.pipeline_dashboard",
    }
    assert after - before == set()
    with pytest.raises(errors.UndefinedFunction):
        trigger(conn)
    ingest(
        conn,
        [{"page_url": f"https://example.com/backlog/{i}"} for i in range(3)],
        [f"backlog-{i}" for i in range(3)],
    )
    assert raw_status(conn) == {
        "before": "PROCESSED",
        "backlog-0": "PENDING",
        "backlog-1": "PENDING",
        "backlog-2": "PENDING",
    }

    assert [f.layer for f in dbcode.install(conn, dbcode.AUTOMATION)] == [dbcode.AUTOMATION] * 6
    assert catalog(conn) == before
    res = trigger(conn)["results"]
    assert (res["total_processed"], res["staging_to_business_count"]) == (3, 3)
    for event_id in ("before", "backlog-0", "backlog-1", "backlog-2"):
        assert_complete(conn, event_id)
    assert (
        scalar(
            conn,
            "SELECT count(*) FROM staging.pipeline_dashboard WHERE business_status = '✅ Complete Pipeline'",
        )
        == 4
    )


def _scans(conn: psycopg.Connection) -> tuple[int, int]:
    """Sequential scans of the raw table (every partition) and scans of the queue so far."""
    conn.execute("SELECT pg_stat_force_next_flush()")
    conn.execute("SELECT pg_stat_clear_snapshot()")
    row = conn.execute(
        "SELECT (SELECT sum(t.seq_scan) FROM pg_stat_user_tables t"
        "        WHERE t.relid IN (SELECT relid FROM pg_partition_tree('raw.site_tracking_events_r'))),"
        "       (SELECT coalesce(t.seq_scan, 0) + coalesce(t.idx_scan, 0) FROM pg_stat_user_tables t"
        "        WHERE t.relid = 'raw.event_queue'::regclass)"
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def test_a_run_with_nothing_due_holds_no_lane(db_url: str, conn: psycopg.Connection, tenant: Tenant) -> None:
    """A run that only refreshes the marts (background processing behind /track's own runs) takes no
    lane, so a run with events never waits for it; a run with events takes them."""
    lanes = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 7071 AND pid = %s"
    with psycopg.connect(db_url) as run:
        scalar(run, "SELECT staging.process_batch(util.tenant_hk(%s))", (CUSTOMER,))
        assert scalar(conn, lanes, (run.info.backend_pid,)) == 0
        run.rollback()
        track(conn)
        assert scalar(run, "SELECT staging.process_batch(util.tenant_hk(%s))", (CUSTOMER,))["claimed"] == 1
        assert scalar(conn, lanes, (run.info.backend_pid,)) > 0


def test_queue_queries_read_the_queue_not_the_raw_table_after_statistics_taken_during_a_backlog(
    conn: psycopg.Connection, tenant: Tenant
) -> None:
    """Statistics saying most events are pending must not make a queue query read every stored event:
    what is due is found in the queue (raw.event_queue), and raw is read only by id."""
    bulk_insert(conn, CUSTOMER, 3000)
    conn.execute("ANALYZE raw.site_tracking_events_r")  # taken now: every event pending
    auto_process(conn, batch=1000)
    params = {"customer_id": CUSTOMER, "batch_size": 1000, "lanes": list(range(8))}
    queue_queries = {
        "claim and process a batch": sql.SQL("SELECT staging.auto_process_if_needed(%(customer_id)s, 1000)"),
        "next batch's user agents": PIPELINE["unparsed_user_agents"],
        "background sweep": PIPELINE["tenants_with_due_events"],
        "pipeline status": sql.SQL("SELECT staging.get_pipeline_status(%(customer_id)s)"),
        "backlog (/metrics, /health/detailed)": MONITORING["backlog"],
    }
    for name, query in queue_queries.items():
        seq_before, queue_before = _scans(conn)
        conn.execute(query, params).fetchall()
        seq_after, queue_after = _scans(conn)
        assert seq_after == seq_before, f"{name}: sequential scan of the raw table"
        assert queue_after > queue_before, f"{name}: queue not read"
