"""The benchmarks' naive baseline (bench/naive.py) enriches every event exactly as the SQL pipeline does.

The benchmarks compare the service's speed with the baseline's: the ratio only means something if
the baseline does all the work the service does. The same raw events are stored in two databases;
one is processed by the service's pipeline, the other row by row by the baseline; every staging
field both compute is compared, event by event.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from bench import naive
from psycopg.types.json import Jsonb
from tests.helpers.postgres import create_database, drop_database
from tests.helpers.queries import rows

from onevault.auth import store
from onevault.pipeline import useragents
from onevault.pipeline.runner import ALL_LANES
from onevault.pipeline.runner import Q as PIPELINE

CUSTOMER = "one_spa"
RECEIVED = datetime(2025, 3, 14, 9, 26, 53, 589793, tzinfo=UTC)
T0 = RECEIVED - timedelta(hours=4)

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1"
)
IPAD = (
    "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1"
)
ANDROID = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Mobile Safari/537.36"
)
FIREFOX_MAC = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.4; rv:125.0) Gecko/20100101 Firefox/125.0"
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
CURL = "curl/8.5.0"

# Staging columns neither side computes from the event: when the row was written, and when the
# business layer got it (the service marks a row as it stages it, the baseline after loading it).
NOT_COMPARED = {"load_date", "business_loaded_at"}

# Events of one visitor whose times are out of order within one batch (clock skew): the service,
# staging the batch at once, and the baseline, one event at a time, both name their session after
# its earliest event (sessions are derived on the visitor's final timeline, docs/vault.md).
OUT_OF_ORDER = ("skew-ahead", "skew-behind-ms", "sent-only")


def iso(moment: datetime) -> str:
    """ISO 8601 text of a moment, as a browser sends it."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ms(moment: datetime) -> int:
    """Epoch milliseconds of a moment."""
    return int(moment.timestamp() * 1000)


@dataclass
class Event:
    """One event as stored in the raw layer."""

    event_id: str
    payload: dict[str, Any]
    user_agent: str | None = CHROME
    client_ip: str | None = "203.0.113.7"
    received: datetime = RECEIVED


def page(url: str, **data: Any) -> dict[str, Any]:
    """A page view of `url` with `data` as event_data."""
    return {"event_type": "page_view", "page_url": url, "event_data": data}


def visit(visitor: str, minutes: float) -> dict[str, Any]:
    """A page view of `visitor`, without session, `minutes` after T0."""
    moment = T0 + timedelta(minutes=minutes)
    return page(f"https://shop.example/p/{minutes}", visitor_id=visitor, timestamp=iso(moment))


