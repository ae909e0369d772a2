"""Retention of the business layer (`onevault tenant set-retention`, privacy.apply_business_retention): the
sessions that ended more than N days ago leave the vault and the marts whole, and what is left is what a
customer that only ever got the other events holds; newer and straddling sessions, other customers, raw and
staging are untouched."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from psycopg import sql
from tests.helpers.cli import Cli
from tests.helpers.erasure import raw_rows
from tests.helpers.mart_state import mart_state, rebuild_marts, set_zone
from tests.helpers.queries import rows, scalar
from tests.helpers.stats_events import GOOGLEBOT
from tests.helpers.vault_load import DESKTOP, IPHONE, Event, ingest_events, new_customer, process_all
from tests.helpers.vault_state import vault_state

from onevault.auth import store

# Four days ago at midnight UTC: every event is a few days old (valid, not suspicious).
T0 = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=4)
DAYS = 2
CUTOFF = T0 + timedelta(days=1, hours=1)
NOW = CUTOFF + timedelta(days=DAYS)
# The business keys of the vault and the marts, by the hub that holds them.
KEY_COLUMNS = {
    "site_event_hk": "business.site_event_h",
    "site_session_hk": "business.site_session_h",
    "site_visitor_hk": "business.site_visitor_h",
    "site_page_hk": "business.site_page_h",
}


def at(hours: float) -> datetime:
    """T0 plus some hours."""
    return T0 + timedelta(hours=hours)


def old_events() -> tuple[list[Event], Event]:
    """Sessions that ended before CUTOFF: a visitor's own (with a page and campaign no one else has), a
    derived visitor's, a visitor who comes back later, a client session two visitors share, a bot's — and a
    session two of whose events are loaded first, the late one between them after (it merges them)."""
    return [
        Event(
            "old-a1",
            at(1),
            visitor_id="old-1",
            page="/old-only?utm_source=news&utm_campaign=old-camp-1",
            page_title="Old only",
            referrer="https://www.google.com/",
        ),
        Event("old-a2", at(1.05), visitor_id="old-1", page="/", event_type="click"),
        Event("old-a3", at(1.1), visitor_id="old-1", page="/"),
        Event("old-b1", at(2), page="/", user_agent=IPHONE, client_ip="192.0.2.40"),
        Event("old-b2", at(2.2), page="/pricing", user_agent=IPHONE, client_ip="192.0.2.40"),
        Event("old-d1", at(3), visitor_id="both-1", page="/"),
        Event("old-m1", at(5), visitor_id="merge-1", page="/"),
        Event("old-m2", at(5 + 50 / 60), visitor_id="merge-1", page="/pricing"),
        Event("old-s1", at(6), visitor_id="s-1", session_id="shared-old", page="/", client_ip="198.51.100.3"),
        Event(
            "old-s2", at(6.1), visitor_id="s-2", session_id="shared-old", page="/", client_ip="198.51.100.4"
        ),
        Event("old-bot", at(7), visitor_id="bot-1", page="/", user_agent=GOOGLEBOT, client_ip="66.249.66.1"),
    ], Event("old-m3", at(5 + 25 / 60), visitor_id="merge-1", page="/")


def kept_events() -> list[Event]:
    """Sessions that did not end before CUTOFF: one going on across it (both-1's, in a client session),
    one that ended at it exactly, and a later one."""
    return [
        Event("new-s1", at(24.5), visitor_id="both-1", session_id="straddle", page="/"),
        Event("new-s2", at(26), visitor_id="both-1", session_id="straddle", page="/pricing"),
        Event(
            "new-e1", CUTOFF - timedelta(minutes=10), visitor_id="edge-1", page="/", client_ip="198.51.100.9"
        ),
        Event("new-e2", CUTOFF, visitor_id="edge-1", page="/", client_ip="198.51.100.9"),
        Event(
            "new-n1",
            at(36),
            visitor_id="new-1",
            page="/",
            referrer="https://www.google.com/",
            client_ip="203.0.113.30",
        ),
        Event("new-n2", at(36.2), visitor_id="new-1", page="/pricing", client_ip="203.0.113.30"),
    ]


def load(conn: psycopg.Connection, prefix: str, first: Sequence[Event], late: Sequence[Event] = ()) -> str:
    """A new customer with `first` processed, then `late`."""
    customer_id = new_customer(conn, prefix)
    for events in (first, late):
        ingest_events(conn, customer_id, events)
        process_all(conn, customer_id)
    return customer_id


def load_all(conn: psycopg.Connection, prefix: str) -> str:
    """A customer with every old and kept event, the late one after the others."""
    old, late = old_events()
    return load(conn, prefix, [*old, *kept_events()], [late])


def set_days(conn: psycopg.Connection, customer_id: str, days: int | None) -> None:
    """A customer's retention, as `tenant set-retention` records it."""
    store.set_retention(conn, customer_id, days)


def apply(conn: psycopg.Connection, now: datetime = NOW, limit: int = 5000) -> dict[str, Any]:
    """One privacy.apply_business_retention call, in its own transaction."""
    result: dict[str, Any] = scalar(conn, "SELECT privacy.apply_business_retention(%s, %s)", (now, limit))
    return result


def business_rows_tables(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """The tables of the business layer and the marts with the customer's key."""
    return [
        (r[0], r[1])
        for r in conn.execute(
            "SELECT table_schema, table_name FROM information_schema.columns WHERE column_name = 'tenant_hk'"
            " AND table_schema IN ('business', 'mart') ORDER BY 1, 2"
        ).fetchall()
    ]


def business_rows(conn: psycopg.Connection, customer_id: str) -> dict[str, list[str]]:
    """Every row of the customer in every table of the business layer and the marts, as text."""
    found = {}
    for schema, table in business_rows_tables(conn):
        query = sql.SQL("SELECT x::text FROM {} x WHERE x.tenant_hk = util.tenant_hk(%s)").format(
            sql.Identifier(schema, table)
        )
        found[f"{schema}.{table}"] = sorted(r[0] for r in conn.execute(query, (customer_id,)).fetchall())
    assert len(found) > 15, "the business and mart tables were not found"
    return found


def dangling(conn: psycopg.Connection, customer_id: str) -> dict[str, int]:
    """Keys of the customer's rows in the business layer and the marts that their hub lacks, and hubs no
    link reaches (a visitor without a session, a page or session without an event), per table."""
    columns = conn.execute(
        "SELECT table_schema, table_name, column_name FROM information_schema.columns c"
        " WHERE table_schema IN ('business', 'mart') AND column_name = ANY(%s)"
        " AND EXISTS (SELECT FROM information_schema.tables t WHERE t.table_schema = c.table_schema"
        "             AND t.table_name = c.table_name AND t.table_type = 'BASE TABLE')",
        (list(KEY_COLUMNS),),
    ).fetchall()
    tenant_tables = {f"{schema}.{table}" for schema, table in business_rows_tables(conn)}
    found = {}
    for schema, table, column in columns:
        hub = KEY_COLUMNS[column]
        if f"{schema}.{table}" == hub:
            continue
        # A table without the customer's key (mart.visitor_key_days) is checked for every customer.
        scope = (
            "x.tenant_hk = util.tenant_hk(%s)"
            if f"{schema}.{table}" in tenant_tables
            else "%s::text IS NOT NULL"
        )
        query = sql.SQL(
            "SELECT count(*) FROM {t} x WHERE " + scope + " AND x.{c} IS NOT NULL"
            " AND NOT EXISTS (SELECT FROM {h} h WHERE h.{c} = x.{c})"
        ).format(t=sql.Identifier(schema, table), c=sql.Identifier(column), h=sql.Identifier(*hub.split(".")))
        found[f"{schema}.{table}.{column}"] = int(scalar(conn, query, (customer_id,)))
    unreached = {
        "business.site_visitor_h": "business.site_session_visitor_l",
        "business.site_page_h": "business.site_event_page_l",
        "business.site_session_h": "business.site_event_session_l",
    }
    for hub, link in unreached.items():
        column = hub.split(".")[1].removesuffix("_h") + "_hk"
        query = sql.SQL(
            "SELECT count(*) FROM {h} h WHERE h.tenant_hk = util.tenant_hk(%s)"
            " AND NOT EXISTS (SELECT FROM {l} l WHERE l.{c} = h.{c})"
        ).format(
            h=sql.Identifier(*hub.split(".")), l=sql.Identifier(*link.split(".")), c=sql.Identifier(column)
        )
        found[f"{hub} without {link}"] = int(scalar(conn, query, (customer_id,)))
    return {k: v for k, v in found.items() if v}


def staged_rows(conn: psycopg.Connection, customer_id: str) -> list[tuple[Any, ...]]:
    """The customer's staging rows."""
    return sorted(
        tuple(r)
        for r in conn.execute(
            "SELECT * FROM staging.site_tracking_events_s WHERE tenant_hk = util.tenant_hk(%s)",
            (customer_id,),
        ).fetchall()
    )


def assert_as_if_only_sent(conn: psycopg.Connection, customer_id: str, reference: str) -> None:
    """The customer's vault and marts are those of the reference, which got only the events kept; the
    marts equal their rebuild, and no key is left dangling."""
    assert vault_state(conn, customer_id) == vault_state(conn, reference)
    marts = mart_state(conn, customer_id)
    assert marts == mart_state(conn, reference)
    rebuild_marts(conn, customer_id)
    assert mart_state(conn, customer_id) == marts
    assert dangling(conn, customer_id) == {}


def traces(conn: psycopg.Connection, customer_id: str, needle: str) -> list[str]:
    """The tables of the business layer and the marts with a row of the customer holding `needle`."""
    return [
        table
        for table, found in business_rows(conn, customer_id).items()
        if any(needle.lower() in row.lower() for row in found)
    ]


def test_sessions_that_ended_before_the_cutoff_leave_the_vault_and_the_marts_whole(
    conn: psycopg.Connection,
) -> None:
    """Old sessions go with their events, merged-away sessions, visitors and pages no one else has, and
    everything the marts counted of them; the rest is what a customer that got only the newer events has.
    Other customers (one without a retention, one that set one and then `keep`), raw and staging keep all."""
    retained = load_all(conn, "retained")
    untouched = load_all(conn, "untouched")
    kept_back = load_all(conn, "keep")
    reference = load(conn, "reference", kept_events())
    set_days(conn, retained, DAYS)
    set_days(conn, kept_back, DAYS)
    set_days(conn, kept_back, None)
    others = {c: business_rows(conn, c) for c in (untouched, kept_back)}
    raw_before, staged_before = raw_rows(conn, retained), staged_rows(conn, retained)
    derived = scalar(
        conn,
        "SELECT visitor_id FROM staging.site_tracking_events_s WHERE tenant_hk = util.tenant_hk(%s)"
        " AND event_id = 'old-b1'",
        (retained,),
    )
    needles = ("old-camp-1", "/old-only", "Old only", "old-1", "merge-1", "shared-old", "bot-1", derived)
    # Positive control: the vault and the marts hold them before.
    assert all(traces(conn, retained, n) for n in needles)
    assert vault_state(conn, retained) != vault_state(conn, reference)
    assert scalar(
        conn,
        "SELECT count(*) FROM business.site_session_h h WHERE h.tenant_hk = util.tenant_hk(%s) AND NOT EXISTS"
        " (SELECT FROM business.site_session_state s WHERE s.site_session_hk = h.site_session_hk)",
        (retained,),
    ), "the late event merged no session"

    result = apply(conn)

    # The six sessions of old-1, the derived visitor, both-1's first, merge-1, shared-old and the bot.
    assert result == {"tenants": 1, "sessions": 6, "events": 12, "more": False}
    for needle in needles:
        assert traces(conn, retained, needle) == [], needle
    assert_as_if_only_sent(conn, retained, reference)
    assert {c: business_rows(conn, c) for c in others} == others
    assert (raw_rows(conn, retained), staged_rows(conn, retained)) == (raw_before, staged_before)

    # Again: nothing more has expired.
    vault = business_rows(conn, retained)
    assert apply(conn) == {"tenants": 0, "sessions": 0, "events": 0, "more": False}
    assert business_rows(conn, retained) == vault

    # Once the straddling session has ended DAYS ago, it goes whole (and the one that ended at the cutoff).
    later = apply(conn, NOW + timedelta(hours=2))
    assert later == {"tenants": 1, "sessions": 2, "events": 4, "more": False}
    newest = [e for e in kept_events() if e.event_id.startswith("new-n")]
    assert_as_if_only_sent(conn, retained, load(conn, "newest", newest))
    assert traces(conn, retained, "straddle") == []


def test_each_call_deletes_at_most_the_limit_and_says_whether_more_is_left(conn: psycopg.Connection) -> None:
    """p_limit sessions per call across customers, a customer's oldest first: the caller repeats while `more`
    is true, and in the end each customer is as if only the newer events were sent."""
    old = [
        Event(f"c-{n}", at(n), visitor_id=f"c-{n}", page=f"/c{n}", client_ip="203.0.113.40") for n in range(3)
    ]
    kept = kept_events()
    customers = [load(conn, "chunked", [*old, *kept]) for _ in range(2)]
    reference = load(conn, "reference", kept)
    for customer_id in customers:
        set_days(conn, customer_id, DAYS)

    results = [apply(conn, limit=2)]
    old_left = sorted(
        sorted(k.split("@")[0] for k in vault_state(conn, c).sessions if k.startswith("c-"))
        for c in customers
    )
    assert old_left == [["c-0", "c-1", "c-2"], ["c-2"]]
    results += [apply(conn, limit=2) for _ in range(3)]

    assert [r["sessions"] for r in results] == [2, 2, 2, 0]
    assert [r["events"] for r in results] == [2, 2, 2, 0]
    assert [r["tenants"] for r in results] == [1, 2, 1, 0]
    assert [r["more"] for r in results] == [True, True, False, False]
    for customer_id in customers:
        assert_as_if_only_sent(conn, customer_id, reference)


def _wait_for_advisory_lock(conn: psycopg.Connection, pid: int) -> None:
    """Until the backend `pid` waits for an advisory lock (a lane)."""
    for _ in range(200):
        if rows(
            conn,
            "SELECT 1 FROM pg_stat_activity"
            " WHERE pid = %s AND wait_event_type = 'Lock' AND wait_event = 'advisory'",
            (pid,),
        ):
            return
        time.sleep(0.05)
    raise AssertionError(f"backend {pid} never waited for a lane")


def test_it_waits_for_a_run_of_the_customer_and_keeps_what_the_run_loaded(
    conn: psycopg.Connection, db_url: str
) -> None:
    """A pipeline run holding the customer's lanes makes the call wait for its commit; the sessions it
    loaded are newer and stay."""
    old, late = old_events()
    retained = load(conn, "retained", [*old, late])
    ingest_events(conn, retained, kept_events())
    reference = load(conn, "reference", kept_events())
    set_days(conn, retained, DAYS)
    result: dict[str, dict[str, Any]] = {}
    with psycopg.connect(db_url) as run, psycopg.connect(db_url, autocommit=True) as retention:
        claimed = scalar(
            run, "SELECT staging.process_batch(util.tenant_hk(%s), 1000, NULL, true)", (retained,)
        )
        assert claimed["claimed"] == len(kept_events())
        worker = threading.Thread(target=lambda: result.update(done=apply(retention)))
        worker.start()
        _wait_for_advisory_lock(conn, retention.info.backend_pid)
        run.commit()
        worker.join(60)
    assert result["done"] == {"tenants": 1, "sessions": 6, "events": 12, "more": False}
    assert_as_if_only_sent(conn, retained, reference)


def test_the_arguments_are_checked(conn: psycopg.Connection) -> None:
    """A limit below one session is refused with a message."""
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="at least 1 session"):
        apply(conn, limit=0)


@pytest.fixture
def cli(cli_for: Callable[[str], Cli], db_url: str) -> Cli:
    """The command against this test's database."""
    return cli_for(db_url)


def _listed(cli: Cli, customer_id: str) -> str:
    """The business_days cell of a customer in `tenant list`."""
    output = cli("tenant", "list").output
    header, row = (line for line in output.splitlines() if "CUSTOMER_ID" in line or customer_id in line)
    return row[header.index("BUSINESS_DAYS") :].split()[0]


def test_cli_set_retention(cli: Cli, conn: psycopg.Connection) -> None:
    """`tenant set-retention --business-days N|keep` records changes only and `tenant list` shows them;
    a number below 1, anything else and an unknown customer are refused."""
    assert cli("tenant", "create", "one_spa").exit_code == 0
    assert _listed(cli, "one_spa") == "keep"
    set30 = cli("tenant", "set-retention", "one_spa", "--business-days", "30")
    assert set30.exit_code == 0, set30.output
    assert "deletes its sessions from the business layer and the marts 30 days after they end" in set30.output
    assert "no change" in cli("tenant", "set-retention", "one_spa", "--business-days", "30").output
    assert _listed(cli, "one_spa") == "30"
    one = cli("tenant", "set-retention", "one_spa", "--business-days", "1")
    assert one.exit_code == 0 and "1 day after they end" in one.output
    keep = cli("tenant", "set-retention", "one_spa", "--business-days", "KEEP")
    assert keep.exit_code == 0 and "one_spa keeps its sessions in the business layer" in keep.output
    assert _listed(cli, "one_spa") == "keep"
    stored = conn.execute(
        "SELECT business_days, record_source FROM auth.tenant_retention_s ORDER BY load_date"
    )
    assert stored.fetchall() == [(30, "cli"), (1, "cli"), (None, "cli")]
    for bad in ("0", "-3", "1.5", "forever", ""):
        refused = cli("tenant", "set-retention", "one_spa", "--business-days", bad)
        assert refused.exit_code == 2, bad
        assert "neither a number of days (1 or more) nor keep" in refused.output
    assert cli("tenant", "set-retention", "one_spa").exit_code == 2
    unknown = cli("tenant", "set-retention", "nobody", "--business-days", "30")
    assert unknown.exit_code == 1 and "no tenant 'nobody'" in unknown.output
    assert conn.execute("SELECT count(*) FROM auth.tenant_retention_s").fetchone() == (3,)


# Random histories over three days: visitors named by the client (a derived visitor is compared by its
# first event in staging, which retention leaves), client sessions some share, sessions that split and
# merge, a bot, local days unlike UTC's; and a cutoff anywhere in them.
BASE = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=4)
STEP = timedelta(minutes=5)
TICKS = int(timedelta(days=3) / STEP)


