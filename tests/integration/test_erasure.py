"""Erasing a person's data (`onevault visitor erase`, privacy.erase_visitor): nothing of them is left in any
column of any table, and everything else is as if their events had never been sent."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from tests.helpers.cli import Cli
from tests.helpers.erasure import Person, audit_records, raw_rows
from tests.helpers.mart_state import mart_state, rebuild_marts, set_zone
from tests.helpers.queries import rows, scalar
from tests.helpers.secrets import occurrences
from tests.helpers.vault_load import DESKTOP, IPHONE, Event, ingest_events, new_customer, process_all
from tests.helpers.vault_state import vault_state

from onevault import migrations
from onevault.auth import store
from onevault.privacy import erasure

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=4)
OTHER_IP = "203.0.113.7"


def _id(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex}"


def _at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def person_events() -> tuple[list[Event], Event]:
    """The person's events (visitor `Person-V1`, user `user-42`): derived sessions, a client session
    another visitor shares (and the person holds: theirs is its latest event), a page only they saw,
    a quarantined event — and one more that stays pending."""
    ip = "198.51.100.23"
    v = "Person-V1"
    done = [
        Event(
            _id("p-home"),
            _at(0),
            visitor_id=v,
            page="/home?utm_source=news&utm_campaign=p-campaign-77",
            referrer="https://www.google.com/",
            client_ip=ip,
        ),
        Event(
            _id("p-only"),
            _at(5),
            visitor_id=v.lower(),
            page="/only-p",
            page_title="Only P",
            user_id="user-42",
            client_ip=ip,
        ),
        Event(
            _id("p-shared"),
            _at(10),
            visitor_id=v.upper(),
            session_id="shared-s",
            page="/pricing",
            user_id="user-42",
            client_ip=ip,
        ),
        Event(_id("p-later"), _at(120), visitor_id=v, page="/pricing", client_ip=ip),
        Event(_id("p-invalid"), _at(121), visitor_id=v, page="/x", event_type="bad type!", client_ip=ip),
    ]
    pending = Event(_id("p-pending"), _at(122), visitor_id=v, page="/home", client_ip=ip)
    return done, pending


def others_events() -> list[Event]:
    """Other people: a visitor sharing the person's client session, a derived visitor, another one."""
    return [
        Event(
            _id("w-shared"),
            _at(1),
            visitor_id="w-1",
            session_id="shared-s",
            page="/pricing",
            client_ip=OTHER_IP,
        ),
        Event(
            _id("w-shared2"), _at(8), visitor_id="w-1", session_id="shared-s", page="/", client_ip=OTHER_IP
        ),
        Event(_id("w-blog"), _at(40), visitor_id="w-1", page="/blog", page_title="Blog", client_ip=OTHER_IP),
        Event(_id("d-home"), _at(3), page="/", user_agent=IPHONE, client_ip="192.0.2.9"),
        Event(_id("d-pricing"), _at(20), page="/pricing", user_agent=IPHONE, client_ip="192.0.2.9"),
        Event(
            _id("x-home"),
            _at(30),
            visitor_id="x-9",
            page="/home",
            referrer="https://www.google.com/",
            client_ip="203.0.113.50",
        ),
    ]


def load(
    conn: psycopg.Connection, prefix: str, processed: Sequence[Event], pending: Sequence[Event] = ()
) -> str:
    """A new customer with `processed` events in the vault and `pending` ones stored after."""
    customer_id = new_customer(conn, prefix)
    ingest_events(conn, customer_id, processed)
    process_all(conn, customer_id)
    ingest_events(conn, customer_id, pending)
    return customer_id


def status(conn: psycopg.Connection, customer_id: str) -> dict[str, Any]:
    """The pipeline's counts of a customer (staging.get_pipeline_status)."""
    found: dict[str, Any] = scalar(conn, "SELECT staging.get_pipeline_status(%s)", (customer_id,))
    keys = ("raw_events_total", "raw_pending", "raw_errors", "quarantined", "business_events_total")
    return {k: found[k] for k in keys}


def assert_as_if_never_sent(conn: psycopg.Connection, erased: str, reference: str) -> None:
    """The customer whose person was erased is the one that never received their events: vault, marts
    (also once recounted from the vault) and the pipeline's counts."""
    assert vault_state(conn, erased) == vault_state(conn, reference)
    marts = mart_state(conn, erased)
    assert marts == mart_state(conn, reference)
    assert status(conn, erased) == status(conn, reference)
    # The visitors' days by value go with their last session (the hub that names them is gone).
    orphans = (
        "SELECT count(*) FROM mart.visitor_key_days m"
        " WHERE NOT EXISTS (SELECT FROM mart.session_f f WHERE f.site_visitor_hk = m.site_visitor_hk)"
    )
    assert scalar(conn, orphans) == 0
    rebuild_marts(conn, erased)
    assert mart_state(conn, erased) == marts


