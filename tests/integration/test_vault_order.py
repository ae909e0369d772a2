"""The business vault is a function of the raw events alone (docs/vault.md, issue 13).

Whatever the order, grouping and concurrency of the loads, a customer's current sessions, visitors
and event → session assignments equal those of one load of the same events in one batch; the
reproductions of issue 13 are regression tests; `staging.rebuild_vault` brings a live-loaded
customer, also one loaded by OneVault 0.1.0, to the one-batch state and is idempotent.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from psycopg import sql
from tests.helpers.queries import rows, scalar
from tests.helpers.release import migrate_like_release_0_1_0
from tests.helpers.vault_load import (
    DESKTOP,
    IPHONE,
    SITE,
    Event,
    Group,
    assert_all_processed,
    business_counts,
    ingest_events,
    iso,
    load_one_batch,
    new_customer,
    process_all,
    process_batch,
    rebuild,
    run_concurrently,
)
from tests.helpers.vault_state import VaultState, derived_label, vault_state

from onevault import migrations

SESSION_GAP = timedelta(minutes=30)
# The session figures the model below predicts.
MODEL_FIELDS = (
    "visitor_key",
    "session_start",
    "session_end",
    "duration_seconds",
    "event_count",
    "page_views",
    "entry_page",
    "exit_page",
)
GHOST_PAGE_HK = bytes(32)


def start_time() -> datetime:
    """A recent moment (events up to a day old are valid and not suspicious), on a whole second."""
    return datetime.now(UTC).replace(microsecond=0) - timedelta(hours=4)


def minutes(t0: datetime, n: float) -> datetime:
    """`n` minutes after t0."""
    return t0 + timedelta(minutes=n)


def assert_same_state(actual: VaultState, expected: VaultState) -> None:
    """Equal current state, compared part by part so that a failure shows the difference."""
    assert actual.event_sessions == expected.event_sessions
    assert sorted(actual.sessions) == sorted(expected.sessions)
    assert sorted(actual.visitors) == sorted(expected.visitors)
    for key, session in expected.sessions.items():
        assert actual.sessions[key] == session, key
    for key, visitor in expected.visitors.items():
        assert actual.visitors[key] == visitor, key


def load_in_batches(conn: psycopg.Connection, customer_id: str, batches: Sequence[Sequence[Event]]) -> None:
    """Each batch stored, then processed, before the next arrives."""
    for batch in batches:
        ingest_events(conn, customer_id, batch)
        process_all(conn, customer_id)
    assert_all_processed(conn, customer_id)


def one_batch_state(conn: psycopg.Connection, events: Sequence[Event]) -> VaultState:
    """The state of a new customer given `events` in one batch."""
    customer_id = new_customer(conn, "one")
    load_one_batch(conn, customer_id, events)
    return vault_state(conn, customer_id)


def latest_first(events: Sequence[Event], size: int) -> list[list[Event]]:
    """The events in batches of `size`, the latest first: every batch but the first arrives late."""
    ordered = sorted(events, key=lambda e: e.at, reverse=True)
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


# --- a model of the design: sessions, their figures and visitors, from the events alone --------------


def canonical(value: str | None) -> str | None:
    """A visitor or session id as docs/vault.md compares it: trimmed, lower case, blank as not sent."""
    if value is None:
        return None
    return value.strip().lower() or None


def identity(event: Event) -> str:
    """Who sent an event: its canonical visitor id, else the IP and user agent it is derived from."""
    return canonical(event.visitor_id) or f"derived|{event.client_ip}|{event.user_agent}"


def distinct(events: Sequence[Event]) -> list[Event]:
    """The events once each (a copy sent again is the same event)."""
    return list({e.event_id: e for e in events}.values())


def visitor_names(events: Sequence[Event]) -> dict[str, str]:
    """The name the state reader gives each visitor (a derived one: by its first event's time)."""
    first_seen: dict[str, datetime] = {}
    for e in distinct(events):
        first_seen[identity(e)] = min(e.at, first_seen.get(identity(e), e.at))
    return {who: derived_label(at) if who.startswith("derived|") else who for who, at in first_seen.items()}


def expected_sessions(events: Sequence[Event]) -> dict[str, list[Event]]:
    """Sessions by the key the state reader shows: the client's, else derived on the final timeline.

    A visitor's derived sessions are cut from its events without a session id alone: its events in
    client sessions neither join nor bridge them.
    """
    names = visitor_names(events)
    sessions: dict[str, list[Event]] = {}
    timelines: dict[str, list[Event]] = {}
    for e in distinct(events):
        session = canonical(e.session_id)
        if session is not None:
            sessions.setdefault(session, []).append(e)
        else:
            timelines.setdefault(identity(e), []).append(e)
    for who, timeline in timelines.items():
        timeline.sort(key=lambda e: e.at)
        runs = [[timeline[0]]]
        for before, e in pairwise(timeline):
            if e.at - before.at > SESSION_GAP:
                runs.append([])
            runs[-1].append(e)
        for run in runs:
            sessions[f"{names[who]}@{iso(run[0].at)}"] = run
    return {key: sorted(mine, key=lambda e: e.at) for key, mine in sessions.items()}


def expected_visitors(events: Sequence[Event]) -> dict[str, dict[str, Any]]:
    """Each visitor and its current device (that of its latest event)."""
    names = visitor_names(events)
    by_visitor: dict[str, list[Event]] = {}
    for e in distinct(events):
        by_visitor.setdefault(names[identity(e)], []).append(e)
    found = {}
    for name, mine in by_visitor.items():
        mine.sort(key=lambda e: e.at)
        found[name] = {
            "device_type": "mobile" if mine[-1].user_agent == IPHONE else "desktop",
            "is_derived": identity(mine[0]).startswith("derived|"),
        }
    return found


def assert_matches_design(state: VaultState, events: Sequence[Event]) -> None:
    """The one-batch state is the design's: sessions, their figures and visitors as the model says.

    Referrer, UTM fields, bounce and a visitor's first and last seen times are left to the
    comparison between customers: the design does not define them.
    """
    sessions = expected_sessions(events)
    assert state.partition() == {frozenset(e.event_id for e in s) for s in sessions.values()}
    assert set(state.sessions) == set(sessions)
    names = visitor_names(events)
    for key, mine in sessions.items():
        pages = [e.page_url for e in mine if e.page_url is not None]
        found = state.sessions[key]
        assert {f: found[f] for f in MODEL_FIELDS} == {
            "visitor_key": names[identity(mine[-1])],  # the visitor of the latest event
            "session_start": mine[0].at,
            "session_end": mine[-1].at,
            "duration_seconds": int((mine[-1].at - mine[0].at).total_seconds()),
            "event_count": len(mine),
            "page_views": sum(e.event_type == "page_view" for e in mine),
            "entry_page": pages[0] if pages else None,
            "exit_page": pages[-1] if pages else None,
        }, key
    # Visitors in force hold a session (one whose sessions all belong to another is history).
    holders = {names[identity(mine[-1])] for mine in sessions.values()}
    visitors = {k: v for k, v in expected_visitors(events).items() if k in holders}
    assert {k: {f: v[f] for f in visitors.get(k, {})} for k, v in state.visitors.items()} == visitors


# --- 1. any order, grouping and concurrency: the one-batch state, every time ---------------------------

BASE = start_time() + timedelta(milliseconds=250)
# Event times on a 7-second grid over three hours: every event has its own time, no two are exactly
# 30 minutes apart, and gaps above and below 30 minutes, late events in between, both happen.
STEP = timedelta(seconds=7)
TICKS = int(timedelta(hours=3) / STEP)
VISITOR_SPELLINGS = ("v0", " V0 ", "V0", "v1", "V1 ", "v2", None, None, "", "  ")
SESSION_SPELLINGS = (None, None, None, None, "", "s0", " S0 ", "s1")
PAGES = ("/a", "/b?utm_source=news&utm_medium=mail", "/c", "/d", None, None)
REFERRERS = (None, None, "https://www.google.com/search?q=x", "https://t.co/x", "https://example.com/a")
USER_IDS = (None, None, "U-1", " U-1 ", "u-2")


@st.composite
def event_sets(draw: st.DrawFn) -> list[Event]:
    """5 to 40 events of a few visitors, spread over three hours, some sent twice."""
    n = draw(st.integers(5, 40))
    ticks = draw(st.lists(st.integers(0, TICKS - 1), min_size=n, max_size=n, unique=True))
    events = []
    for i, tick in enumerate(ticks):
        page = draw(st.sampled_from(PAGES))
        events.append(
            Event(
                event_id=f"e{i}",
                at=BASE + tick * STEP,
                visitor_id=draw(st.sampled_from(VISITOR_SPELLINGS)),
                session_id=draw(st.sampled_from(SESSION_SPELLINGS)),
                page=page,
                event_type=draw(
                    st.sampled_from(
                        ("page_view", "page_view", "click") if page else ("purchase", "session_start")
                    )
                ),
                user_agent=draw(st.sampled_from((DESKTOP, IPHONE))),
                client_ip=draw(st.sampled_from(("203.0.113.7", "198.51.100.2"))),
                user_id=draw(st.sampled_from(USER_IDS)),
                referrer=draw(st.sampled_from(REFERRERS)),
            )
        )
    copies = draw(st.lists(st.sampled_from(events), max_size=4))
    return events + copies


@st.composite
def arrivals(draw: st.DrawFn, events: list[Event]) -> list[list[Group]]:
    """The events in a random order, cut into groups, run in waves of groups run concurrently."""
    order = draw(st.permutations(events))
    count = draw(st.integers(1, min(8, len(order))))
    cuts = sorted(
        draw(st.lists(st.integers(1, len(order) - 1), min_size=count - 1, max_size=count - 1, unique=True))
    )
    bounds = [0, *cuts, len(order)]
    lanes = st.none() | st.lists(st.integers(0, 7), min_size=1, max_size=8, unique=True).map(tuple)
    groups = [
        Group(tuple(order[a:b]), limit=draw(st.integers(1, 12)), lanes=draw(lanes))
        for a, b in pairwise(bounds)
    ]
    waves: list[list[Group]] = []
    while groups:
        size = draw(st.integers(1, 3))
        waves.append(groups[:size])
        groups = groups[size:]
    return waves


@st.composite
def loads(draw: st.DrawFn) -> tuple[list[Event], list[list[Group]]]:
    """An event set and a way for it to arrive."""
    events = draw(event_sets())
    return events, draw(arrivals(events))


def describe(events: Sequence[Event], waves: Sequence[Sequence[Group]]) -> str:
    """The events and their arrival, one line each, as a failure report shows them."""
    agents = {DESKTOP: "desktop", IPHONE: "iphone"}
    lines = [
        f"{e.event_id}: +{(e.at - BASE).total_seconds():.0f}s visitor={e.visitor_id!r} "
        f"session={e.session_id!r} {e.event_type} page={e.page!r} {agents[e.user_agent]} ip={e.client_ip} "
        f"user={e.user_id!r}"
        for e in distinct(events)
    ]
    for n, wave in enumerate(waves):
        for group in wave:
            ids = " ".join(e.event_id for e in group.events)
            lines.append(f"wave {n}: [{ids}] limit={group.limit} lanes={group.lanes}")
    return "\n".join(lines)


@settings(
    max_examples=30,
    deadline=None,
    database=None,
    print_blob=True,
    # New customers are made in each example: the function-scoped database is only their home.
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(load=loads())
def test_any_order_grouping_and_concurrency_gives_the_one_batch_state(
    db_url: str, conn: psycopg.Connection, load: tuple[list[Event], list[list[Group]]]
) -> None:
    """Events in random batches, random order, partly concurrent: the state of one batch, as designed."""
    events, waves = load
    note(describe(events, waves))
    expected = one_batch_state(conn, events)
    assert_matches_design(expected, events)

    customer_id = new_customer(conn, "many")
    for wave in waves:
        run_concurrently(db_url, customer_id, wave)
    process_all(conn, customer_id)  # what the waves' lane choices left
    assert_all_processed(conn, customer_id)
    assert_same_state(vault_state(conn, customer_id), expected)


# --- 2. the reproductions of issue 13 ------------------------------------------------------------------


def stored_lane(conn: psycopg.Connection, customer_id: str, event_id: str) -> int:
    """The lane an event was stored in."""
    return int(
        scalar(
            conn,
            "SELECT processing_lane FROM raw.site_tracking_events_r "
            "WHERE tenant_hk = util.tenant_hk(%s) AND event_id = %s",
            (customer_id, event_id),
        )
    )


def test_a_run_waits_for_an_open_run_on_its_session_and_counts_both_events(
    db_url: str, conn: psycopg.Connection
) -> None:
    """Lost update: session R1 seen with visitors P1 and P2; run A, holding P1's event, is still open
    when P2's event arrives: run B waits for A, and the summary counts both events.

    Before 0.3.0 the two events took the lanes of their visitors, B went ahead beside A, and the
    latest summary said event_count = 1 with two events linked.
    """
    customer_id = new_customer(conn, "lanes")
    t0 = start_time()
    ingest_events(conn, customer_id, [Event("r1-a", t0, visitor_id="p1", session_id="R1", page="/a")])

    def run_b(lane: int) -> dict[str, Any]:
        with psycopg.connect(db_url, autocommit=True) as other:
            other.execute("SET lock_timeout = '60s'")
            return process_batch(other, customer_id, lanes=[lane])

    with psycopg.connect(db_url) as holder, ThreadPoolExecutor(1) as pool:
        a = process_batch(holder, customer_id, lanes=[stored_lane(conn, customer_id, "r1-a")])
        assert a["claimed"] == 1  # run A, its transaction open
        ingest_events(
            conn, customer_id, [Event("r1-b", minutes(t0, 1), visitor_id="P2 ", session_id=" r1", page="/b")]
        )
        b = pool.submit(run_b, stored_lane(conn, customer_id, "r1-b"))
        time.sleep(1)
        b_waited = not b.done()
        holder.commit()
        assert b.result(timeout=60)["claimed"] == 1

    state = vault_state(conn, customer_id)
    assert state.event_sessions == {"r1-a": "r1", "r1-b": "r1"}
    session = state.sessions["r1"]
    assert (session["event_count"], session["page_views"]) == (2, 2)
    assert (session["entry_page"], session["exit_page"]) == (f"{SITE}/a", f"{SITE}/b")
    assert session["visitor_key"] == "p2"  # the visitor of the latest event
    assert b_waited, "a run on a session an open run works on went ahead without waiting"


@pytest.mark.parametrize("session_id", [None, "late-1"], ids=["derived", "client"])
def test_late_events_give_the_entry_and_exit_pages_of_one_batch(
    conn: psycopg.Connection, session_id: str | None
) -> None:
    """Late and reversed page views before and between the first batch's events move entry and exit."""
    t0 = start_time()
    visit = replace(Event("x", t0), visitor_id="v-late", session_id=session_id)
    first_batch = [
        replace(visit, event_id="start", at=t0, event_type="session_start"),
        replace(visit, event_id="c", at=minutes(t0, 20), page="/c"),
        replace(visit, event_id="buy", at=minutes(t0, 40), event_type="purchase"),
    ]
    late_batch = [
        replace(visit, event_id="d", at=minutes(t0, 30), page="/d"),
        replace(visit, event_id="b", at=minutes(t0, 10), page="/b"),
    ]
    customer_id = new_customer(conn, "late")
    load_in_batches(conn, customer_id, [first_batch, late_batch])

    state = vault_state(conn, customer_id)
    (session,) = state.sessions.values()
    assert (session["entry_page"], session["exit_page"]) == (f"{SITE}/b", f"{SITE}/d")
    assert (session["page_views"], session["event_count"], session["duration_seconds"]) == (3, 5, 2400)
    assert (session["session_start"], session["session_end"]) == (t0, minutes(t0, 40))
    assert_same_state(state, one_batch_state(conn, first_batch + late_batch))


def test_a_late_event_merges_derived_sessions_as_one_batch_would(conn: psycopg.Connection) -> None:
    """A late page view closing the gap between two derived sessions makes one session of four."""
    t0 = start_time()
    visit = Event("x", t0, visitor_id="v-merge")
    early = [
        replace(visit, event_id="m1", at=t0, page="/a"),
        replace(visit, event_id="m2", at=minutes(t0, 10), page="/b"),
        replace(visit, event_id="m4", at=minutes(t0, 50), page="/d"),
    ]
    late = [replace(visit, event_id="m3", at=minutes(t0, 25), page="/c")]
    customer_id = new_customer(conn, "merge")
    load_in_batches(conn, customer_id, [early])
    assert set(vault_state(conn, customer_id).sessions) == {
        f"v-merge@{iso(t0)}",
        f"v-merge@{iso(minutes(t0, 50))}",
    }
    load_in_batches(conn, customer_id, [late])

    state = vault_state(conn, customer_id)
    merged = f"v-merge@{iso(t0)}"
    assert list(state.sessions) == [merged]
    assert state.event_sessions == dict.fromkeys(("m1", "m2", "m3", "m4"), merged)
    session = state.sessions[merged]
    assert (session["page_views"], session["session_start"], session["session_end"]) == (
        4,
        t0,
        minutes(t0, 50),
    )
    assert (session["entry_page"], session["exit_page"]) == (f"{SITE}/a", f"{SITE}/d")
    # The session the first load made from the page at +50 stays in the vault's history, retired.
    retired = rows(
        conn,
        "SELECT x.in_force FROM business.site_session_summary_s x "
        "JOIN business.site_session_h h USING (site_session_hk) "
        "WHERE h.tenant_hk = util.tenant_hk(%s) AND h.site_session_bk = %s ORDER BY x.load_date",
        (customer_id, f"v-merge@{iso(minutes(t0, 50))}"),
    )
    assert retired and retired[-1] == {"in_force": False}
    assert_same_state(state, one_batch_state(conn, early + late))


def visitor_details(conn: psycopg.Connection, customer_id: str, visitor_key: str) -> list[dict[str, Any]]:
    """A visitor's details rows on the applied-date timeline."""
    return rows(
        conn,
        "SELECT d.applied_date, d.device_type FROM business.site_visitor_details_s d "
        "JOIN business.site_visitor_h h USING (site_visitor_hk) "
        "WHERE h.tenant_hk = util.tenant_hk(%s) AND h.site_visitor_bk = %s "
        "ORDER BY d.applied_date, d.load_date",
        (customer_id, visitor_key),
    )


def test_a_late_event_with_an_old_device_does_not_become_current(conn: psycopg.Connection) -> None:
    """After a move from desktop to phone, a late desktop event an hour before the last phone event
    adds its row in the past and leaves the phone current, as in a one-batch load."""
    t0 = start_time()
    visit = Event("x", t0, visitor_id="v-dev", page="/a")
    batch = [
        replace(visit, event_id="desk", at=t0, user_agent=DESKTOP),
        replace(visit, event_id="phone-1", at=minutes(t0, 30), user_agent=IPHONE),
        replace(visit, event_id="phone-2", at=minutes(t0, 150), user_agent=IPHONE),
    ]
    late = [replace(visit, event_id="desk-late", at=minutes(t0, 90), user_agent=DESKTOP)]
    customer_id = new_customer(conn, "device")
    load_in_batches(conn, customer_id, [batch, late])

    state = vault_state(conn, customer_id)
    visitor = state.visitors["v-dev"]
    assert (visitor["device_type"], visitor["os_family"]) == ("mobile", "iOS")
    timeline = [(r["applied_date"], r["device_type"]) for r in visitor_details(conn, customer_id, "v-dev")]
    assert timeline == [
        (t0, "desktop"),
        (minutes(t0, 30), "mobile"),
        (minutes(t0, 90), "desktop"),
        (minutes(t0, 150), "mobile"),
    ]
    one = new_customer(conn, "device-one")
    load_one_batch(conn, one, batch + late)
    assert [(r["applied_date"], r["device_type"]) for r in visitor_details(conn, one, "v-dev")] == timeline
    assert_same_state(state, vault_state(conn, one))


def test_every_device_change_in_one_batch_is_a_row(conn: psycopg.Connection) -> None:
    """Desktop → phone → desktop in one batch: three details rows at the events' times, desktop current."""
    t0 = start_time()
    visit = Event("x", t0, visitor_id="v-flip", page="/a")
    customer_id = new_customer(conn, "flip")
    load_one_batch(
        conn,
        customer_id,
        [
            replace(visit, event_id="f3", at=minutes(t0, 2), user_agent=DESKTOP),
            replace(visit, event_id="f1", at=t0, user_agent=DESKTOP),
            replace(visit, event_id="f2", at=minutes(t0, 1), user_agent=IPHONE),
        ],
    )
    assert visitor_details(conn, customer_id, "v-flip") == [
        {"applied_date": t0, "device_type": "desktop"},
        {"applied_date": minutes(t0, 1), "device_type": "mobile"},
        {"applied_date": minutes(t0, 2), "device_type": "desktop"},
    ]
    assert vault_state(conn, customer_id).visitors["v-flip"]["device_type"] == "desktop"


def shop_day(t0: datetime, anonymous: bool = True) -> list[Event]:
    """A small customer: derived sessions that late events merge, a client session shared by two
    visitors, device changes, events without pages, spelling variants of ids, a copy of an event."""
    ann = Event("x", t0, visitor_id="ann", user_agent=DESKTOP, user_id="U-7")
    events = [
        replace(
            ann,
            event_id="ann-1",
            at=t0,
            page="/landing?utm_source=news&utm_campaign=spring",
            referrer="https://www.google.com/search?q=shoes",
        ),
        replace(ann, event_id="ann-2", at=minutes(t0, 10), page="/shoes", visitor_id=" ANN "),
        replace(ann, event_id="ann-3", at=minutes(t0, 25), page="/shoes/red", user_agent=IPHONE),
        replace(ann, event_id="ann-4", at=minutes(t0, 50), page="/cart", visitor_id="Ann"),
        replace(ann, event_id="ann-5", at=minutes(t0, 55), event_type="purchase", user_agent=DESKTOP),
        replace(ann, event_id="ann-6", at=minutes(t0, 150), page="/", session_id=""),
        Event("bob-1", minutes(t0, 30), visitor_id="bob", session_id="cart-1", page="/cart"),
        Event("carl-1", minutes(t0, 35), visitor_id="carl", session_id=" CART-1", event_type="add_to_cart"),
        Event("bob-2", minutes(t0, 70), visitor_id="bob", session_id="cart-1", page="/checkout"),
        Event("bob-3", minutes(t0, 75), visitor_id="bob", page="/thanks", referrer="https://t.co/x"),
    ]
    if anonymous:
        guest = Event("x", t0, user_agent=IPHONE, client_ip="198.51.100.9")
        events += [
            replace(guest, event_id="guest-1", at=minutes(t0, 5), page="/"),
            replace(guest, event_id="guest-2", at=minutes(t0, 20), page="/shoes", session_id="  "),
            replace(guest, event_id="guest-3", at=minutes(t0, 100), page="/"),
        ]
    return [*events, events[1]]  # ann-2 sent twice


def test_hash_diff_does_not_depend_on_the_time_zone(db_url: str, conn: psycopg.Connection) -> None:
    """Replayed under Europe/Berlin the vault gains no row, and a load there hashes as one under UTC."""
    t0 = start_time()
    events = shop_day(t0, anonymous=False)
    conn.execute("SET TimeZone = 'UTC'")
    utc = new_customer(conn, "utc")
    load_in_batches(conn, utc, latest_first(events, 3))
    rebuild(conn, utc)
    before = business_counts(conn)

    with psycopg.connect(db_url, autocommit=True) as berlin:
        berlin.execute("SET TimeZone = 'Europe/Berlin'")
        berlin.execute("SET DateStyle = 'SQL, DMY'")
        rebuild(berlin, utc)
        assert business_counts(berlin) == before
        other = new_customer(berlin, "berlin")
        load_in_batches(berlin, other, latest_first(events, 3))

    assert hash_diffs(conn, other) == hash_diffs(conn, utc)
    assert_same_state(vault_state(conn, other), vault_state(conn, utc))


def hash_diffs(conn: psycopg.Connection, customer_id: str) -> list[tuple[str, str, bytes]]:
    """Every satellite row's hash_diff, by satellite and business key (history included)."""
    found = conn.execute(
        """
        SELECT 'session summary', h.site_session_bk, x.hash_diff FROM business.site_session_summary_s x
        JOIN business.site_session_h h USING (site_session_hk) WHERE h.tenant_hk = util.tenant_hk(%(c)s)
        UNION ALL
        SELECT 'visitor details', h.site_visitor_bk, x.hash_diff FROM business.site_visitor_details_s x
        JOIN business.site_visitor_h h USING (site_visitor_hk) WHERE h.tenant_hk = util.tenant_hk(%(c)s)
        UNION ALL
        SELECT 'page details', h.site_page_bk, x.hash_diff FROM business.site_page_details_s x
        JOIN business.site_page_h h USING (site_page_hk) WHERE h.tenant_hk = util.tenant_hk(%(c)s)
        UNION ALL
        SELECT 'event details', h.site_event_bk, x.hash_diff FROM business.site_event_details_s x
        JOIN business.site_event_h h USING (site_event_hk) WHERE h.tenant_hk = util.tenant_hk(%(c)s)
        """,
        {"c": customer_id},
    ).fetchall()
    assert found
    return sorted((str(kind), str(key), bytes(diff)) for kind, key, diff in found)


def test_visitor_ids_differing_in_case_and_spaces_are_one_visitor(conn: psycopg.Connection) -> None:
    """' v0 ' and 'V0' are visitor v0: one hub, one visitor, one derived session."""
    t0 = start_time()
    customer_id = new_customer(conn, "case")
    load_in_batches(
        conn,
        customer_id,
        [
            [Event("spaces", t0, visitor_id=" v0 ", page="/a")],
            [Event("caps", minutes(t0, 5), visitor_id="V0")],
        ],
    )
    hubs = conn.execute(
        "SELECT site_visitor_bk FROM business.site_visitor_h WHERE tenant_hk = util.tenant_hk(%s)",
        (customer_id,),
    ).fetchall()
    assert hubs == [("v0",)]
    state = vault_state(conn, customer_id)
    assert list(state.visitors) == ["v0"]
    assert state.event_sessions == {"spaces": f"v0@{iso(t0)}", "caps": f"v0@{iso(t0)}"}


def test_an_empty_session_id_counts_as_not_sent(conn: psycopg.Connection) -> None:
    """Events with session id '' or blank get derived sessions per visitor, not one shared session."""
    t0 = start_time()
    customer_id = new_customer(conn, "empty")
    load_in_batches(
        conn,
        customer_id,
        [
            [
                Event("a1", t0, visitor_id="va", session_id="", page="/a"),
                Event("b1", minutes(t0, 60), visitor_id="vb", session_id="", page="/b"),
                Event("a2", minutes(t0, 180), visitor_id="va", session_id="  ", page="/c"),
            ]
        ],
    )
    state = vault_state(conn, customer_id)
    assert state.event_sessions == {
        "a1": f"va@{iso(t0)}",
        "b1": f"vb@{iso(minutes(t0, 60))}",
        "a2": f"va@{iso(minutes(t0, 180))}",
    }
    assert {k: s["visitor_key"] for k, s in state.sessions.items()} == {
        f"va@{iso(t0)}": "va",
        f"vb@{iso(minutes(t0, 60))}": "vb",
        f"va@{iso(minutes(t0, 180))}": "va",
    }
    blank = scalar(
        conn,
        "SELECT count(*) FROM business.site_session_h WHERE tenant_hk = util.tenant_hk(%s) "
        "AND btrim(site_session_bk) = ''",
        (customer_id,),
    )
    assert blank == 0


def test_a_client_visitor_id_never_shares_a_derived_visitor_hub(conn: psycopg.Connection) -> None:
    """A client sending the very id derived for an anonymous visitor gets a visitor of its own."""
    t0 = start_time()
    customer_id = new_customer(conn, "namespace")
    load_in_batches(conn, customer_id, [[Event("anonymous", t0, page="/a")]])
    ((derived_key, derived_hk),) = conn.execute(
        "SELECT visitor_key, site_visitor_hk FROM business.site_visitor_current "
        "WHERE tenant_hk = util.tenant_hk(%s) AND is_derived",
        (customer_id,),
    ).fetchall()
    assert derived_key.startswith("anon-")

    load_in_batches(
        conn, customer_id, [[Event("copycat", minutes(t0, 60), visitor_id=derived_key, page="/b")]]
    )
    visitors = rows(
        conn,
        "SELECT site_visitor_hk, visitor_key, is_derived FROM business.site_visitor_current "
        "WHERE tenant_hk = util.tenant_hk(%s) ORDER BY is_derived",
        (customer_id,),
    )
    assert [(v["visitor_key"], v["is_derived"]) for v in visitors] == [
        (derived_key, False),
        (derived_key, True),
    ]
    assert visitors[1]["site_visitor_hk"] == derived_hk
    assert visitors[0]["site_visitor_hk"] != derived_hk
    state = vault_state(conn, customer_id)
    anonymous = derived_label(t0)
    assert state.event_sessions == {
        "anonymous": f"{anonymous}@{iso(t0)}",
        "copycat": f"{derived_key}@{iso(minutes(t0, 60))}",
    }
    assert state.sessions[f"{derived_key}@{iso(minutes(t0, 60))}"]["visitor_key"] == derived_key
    assert state.sessions[f"{anonymous}@{iso(t0)}"]["visitor_key"] == anonymous


def test_a_session_moved_to_another_visitor_is_theirs_once(conn: psycopg.Connection) -> None:
    """A client session seen with two visitors belongs to the one of its latest event, counted once."""
    t0 = start_time()
    batch = [
        Event("r1", minutes(t0, 1), visitor_id="p1", session_id="s-p1", page="/x"),
        Event("r2-a", t0, visitor_id="p1", session_id="s-moved", page="/a"),
        Event("r3-b", minutes(t0, 15), visitor_id="p2", session_id="s-kept", page="/b"),
    ]
    late = [
        Event("r2-b", minutes(t0, 5), visitor_id="p2", session_id="s-moved", page="/b"),  # later: moves it
        Event("r3-a", minutes(t0, 10), visitor_id="p1", session_id="s-kept", page="/a"),  # earlier: does not
    ]
    customer_id = new_customer(conn, "moved")
    load_in_batches(conn, customer_id, [batch, late])

    state = vault_state(conn, customer_id)
    assert {k: s["visitor_key"] for k, s in state.sessions.items()} == {
        "s-p1": "p1",
        "s-moved": "p2",
        "s-kept": "p2",
    }
    per_visitor: dict[str, int] = dict(
        conn.execute(
            "SELECT visitor_key, count(*) FROM business.site_session_current "
            "WHERE tenant_hk = util.tenant_hk(%s) GROUP BY 1",
            (customer_id,),
        ).fetchall()
    )
    assert per_visitor == {"p1": 1, "p2": 2}
    # The vault keeps both links of the moved session: effectivity says which holds.
    links = scalar(
        conn,
        "SELECT count(*) FROM business.site_session_visitor_l l "
        "JOIN business.site_session_h h USING (site_session_hk) "
        "WHERE h.tenant_hk = util.tenant_hk(%s) AND h.site_session_bk = 's-moved'",
        (customer_id,),
    )
    assert links == 2
    assert_same_state(state, one_batch_state(conn, batch + late))


def test_business_rows_carry_the_raw_record_source(conn: psycopg.Connection) -> None:
    """An event's hubs, links and satellites carry the record_source it was stored with, not a constant."""
    t0 = start_time()
    customer_id = new_customer(conn, "lineage")
    tracked = conn.execute(
        "SELECT api.track_site_event(%s, %s, 'page_view', jsonb_build_object('visitor_id', 'rs-sql', "
        "'timestamp', %s::text, 'page_title', 'SQL'), '203.0.113.7'::inet, %s, 'via-sql')",
        (customer_id, f"{SITE}/sql", iso(t0), DESKTOP),
    ).fetchone()
    assert tracked is not None and tracked[0]["success"] is True
    ingest_events(
        conn,
        customer_id,
        [Event("via-api", minutes(t0, 1), visitor_id="rs-api", page="/api", page_title="API")],
        "api:/api/v1/track",
    )
    process_all(conn, customer_id)
    assert_all_processed(conn, customer_id)

    sources: dict[str, str] = dict(
        conn.execute(
            "SELECT event_id, record_source FROM raw.site_tracking_events_r "
            "WHERE tenant_hk = util.tenant_hk(%s)",
            (customer_id,),
        ).fetchall()
    )
    assert sources["via-api"] == "api:/api/v1/track"
    assert sources["via-sql"].startswith("sql:")
    for event_id, source in sources.items():
        found = rows(
            conn,
            """
            WITH e AS (SELECT site_event_hk, site_session_hk, site_visitor_hk, site_page_hk
                       FROM staging.site_tracking_events_s
                       WHERE tenant_hk = util.tenant_hk(%(c)s) AND event_id = %(e)s)
            SELECT 'site_event_h' AS tbl, x.record_source
                      FROM business.site_event_h x JOIN e USING (site_event_hk)
            UNION ALL SELECT 'site_event_details_s', x.record_source
                      FROM business.site_event_details_s x JOIN e USING (site_event_hk)
            UNION ALL SELECT 'site_event_session_l', x.record_source
                      FROM business.site_event_session_l x JOIN e USING (site_event_hk)
            UNION ALL SELECT 'site_event_page_l', x.record_source
                      FROM business.site_event_page_l x JOIN e USING (site_event_hk)
            UNION ALL SELECT 'site_session_h', x.record_source
                      FROM business.site_session_h x JOIN e USING (site_session_hk)
            UNION ALL SELECT 'site_session_visitor_l', x.record_source
                      FROM business.site_session_visitor_l x JOIN e USING (site_session_hk)
            UNION ALL SELECT 'site_session_summary_s', x.record_source
                      FROM business.site_session_summary_s x JOIN e USING (site_session_hk)
            UNION ALL SELECT 'site_visitor_h', x.record_source
                      FROM business.site_visitor_h x JOIN e USING (site_visitor_hk)
            UNION ALL SELECT 'site_visitor_details_s', x.record_source
                      FROM business.site_visitor_details_s x JOIN e USING (site_visitor_hk)
            UNION ALL SELECT 'site_page_h', x.record_source
                      FROM business.site_page_h x JOIN e USING (site_page_hk)
            UNION ALL SELECT 'site_page_details_s', x.record_source
                      FROM business.site_page_details_s x JOIN e USING (site_page_hk)
            """,
            {"c": customer_id, "e": event_id},
        )
        tables = {r["tbl"] for r in found}
        assert len(tables) == 11, f"{event_id}: rows only in {sorted(tables)}"
        assert {r["record_source"] for r in found} == {source}, (event_id, found)
    assert {s["record_source"] for s in vault_state(conn, customer_id).sessions.values()} == set(
        sources.values()
    )
    # No business table holds a row of this customer from a source it was not sent from.
    for table, count in business_counts(conn).items():
        if count == 0 or not has_column(conn, table, "record_source"):
            continue
        found_sources = {
            r[0]
            for r in conn.execute(
                sql.SQL("SELECT DISTINCT record_source FROM {} WHERE tenant_hk = util.tenant_hk(%s)").format(
                    sql.Identifier("business", table)
                ),
                (customer_id,),
            ).fetchall()
        }
        assert found_sources <= set(sources.values()), (table, found_sources)


def has_column(conn: psycopg.Connection, table: str, column: str) -> bool:
    """Whether business.`table` has `column` (and tenant_hk, so its rows are a customer's)."""
    found = scalar(
        conn,
        "SELECT count(*) FROM information_schema.columns "
        "WHERE table_schema = 'business' AND table_name = %s AND column_name IN (%s, 'tenant_hk')",
        (table, column),
    )
    return bool(found == 2)


def test_an_event_without_a_page_links_to_the_ghost_page(conn: psycopg.Connection) -> None:
    """An event without page_url links to the ghost page (zero key), which has its hub and details rows."""
    t0 = start_time()
    customer_id = new_customer(conn, "ghost")
    load_one_batch(
        conn,
        customer_id,
        [
            Event("buy", t0, visitor_id="g", event_type="purchase"),
            Event("view", minutes(t0, 1), visitor_id="g", page="/p"),
        ],
    )
    links: dict[str, bytes] = dict(
        conn.execute(
            "SELECT h.site_event_bk, l.site_page_hk FROM business.site_event_page_l l "
            "JOIN business.site_event_h h USING (site_event_hk) WHERE h.tenant_hk = util.tenant_hk(%s)",
            (customer_id,),
        ).fetchall()
    )
    assert set(links) == {"buy", "view"}
    assert bytes(links["buy"]) == GHOST_PAGE_HK
    assert bytes(links["view"]) != GHOST_PAGE_HK
    assert (
        scalar(conn, "SELECT count(*) FROM business.site_page_h WHERE site_page_hk = %s", (GHOST_PAGE_HK,))
        == 1
    )
    assert scalar(
        conn, "SELECT count(*) FROM business.site_page_details_s WHERE site_page_hk = %s", (GHOST_PAGE_HK,)
    )
    session = vault_state(conn, customer_id).sessions[f"g@{iso(t0)}"]
    assert (session["entry_page"], session["exit_page"], session["event_count"]) == (
        f"{SITE}/p",
        f"{SITE}/p",
        2,
    )


# --- 3. rebuild: a live-loaded customer, also one loaded by 0.1.0, becomes the one-batch state ---------


def test_rebuild_leaves_a_live_loaded_customer_as_one_batch_and_runs_again_idle(
    conn: psycopg.Connection,
) -> None:
    """Many small late batches, then rebuild: the one-batch state; a second rebuild inserts no row."""
    events = shop_day(start_time())
    live = new_customer(conn, "live")
    load_in_batches(conn, live, latest_first(events, 2))
    expected = one_batch_state(conn, events)

    results = rebuild(conn, live, limit=2)
    assert all(set(r) == {"visitors", "events", "last"} for r in results), results
    assert sum(r["visitors"] for r in results) >= len(expected.visitors)
    assert_same_state(vault_state(conn, live), expected)

    before = business_counts(conn)
    rebuild(conn, live)
    assert business_counts(conn) == before


def test_rebuild_corrects_a_customer_loaded_by_release_0_1_0(empty_db_url: str) -> None:
    """Loaded late and in pieces by 0.1.0's pipeline, upgraded, rebuilt: the one-batch state of today."""
    events = shop_day(start_time())
    migrate_like_release_0_1_0(empty_db_url)
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        old = new_customer(conn, "old")
        load_in_batches(conn, old, latest_first(events, 2))
    migrations.upgrade(empty_db_url)

    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        expected = one_batch_state(conn, events)
        rebuild(conn, old, limit=3)
        assert_same_state(vault_state(conn, old), expected)
        before = business_counts(conn)
        rebuild(conn, old)
        assert business_counts(conn) == before
