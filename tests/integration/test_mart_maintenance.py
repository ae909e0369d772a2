"""The information marts are a function of the vault (docs/analytics.md): kept live by the pipeline in
any order, grouping and concurrency, they equal a rebuild (`onevault mart rebuild`) and one batch.
"""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import psycopg
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from tests.helpers.cli import Cli
from tests.helpers.mart_state import MartState, mart_state, rebuild_marts, set_zone
from tests.helpers.queries import rows, scalar
from tests.helpers.vault_load import (
    DESKTOP,
    IPHONE,
    Event,
    Group,
    assert_all_processed,
    ingest_events,
    load_one_batch,
    new_customer,
    process_all,
    process_batch,
    run_concurrently,
)

from onevault import migrations, sqlfile

GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
# Four days back from a recent whole hour, on a 5-minute grid: sessions (30 minutes of inactivity)
# split and merge, visitors come back on other days, and local days differ from UTC days.
BASE = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=4)
STEP = timedelta(minutes=5)
TICKS = int(timedelta(days=4) / STEP)
ZONES = ("UTC", "Europe/Berlin", "America/New_York")
VISITORS = ("v0", "v1", "v2", None)
SESSIONS = (None, None, None, "s0", "s1")
PAGES = ("/", "/a", "/b?utm_source=news&utm_medium=mail&utm_campaign=fall", "/c", None)
REFERRERS = (None, None, "https://www.google.com/search?q=x", "https://t.co/x", "https://example.com/a")
AGENTS = (DESKTOP, DESKTOP, IPHONE, GOOGLEBOT)
REPORT = re.compile(r"rebuilt the marts of customer (\S+): (\d+) visits, (\d+) events in \d+\.\d s")


def assert_same_marts(actual: MartState, expected: MartState) -> None:
    """Equal marts, compared table by table so that a failure shows the difference."""
    assert actual.sessions == expected.sessions
    assert actual.events == expected.events
    assert all(row[-1] for row in actual.events), "an event's facts with another visitor's byte"
    assert actual.hourly == expected.hourly
    assert actual.daily == expected.daily
    assert actual.visitor_days == expected.visitor_days
    assert actual.visitor_key_days == expected.visitor_key_days


def assert_live_marts_equal_a_rebuild(conn: psycopg.Connection, customer_id: str) -> MartState:
    """The customer's marts as the pipeline left them equal those `mart rebuild` writes; they are returned."""
    live = mart_state(conn, customer_id)
    rebuild_marts(conn, customer_id)
    assert_same_marts(mart_state(conn, customer_id), live)
    return live


@st.composite
def event_sets(draw: st.DrawFn) -> list[Event]:
    """4 to 30 events of a few visitors over four days, some sent twice."""
    n = draw(st.integers(4, 30))
    ticks = draw(st.lists(st.integers(0, TICKS - 1), min_size=n, max_size=n, unique=True))
    events = []
    for i, tick in enumerate(ticks):
        page = draw(st.sampled_from(PAGES))
        events.append(
            Event(
                event_id=f"e{i}",
                at=BASE + tick * STEP,
                visitor_id=draw(st.sampled_from(VISITORS)),
                session_id=draw(st.sampled_from(SESSIONS)),
                page=page,
                event_type=draw(
                    st.sampled_from(("page_view", "page_view", "click") if page else ("purchase",))
                ),
                user_agent=draw(st.sampled_from(AGENTS)),
                client_ip=draw(st.sampled_from(("203.0.113.7", "198.51.100.2"))),
                referrer=draw(st.sampled_from(REFERRERS)),
            )
        )
    return events + draw(st.lists(st.sampled_from(events), max_size=3))


@st.composite
def arrivals(draw: st.DrawFn, events: list[Event]) -> list[list[Group]]:
    """The events in a random order, cut into groups, run in waves of up to three concurrent groups."""
    order = draw(st.permutations(events))
    count = draw(st.integers(1, min(6, len(order))))
    cuts = sorted(
        draw(st.lists(st.integers(1, len(order) - 1), min_size=count - 1, max_size=count - 1, unique=True))
    )
    groups = [
        Group(tuple(order[a:b]), limit=draw(st.integers(1, 10))) for a, b in pairwise([0, *cuts, len(order)])
    ]
    waves: list[list[Group]] = []
    while groups:
        size = draw(st.integers(1, 3))
        waves.append(groups[:size])
        groups = groups[size:]
    return waves


