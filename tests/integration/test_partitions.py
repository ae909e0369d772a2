"""The raw and staging layers partitioned by the day events are stored (migrations 0011 and 0016,
docs/retention.md): the ids that carry the day, idempotency across partitions and its window, the
scheduler's days ahead, retention that drops whole days and nothing newer, unprocessed or not
loaded, and runs that read only the days they need."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest
from tests.helpers.cli import Cli
from tests.helpers.pipeline import CUSTOMER, ingest
from tests.helpers.queries import rows, scalar
from tests.helpers.tenants import make_tenant
from tests.helpers.vault_load import process_all

from onevault import maintenance
from onevault.config import Settings
from onevault.monitoring.pipeline import Q as MONITORING
from onevault.pipeline.runner import Q as PIPELINE


@pytest.fixture
def today(db_url: str) -> date:
    """The day (UTC) the test runs, with its partitions and the next days' made as a running server has
    them (the template's were made on the day the session began, which may be the day before)."""
    day = datetime.now(UTC).date()
    maintenance.make_partitions(db_url, day)
    return day


def _stored_today(conn: psycopg.Connection, raw_event_id: int, today: date) -> date:
    """The day in an id stored by this test: `today`, or the next day if midnight has passed since."""
    day: date = scalar(conn, "SELECT raw.event_day(%s)", (raw_event_id,))
    assert day in (today, today + timedelta(1))
    return day


@pytest.fixture
def customer(conn: psycopg.Connection) -> str:
    make_tenant(conn, CUSTOMER)
    return CUSTOMER


def _partitions(conn: psycopg.Connection, parent: str) -> list[str]:
    return [
        r["name"]
        for r in rows(
            conn,
            "SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = %s::regclass ORDER BY 1",
            (parent,),
        )
    ]


def _day_names(prefix: str, days: list[date]) -> list[str]:
    return [f"{prefix}_{d:%Y%m%d}" for d in days]


def _store_on(conn: psycopg.Connection, day: date, event_id: str, status: str = "PROCESSED") -> int:
    """An event stored on `day` (its key too), as ingestion on that day would have: its raw_event_id."""
    raw_event_id = int(
        scalar(
            conn,
            "INSERT INTO raw.event_key (tenant_hk, event_id, raw_event_id, stored_on)"
            " VALUES (util.tenant_hk(%s), %s, raw.day_first_id(%s) + nextval('raw.event_seq'), %s)"
            " RETURNING raw_event_id",
            (CUSTOMER, event_id, day, day),
        )
    )
    conn.execute(
        "INSERT INTO raw.site_tracking_events_r (raw_event_id, tenant_hk, event_id, raw_payload,"
        " received_timestamp, record_source, processing_status)"
        " VALUES (%s, util.tenant_hk(%s), %s, '{\"page_url\": \"https://example.com/\"}', %s, 'test', %s)",
        (raw_event_id, CUSTOMER, event_id, datetime(day.year, day.month, day.day, 12, tzinfo=UTC), status),
    )
    return raw_event_id


def _retention(
    raw: int | None = None, staging: int | None = None, idempotency: int = 30
) -> maintenance.Retention:
    return maintenance.Retention(raw_days=raw, staging_days=staging, idempotency_days=idempotency)


def test_raw_and_staging_are_partitioned_by_the_day_in_the_id(
    conn: psycopg.Connection, customer: str, today: date
) -> None:
    """Today's and the next three days' partitions exist in both layers, and an event stored now
    lands in today's, with an id that says its day; staging holds it under the same id, in its
    partition of the same day."""
    days = [today + timedelta(n) for n in range(4)]
    assert set(_day_names("site_tracking_events_r", days)) <= set(
        _partitions(conn, "raw.site_tracking_events_r")
    )
    assert set(_day_names("site_tracking_events_s", days)) <= set(
        _partitions(conn, "staging.site_tracking_events_s")
    )

    (raw_event_id,) = ingest(conn, [{"page_url": "https://example.com/a"}], ["evt-1"])
    stored_on = _stored_today(conn, raw_event_id, today)
    partition = scalar(
        conn,
        "SELECT tableoid::regclass::text FROM raw.site_tracking_events_r WHERE raw_event_id = %s",
        (raw_event_id,),
    )
    assert partition == f"raw.site_tracking_events_r_{stored_on:%Y%m%d}"
    process_all(conn, customer)
    assert (
        scalar(
            conn,
            "SELECT tableoid::regclass::text FROM staging.site_tracking_events_s WHERE raw_event_id = %s",
            (raw_event_id,),
        )
        == f"staging.site_tracking_events_s_{stored_on:%Y%m%d}"
    )
    # Ids stay exact in a JavaScript number (the tracker and the dashboard read them).
    assert raw_event_id < 2**53


def test_a_copy_of_an_event_stored_on_an_earlier_day_is_a_duplicate(
    conn: psycopg.Connection, customer: str, today: date
) -> None:
    """Idempotency spans partitions: the key decides, not the day's table."""
    yesterday = today - timedelta(1)
    conn.execute("SELECT raw.create_day_partitions(%s, %s)", (yesterday, yesterday))
    first = _store_on(conn, yesterday, "evt-old")
    again = conn.execute(
        "SELECT raw_event_id, duplicate FROM raw.ingest_site_events(ARRAY[util.tenant_hk(%s)],"
        " ARRAY['evt-old'], ARRAY['{}'::jsonb], ARRAY[NULL::text], ARRAY[NULL::inet], ARRAY[now()],"
        " ARRAY['test'])",
        (CUSTOMER,),
    ).fetchone()
    assert again == (first, True)
    assert scalar(conn, "SELECT count(*) FROM raw.site_tracking_events_r WHERE event_id = 'evt-old'") == 1


def test_batches_sharing_event_ids_in_other_orders_wait_for_each_other_without_deadlock(
    db_url: str, conn: psycopg.Connection, customer: str
) -> None:
    """The keys of a batch are taken in one order (tenant, event id), whatever the request's: a batch
    holding `a` and then taking `b` waits for, but never deadlocks with, a batch of [b, a]."""
    with psycopg.connect(db_url) as first, psycopg.connect(db_url) as second:
        (a,) = ingest(first, [{}], ["a"])
        with ThreadPoolExecutor(1) as pool:
            copies = pool.submit(ingest, second, [{}, {}], ["b", "a"])
            deadline = time.monotonic() + 10
            while not scalar(
                conn,
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND query LIKE '%%ingest_site_events%%' AND pid <> pg_backend_pid()",
            ):
                assert time.monotonic() < deadline, "the second batch never waited for the first"
                time.sleep(0.02)
            (b,) = ingest(first, [{}], ["b"])
            first.commit()
            assert copies.result(timeout=10) == [b, a]
        second.commit()
    assert scalar(conn, "SELECT count(*) FROM raw.site_tracking_events_r WHERE event_id IN ('a', 'b')") == 2


def test_keys_past_the_idempotency_window_are_forgotten_and_the_event_id_is_stored_again(
    db_url: str, conn: psycopg.Connection, customer: str, today: date
) -> None:
    """The scheduler deletes keys stored before the window; those within it still make duplicates."""
    old_day, recent_day = today - timedelta(31), today - timedelta(29)
    conn.execute("SELECT raw.create_day_partitions(%s, %s)", (old_day, recent_day))
    _store_on(conn, old_day, "evt-31-days")
    recent = _store_on(conn, recent_day, "evt-29-days")

    report = maintenance.run(db_url, _retention(idempotency=30), today=today)
    assert report is not None and report.keys_expired == 1

    stored = ingest(conn, [{}, {}], ["evt-31-days", "evt-29-days"])
    assert stored[1] == recent
    assert stored[0] != recent
    _stored_today(conn, stored[0], today)
    assert scalar(conn, "SELECT count(*) FROM raw.site_tracking_events_r WHERE event_id = 'evt-31-days'") == 2


def test_retention_drops_expired_days_and_keeps_newer_and_unprocessed_ones(
    db_url: str, conn: psycopg.Connection, customer: str, today: date
) -> None:
    """With raw kept 5 days: the partitions of the days before today - 5 go, except one holding an
    event not processed yet; the days after stay whole."""
    days = [today - timedelta(n) for n in range(10, 0, -1)]
    conn.execute("SELECT raw.create_day_partitions(%s, %s)", (days[0], days[-1]))
    ids = {d: _store_on(conn, d, f"evt-{d}") for d in days}
    held = today - timedelta(8)
    conn.execute(
        "UPDATE raw.site_tracking_events_r SET processing_status = 'PENDING' WHERE raw_event_id = %s",
        (ids[held],),
    )

    report = maintenance.run(db_url, _retention(raw=5), today=today)

    assert report is not None
    expired = [d for d in days if d < today - timedelta(5)]
    dropped = [d for d in expired if d != held]
    assert sorted(report.dropped) == sorted(f"raw.site_tracking_events_r_{d:%Y%m%d}" for d in dropped)
    assert report.held == {f"raw.site_tracking_events_r_{held:%Y%m%d}": 1}
    left = {r["raw_event_id"] for r in rows(conn, "SELECT raw_event_id FROM raw.site_tracking_events_r")}
    assert left == {ids[d] for d in days if d not in dropped}
    # A second round has nothing more to drop.
    again = maintenance.run(db_url, _retention(raw=5), today=today)
    assert again is not None and again.dropped == []


def test_staging_retention_drops_the_days_done_with_and_keeps_those_waiting(
    db_url: str, conn: psycopg.Connection, customer: str, today: date
) -> None:
    """Staging kept 32 days: the partitions of the days before then go when their events are loaded
    or quarantined, not while one waits for the business layer; newer ones and raw stay."""
    days = {
        "loaded": today - timedelta(40),
        "quarantined": today - timedelta(40),
        "waiting": today - timedelta(39),
        "recent": today - timedelta(10),
    }
    conn.execute("SELECT raw.create_day_partitions(%s, %s)", (min(days.values()), max(days.values())))
    for kind, day in days.items():
        raw_event_id = _store_on(conn, day, f"evt-{kind}")
        conn.execute(
            "INSERT INTO staging.site_tracking_events_s (raw_event_id, tenant_hk, event_id, record_source,"
            " validation_status, quality_score, received_at, business_loaded_at)"
            " VALUES (%s, util.tenant_hk(%s), %s, 'test', %s, 1, %s, CASE WHEN %s THEN now() END)",
            (
                raw_event_id,
                CUSTOMER,
                f"evt-{kind}",
                "INVALID" if kind == "quarantined" else "VALID",
                datetime(day.year, day.month, day.day, 12, tzinfo=UTC),
                kind in ("loaded", "recent"),
            ),
        )

    report = maintenance.run(db_url, _retention(staging=32), today=today)

    assert report is not None
    expired = [days["loaded"] + timedelta(n) for n in range((today - timedelta(32) - days["loaded"]).days)]
    assert report.dropped == [
        f"staging.site_tracking_events_s_{d:%Y%m%d}" for d in expired if d != days["waiting"]
    ]
    assert report.held == {f"staging.site_tracking_events_s_{days['waiting']:%Y%m%d}": 1}
    left = {r["event_id"] for r in rows(conn, "SELECT event_id FROM staging.site_tracking_events_s")}
    assert left == {"evt-waiting", "evt-recent"}
    assert scalar(conn, "SELECT count(*) FROM raw.site_tracking_events_r") == 4


def test_the_days_ahead_are_made_again_when_missing(
    db_url: str, conn: psycopg.Connection, today: date
) -> None:
    """A server makes today's and the next days' partitions before it takes requests."""
    for n in (1, 2, 3):
        day = today + timedelta(n)
        conn.execute(f"DROP TABLE raw.site_tracking_events_r_{day:%Y%m%d}")
    conn.execute(f"DROP TABLE staging.site_tracking_events_s_{today + timedelta(3):%Y%m%d}")
    assert maintenance.make_partitions(db_url, today) == 3
    assert maintenance.make_partitions(db_url, today) == 0
    days = [today + timedelta(n) for n in range(4)]
    assert set(_day_names("site_tracking_events_r", days)) <= set(
        _partitions(conn, "raw.site_tracking_events_r")
    )
    assert set(_day_names("site_tracking_events_s", days)) <= set(
        _partitions(conn, "staging.site_tracking_events_s")
    )


def test_one_process_maintains_at_a_time(db_url: str, conn: psycopg.Connection, today: date) -> None:
    """While a process holds the maintenance lock, another round says so and does nothing."""
    conn.execute("SELECT pg_advisory_lock(7074, 0)")
    try:
        assert maintenance.run(db_url, _retention(raw=1), today=today) is None
    finally:
        conn.execute("SELECT pg_advisory_unlock(7074, 0)")


def test_retention_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """`keep` (or unset) keeps a layer for ever; staging keeps at least 32 days."""
    monkeypatch.setenv("ONEVAULT_RETENTION_RAW_DAYS", "keep")
    monkeypatch.setenv("ONEVAULT_RETENTION_STAGING_DAYS", "90")
    settings = Settings()
    assert (settings.retention_raw_days, settings.retention_staging_days, settings.idempotency_days) == (
        None,
        90,
        30,
    )
    monkeypatch.setenv("ONEVAULT_RETENTION_STAGING_DAYS", "7")
    with pytest.raises(ValueError, match="greater than or equal to 32"):
        Settings()


def test_cli_maintenance_run(
    cli_for: Callable[[str], Cli],
    db_url: str,
    conn: psycopg.Connection,
    monkeypatch: pytest.MonkeyPatch,
    today: date,
) -> None:
    """`onevault maintenance run` does a round and says what it did."""
    make_tenant(conn, CUSTOMER)
    old = today - timedelta(3)
    conn.execute("SELECT raw.create_day_partitions(%s, %s)", (old, old))
    _store_on(conn, old, "evt-old")
    monkeypatch.setenv("ONEVAULT_RETENTION_RAW_DAYS", "2")
    result = cli_for(db_url)("maintenance", "run")
    assert result.exit_code == 0, result.output
    assert f"dropped raw.site_tracking_events_r_{old:%Y%m%d}" in result.stdout
    assert "partitions dropped" in result.stdout


def test_a_run_reads_only_the_partitions_of_the_events_it_takes(
    conn: psycopg.Connection, customer: str, today: date
) -> None:
    """With a year of days stored (the default keeps them all), what a run and the operators' status
    do reads today's raw partition only, and of staging the days its events' sessions can reach
    (from the day before yesterday on) or the last week's (the status): nothing scans, plans or
    locks every day (a year of raw
    partitions once took ~3,800 locks and +5 ms per run, 40 ms per status call; staging's, 441 ms
    of planning per run)."""
    conn.execute("SELECT raw.create_day_partitions(%s, %s)", (today - timedelta(365), today))
    near = {today + timedelta(n) for n in range(-7, 4)}
    allowed = {
        "raw.site_tracking_events_r": {
            scalar(conn, "SELECT %s::regclass::oid", (f"raw.site_tracking_events_r_{today:%Y%m%d}",))
        },
        "staging.site_tracking_events_s": {
            scalar(conn, "SELECT %s::regclass::oid", (f"staging.site_tracking_events_s_{day:%Y%m%d}",))
            for day in near
        },
    }
    params = {
        "customer_id": CUSTOMER,
        "batch_size": 1000,
        "lanes": list(range(8)),
        "seconds": 1,
        "max_delay": 60,
    }
    session = {"visitor_id": "v-1", "user_agent": "Mozilla/5.0"}
    steps: dict[str, Callable[[], object]] = {
        "ingestion": lambda: ingest(conn, [{}, {}], ["a", "b"]),
        "a copy": lambda: ingest(conn, [{}], ["a"]),
        "the next batch's user agents": lambda: conn.execute(
            PIPELINE["unparsed_user_agents"], params
        ).fetchall(),
        "a run's rest": lambda: conn.execute(PIPELINE["rest"], params),
        "the background sweep": lambda: conn.execute(PIPELINE["tenants_with_due_events"]).fetchall(),
        "a run": lambda: process_all(conn, CUSTOMER),
        "a run that extends a session": lambda: (ingest(conn, [session], ["c"]), process_all(conn, CUSTOMER)),
        "a run that merges sessions": lambda: (
            ingest(conn, [session | {"timestamp": int(time.time() * 1000) - 600_000}], ["d"]),
            process_all(conn, CUSTOMER),
        ),
        "the pipeline status": lambda: scalar(conn, "SELECT staging.get_pipeline_status(%s)", (CUSTOMER,)),
        "the backlog": lambda: conn.execute(MONITORING["backlog"]).fetchall(),
    }
    for name, step in steps.items():
        with conn.transaction():  # locks are held to its end
            step()
            locked = {
                parent: {
                    r["relation"]
                    for r in rows(
                        conn,
                        # (pg_inherits, not pg_partition_tree, which locks every partition itself)
                        "SELECT l.relation FROM pg_locks l WHERE l.pid = pg_backend_pid() AND l.relation IN"
                        " (SELECT inhrelid FROM pg_inherits WHERE inhparent = %s::regclass)",
                        (parent,),
                    )
                }
                for parent in allowed
            }
        for parent, ok in allowed.items():
            assert locked[parent] <= ok, f"{name}: {len(locked[parent])} partitions of {parent}"