def erase_cli(cli: Cli, customer_id: str, *option: str) -> str:
    """`onevault visitor erase` that succeeds; its output."""
    result = cli("visitor", "erase", customer_id, *option)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def cli(cli_for: Callable[[str], Cli], db_url: str) -> Cli:
    """The command against this test's database."""
    return cli_for(db_url)


def test_erasing_a_visitor_leaves_no_trace_and_the_rest_as_if_never_sent(
    conn: psycopg.Connection, cli: Cli
) -> None:
    """Every column of every table is free of the visitor id, user id, IP hash and event ids; the vault,
    the marts and the counts equal those of a customer that never got the person's events."""
    done, pending = person_events()
    others = others_events()
    erased = load(conn, "erased", [*done, *others], [pending])
    reference = load(conn, "reference", others)
    person = Person.of(conn, erased, [e.event_id for e in [*done, pending]], ids=("person-v1", "user-42"))
    before = raw_rows(conn, erased)
    # Positive control: the scan finds every identifier before the erasure.
    assert set(person.traces(conn)) == set(person.needles)
    assert "mart.traffic_daily.value" in occurrences(conn, "p-campaign-77")
    assert "business.site_page_h.site_page_bk" in occurrences(conn, "/only-p")
    assert vault_state(conn, erased) != vault_state(conn, reference)

    output = erase_cli(cli, erased, "--visitor-id", "  PERSON-v1 ")

    assert person.traces(conn) == {}
    # Nor of what only they sent: a page only they saw (its hub, details, and the marts' rows of its
    # path), a campaign only they came from (rollup rows left at zero are removed).
    for only_theirs in ("/only-p", "Only P", "p-campaign-77"):
        assert occurrences(conn, only_theirs) == [], only_theirs
    assert raw_rows(conn, erased) == {k: v for k, v in before.items() if k in {e.event_id for e in others}}
    assert_as_if_never_sent(conn, erased, reference)
    shared = [s for s in vault_state(conn, erased).sessions.values() if s["session_key"] == "shared-s"]
    assert [s["visitor_key"] for s in shared] == ["w-1"]
    [record] = audit_records(conn, erased)
    assert record["identified_by"] == "visitor_id"
    assert record["erased_by"].startswith("cli")
    assert record["record_source"] == "cli"
    assert (record["visitors"], record["events"]) == (1, 6)
    # Two derived sessions of the person's own; the client session is the other visitor's now.
    assert record["sessions"] == 2
    assert record["erased_rows"]["raw.site_tracking_events_r"] == 6
    assert record["erased_rows"]["staging.site_tracking_events_s"] == 5
    assert record["erased_rows"]["business.site_event_h"] == 4
    assert record["erased_rows"]["business.site_visitor_h"] == 1
    assert record["erased_rows"]["business.site_page_h"] == 1  # /only-p
    assert record["erased_rows"]["mart.session_f"] == 2
    assert "erased 6 events, 2 sessions and 1 visitor of this visitor" in output
    assert f"audit record {record['erasure_id']}" in output
    # Nothing is left for the pipeline to bring back.
    assert process_all(conn, erased) == 0
    assert person.traces(conn) == {}