@st.composite
def histories(draw: st.DrawFn) -> tuple[str, list[Event], datetime]:
    """A time zone, the events (processed a few at a time, so that late ones merge sessions) and a cutoff."""
    n = draw(st.integers(4, 24))
    ticks = draw(st.lists(st.integers(0, TICKS - 1), min_size=n, max_size=n, unique=True))
    events = [
        Event(
            event_id=f"ev{i:03}",
            at=BASE + tick * STEP,
            visitor_id=draw(st.sampled_from(("v0", "V0", "v1", "v2", "v3"))),
            session_id=draw(st.sampled_from((None, None, None, "s0", "s1"))),
            page=draw(st.sampled_from(("/", "/a", "/b?utm_source=news&utm_campaign=fall", "/c", None))),
            event_type=draw(st.sampled_from(("page_view", "page_view", "click"))),
            user_agent=draw(st.sampled_from((DESKTOP, DESKTOP, IPHONE, GOOGLEBOT))),
            referrer=draw(st.sampled_from((None, "https://www.google.com/search?q=x", "https://t.co/x"))),
        )
        for i, tick in enumerate(ticks)
    ]
    cutoff = BASE + draw(st.integers(0, TICKS)) * STEP + draw(st.sampled_from((timedelta(0), STEP / 2)))
    return draw(st.sampled_from(("UTC", "Europe/Berlin", "America/New_York"))), events, cutoff