@st.composite
def loads(draw: st.DrawFn) -> tuple[str, list[Event], list[list[Group]]]:
    """A time zone, an event set and a way for it to arrive."""
    events = draw(event_sets())
    return draw(st.sampled_from(ZONES)), events, draw(arrivals(events))


def describe(zone: str, events: Sequence[Event], waves: Sequence[Sequence[Group]]) -> str:
    """The load, one line per event and per group, as a failure report shows it."""
    agents = {DESKTOP: "desktop", IPHONE: "iphone", GOOGLEBOT: "bot"}
    lines = [f"zone {zone}"] + [
        f"{e.event_id}: {e.at:%m-%d %H:%M} visitor={e.visitor_id!r} session={e.session_id!r} {e.event_type}"
        f" page={e.page!r} {agents[e.user_agent]} ip={e.client_ip} referrer={e.referrer!r}"
        for e in events
    ]
    for n, wave in enumerate(waves):
        lines += [f"wave {n}: [{' '.join(e.event_id for e in g.events)}] limit={g.limit}" for g in wave]
    return "\n".join(lines)


@settings(
    max_examples=25,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(load=loads())
def test_live_marts_equal_a_rebuild_and_one_batch(
    db_url: str, conn: psycopg.Connection, load: tuple[str, list[Event], list[list[Group]]]
) -> None:
    """Random batches, order and concurrency: the marts of one batch, and a rebuild changes nothing."""
    zone, events, waves = load
    note(describe(zone, events, waves))
    single = new_customer(conn, "one")
    set_zone(conn, single, zone)
    load_one_batch(conn, single, events)
    expected = mart_state(conn, single)

    customer_id = new_customer(conn, "many")
    set_zone(conn, customer_id, zone)
    for wave in waves:
        run_concurrently(db_url, customer_id, wave)
    process_all(conn, customer_id)
    assert_all_processed(conn, customer_id)
    assert_same_marts(mart_state(conn, customer_id), expected)

    rebuild_marts(conn, customer_id, limit=2)
    assert_same_marts(mart_state(conn, customer_id), expected)


def _day(conn: psycopg.Connection, customer_id: str) -> list[tuple[str, int]]:
    return [
        (str(r["day"]), int(r["visitors"]))
        for r in rows(
            conn,
            "SELECT day, sum(visitors) AS visitors FROM mart.visitor_days"
            " WHERE tenant_hk = util.tenant_hk(%s) AND dimension = 0 GROUP BY day ORDER BY day",
            (customer_id,),
        )
    ]


@pytest.fixture
def late_evening(conn: psycopg.Connection) -> str:
    """A customer with one visit at 23:30 UTC two days ago, and one an hour later."""
    customer_id = new_customer(conn, "tz")
    evening = datetime.now(UTC).replace(hour=23, minute=30, second=0, microsecond=0) - timedelta(days=2)
    load_one_batch(
        conn,
        customer_id,
        [
            Event("a", evening, visitor_id="early", page="/"),
            Event("b", evening + timedelta(hours=1), visitor_id="late", page="/"),
        ],
    )
    return customer_id


def test_set_timezone_recounts_the_days(
    conn: psycopg.Connection, db_url: str, cli_for: Callable[[str], Cli], late_evening: str
) -> None:
    """In UTC the two visits are on two days; `tenant set-timezone` to Berlin puts both on the later one."""
    evening = datetime.now(UTC).date() - timedelta(days=2)
    assert _day(conn, late_evening) == [(str(evening), 1), (str(evening + timedelta(days=1)), 1)]

    result = cli_for(db_url)("tenant", "set-timezone", late_evening, "europe/berlin")
    assert result.exit_code == 0, result.output
    assert (
        result.stdout.splitlines()[0]
        == f"{late_evening} counts in Europe/Berlin from now on; rebuilding its marts"
    )
    assert REPORT.fullmatch(result.stdout.splitlines()[1])
    assert _day(conn, late_evening) == [(str(evening + timedelta(days=1)), 2)]
    assert scalar(conn, "SELECT mart.tenant_zone(util.tenant_hk(%s))", (late_evening,)) == "Europe/Berlin"

    again = cli_for(db_url)("tenant", "set-timezone", late_evening, "Europe/Berlin")
    assert again.exit_code == 0
    assert again.stdout == f"{late_evening} already counts in Europe/Berlin\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("tenant", "set-timezone", "no_such_shop", "UTC"), "Error: no tenant 'no_such_shop'\n"),
        (
            ("mart", "rebuild", "--customer-id", "no_such_shop"),
            "Error: no tenant 'no_such_shop' (see `onevault tenant list`)\n",
        ),
    ],
)
def test_unknown_customer_is_refused(
    db_url: str, cli_for: Callable[[str], Cli], args: tuple[str, ...], message: str
) -> None:
    """Exit status 1 and one line naming the customer."""
    result = cli_for(db_url)(*args)
    assert result.exit_code == 1
    assert result.output == message