def test_erasing_by_user_id_takes_every_visitor_seen_with_it(conn: psycopg.Connection, cli: Cli) -> None:
    """A user id names the person on every device: each visitor with an event carrying it (loaded, or
    still pending) is erased whole, also its events without the user id."""
    person = [
        Event(
            _id("q-phone"),
            _at(0),
            visitor_id="phone-1",
            page="/",
            user_agent=IPHONE,
            client_ip="198.51.100.70",
        ),
        Event(
            _id("q-phone-login"),
            _at(2),
            visitor_id="phone-1",
            page="/account",
            user_id="U-77",
            user_agent=IPHONE,
            client_ip="198.51.100.70",
        ),
        Event(_id("q-desk"), _at(60), page="/", client_ip="198.51.100.71"),
        Event(_id("q-desk-login"), _at(61), page="/account", user_id="U-77", client_ip="198.51.100.71"),
    ]
    pending = Event(
        _id("q-tablet"),
        _at(90),
        visitor_id="tablet-9",
        page="/account",
        user_id=" U-77 ",
        client_ip="198.51.100.72",
    )
    others = [
        *others_events(),
        Event(
            _id("other-user"),
            _at(61),
            visitor_id="v-other",
            page="/account",
            user_id="u-77x",
            client_ip="203.0.113.60",
        ),
    ]
    erased = load(conn, "erased", [*person, *others], [pending])
    reference = load(conn, "reference", others)
    traced = Person.of(conn, erased, [e.event_id for e in [*person, pending]], ids=("phone-1", "tablet-9"))
    assert set(traced.traces(conn)) == set(traced.needles)
    assert any(n.startswith("anon-") for n in traced.needles)

    output = erase_cli(cli, erased, "--user-id", "U-77")

    assert traced.traces(conn) == {}
    # "U-77" is inside the other user's id (u-77x) and kept there: user ids keep their case, and are exact.
    assert scalar(conn, "SELECT count(*) FROM staging.site_tracking_events_s WHERE user_id = 'U-77'") == 0
    assert scalar(conn, "SELECT count(*) FROM staging.site_tracking_events_s WHERE user_id = 'u-77x'") == 2
    assert_as_if_never_sent(conn, erased, reference)
    [record] = audit_records(conn, erased)
    assert (record["identified_by"], record["visitors"], record["events"]) == ("user_id", 3, 5)
    assert "erased 5 events" in output and "of this user id" in output


def test_pending_and_failed_events_are_erased_before_any_run_loads_them(
    conn: psycopg.Connection, cli: Cli
) -> None:
    """Events still in the queue (pending, or failed and waiting for a retry) go too; a run after the
    erasure finds nothing of them."""
    person = [
        Event(_id("late-a"), _at(0), visitor_id="late-1", page="/", client_ip="198.51.100.80"),
        Event(
            _id("late-b"),
            _at(1),
            visitor_id="late-1",
            session_id="late-s",
            page="/b",
            client_ip="198.51.100.80",
        ),
        Event(_id("late-c"), _at(2), page="/c", client_ip="198.51.100.81", user_agent="Mozilla/5.0 Late"),
    ]
    others = others_events()
    erased = load(conn, "erased", others, person)
    # The derived visitor of the third event is named by its id as staging would derive it.
    derived = scalar(
        conn,
        "SELECT staging.derived_visitor_id(tenant_hk, client_ip_hash, user_agent)"
        " FROM raw.site_tracking_events_r WHERE event_id = %s",
        (person[2].event_id,),
    )
    conn.execute(
        "UPDATE raw.site_tracking_events_r SET processing_status = 'ERROR', retry_count = 1,"
        " error_message = 'failed', next_attempt_at = now() + interval '1 hour' WHERE event_id = %s",
        (person[1].event_id,),
    )
    traced = Person.of(conn, erased, [e.event_id for e in person], ids=("late-1", derived))
    erase_cli(cli, erased, "--visitor-id", "late-1")
    erase_cli(cli, erased, "--visitor-id", derived)
    assert traced.traces(conn) == {}
    assert [r["events"] for r in audit_records(conn, erased)] == [2, 1]
    assert raw_rows(conn, erased).keys() == {e.event_id for e in others}
    conn.execute("UPDATE raw.site_tracking_events_r SET next_attempt_at = now()")
    assert process_all(conn, erased) == 0


def test_an_unknown_visitor_erases_nothing_and_is_audited(conn: psycopg.Connection, cli: Cli) -> None:
    """Naming a visitor the customer never saw is not an error: nothing changes, and the audit records
    that the request was carried out (zero rows everywhere)."""
    customer = load(conn, "shop", others_events())
    vault, marts, raw = vault_state(conn, customer), mart_state(conn, customer), raw_rows(conn, customer)
    output = erase_cli(cli, customer, "--visitor-id", "nobody-here")
    assert "nothing of this visitor was stored" in output
    assert (vault_state(conn, customer), mart_state(conn, customer), raw_rows(conn, customer)) == (
        vault,
        marts,
        raw,
    )
    [record] = audit_records(conn, customer)
    assert (record["visitors"], record["sessions"], record["events"]) == (0, 0, 0)
    assert set(record["erased_rows"].values()) == {0}