FIRST_ROUND = [
    # URL parts and UTM fields, percent-encoded, '+' as space, emoji, a port, user info, a fragment
    Event(
        "utm-encoded",
        page(
            "https://Shop.Example:8443/Landing/Spring?utm_source=news%20letter&utm_medium=e%2Dmail"
            "&utm_campaign=spring+sale&utm_term=caf%C3%A9&utm_content=%F0%9F%8E%89#top",
            visitor_id="v-utm",
            session_id="s-utm",
            page_title="Spring",
            user_id="u-1",
            language="en_us",
            screen_width=1920,
            screen_height=1080.5,
            viewport_width=True,
            viewport_height="720",
        ),
    ),
    Event(
        "utm-odd",
        page(
            "https://shop.example/?utm_source=a&utm_source=b&utm_medium=&utm_campaign"
            "&utm_term=%FF%FE&utm_content=100%25+%e2%82%ac%zz",
            visitor_id="v-utm",
            session_id="s-utm",
            language="zh-hant-tw",
        ),
    ),
    Event(
        "utm-nul",
        page("https://shop.example/x?utm_source=%00&xutm_medium=no", visitor_id="v-utm", language="no tag"),
    ),
    Event("userinfo", page("  HTTPS://user:secret@WWW.Shop.Example:443?utm_source=Mail  ", visitor_id="v-1")),
    Event("ipv6", page("http://[2001:db8::1]:8080/a//b/?q#frag", visitor_id="v-1")),
    Event("no-path-fragment", page("https://shop.example#section", visitor_id="v-1")),
    # referrers of every class
    Event(
        "ref-search",
        page("https://shop.example/", visitor_id="v-2", referrer="https://www.google.co.uk/search?q=spa"),
    ),
    Event("ref-brave", page("https://shop.example/", visitor_id="v-2", referrer="https://search.brave.com/")),
    Event("ref-social", page("https://shop.example/", visitor_id="v-2", referrer="https://m.facebook.com/x")),
    Event(
        "ref-hn", page("https://shop.example/", visitor_id="v-2", referrer="https://news.ycombinator.com/")
    ),
    Event("ref-tco", page("https://shop.example/", visitor_id="v-2", referrer="https://t.co/abc")),
    Event(
        "ref-internal", page("https://Shop.Example/b", visitor_id="v-2", referrer="https://shop.example/a")
    ),
    Event(
        "ref-other", page("https://shop.example/", visitor_id="v-2", referrer="https://blog.partner.org/p?1")
    ),
    Event("ref-invalid", page("https://shop.example/", visitor_id="v-2", referrer="android-app://com.x")),
    Event("ref-direct", page("https://shop.example/", visitor_id="v-2", referrer="")),
    # user agents: desktop, mobile, tablet, bots, none, empty
    Event("ua-iphone", page("https://shop.example/m", visitor_id="v-3"), user_agent=IPHONE),
    Event("ua-android", page("https://shop.example/m", visitor_id="v-3"), user_agent=ANDROID),
    Event("ua-ipad", page("https://shop.example/m", visitor_id="v-3"), user_agent=IPAD),
    Event("ua-firefox", page("https://shop.example/m", visitor_id="v-3"), user_agent=FIREFOX_MAC),
    Event("ua-googlebot", page("https://shop.example/m", visitor_id="v-3"), user_agent=GOOGLEBOT),
    Event("ua-curl", page("https://shop.example/m"), user_agent=CURL, client_ip="198.51.100.1"),
    Event("ua-none", page("https://shop.example/m", visitor_id="v-3"), user_agent=None),
    Event("ua-empty", page("https://shop.example/m"), user_agent="", client_ip=None),
    # missing and odd fields
    Event("empty-payload", {}, user_agent=None, client_ip=None),
    Event("only-data", {"event_data": {"event_type": "signup", "page_url": "https://shop.example/join"}}),
    Event(
        "top-level-wins",
        {
            "event_type": "click",
            "page_url": "https://shop.example/top",
            "visitor_id": None,
            "event_data": {"event_type": "view", "page_url": "https://x.example/", "visitor_id": "v-4"},
        },
    ),
    Event("odd-types", page("https://shop.example/", visitor_id=7, user_id=42, page_title=True)),
    Event("data-null", {"page_url": "https://shop.example/", "event_data": None}),
    Event("data-list", {"page_url": "https://shop.example/", "event_data": [1, 2]}),
    # invalid URLs and event types
    Event("url-text", page("not a url", visitor_id="v-5")),
    Event("url-ftp", page("ftp://files.example/x", visitor_id="v-5")),
    Event("url-space", page("https://exa mple.com/a", visitor_id="v-5")),
    Event("url-no-host", page("https:///path", visitor_id="v-5")),
    Event("url-number", {"page_url": 12, "visitor_id": "v-5"}),
    Event("type-spaces", {"event_type": "bad type!", "page_url": "https://shop.example/"}),
    Event("type-empty", {"event_type": "", "page_url": "https://shop.example/"}),
    Event("type-newline", {"event_type": "click\n", "page_url": "https://shop.example/"}),
    Event("type-long", {"event_type": "x" * 65, "page_url": "https://shop.example/"}),
    # client time: clock skew with sent_at, epoch milliseconds, unreadable, future, old, before 2000
    Event(
        "skew-ahead",
        page(
            "https://shop.example/",
            visitor_id="v-6",
            timestamp=iso(RECEIVED + timedelta(minutes=2, seconds=-5)),
            sent_at=iso(RECEIVED + timedelta(minutes=2)),
        ),
    ),
    Event(
        "skew-behind-ms",
        page(
            "https://shop.example/",
            visitor_id="v-6",
            timestamp=ms(RECEIVED - timedelta(hours=3, seconds=7)),
            sent_at=ms(RECEIVED - timedelta(hours=3)),
        ),
    ),
    Event(
        "skew-half",
        page("https://shop.example/", visitor_id="v-7", sent_at=iso(RECEIVED)),
        received=RECEIVED.replace(microsecond=589_500),
    ),
    Event(
        "offset", page("https://shop.example/", visitor_id="v-6", timestamp="2025-03-14T08:00:00.250+02:00")
    ),
    Event("sent-only", page("https://shop.example/", visitor_id="v-6", sent_at=iso(RECEIVED))),
    Event("ts-text", page("https://shop.example/", visitor_id="v-6", timestamp="yesterday")),
    Event("ts-bad-date", page("https://shop.example/", visitor_id="v-6", timestamp="2025-13-45T00:00:00Z")),
    Event("ts-bool", page("https://shop.example/", visitor_id="v-6", timestamp=True)),
    Event("ts-huge", page("https://shop.example/", visitor_id="v-6", timestamp=10**15)),
    Event("sent-bad", page("https://shop.example/", visitor_id="v-6", sent_at="soon")),
    Event(
        "ts-future", page("https://shop.example/", visitor_id="v-6", timestamp=iso(RECEIVED + timedelta(2)))
    ),
    Event("ts-old", page("https://shop.example/", visitor_id="v-6", timestamp=iso(RECEIVED - timedelta(40)))),
    Event("ts-1999", page("https://shop.example/", visitor_id="v-6", timestamp="1999-12-31T23:59:59Z")),
    # one visitor's sessions: 30-minute gaps, exactly 30 minutes, a client session in between
    Event("gap-0", visit("v-gap", 0)),
    Event("gap-10", visit("v-gap", 10)),
    Event("gap-25", visit("v-gap", 25)),
    Event("gap-60", visit("v-gap", 60)),
    Event("gap-client", visit("v-gap", 62) | {"session_id": "client-session"}),
    Event("gap-70", visit("v-gap", 70)),
    Event("gap-105", visit("v-gap", 105)),
    Event("gap-135", visit("v-gap", 135)),
    Event("gap-invalid", visit("v-gap", 136) | {"event_type": "bad type"}),
    # an anonymous visitor (derived from IP and user agent) across a gap
    Event("anon-0", page("https://shop.example/a"), client_ip="192.0.2.50", received=T0),
    Event(
        "anon-5", page("https://shop.example/b"), client_ip="192.0.2.50", received=T0 + timedelta(minutes=5)
    ),
    Event(
        "anon-50", page("https://shop.example/c"), client_ip="192.0.2.50", received=T0 + timedelta(minutes=50)
    ),
]