def test_unknown_time_zone_is_refused(
    conn: psycopg.Connection, db_url: str, cli_for: Callable[[str], Cli], late_evening: str
) -> None:
    """A zone PostgreSQL does not know: exit status 1, nothing recorded, the marts untouched."""
    before = mart_state(conn, late_evening)
    result = cli_for(db_url)("tenant", "set-timezone", late_evening, "Mars/Olympus_Mons")
    assert result.exit_code == 1
    assert "unknown time zone 'Mars/Olympus_Mons'" in result.output
    assert scalar(conn, "SELECT count(*) FROM auth.tenant_zone_s") == 0
    assert mart_state(conn, late_evening) == before


def test_mart_rebuild_restores_damaged_marts_and_reports(
    conn: psycopg.Connection, db_url: str, cli_for: Callable[[str], Cli], late_evening: str
) -> None:
    """Rollups changed behind the pipeline's back are recomputed; the report counts visits and events."""
    expected = mart_state(conn, late_evening)
    conn.execute("UPDATE mart.traffic_hourly SET pageviews = pageviews + 7")
    conn.execute("DELETE FROM mart.visitor_days")
    result = cli_for(db_url)("mart", "rebuild", "--customer-id", late_evening, "--chunk-size", "1")
    assert result.exit_code == 0, result.output
    found = REPORT.fullmatch(result.stdout.strip())
    assert found and found.groups() == (late_evening, "2", "2")
    assert mart_state(conn, late_evening) == expected


def test_progress_bar_on_a_terminal(db_url: str, conn: psycopg.Connection, late_evening: str) -> None:
    """With standard error on a terminal, a bar counts the visitors; standard output is the result alone."""
    environment = {
        k: v for k, v in os.environ.items() if k not in ("SYSTEM_DATABASE_URL", "ONEVAULT_DATABASE_URL")
    }
    terminal, child_end = pty.openpty()
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "onevault",
                "mart",
                "rebuild",
                "--customer-id",
                late_evening,
                "--chunk-size",
                "1",
            ],
            env=environment | {"SYSTEM_DATABASE_URL": db_url},
            stdout=subprocess.PIPE,
            stderr=child_end,
            text=True,
            timeout=60,
        )
    finally:
        os.close(child_end)
    shown = b""
    try:
        while chunk := os.read(terminal, 4096):
            shown += chunk
    except OSError:  # EIO: the terminal is closed and everything written was read
        pass
    finally:
        os.close(terminal)
    assert result.returncode == 0, shown
    assert REPORT.fullmatch(result.stdout.strip())
    assert re.search(rb"Rebuilding the marts of tz-\w+ +\[#+\] +2/2", shown), shown