def test_from_psql_a_quarantined_event_leaves_another_visitors_session_alone(
    conn: psycopg.Connection,
) -> None:
    """privacy.erase_visitor from psql, with its defaults (the audit names the database user); a person
    whose only event in another visitor's client session was quarantined takes nothing of that session
    with them, its summary history included."""
    others = [
        Event(_id("w"), _at(n), visitor_id="w-1", session_id="s-w", page=f"/p{n}", client_ip=OTHER_IP)
        for n in range(3)
    ]
    quarantined = Event(
        _id("q"),
        _at(1.5),
        visitor_id="p-q",
        session_id="s-w",
        page="/",
        event_type="bad type!",
        client_ip="198.51.100.99",
    )
    customer = load(conn, "shop", [*others, quarantined])
    history = rows(
        conn,
        "SELECT * FROM business.site_session_summary_s WHERE tenant_hk = util.tenant_hk(%s)",
        (customer,),
    )
    vault = vault_state(conn, customer)
    person = Person.of(conn, customer, [quarantined.event_id], ids=("p-q",))
    assert set(person.traces(conn)) == set(person.needles)
    result = scalar(conn, "SELECT privacy.erase_visitor(util.tenant_hk(%s), ' P-Q ')", (customer,))
    assert (result["events"], result["sessions"], result["visitors"]) == (1, 0, 1)
    assert (
        rows(
            conn,
            "SELECT * FROM business.site_session_summary_s WHERE tenant_hk = util.tenant_hk(%s)",
            (customer,),
        )
        == history
    )
    assert vault_state(conn, customer) == vault
    assert person.traces(conn) == {}
    [record] = audit_records(conn, customer)
    assert (record["erased_by"], record["record_source"]) == (
        "sql:" + str(scalar(conn, "SELECT session_user")),
        "sql:privacy.erase_visitor",
    )


def test_a_customer_erases_only_its_own_visitor(conn: psycopg.Connection, cli: Cli) -> None:
    """Two customers with a visitor of the same id: erasing it for one leaves the other's whole."""
    same = [
        Event(_id("same"), _at(0), visitor_id="same-v", page="/", client_ip="198.51.100.90"),
        Event(_id("same2"), _at(5), visitor_id="same-v", page="/pricing", client_ip="198.51.100.90"),
    ]
    mine = load(conn, "mine", [*others_events(), *same])
    theirs = load(
        conn,
        "theirs",
        [
            *others_events(),
            *[Event(_id("t"), e.at, visitor_id="same-v", page=e.page, client_ip=e.client_ip) for e in same],
        ],
    )
    vault, marts, raw = vault_state(conn, theirs), mart_state(conn, theirs), raw_rows(conn, theirs)
    erase_cli(cli, mine, "--visitor-id", "same-v")
    assert (vault_state(conn, theirs), mart_state(conn, theirs), raw_rows(conn, theirs)) == (
        vault,
        marts,
        raw,
    )
    assert "same-v" in vault_state(conn, theirs).visitors
    assert "same-v" not in vault_state(conn, mine).visitors
    assert audit_records(conn, theirs) == []


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("--visitor-id", "v", "--user-id", "u"), 2, "exactly one of --visitor-id and --user-id"),
        ((), 2, "exactly one of --visitor-id and --user-id"),
        (("--visitor-id", "  "), 1, "name the person by a visitor id or by a user id"),
    ],
)
def test_the_command_refuses_what_names_no_one(
    conn: psycopg.Connection, cli: Cli, args: tuple[str, ...], code: int, message: str
) -> None:
    """Both ids, neither, or a blank one: a one-line error, nothing erased, nothing audited."""
    customer = new_customer(conn, "shop")
    result = cli("visitor", "erase", customer, *args)
    assert result.exit_code == code
    assert message in result.output
    assert audit_records(conn, customer) == []


def test_an_unknown_customer_is_refused(cli: Cli) -> None:
    """Exit status 1 and the usual message."""
    result = cli("visitor", "erase", "no_such_shop", "--visitor-id", "v")
    assert result.exit_code == 1
    assert "no tenant 'no_such_shop'" in result.output