@settings(
    max_examples=20,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=histories())
def test_after_any_history_what_is_left_is_as_if_only_the_newer_sessions_were_sent(
    conn: psycopg.Connection, history: tuple[str, list[Event], datetime]
) -> None:
    """Whatever the sessions (shared, merged, a bot's), retention in chunks leaves the vault and the marts of
    a customer that got only the events of the sessions that had not ended before the cutoff."""
    zone, events, cutoff = history
    note(f"zone {zone}, cutoff {cutoff:%m-%d %H:%M:%S}")
    for e in events:
        note(f"{e.event_id} {e.at:%m-%d %H:%M} {e.visitor_id} session={e.session_id} {e.user_agent[:20]}")
    # The customers of earlier examples (in the same database) keep theirs from now on.
    conn.execute("DELETE FROM auth.tenant_retention_s")
    retained = new_customer(conn, "retained")
    set_zone(conn, retained, zone)
    ingest_events(conn, retained, events)
    process_all(conn, retained, limit=7)

    before = vault_state(conn, retained)
    expired = {k for k, s in before.sessions.items() if s["session_end"] < cutoff}
    kept = [e for e in events if before.event_sessions[e.event_id] not in expired]
    note(f"expired sessions: {sorted(expired)}")
    reference = new_customer(conn, "reference")
    set_zone(conn, reference, zone)
    ingest_events(conn, reference, kept)
    process_all(conn, reference)

    set_days(conn, retained, DAYS)
    now = cutoff + timedelta(days=DAYS)
    results = [apply(conn, now, limit=2)]
    while results[-1]["more"]:
        results.append(apply(conn, now, limit=2))
    assert sum(r["sessions"] for r in results) == len(expired)
    assert sum(r["events"] for r in results) == len(events) - len(kept)
    assert_as_if_only_sent(conn, retained, reference)


def test_a_late_event_beside_a_removed_session_joins_its_staged_events(conn: psycopg.Connection) -> None:
    """Retention removes a session's state, not its staged events: a late event within 30 minutes of
    them is placed by those staged events (its span read from staging, as before the state gave it),
    in the session named after their earliest event."""
    retained = load_all(conn, "late-after")
    set_days(conn, retained, DAYS)
    apply(conn)
    ingest_events(conn, retained, [Event("old-m4", at(5 + 55 / 60), visitor_id="merge-1", page="/")])
    process_all(conn, retained)
    sessions = rows(
        conn,
        "SELECT event_id, session_id FROM staging.site_tracking_events_s WHERE tenant_hk = util.tenant_hk(%s)"
        " AND event_id IN ('old-m1', 'old-m4') ORDER BY event_id",
        (retained,),
    )
    assert [s["event_id"] for s in sessions] == ["old-m1", "old-m4"]
    assert sessions[0]["session_id"] == sessions[1]["session_id"]