def test_rebuild_while_the_pipeline_runs_ends_exact(db_url: str, conn: psycopg.Connection) -> None:
    """A rebuild one visitor per chunk beside live loading: afterwards the marts are those of one batch."""
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=30)
    events = [
        Event(f"e{v}-{n}", t0 + timedelta(minutes=13 * n + v), visitor_id=f"v{v}", page=f"/p{n % 4}")
        for v in range(12)
        for n in range(10)
    ]
    single = new_customer(conn, "one")
    load_one_batch(conn, single, events)
    expected = mart_state(conn, single)

    customer_id = new_customer(conn, "live")
    ingest_events(conn, customer_id, events[::2])
    process_all(conn, customer_id)
    stop = threading.Event()

    def rebuild_repeatedly() -> None:
        with psycopg.connect(db_url, autocommit=True) as other:
            while not stop.is_set():
                rebuild_marts(other, customer_id, limit=1)

    worker = threading.Thread(target=rebuild_repeatedly)
    worker.start()
    try:
        for n in range(1, len(events), 2):
            ingest_events(conn, customer_id, [events[n]])
            process_all(conn, customer_id, limit=7)
    finally:
        stop.set()
        worker.join(timeout=120)
    assert not worker.is_alive()
    assert_all_processed(conn, customer_id)
    assert_same_marts(mart_state(conn, customer_id), expected)


def _row_versions(conn: psycopg.Connection) -> list[tuple[str, str, str]]:
    """Every mart row's place and the transaction that wrote it: any write changes them."""
    found = rows(
        conn,
        "SELECT 'session_f' AS t, ctid::text, xmin::text FROM mart.session_f"
        " UNION ALL SELECT 'session_event_f', ctid::text, xmin::text FROM mart.session_event_f"
        " UNION ALL SELECT 'traffic_hourly', ctid::text, xmin::text FROM mart.traffic_hourly"
        " UNION ALL SELECT 'traffic_daily', ctid::text, xmin::text FROM mart.traffic_daily"
        " UNION ALL SELECT 'visitor_days', ctid::text, xmin::text FROM mart.visitor_days",
    )
    return sorted((r["t"], r["ctid"], r["xmin"]) for r in found)


def test_refreshing_again_changes_nothing(conn: psycopg.Connection, late_evening: str) -> None:
    """mart.refresh_sessions of every session again (a replay) writes no row."""
    before = _row_versions(conn)
    conn.execute(
        "SELECT mart.refresh_sessions(array_agg(site_session_hk)) FROM business.site_session_state"
        " WHERE tenant_hk = util.tenant_hk(%s)",
        (late_evening,),
    )
    assert _row_versions(conn) == before


def _pending(conn: psycopg.Connection, customer_id: str) -> int:
    """Sessions waiting for their marts (an entry per batch that touched one)."""
    return int(
        scalar(
            conn,
            "SELECT count(DISTINCT site_session_hk) FROM mart.session_queue"
            " WHERE tenant_hk = util.tenant_hk(%s)",
            (customer_id,),
        )
    )


def _visits(conn: psycopg.Connection, customer_id: str) -> int:
    return int(
        scalar(
            conn,
            "SELECT coalesce(sum(visits), 0) FROM mart.traffic_hourly WHERE tenant_hk = util.tenant_hk(%s)",
            (customer_id,),
        )
    )


def test_a_backlog_refreshes_its_marts_once_caught_up(conn: psycopg.Connection) -> None:
    """Full batches leave their sessions waiting; the run's last, short batch counts them."""
    customer_id = new_customer(conn, "backlog")
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    ingest_events(
        conn, customer_id, [Event(f"e{n}", t0 + timedelta(minutes=n), visitor_id=f"v{n}") for n in range(6)]
    )
    assert scalar(conn, "SELECT staging.process_batch(util.tenant_hk(%s), 3)", (customer_id,))["claimed"] == 3
    assert (_pending(conn, customer_id), _visits(conn, customer_id)) == (3, 0)
    assert scalar(conn, "SELECT staging.process_batch(util.tenant_hk(%s), 3)", (customer_id,))["claimed"] == 3
    assert (_pending(conn, customer_id), _visits(conn, customer_id)) == (6, 0)
    assert scalar(conn, "SELECT staging.process_batch(util.tenant_hk(%s), 3)", (customer_id,))["claimed"] == 0
    assert (_pending(conn, customer_id), _visits(conn, customer_id)) == (0, 6)