def test_rolling_back_the_erasure_migration_takes_the_erase_scope_away(
    db_url: str, conn: psycopg.Connection
) -> None:
    """Back to 0008 (which knows no `erase`): tokens keep their other scopes, a token that could only
    erase is gone, the audit records go; upgraded again, the scope can be given anew."""
    customer = new_customer(conn, "shop")
    only = store.create_token(conn, customer, ["erase"], "test")
    mixed = store.create_token(conn, customer, ["read", "erase"], "test")
    plain = store.create_token(conn, customer, ["track"], "test")
    erase_cli_free = erasure.erase(
        conn,
        bytes(scalar(conn, "SELECT util.tenant_hk(%s)", (customer,))),
        visitor_id="v",
        erased_by="test",
        record_source="test",
    )
    assert erase_cli_free.events == 0
    migrations.rollback(db_url, to=8)
    scopes = {
        str(r["token_id"]): list(r["scopes"])
        for r in rows(
            conn, "SELECT encode(substr(api_token_hk, 1, 6), 'hex') AS token_id, scopes FROM auth.api_token_s"
        )
    }
    assert scopes == {mixed.token_id: ["read"], plain.token_id: ["track"]}
    assert only.token_id not in scopes
    assert scalar(conn, "SELECT to_regnamespace('privacy') IS NULL")
    migrations.upgrade(db_url)
    assert store.create_token(conn, customer, ["erase"], "test").token_id
    assert audit_records(conn, customer) == []


def _wait_for_advisory_lock(conn: psycopg.Connection, pid: int) -> None:
    """Until the backend `pid` waits for an advisory lock (a lane)."""
    for _ in range(200):
        waiting = rows(
            conn,
            "SELECT 1 FROM pg_stat_activity"
            " WHERE pid = %s AND wait_event_type = 'Lock' AND wait_event = 'advisory'",
            (pid,),
        )
        if waiting:
            return
        time.sleep(0.05)
    raise AssertionError(f"backend {pid} never waited for a lane")


def test_an_erasure_waits_for_a_run_loading_the_visitor_and_erases_what_it_loaded(
    conn: psycopg.Connection, db_url: str
) -> None:
    """A pipeline run processing the person's pending events holds their lanes: the erasure waits for its
    commit, then erases everything it loaded."""
    done, pending = person_events()
    others = others_events()
    erased = load(conn, "erased", others, [*done, pending])
    reference = load(conn, "reference", others)
    traced = Person.of(conn, erased, [e.event_id for e in [*done, pending]], ids=("person-v1", "user-42"))
    tenant_hk = bytes(scalar(conn, "SELECT util.tenant_hk(%s)", (erased,)))
    result: dict[str, erasure.Erasure] = {}
    with psycopg.connect(db_url) as run, psycopg.connect(db_url, autocommit=True) as eraser:
        claimed = scalar(run, "SELECT staging.process_batch(%s, 1000, NULL, true)", (tenant_hk,))["claimed"]
        assert claimed == len(done) + 1
        worker = threading.Thread(
            target=lambda: result.update(
                done=erasure.erase(
                    eraser, tenant_hk, visitor_id="person-v1", erased_by="test", record_source="test"
                )
            )
        )
        worker.start()
        _wait_for_advisory_lock(conn, eraser.info.backend_pid)
        run.commit()
        worker.join(60)
    assert result["done"].events == len(done) + 1
    assert traced.traces(conn) == {}
    assert_as_if_never_sent(conn, erased, reference)


def test_a_run_during_an_erasure_waits_and_finds_nothing_of_the_person(
    conn: psycopg.Connection, db_url: str
) -> None:
    """The erasure holds every lane of the customer: a run started meanwhile waits, and after the commit
    finds none of the person's pending events to load; the others' it loads."""
    done, pending = person_events()
    others = others_events()
    erased = load(conn, "erased", [], [*done, pending, *others])
    reference = load(conn, "reference", others)
    traced = Person.of(conn, erased, [e.event_id for e in [*done, pending]], ids=("person-v1", "user-42"))
    tenant_hk = bytes(scalar(conn, "SELECT util.tenant_hk(%s)", (erased,)))
    claimed: dict[str, int] = {}
    with psycopg.connect(db_url) as eraser, psycopg.connect(db_url, autocommit=True) as run:
        eraser.execute(
            "SELECT privacy.erase_visitor(%s, 'person-v1', NULL, 'test', 'test')", (tenant_hk,)
        ).fetchone()
        worker = threading.Thread(target=lambda: claimed.update(n=process_all(run, erased)))
        worker.start()
        _wait_for_advisory_lock(conn, run.info.backend_pid)
        eraser.commit()
        worker.join(60)
    assert claimed["n"] == len(others)
    assert traced.traces(conn) == {}
    assert_as_if_never_sent(conn, erased, reference)


# Random histories: a few visitors over three days (sessions split and merge, local days differ from
# UTC days), client sessions some visitors share, a user id on some events, a bot.
BASE = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=3)
STEP = timedelta(minutes=5)
TICKS = int(timedelta(days=3) / STEP)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
AGENTS = (DESKTOP, DESKTOP, IPHONE, GOOGLEBOT)
IPS = ("203.0.113.7", "198.51.100.2")


