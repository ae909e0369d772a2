"""The SQL pipeline's enrichment (bots, URLs, referrers, clock skew, odd values) and derived sessions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from tests.helpers.pipeline import CHROME, ingest, track, trigger
from tests.helpers.queries import rows, scalar
from tests.helpers.tenants import Tenant
from tests.helpers.vault import assert_complete, staged

GOOGLEBOT = "Googlebot/2.1 (+http://www.google.com/bot.html)"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1"
)
IPAD = (
    "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1"
)


def iso(moment: datetime) -> str:
    """ISO 8601 text of a moment, as a browser would send it."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- 6. bots and enrichment -----------------------------------------------------------------------------


def test_bot_is_suspicious_but_loaded(conn: psycopg.Connection, tenant: Tenant) -> None:
    """A Googlebot hit is flagged SUSPICIOUS and bot, and still reaches the business layer with the flag."""
    raw_id = track(conn, user_agent=GOOGLEBOT, event_data={"visitor_id": "crawler"}, event_id="bot-1")
    trigger(conn)

    s = staged(conn, raw_id)
    assert (s["validation_status"], s["is_bot"], s["device_type"]) == ("SUSPICIOUS", True, "bot")
    assert "bot user agent" in s["validation_reasons"]
    assert_complete(conn, "bot-1")
    details = rows(conn, "SELECT is_bot, validation_status FROM business.site_event_details_s")
    assert details == [{"is_bot": True, "validation_status": "SUSPICIOUS"}]
    visitor = rows(conn, "SELECT is_bot, device_type FROM business.site_visitor_details_s")
    assert visitor == [{"is_bot": True, "device_type": "bot"}]
    assert scalar(conn, "SELECT is_bot FROM business.site_session_summary_s") is True
    dashboard = rows(conn, "SELECT staging_status, business_status FROM staging.pipeline_dashboard")
    assert dashboard == [{"staging_status": "PROCESSED", "business_status": "✅ Complete Pipeline"}]


def test_user_agent_gives_browser_os_and_device(conn: psycopg.Connection, tenant: Tenant) -> None:
    """Desktop, phone and tablet user agents are told apart, with browser and OS families."""
    agents = {"desktop": CHROME, "mobile": IPHONE, "tablet": IPAD}
    ids = {kind: track(conn, user_agent=ua, event_id=kind) for kind, ua in agents.items()}
    trigger(conn)
    found = {
        kind: (
            staged(conn, raw_id)["device_type"],
            staged(conn, raw_id)["os_family"],
            staged(conn, raw_id)["is_bot"],
        )
        for kind, raw_id in ids.items()
    }
    assert found == {
        "desktop": ("desktop", "Windows", False),
        "mobile": ("mobile", "iOS", False),
        "tablet": ("tablet", "iOS", False),
    }
    assert staged(conn, ids["desktop"])["browser_family"] == "Chrome"
    assert staged(conn, ids["mobile"])["validation_status"] == "VALID"


def test_url_is_normalised_and_utm_decoded(conn: psycopg.Connection, tenant: Tenant) -> None:
    """Scheme and host are lower-cased, the fragment dropped, the path kept, UTM values percent-decoded."""
    raw_id = track(
        conn,
        "HTTPS://Example.COM/Some/Path?utm_source=news%20letter&utm_campaign=black+friday&x=1#frag",
        event_id="url-1",
    )
    trigger(conn)

    s = staged(conn, raw_id)
    assert (
        s["page_url"]
        == "https://example.com/Some/Path?utm_source=news%20letter&utm_campaign=black+friday&x=1"
    )
    assert (s["page_host"], s["page_path"]) == ("example.com", "/Some/Path")
    assert (s["utm_source"], s["utm_campaign"], s["utm_medium"]) == ("news letter", "black friday", None)
    details = rows(conn, "SELECT page_url, utm_source, utm_campaign FROM business.site_event_details_s")
    assert details == [
        {
            "page_url": "https://example.com/Some/Path?utm_source=news%20letter&utm_campaign=black+friday&x=1",
            "utm_source": "news letter",
            "utm_campaign": "black friday",
        }
    ]
    page = "SELECT site_page_bk FROM business.site_page_h WHERE site_page_bk <> '(no page)'"
    assert scalar(conn, page) == "https://example.com/Some/Path"
    summary = rows(conn, "SELECT utm_source, utm_campaign, entry_page FROM business.site_session_summary_s")
    assert summary[0]["utm_source"] == "news letter"
    assert summary[0]["entry_page"] == s["page_url"]