def test_a_backlog_refreshes_its_marts_once_5000_entries_wait(conn: psycopg.Connection) -> None:
    """In a backlog the marts wait until 5,000 queue entries do (an entry per session and batch), so
    that a long backlog is counted every twenty or so batches and its last refresh stays small."""
    customer_id = new_customer(conn, "long-backlog")
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    ingest_events(
        conn,
        customer_id,
        [Event(f"e{n}", t0 + timedelta(seconds=n), visitor_id=f"v{n}") for n in range(5001)],
    )

    def claimed(batch: int) -> int:
        return int(
            scalar(conn, "SELECT staging.process_batch(util.tenant_hk(%s), %s)", (customer_id, batch))[
                "claimed"
            ]
        )

    assert (claimed(2500), _visits(conn, customer_id)) == (2500, 0)
    assert (claimed(2499), _visits(conn, customer_id)) == (2499, 0)
    assert (claimed(1), _pending(conn, customer_id), _visits(conn, customer_id)) == (1, 0, 5000)
    assert (claimed(2), _pending(conn, customer_id), _visits(conn, customer_id)) == (1, 0, 5001)


def test_recording_a_session_never_waits_for_a_refresh_taking_it(
    db_url: str, conn: psycopg.Connection
) -> None:
    """A run loading a session that another run's uncommitted refresh is taking off the queue records it
    again at once (it waited for that refresh to commit when the queue had a key per session), and the
    next run counts it."""
    customer_id = new_customer(conn, "requeued")
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    ingest_events(
        conn,
        customer_id,
        [Event(f"e{n}", t0 + timedelta(minutes=n), visitor_id="v", session_id="s") for n in range(2)],
    )
    assert scalar(conn, "SELECT staging.process_batch(util.tenant_hk(%s), 1)", (customer_id,))["claimed"] == 1
    assert _pending(conn, customer_id) == 1
    with psycopg.connect(db_url) as refreshing:
        assert scalar(refreshing, "SELECT mart.refresh_queued(util.tenant_hk(%s))", (customer_id,)) == 1
        conn.execute("SET statement_timeout = '10s'")
        try:
            run = scalar(conn, "SELECT staging.process_batch(util.tenant_hk(%s), 1)", (customer_id,))
        finally:
            conn.execute("RESET statement_timeout")
        assert run["loaded"] == 1
        refreshing.commit()
    assert (_pending(conn, customer_id), _visits(conn, customer_id)) == (1, 1)
    process_all(conn, customer_id)
    live = mart_state(conn, customer_id)
    rebuild_marts(conn, customer_id)
    assert (_pending(conn, customer_id), mart_state(conn, customer_id)) == (0, live)


def test_a_visitor_counts_once_in_an_hour_holding_two_of_its_sessions_refreshed_apart(
    conn: psycopg.Connection,
) -> None:
    """A visitor's second session in an hour that holds its first, refreshed by a later batch, adds a
    visit to that hour but not a visitor; the visitor days and a rebuild agree."""
    customer_id = new_customer(conn, "hour")
    t0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    load_one_batch(conn, customer_id, [Event("a0", t0 + timedelta(minutes=1), visitor_id="v", page="/a")])
    # 40 minutes later, the same hour: a new derived session (30 minutes of inactivity).
    load_one_batch(conn, customer_id, [Event("b0", t0 + timedelta(minutes=41), visitor_id="v", page="/b")])
    hour = scalar(
        conn,
        "SELECT (visitors, visits, pageviews)::text FROM mart.traffic_hourly"
        " WHERE tenant_hk = util.tenant_hk(%s) AND visits > 0",
        (customer_id,),
    )
    assert hour == "(1,2,2)"
    assert_live_marts_equal_a_rebuild(conn, customer_id)