# Processed after the first round: a late event closing the gap between two sessions (they merge),
# one continuing a session across batches, and one starting a new session.
SECOND_ROUND = [
    Event("late-40", visit("v-gap", 40)),
    Event("late-125", visit("v-gap", 125)),
    Event("next-140", visit("v-gap", 140)),
    Event("next-200", visit("v-gap", 200)),
    Event(
        "anon-70", page("https://shop.example/d"), client_ip="192.0.2.50", received=T0 + timedelta(minutes=70)
    ),
]


@pytest.fixture
def naive_db_url(pg_url: str, template_db: str) -> Iterator[str]:
    """A second fresh database, processed by the baseline."""
    url = create_database(pg_url, template_db)
    yield url
    drop_database(pg_url, url)


def store_raw(conn: psycopg.Connection, events: list[Event]) -> list[int]:
    """Store events in the raw layer as the service does; their raw_event_ids in order."""
    found = conn.execute(
        "SELECT raw_event_id FROM raw.ingest_site_events("
        " array_fill(util.tenant_hk(%s), ARRAY[%s]), %s::text[], %s::jsonb[], %s::text[], %s::inet[],"
        " %s::timestamptz[], array_fill('test:naive'::text, ARRAY[%s])) ORDER BY ord",
        (
            CUSTOMER,
            len(events),
            [e.event_id for e in events],
            [Jsonb(e.payload) for e in events],
            [e.user_agent for e in events],
            [e.client_ip for e in events],
            [e.received for e in events],
            len(events),
        ),
    ).fetchall()
    return [int(r[0]) for r in found]


def process_as_service(conn: psycopg.Connection) -> None:
    """What background processing does until nothing is due: parse new user agents, then one batch."""
    params = {"customer_id": CUSTOMER, "batch_size": 1000, "lanes": list(ALL_LANES)}
    for _ in range(10):
        with conn.transaction():
            agents = [r[0] for r in conn.execute(PIPELINE["unparsed_user_agents"], params)]
            if agents:
                conn.execute(PIPELINE["save_user_agents"], useragents.save_parameters(agents))
        with conn.transaction():
            row = conn.execute(
                PIPELINE["auto_process"], params | {"wait": False, "refresh_marts": True}
            ).fetchone()
        assert row is not None
        if not row[0].get("processed"):
            return
    pytest.fail("the pipeline still had events due after 10 runs")


def process_as_baseline(conn: psycopg.Connection, raw_ids: list[int]) -> None:
    """What the baseline's background task does: each event row by row, one transaction each."""
    for raw_event_id in raw_ids:
        with conn.transaction():
            naive.process_event(conn, raw_event_id)


def staging_rows(conn: psycopg.Connection) -> dict[str, dict[str, Any]]:
    """Every staging row by event id, without the columns that are not the event's enrichment."""
    found = rows(conn, "SELECT * FROM staging.site_tracking_events_s")
    return {r["event_id"]: {k: v for k, v in r.items() if k not in NOT_COMPARED} for r in found}


def session_members(staged: dict[str, dict[str, Any]]) -> dict[str, frozenset[str]]:
    """For each event in a derived session, the events sharing that session."""
    members: dict[str, set[str]] = {}
    for event_id, row in staged.items():
        if row["session_derived"]:
            members.setdefault(row["session_id"], set()).add(event_id)
    return {e: frozenset(m) for m in members.values() for e in m}