def test_referrer_classes(conn: psycopg.Connection, tenant: Tenant) -> None:
    """Referrers are classed direct, search, social, internal or other."""
    referrers = {
        "direct": None,
        "search": "https://www.google.com/search",
        "social": "https://t.co/x",
        "internal": "https://example.com/previous",
        "other": "https://blog.example.org",
    }
    ids = {
        expected: track(
            conn,
            "https://example.com/landing",
            event_data={} if referrer is None else {"referrer": referrer},
            event_id=f"ref-{expected}",
        )
        for expected, referrer in referrers.items()
    }
    trigger(conn)
    assert {expected: staged(conn, raw_id)["referrer_class"] for expected, raw_id in ids.items()} == {
        k: k for k in referrers
    }
    assert staged(conn, ids["search"])["referrer_host"] == "www.google.com"
    assert staged(conn, ids["other"])["referrer_host"] == "blog.example.org"
    details = dict(
        conn.execute("SELECT referrer_host, referrer_class FROM business.site_event_details_s").fetchall()
    )
    assert details["t.co"] == "social"


def test_known_keys_inside_event_data_are_read_like_top_level(
    conn: psycopg.Connection, tenant: Tenant
) -> None:
    """session_id, visitor_id, user_id, referrer, page_title and timestamp work inside event_data too."""
    moment = datetime.now(UTC) - timedelta(minutes=5)
    known = {
        "session_id": "sess-k",
        "visitor_id": "vis-k",
        "user_id": "user-k",
        "referrer": "https://www.bing.com/search?q=x",
        "page_title": "Known keys",
        "timestamp": iso(moment),
    }
    top, nested = ingest(
        conn,
        [
            {"page_url": "https://example.com/k", **known},
            {"page_url": "https://example.com/k", "event_data": known},
        ],
        ["top-level", "nested"],
    )
    trigger(conn)

    fields = (
        "session_id",
        "visitor_id",
        "user_id",
        "referrer_url",
        "referrer_class",
        "page_title",
        "occurred_at",
        "session_derived",
        "visitor_derived",
        "validation_status",
    )
    expected = {
        "session_id": "sess-k",
        "visitor_id": "vis-k",
        "user_id": "user-k",
        "referrer_url": "https://www.bing.com/search?q=x",
        "referrer_class": "search",
        "page_title": "Known keys",
        "occurred_at": moment.replace(microsecond=moment.microsecond // 1000 * 1000),
        "session_derived": False,
        "visitor_derived": False,
        "validation_status": "VALID",
    }
    for raw_id in (top, nested):
        s = staged(conn, raw_id)
        assert {f: s[f] for f in fields} == expected
    assert_complete(conn, "nested")
    assert scalar(conn, "SELECT count(*) FROM business.site_session_h") == 1


def test_top_level_key_wins_over_event_data(conn: psycopg.Connection, tenant: Tenant) -> None:
    """When a known key is given both at the top level and inside event_data, the top level one is used."""
    (raw_id,) = ingest(
        conn,
        [{"page_url": "https://example.com/", "visitor_id": "outer", "event_data": {"visitor_id": "inner"}}],
        ["both"],
    )
    trigger(conn)
    assert staged(conn, raw_id)["visitor_id"] == "outer"


def test_clock_skew_is_corrected(conn: psycopg.Connection, tenant: Tenant) -> None:
    """With sent_at, the event time is the receipt time minus the client's own send delay."""
    client_clock = datetime.now(UTC) - timedelta(hours=3)  # a client clock three hours behind
    skewed = track(
        conn,
        event_data={"timestamp": iso(client_clock), "sent_at": iso(client_clock + timedelta(seconds=10))},
        event_id="skew-iso",
    )
    epoch_ms = int(client_clock.timestamp() * 1000)
    skewed_ms = track(
        conn, event_data={"timestamp": epoch_ms, "sent_at": epoch_ms + 10_000}, event_id="skew-epoch"
    )
    plain = track(conn, event_data={"timestamp": iso(client_clock)}, event_id="no-sent-at")
    bare = track(conn, event_id="no-timestamp")
    trigger(conn)

    for raw_id in (skewed, skewed_ms):
        s = staged(conn, raw_id)
        error = s["occurred_at"] - (s["received_at"] - timedelta(seconds=10))
        assert abs(error) < timedelta(milliseconds=5), error
        assert s["clock_skew_ms"] == pytest.approx(-3 * 3600 * 1000 + 10_000, abs=60_000)
        assert s["validation_status"] == "VALID"
    assert abs(staged(conn, plain)["occurred_at"] - client_clock) < timedelta(milliseconds=1)
    assert staged(conn, bare)["occurred_at"] == staged(conn, bare)["received_at"]
    occurred = scalar(
        conn,
        "SELECT occurred_at FROM business.site_event_details_s WHERE raw_event_id = %s",
        (skewed,),
    )
    assert occurred == staged(conn, skewed)["occurred_at"]


def test_large_and_odd_values_load(conn: psycopg.Connection, tenant: Tenant) -> None:
    """A 10 KB URL and ids with quotes, emoji, backslashes or 5 KB of text load to the business layer."""
    long_url = "https://example.com/" + "a" * 10_240 + "?q=1"
    odd_event_id = 'it\'s "quoted" \\back\\slash 😀 ;--' + "é" * 40
    odd_session = "s'\"\\😀\t" + "x" * 100
    big_visitor = "v'\"\\😀" + "🦄" * 1_250  # ~5 KB of UTF-8
    odd_user = "robert'); DROP TABLE students;--"
    track(
        conn,
        long_url,
        event_data={"session_id": odd_session, "visitor_id": big_visitor, "user_id": odd_user},
        event_id=odd_event_id,
    )
    track(conn, event_data={"visitor_id": big_visitor}, event_id="derived-session")
    res = trigger(conn)["results"]
    assert (res["total_processed"], res["staging_to_business_count"], res["total_error_count"]) == (2, 2, 0)

    assert_complete(conn, odd_event_id)
    assert_complete(conn, "derived-session")
    assert len(big_visitor.encode()) > 5_000
    assert (
        scalar(conn, "SELECT count(*) FROM business.site_event_h WHERE site_event_bk = %s", (odd_event_id,))
        == 1
    )
    assert scalar(conn, "SELECT site_visitor_bk FROM business.site_visitor_h") == big_visitor
    sessions = {r[0] for r in conn.execute("SELECT site_session_bk FROM business.site_session_h").fetchall()}
    assert odd_session in sessions
    assert len(sessions) == 2
    assert (
        scalar(conn, "SELECT site_page_bk FROM business.site_page_h WHERE length(site_page_bk) > 10000")
        == (long_url.split("?")[0])
    )
    details = rows(
        conn,
        "SELECT page_url, user_id FROM business.site_event_details_s d "
        "JOIN business.site_event_h h USING (site_event_hk) WHERE h.site_event_bk = %s",
        (odd_event_id,),
    )
    assert details == [{"page_url": long_url, "user_id": odd_user}]


# --- 7. sessions ----------------------------------------------------------------------------------------


def visit(
    conn: psycopg.Connection,
    at: datetime,
    page: str,
    event_id: str,
    visitor: str | None = "visitor-s",
    event_type: str = "page_view",
    **kwargs: Any,
) -> int:
    """Track one event of a visitor at a client time, with no session id."""
    data: dict[str, Any] = {"timestamp": iso(at)}
    if visitor is not None:
        data["visitor_id"] = visitor
    return track(
        conn,
        f"https://example.com{page}",
        event_type=event_type,
        event_data=data,
        event_id=event_id,
        **kwargs,
    )


def session_of(conn: psycopg.Connection, event_id: str) -> str:
    """The session id an event was given in staging."""
    return str(
        scalar(conn, "SELECT session_id FROM staging.site_tracking_events_s WHERE event_id = %s", (event_id,))
    )


def summaries(conn: psycopg.Connection, event_id: str) -> list[dict[str, Any]]:
    """Every summary row of the session of an event, oldest first."""
    return rows(
        conn,
        "SELECT x.page_views, x.event_count, x.entry_page, x.exit_page, x.is_bounce, x.duration_seconds, "
        "       x.session_start, x.session_end, x.hash_diff "
        "FROM business.site_session_summary_s x "
        "JOIN staging.site_tracking_events_s s ON s.site_session_hk = x.site_session_hk "
        "WHERE s.event_id = %s ORDER BY x.load_date",
        (event_id,),
    )


def summary_view(row: dict[str, Any]) -> tuple[Any, ...]:
    """The user-visible figures of a summary row."""
    return (
        row["page_views"],
        row["event_count"],
        row["entry_page"],
        row["exit_page"],
        row["is_bounce"],
        row["duration_seconds"],
    )


def test_derived_sessions_follow_thirty_minutes_of_inactivity(
    conn: psycopg.Connection, tenant: Tenant
) -> None:
    """Events up to 30 minutes apart share a derived session, longer gaps start one, later batches go on."""
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    # out of order within the batch: the later page arrives first
    visit(conn, t0 + timedelta(minutes=10), "/b", "a2")
    visit(conn, t0, "/a", "a1")
    visit(conn, t0 + timedelta(minutes=5), "/a", "a-click", event_type="click")
    visit(conn, t0 + timedelta(minutes=50), "/c", "b1")
    trigger(conn)

    assert session_of(conn, "a1") == session_of(conn, "a2") == session_of(conn, "a-click")
    assert session_of(conn, "b1") != session_of(conn, "a1")
    assert staged(conn, visit_id(conn, "a1"))["session_derived"] is True
    assert summary_view(summaries(conn, "a1")[-1]) == (
        2,
        3,
        "https://example.com/a",
        "https://example.com/b",
        False,
        600,
    )
    assert summary_view(summaries(conn, "b1")[-1]) == (
        1,
        1,
        "https://example.com/c",
        "https://example.com/c",
        True,
        0,
    )
    assert scalar(conn, "SELECT count(*) FROM business.site_session_h") == 2
    assert scalar(conn, "SELECT count(*) FROM business.site_session_visitor_l") == 2

    # a later batch, 5 minutes after the last event: the open session goes on
    visit(conn, t0 + timedelta(minutes=55), "/d", "b2")
    trigger(conn)
    assert session_of(conn, "b2") == session_of(conn, "b1")
    assert scalar(conn, "SELECT count(*) FROM business.site_session_h") == 2
    history = summaries(conn, "b2")
    assert len(history) == 2
    assert history[0]["hash_diff"] != history[1]["hash_diff"]
    assert summary_view(history[-1]) == (2, 2, "https://example.com/c", "https://example.com/d", False, 300)
    assert len(summaries(conn, "a1")) == 1

    # a visit 31 minutes after that is a new session
    visit(conn, t0 + timedelta(minutes=86), "/e", "c1")
    trigger(conn)
    assert session_of(conn, "c1") not in (session_of(conn, "a1"), session_of(conn, "b1"))
    assert scalar(conn, "SELECT count(*) FROM business.site_session_h") == 3


def visit_id(conn: psycopg.Connection, event_id: str) -> int:
    """raw_event_id of an event."""
    return int(
        scalar(conn, "SELECT raw_event_id FROM raw.site_tracking_events_r WHERE event_id = %s", (event_id,))
    )


def test_session_summary_changes_only_with_its_content(conn: psycopg.Connection, tenant: Tenant) -> None:
    """A summary row is added when a session changes, and re-processing unchanged sessions adds none."""
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    visit(conn, t0, "/one", "e1")
    visit(conn, t0, "/solo", "other-visitor", visitor="someone-else")
    trigger(conn)
    assert len(summaries(conn, "e1")) == 1
    assert len(summaries(conn, "other-visitor")) == 1

    visit(conn, t0 + timedelta(minutes=1), "/two", "e2")
    trigger(conn)
    assert [summary_view(r) for r in summaries(conn, "e1")] == [
        (1, 1, "https://example.com/one", "https://example.com/one", True, 0),
        (2, 2, "https://example.com/one", "https://example.com/two", False, 60),
    ]
    assert len(summaries(conn, "other-visitor")) == 1

    # load every staged event to the business layer again: nothing changed, nothing added
    counts = {
        table: scalar(conn, f"SELECT count(*) FROM business.{table}")
        for table in (
            "site_session_summary_s",
            "site_visitor_details_s",
            "site_page_details_s",
            "site_event_details_s",
        )
    }
    ids = [r[0] for r in conn.execute("SELECT raw_event_id FROM staging.site_tracking_events_s").fetchall()]
    assert scalar(conn, "SELECT staging.load_business(%s)", (ids,)) == 0
    assert {table: scalar(conn, f"SELECT count(*) FROM business.{table}") for table in counts} == counts


def test_visitor_without_id_is_derived_from_ip_and_user_agent(
    conn: psycopg.Connection, tenant: Tenant
) -> None:
    """Events without visitor_id from the same IP and user agent belong to one derived visitor and session."""
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    visit(conn, t0, "/x", "anon-1", visitor=None, client_ip="198.51.100.1")
    visit(conn, t0 + timedelta(minutes=2), "/y", "anon-2", visitor=None, client_ip="198.51.100.1")
    visit(conn, t0, "/x", "anon-other-ip", visitor=None, client_ip="198.51.100.2")
    visit(conn, t0, "/x", "anon-other-ua", visitor=None, client_ip="198.51.100.1", user_agent=IPHONE)
    trigger(conn)

    first = staged(conn, visit_id(conn, "anon-1"))
    second = staged(conn, visit_id(conn, "anon-2"))
    assert first["visitor_derived"] is True
    assert first["visitor_id"] == second["visitor_id"]
    assert first["session_id"] == second["session_id"]
    assert "198.51.100.1" not in first["visitor_id"]
    assert staged(conn, visit_id(conn, "anon-other-ip"))["visitor_id"] != first["visitor_id"]
    assert staged(conn, visit_id(conn, "anon-other-ua"))["visitor_id"] != first["visitor_id"]
    assert scalar(conn, "SELECT count(*) FROM business.site_visitor_h") == 3
    assert rows(conn, "SELECT DISTINCT is_derived FROM business.site_visitor_details_s") == [
        {"is_derived": True}
    ]


def test_late_event_joins_the_open_session(conn: psycopg.Connection, tenant: Tenant) -> None:
    """An event arriving late but dated inside the visitor's current session joins that session."""
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    visit(conn, t0, "/first", "s1")
    visit(conn, t0 + timedelta(minutes=20), "/last", "s3")
    trigger(conn)
    visit(conn, t0 + timedelta(minutes=10), "/middle", "s2-late")
    trigger(conn)

    assert session_of(conn, "s2-late") == session_of(conn, "s1")
    assert scalar(conn, "SELECT count(*) FROM business.site_session_h") == 1
    latest = summaries(conn, "s1")[-1]
    assert summary_view(latest) == (
        3,
        3,
        "https://example.com/first",
        "https://example.com/last",
        False,
        1200,
    )


def test_late_event_joins_an_earlier_session(conn: psycopg.Connection, tenant: Tenant) -> None:
    """An event arriving late but dated inside an earlier, closed session of the visitor joins it."""
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    visit(conn, t0, "/a", "old-1")
    visit(conn, t0 + timedelta(minutes=10), "/b", "old-2")
    visit(conn, t0 + timedelta(minutes=60), "/c", "new-1")
    trigger(conn)
    visit(conn, t0 + timedelta(minutes=5), "/late", "old-late")
    trigger(conn)

    assert session_of(conn, "old-1") != session_of(conn, "new-1")
    assert session_of(conn, "old-late") == session_of(conn, "old-1")
    assert scalar(conn, "SELECT count(*) FROM business.site_session_h") == 2
    assert summary_view(summaries(conn, "old-1")[-1])[:2] == (3, 3)


def test_late_event_does_not_split_the_open_session(conn: psycopg.Connection, tenant: Tenant) -> None:
    """A late event of an earlier session, batched with a fresh event of the open session, splits nothing."""
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    visit(conn, t0, "/a", "old-1")
    visit(conn, t0 + timedelta(minutes=10), "/b", "old-2")
    visit(conn, t0 + timedelta(minutes=60), "/c", "open-1")
    trigger(conn)
    visit(conn, t0 + timedelta(minutes=5), "/late", "old-late")
    visit(conn, t0 + timedelta(minutes=65), "/d", "open-2")
    trigger(conn)

    assert session_of(conn, "open-2") == session_of(conn, "open-1")
    assert summary_view(summaries(conn, "open-1")[-1])[:2] == (2, 2)