@pytest.mark.parametrize("between", ["nothing", "rebuild", "erasure"])
def test_a_session_that_gains_events_is_counted_once_whoever_refreshes_it(
    conn: psycopg.Connection, between: str
) -> None:
    """A session's gained events wait as entries that the next refresh adds to its facts (no moves, so
    no recount); a whole recount in between (a rebuild, an erasure's refresh) takes them too: none counts
    twice."""
    customer_id = new_customer(conn, "grown")
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    page = "/b?utm_source=news"
    first = [
        Event(f"e{n}", t0 + timedelta(minutes=n), visitor_id="v", session_id="s", page=page) for n in range(2)
    ]
    load_one_batch(conn, customer_id, first)
    other = Event("o0", t0, visitor_id="w", session_id="t", page=page)
    load_one_batch(conn, customer_id, [other])
    gained = [
        Event("e2", t0 + timedelta(minutes=5), visitor_id="v", session_id="s", page=page, event_type="click"),
        Event("e3", t0 - timedelta(minutes=1), visitor_id="v", session_id="s", page=page),
    ]
    ingest_events(conn, customer_id, gained)
    # A full batch: its sessions wait (the run has not caught up).
    assert process_batch(conn, customer_id, limit=2)["claimed"] == 2
    entries = rows(
        conn,
        "SELECT cardinality(site_event_hks) AS gained FROM mart.session_queue"
        " WHERE tenant_hk = util.tenant_hk(%s)",
        (customer_id,),
    )
    assert [r["gained"] for r in entries] == [2]
    if between == "rebuild":
        rebuild_marts(conn, customer_id)
    elif between == "erasure":
        scalar(conn, "SELECT privacy.erase_visitor(util.tenant_hk(%s), 'v', NULL, 'test')", (customer_id,))
    process_all(conn, customer_id)
    assert _pending(conn, customer_id) == 0
    live = assert_live_marts_equal_a_rebuild(conn, customer_id)
    assert sum(e[4] for e in live.events) == (1 if between == "erasure" else 5)


def test_the_sweep_refreshes_sessions_left_waiting(conn: psycopg.Connection) -> None:
    """A run stopped after full batches leaves sessions waiting: the periodic sweep finds the customer and
    refreshes them with nothing due."""
    customer_id = new_customer(conn, "stopped")
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    ingest_events(
        conn, customer_id, [Event(f"e{n}", t0 + timedelta(minutes=n), visitor_id="v") for n in range(2)]
    )
    scalar(conn, "SELECT staging.process_batch(util.tenant_hk(%s), 2)", (customer_id,))
    assert _pending(conn, customer_id) == 1
    sweep = sqlfile.load("onevault.pipeline", "queries.sql")["tenants_with_due_events"]
    assert customer_id in {r["tenant_bk"] for r in rows(conn, sweep)}
    scalar(conn, "SELECT staging.auto_process_if_needed(%s)", (customer_id,))
    assert (_pending(conn, customer_id), _visits(conn, customer_id)) == (0, 1)


def test_a_failing_mart_refresh_never_holds_back_the_vault(conn: psycopg.Connection) -> None:
    """With the marts' refresh failing, events still reach the vault (a warning says why) and their sessions
    wait; once it works again, the next run counts them."""
    customer_id = new_customer(conn, "broken")
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    source = scalar(conn, "SELECT pg_get_functiondef('mart.refresh_facts(bytea[], boolean)'::regprocedure)")
    conn.execute(
        "CREATE OR REPLACE FUNCTION mart.refresh_facts(p_sessions bytea[], p_deltas boolean) RETURNS void"
        " LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'marts out of order'; END $$"
    )
    warnings: list[str] = []
    conn.add_notice_handler(lambda notice: warnings.append(str(notice.message_primary)))
    try:
        load_one_batch(conn, customer_id, [Event("a", t0, visitor_id="v", page="/")])
    finally:
        conn.execute(source)
    assert (
        scalar(
            conn,
            "SELECT count(*) FROM business.site_event_h WHERE tenant_hk = util.tenant_hk(%s)",
            (customer_id,),
        )
        == 1
    )
    assert any("not refreshed: marts out of order" in w for w in warnings), warnings
    assert (_pending(conn, customer_id), _visits(conn, customer_id)) == (1, 0)
    process_all(conn, customer_id)
    assert (_pending(conn, customer_id), _visits(conn, customer_id)) == (0, 1)