def differences(ours: dict[str, dict[str, Any]], theirs: dict[str, dict[str, Any]]) -> list[tuple[Any, ...]]:
    """(event, column, service, baseline) of every value that differs, but for the known differences."""
    found = []
    for event_id, row in sorted(ours.items()):
        for column, value in row.items():
            other = theirs[event_id][column]
            if other == value:
                continue
            if column == "page_path" and row["page_url"] is None and (value, other) == ("/", None):
                # The service writes the path '/' for an event without (valid) page URL, a value
                # nothing reads: the baseline leaves it empty, as the page URL and host are.
                continue
            found.append((event_id, column, value, other))
    return found


def test_baseline_enriches_every_event_as_the_service_does(
    conn: psycopg.Connection, naive_db_url: str
) -> None:
    """Every staging field of every event is the same whether the service or the baseline staged it."""
    with psycopg.connect(naive_db_url, autocommit=True) as baseline:
        for db in (conn, baseline):
            store.create_tenant(db, CUSTOMER)
        for events in (FIRST_ROUND, SECOND_ROUND):
            service_ids = store_raw(conn, events)
            baseline_ids = store_raw(baseline, events)
            assert service_ids == baseline_ids
            process_as_service(conn)
            process_as_baseline(baseline, baseline_ids)

        ours, theirs = staging_rows(conn), staging_rows(baseline)
        pending = [
            rows(db, "SELECT event_id FROM raw.site_tracking_events_r WHERE processing_status <> 'PROCESSED'")
            for db in (conn, baseline)
        ]

    assert pending == [[], []]
    expected = {e.event_id for e in FIRST_ROUND + SECOND_ROUND}
    assert set(ours) == expected
    assert set(theirs) == expected
    different = differences(ours, theirs)
    assert different == [], "(event, column, service, baseline):\n" + "\n".join(map(repr, different))
    assert session_members(ours) == session_members(theirs)
    # skew-behind-ms, processed second, is the earliest: 7 seconds before receipt.
    skewed = {side[e]["session_id"] for side in (ours, theirs) for e in OUT_OF_ORDER}
    assert skewed == {"v-6@" + iso(RECEIVED - timedelta(seconds=7))}

    # The event set reaches what it is meant to: a test where both sides computed nothing would pass too.
    assert {r["validation_status"] for r in ours.values()} == {"VALID", "SUSPICIOUS", "INVALID"}
    assert {r["referrer_class"] for r in ours.values()} == {"direct", "internal", "search", "social", "other"}
    assert {r["device_type"] for r in ours.values()} == {"desktop", "mobile", "tablet", "bot"}
    assert ours["utm-encoded"]["utm_term"] == "café"
    sizes = ("screen_width", "screen_height", "viewport_width", "viewport_height")
    assert [ours["utm-encoded"][s] for s in sizes] == [1920, 1081, None, None]
    languages = [ours[e]["language"] for e in ("utm-encoded", "utm-odd", "utm-nul")]
    assert languages == ["en-US", "zh-Hant-TW", None]
    # Client times carry milliseconds, the receipt microseconds: 2 minutes ahead less 0.793 ms.
    assert ours["skew-ahead"]["clock_skew_ms"] == 119_999
    assert ours["skew-half"]["clock_skew_ms"] == -1
    gap = {k: ours[k]["session_id"] for k in ours if k.startswith(("gap-", "late-", "next-"))}
    assert len(set(gap.values()) - {None, "client-session"}) == 3, gap
    # late-40 is within 30 minutes of gap-25 and gap-60: their sessions merge, named after gap-0.
    assert gap["gap-0"] == gap["late-40"] == gap["gap-60"] == gap["gap-70"] == "v-gap@" + iso(T0)
    assert gap["gap-105"] == gap["gap-135"] == gap["late-125"] == gap["next-140"] != gap["next-200"]
    assert len({ours[k]["session_id"] for k in ("anon-0", "anon-5", "anon-50", "anon-70")}) == 2


def test_baseline_stores_each_event_id_once(naive_db_url: str) -> None:
    """The baseline's single-row insert is idempotent by the service's key table: a copy finds the event."""
    with psycopg.connect(naive_db_url, autocommit=True) as db:
        store.create_tenant(db, CUSTOMER)
        tenant_hk = rows(db, "SELECT util.tenant_hk(%s) AS hk", (CUSTOMER,))[0]["hk"]
        first = naive.store_event(
            db, tenant_hk, "evt-1", {"page_url": "https://a.test/"}, "ua", "203.0.113.7"
        )
        again = naive.store_event(
            db, tenant_hk, "evt-1", {"page_url": "https://a.test/"}, "ua", "203.0.113.7"
        )
        assert again == first
        stored = rows(db, "SELECT count(*) AS n FROM raw.site_tracking_events_r WHERE event_id = 'evt-1'")
        assert stored[0]["n"] == 1