def visitor_of(event: Event) -> tuple[str, ...]:
    """Who an event's visitor is, as staging tells them apart: the id sent, else address and browser."""
    if event.visitor_id is not None and event.visitor_id.strip():
        return ("sent", event.visitor_id.strip().lower())
    return ("derived", event.client_ip, event.user_agent)


@st.composite
def histories(draw: st.DrawFn) -> tuple[str, list[Event], list[Event], str]:
    """A time zone, events stored and processed, events stored after, and whom to erase."""
    n = draw(st.integers(4, 24))
    ticks = draw(st.lists(st.integers(0, TICKS - 1), min_size=n, max_size=n, unique=True))
    events = [
        Event(
            event_id=f"ev{i:03}",
            at=BASE + tick * STEP,
            visitor_id=draw(st.sampled_from(("v0", "V0", "v1", "v2", None, None))),
            session_id=draw(st.sampled_from((None, None, None, "s0", "s1"))),
            page=draw(st.sampled_from(("/", "/a", "/b?utm_source=news&utm_campaign=fall", "/c", None))),
            event_type=draw(st.sampled_from(("page_view", "page_view", "click"))),
            user_agent=draw(st.sampled_from(AGENTS)),
            client_ip=draw(st.sampled_from(IPS)),
            user_id=draw(st.sampled_from((None, None, "u0", "u1"))),
            referrer=draw(st.sampled_from((None, "https://www.google.com/search?q=x", "https://t.co/x"))),
        )
        for i, tick in enumerate(ticks)
    ]
    pending = draw(st.lists(st.sampled_from(events), unique=True, max_size=4))
    processed = [e for e in events if e not in pending]
    whom = draw(st.sampled_from(("visitor:v0", "visitor: V1", "user:u0", "derived", "visitor:nobody")))
    return draw(st.sampled_from(("UTC", "Europe/Berlin", "America/New_York"))), processed, pending, whom


@settings(
    max_examples=25,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=histories())
def test_after_any_history_the_rest_is_as_if_the_person_never_came(
    conn: psycopg.Connection, history: tuple[str, list[Event], list[Event], str]
) -> None:
    """Whatever the person did (shared client sessions, late and merged sessions, several devices, bots,
    events still pending), erasing them leaves the vault, the marts and the counts of a customer that
    only ever got the others' events — also once the events left pending are processed."""
    zone, processed, pending, whom = history
    note(f"zone {zone}, erase {whom}")
    for e in [*processed, *pending]:
        note(f"{e.event_id} {e.at:%m-%d %H:%M} {visitor_of(e)} session={e.session_id} user={e.user_id}")
    erased = new_customer(conn, "erased")
    set_zone(conn, erased, zone)
    ingest_events(conn, erased, processed)
    process_all(conn, erased, limit=7)
    ingest_events(conn, erased, pending)

    kind, _, name = whom.partition(":")
    if kind == "user":
        people = {visitor_of(e) for e in [*processed, *pending] if e.user_id == name}
    elif kind == "derived":
        derived = [e for e in processed if visitor_of(e)[0] == "derived"]
        people = {visitor_of(derived[0])} if derived else set()
        name = (
            scalar(
                conn,
                "SELECT visitor_id FROM staging.site_tracking_events_s"
                " WHERE tenant_hk = util.tenant_hk(%s) AND event_id = %s",
                (erased, derived[0].event_id),
            )
            if derived
            else "anon-0"
        )
    else:
        people = {("sent", name.strip().lower())}
    gone = {e.event_id for e in [*processed, *pending] if visitor_of(e) in people}
    kept = [e for e in [*processed, *pending] if e.event_id not in gone]
    note(f"erased events: {sorted(gone)}")

    reference = new_customer(conn, "reference")
    set_zone(conn, reference, zone)
    ingest_events(conn, reference, kept)
    process_all(conn, reference)

    done = erasure.erase(
        conn,
        bytes(scalar(conn, "SELECT util.tenant_hk(%s)", (erased,))),
        visitor_id=None if kind == "user" else name,
        user_id=name if kind == "user" else None,
        erased_by="test",
        record_source="test",
    )
    assert done.events == len(gone)
    assert raw_rows(conn, erased).keys() == {e.event_id for e in kept}
    process_all(conn, erased)
    assert_as_if_never_sent(conn, erased, reference)