def test_a_vault_from_before_the_marts_is_counted_after_the_upgrade(
    db_url: str, conn: psycopg.Connection
) -> None:
    """Back to 0005 (no marts) and up again: the upgrade queues every session of the vault, and the pipeline's
    sweep fills the marts as a rebuild would; the vault is untouched by both."""
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=30)
    customer_id = new_customer(conn, "upgraded")
    load_one_batch(
        conn,
        customer_id,
        [
            Event(f"e{n}", t0 + timedelta(minutes=25 * n), visitor_id=f"v{n % 3}", page=f"/p{n % 4}")
            for n in range(12)
        ],
    )
    expected = mart_state(conn, customer_id)
    vault = scalar(conn, "SELECT count(*) FROM business.site_session_summary_s")
    migrations.rollback(db_url, to=5)
    assert scalar(conn, "SELECT to_regnamespace('mart') IS NULL")
    migrations.upgrade(db_url)
    assert _pending(conn, customer_id) > 0
    scalar(conn, "SELECT staging.auto_process_if_needed(%s)", (customer_id,))
    assert _pending(conn, customer_id) == 0
    assert_same_marts(mart_state(conn, customer_id), expected)
    assert scalar(conn, "SELECT count(*) FROM business.site_session_summary_s") == vault


def test_the_rollups_keep_their_rows_through_0017_and_back(db_url: str, conn: psycopg.Connection) -> None:
    """0017 builds the rollups' keys again (and its rollback the earlier ones): every row stays, the
    marts go on equal to a rebuild as events arrive on either side, and the keys stay unique."""
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
    customer_id = new_customer(conn, "rekeyed")
    first = [
        Event(f"e{n}", t0 + timedelta(hours=7 * n), visitor_id=f"v{n % 3}", page=f"/p{n % 4}")
        for n in range(10)
    ]
    load_one_batch(conn, customer_id, first)
    kept = mart_state(conn, customer_id)
    migrations.rollback(db_url, to=16)
    migrations.upgrade(db_url)
    assert_same_marts(mart_state(conn, customer_id), kept)

    # Visitors seen again on days they had been seen: updates of existing rollup rows.
    later = [
        Event(f"f{n}", t0 + timedelta(hours=7 * n, minutes=40), visitor_id=f"v{n % 3}", page=f"/p{n % 4}")
        for n in range(10)
    ]
    load_one_batch(conn, customer_id, later)
    assert_live_marts_equal_a_rebuild(conn, customer_id)
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute(
            "INSERT INTO mart.visitor_days"
            " SELECT * FROM mart.visitor_days WHERE tenant_hk = util.tenant_hk(%s) LIMIT 1",
            (customer_id,),
        )


def test_the_events_facts_get_their_visitors_bytes_through_0019_and_back(
    db_url: str, conn: psycopg.Connection
) -> None:
    """0019 writes mart.session_event_f again with each row's visitor byte: every row stays, with its
    session's visitor's byte, and the marts go on equal to a rebuild as events arrive after it; its
    rollback keeps every row too."""
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
    customer_id = new_customer(conn, "bytes")
    first = [
        Event(f"e{n}", t0 + timedelta(hours=5 * n), visitor_id=f"v{n % 4}", page=f"/p{n % 3}")
        for n in range(12)
    ]
    load_one_batch(conn, customer_id, first)
    kept = mart_state(conn, customer_id)
    rows = "SELECT count(*) FROM mart.session_event_f"
    stored = scalar(conn, rows)
    migrations.rollback(db_url, to=18)
    assert not scalar(
        conn,
        "SELECT EXISTS (SELECT FROM pg_attribute WHERE attrelid = 'mart.session_event_f'::regclass"
        " AND attname = 'visitor_byte' AND NOT attisdropped)",
    )
    assert scalar(conn, rows) == stored == len(kept.events)
    migrations.upgrade(db_url)
    assert_same_marts(mart_state(conn, customer_id), kept)

    later = [
        Event(f"f{n}", t0 + timedelta(hours=5 * n, minutes=20), visitor_id=f"v{n % 4}", page="/p9")
        for n in range(12)
    ]
    load_one_batch(conn, customer_id, later)
    assert_live_marts_equal_a_rebuild(conn, customer_id)


def test_a_session_that_changes_visitor_moves_its_events_facts_to_the_visitors_byte(
    conn: psycopg.Connection,
) -> None:
    """A client session belongs to the visitor of its latest event: when a later event names another
    visitor, the facts of the events counted before (kept, the session only grew) take the new
    visitor's byte, as a rebuild writes them."""
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=5)
    customer_id = new_customer(conn, "moved")
    # Visitors whose keys' first bytes differ, so that a stale byte shows.
    visitors = scalar(
        conn,
        "SELECT array_agg(v ORDER BY v) FROM (SELECT DISTINCT ON (get_byte(site_visitor_hk, 0)) v"
        " FROM (SELECT 'v' || n AS v, staging.visitor_hk(util.tenant_hk(%s), 'v' || n, NULL, NULL)"
        "       AS site_visitor_hk FROM generate_series(1, 9) n) x) y",
        (customer_id,),
    )
    first, second = visitors[0], visitors[1]
    load_one_batch(
        conn,
        customer_id,
        [
            Event(f"a{n}", t0 + timedelta(minutes=n), visitor_id=first, session_id="s1", page=f"/p{n}")
            for n in range(3)
        ],
    )
    bytes_of = (
        "SELECT array_agg(DISTINCT e.visitor_byte) FROM mart.session_event_f e"
        " WHERE e.tenant_hk = util.tenant_hk(%s)"
    )
    before = scalar(conn, bytes_of, (customer_id,))
    load_one_batch(
        conn,
        customer_id,
        [Event("b0", t0 + timedelta(minutes=9), visitor_id=second, session_id="s1", page="/p9")],
    )
    after = scalar(conn, bytes_of, (customer_id,))
    assert len(before) == len(after) == 1 and before != after
    live = assert_live_marts_equal_a_rebuild(conn, customer_id)
    assert len(live.events) == 4


def test_a_visitor_who_comes_back_often_has_their_days_kept_and_counted_by_them(
    db_url: str, conn: psycopg.Connection
) -> None:
    """From a visitor's sixteenth session on, mart.visitor_key_days holds their days by value, equal to
    their facts, and the refreshes count their sessions by it — new days after, before and between
    those seen — as a rebuild does; 0018 and its rollback keep the marts whole."""
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=9)
    customer_id = new_customer(conn, "keydays")
    kept = "SELECT count(DISTINCT site_visitor_hk) FROM mart.visitor_key_days"
    # v0 comes every 10 hours (16 sessions), v1 twice.
    first = [
        Event(f"a{n}", t0 + timedelta(hours=10 * n), visitor_id="v0", page=f"/p{n % 3}") for n in range(15)
    ]
    first += [Event(f"b{n}", t0 + timedelta(hours=30 * n), visitor_id="v1", page="/p1") for n in range(2)]
    load_one_batch(conn, customer_id, first)
    assert scalar(conn, kept) == 0
    load_one_batch(conn, customer_id, [Event("a15", t0 + timedelta(hours=150), visitor_id="v0", page="/p2")])
    assert scalar(conn, kept) == 1
    assert mart_state(conn, customer_id).visitor_key_days == []

    # Later, earlier and in between, on days seen and not, with pages seen and not.
    for n, hours in enumerate((165, -10, 45, 61, 100)):
        load_one_batch(
            conn,
            customer_id,
            [
                Event(f"c{n}", t0 + timedelta(hours=hours), visitor_id="v0", page=f"/p{n}"),
                Event(f"d{n}", t0 + timedelta(hours=hours, minutes=3), visitor_id="v1", page="/p1"),
            ],
        )
    live = assert_live_marts_equal_a_rebuild(conn, customer_id)
    assert live.visitor_key_days == []
    assert scalar(conn, kept) == 1

    migrations.rollback(db_url, to=17)
    assert scalar(conn, "SELECT to_regclass('mart.visitor_key_days') IS NULL")
    migrations.upgrade(db_url)
    assert scalar(conn, kept) == 0
    load_one_batch(conn, customer_id, [Event("e0", t0 + timedelta(hours=175), visitor_id="v0", page="/p9")])
    assert scalar(conn, kept) == 1
    assert_live_marts_equal_a_rebuild(conn, customer_id)
