"""The tracker in a real browser: a shop's pages on 127.0.0.2 send events to the service on 127.0.0.1."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from playwright.sync_api import Request, Route

from tests.helpers.browser import BrowserPage
from tests.helpers.cli import Cli
from tests.helpers.queries import rows, scalar
from tests.helpers.secrets import occurrences
from tests.helpers.servers import LiveServer
from tests.helpers.site import OUTBOUND_URL, StaticSite, shop_pages, snippet
from tests.helpers.tenants import Tenant, make_tenant
from tests.helpers.vault import assert_complete, raw_count

CUSTOMER = "one_spa"
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
# Background processing sweeps every 2 s; a slow shared machine gets plenty of slack.
WAIT_SECONDS = 30.0
SEARCH_REFERRER = "http://search.example.com/results?q=shop"


@pytest.fixture
def server_settings() -> dict[str, Any]:
    """No auth cache: a change of the customer's allowed origins applies to the next request."""
    return {"auth_cache_seconds": 0}


@dataclass(frozen=True)
class Shop:
    """A customer's site with the snippet, the customer's `track` token, and the `onevault` command."""

    site: StaticSite
    tenant: Tenant
    cli: Cli

    def allow_origin(self, origin: str) -> None:
        """`onevault tenant allow-origin one_spa ORIGIN`."""
        result = self.cli("tenant", "allow-origin", CUSTOMER, origin)
        assert result.exit_code == 0, result.output


@pytest.fixture
def shop(
    conn: psycopg.Connection, db_url: str, live_server: LiveServer, cli_for: Callable[[str], Cli]
) -> Iterator[Shop]:
    """The shop on 127.0.0.2 with the snippet of the service on 127.0.0.1 and a `track`-only token."""
    tenant = make_tenant(conn, CUSTOMER, ("track",))
    with StaticSite(shop_pages(snippet(live_server.url, tenant.customer_id, tenant.token))) as site:
        yield Shop(site, tenant, cli_for(db_url))


@pytest.fixture
def allowed_shop(shop: Shop) -> Shop:
    """The shop, its origin being the customer's one allowed origin (as the README advises)."""
    shop.allow_origin(shop.site.origin)
    return shop


def wait_for_raw(conn: psycopg.Connection, event_type: str, count: int = 1) -> list[dict[str, Any]]:
    """The first `count` raw events of `event_type` (in arrival order), once the service has stored them."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        found = rows(
            conn,
            "SELECT raw_event_id, event_id, raw_payload, user_agent FROM raw.site_tracking_events_r "
            "WHERE raw_payload->>'event_type' = %s ORDER BY raw_event_id",
            (event_type,),
        )
        if len(found) >= count:
            return found[:count]
        if time.monotonic() > deadline:
            stored = rows(conn, "SELECT raw_payload FROM raw.site_tracking_events_r ORDER BY raw_event_id")
            pytest.fail(f"{count} {event_type!r} events not stored in {WAIT_SECONDS} s; raw holds {stored}")
        time.sleep(0.1)


def wait_for_vault(conn: psycopg.Connection, event_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The staging rows and business details of these events, once background processing loaded them."""
    query = """
        SELECT s.event_id, s.validation_status, s.validation_reasons, s.event_type, s.page_url, s.page_title,
               s.referrer_url, s.language, s.screen_width, s.screen_height, s.viewport_width,
               s.viewport_height, s.is_bot, s.browser_family, s.occurred_at, s.received_at,
               s.event_properties, d.page_url AS details_page_url, d.language AS details_language,
               d.viewport_width AS details_viewport_width, d.viewport_height AS details_viewport_height,
               d.screen_width AS details_screen_width, d.screen_height AS details_screen_height,
               d.event_properties AS details_properties
        FROM staging.site_tracking_events_s s
        JOIN business.site_event_h h ON h.site_event_hk = s.site_event_hk
        JOIN business.site_event_details_s d ON d.site_event_hk = s.site_event_hk
        WHERE s.event_id = ANY(%s) AND s.business_loaded_at IS NOT NULL
    """
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        found = {r["event_id"]: r for r in rows(conn, query, (event_ids,))}
        if len(found) == len(set(event_ids)):
            for event_id in event_ids:
                assert_complete(conn, event_id)
            return found
        if time.monotonic() > deadline:
            staged = rows(
                conn,
                "SELECT event_id, validation_status, validation_reasons, business_loaded_at "
                "FROM staging.site_tracking_events_s ORDER BY raw_event_id",
            )
            pytest.fail(f"events {event_ids} not in the business layer in {WAIT_SECONDS} s; staged {staged}")
        time.sleep(0.2)


def assert_quiet(browser: BrowserPage) -> None:
    """Nothing went to the console as an error or warning, and no error escaped into the page."""
    assert browser.console_errors() == []


def test_page_view_on_load_reaches_raw_and_the_vault(
    conn: psycopg.Connection, allowed_shop: Shop, browser_page: BrowserPage
) -> None:
    """Loading a page sends one page_view with the page, the visitor's browser and timing; it is processed."""
    page = browser_page.page
    before = time.time() * 1000
    page.goto(allowed_shop.site.url("/"), referer=SEARCH_REFERRER)
    referrer = page.evaluate("document.referrer")
    assert referrer.startswith("http://search.example.com/")

    [event] = wait_for_raw(conn, "page_view")
    payload = event["raw_payload"]
    assert payload["page_url"] == allowed_shop.site.url("/")
    assert payload["page_title"] == "Home – Test shop"
    assert payload["referrer"] == referrer
    assert payload["language"] == "en-US"
    assert (payload["viewport_width"], payload["viewport_height"]) == (1280, 800)
    assert (payload["screen_width"], payload["screen_height"]) == (1920, 1080)
    assert UUID_RE.fullmatch(payload["event_id"])
    assert event["event_id"] == payload["event_id"]
    assert before <= payload["timestamp"] <= payload["sent_at"] <= time.time() * 1000
    assert "HeadlessChrome" not in event["user_agent"]
    assert event["user_agent"] == page.evaluate("navigator.userAgent")

    vault = wait_for_vault(conn, [event["event_id"]])[event["event_id"]]
    assert vault["validation_status"] == "VALID", vault["validation_reasons"]
    assert vault["event_type"] == "page_view"
    assert vault["page_url"] == vault["details_page_url"] == allowed_shop.site.url("/")
    assert vault["page_title"] == "Home – Test shop"
    assert vault["referrer_url"] == referrer
    assert vault["language"] == vault["details_language"] == "en-US"
    assert (vault["viewport_width"], vault["viewport_height"]) == (1280, 800)
    assert (vault["details_viewport_width"], vault["details_viewport_height"]) == (1280, 800)
    assert (vault["screen_width"], vault["screen_height"]) == (1920, 1080)
    assert (vault["details_screen_width"], vault["details_screen_height"]) == (1920, 1080)
    assert vault["is_bot"] is False
    assert vault["browser_family"] == "Chrome"
    assert abs((vault["received_at"] - vault["occurred_at"]).total_seconds()) < 5

    page.wait_for_timeout(1000)
    assert raw_count(conn) == 1, "one page load, one event"
    assert page.context.cookies() == [], "the tracker sets no cookies"
    assert_quiet(browser_page)


def test_spa_navigation_is_a_page_view_with_the_new_url(
    conn: psycopg.Connection, allowed_shop: Shop, browser_page: BrowserPage
) -> None:
    """history.pushState, then Back (popstate), each send a page_view of the new URL without a reload."""
    page = browser_page.page
    page.goto(allowed_shop.site.url("/"))
    wait_for_raw(conn, "page_view")
    page.click("#spa")
    assert page.url == allowed_shop.site.url("/pricing?plan=pro")
    first, pushed = wait_for_raw(conn, "page_view", 2)
    assert pushed["raw_payload"]["page_url"] == allowed_shop.site.url("/pricing?plan=pro")
    assert pushed["raw_payload"]["page_title"] == "Pricing – Test shop"
    assert pushed["event_id"] != first["event_id"]
    page.go_back()
    *_, back = wait_for_raw(conn, "page_view", 3)
    assert back["raw_payload"]["page_url"] == allowed_shop.site.url("/")

    vault = wait_for_vault(conn, [first["event_id"], pushed["event_id"], back["event_id"]])
    assert vault[pushed["event_id"]]["page_url"] == allowed_shop.site.url("/pricing?plan=pro")
    assert all(v["validation_status"] == "VALID" for v in vault.values())
    page.wait_for_timeout(1000)
    assert raw_count(conn) == 3, "no page view but the load, the push and the Back"
    assert_quiet(browser_page)


def test_custom_event_with_properties(
    conn: psycopg.Connection, allowed_shop: Shop, browser_page: BrowserPage
) -> None:
    """window.onevault.track('signup', {plan: 'pro'}) stores the event with its properties in event_data."""
    page = browser_page.page
    page.goto(allowed_shop.site.url("/"))
    wait_for_raw(conn, "page_view")
    page.click("#signup")
    [event] = wait_for_raw(conn, "signup")
    payload = event["raw_payload"]
    assert payload["event_data"] == {"plan": "pro"}
    assert payload["page_url"] == allowed_shop.site.url("/")
    assert UUID_RE.fullmatch(event["event_id"])

    vault = wait_for_vault(conn, [event["event_id"]])[event["event_id"]]
    assert vault["event_type"] == "signup"
    assert vault["validation_status"] == "VALID", vault["validation_reasons"]
    assert vault["details_properties"]["plan"] == "pro"
    signups = "SELECT count(*) FROM business.site_event_details_s WHERE event_properties->>'plan' = 'pro'"
    assert scalar(conn, signups) == 1
    assert_quiet(browser_page)


def test_outbound_click_records_the_target_url(
    conn: psycopg.Connection, allowed_shop: Shop, browser_page: BrowserPage
) -> None:
    """Following a link to another site sends outbound_click with the link's URL before the page goes."""
    page = browser_page.page
    # The partner's site is answered by the test: no request leaves the machine.
    partner: list[str] = []

    def fulfil(route: Route, request: Request) -> None:
        """The partner's page, served by the test."""
        partner.append(request.url)
        route.fulfill(status=200, content_type="text/html", body="<title>Partner</title><p>partner</p>")

    page.route("http://example.invalid/**", fulfil)
    page.goto(allowed_shop.site.url("/"))
    wait_for_raw(conn, "page_view")
    page.click("#outbound")
    page.wait_for_url(OUTBOUND_URL)
    assert partner == [OUTBOUND_URL]

    [event] = wait_for_raw(conn, "outbound_click")
    assert event["raw_payload"]["event_data"] == {"url": OUTBOUND_URL}
    assert event["raw_payload"]["page_url"] == allowed_shop.site.url("/")
    vault = wait_for_vault(conn, [event["event_id"]])[event["event_id"]]
    assert vault["event_type"] == "outbound_click"
    assert vault["details_properties"]["url"] == OUTBOUND_URL
    assert_quiet(browser_page)


def test_event_tracked_right_before_navigating_away_is_flushed(
    conn: psycopg.Connection, allowed_shop: Shop, browser_page: BrowserPage
) -> None:
    """An event tracked by a link's click handler is sent as the page goes, then the next page's view."""
    page = browser_page.page
    page.goto(allowed_shop.site.url("/"))
    [home] = wait_for_raw(conn, "page_view")
    page.click("#leave")
    page.wait_for_url(allowed_shop.site.url("/second"))

    [leaving] = wait_for_raw(conn, "leaving")
    assert leaving["raw_payload"]["event_data"] == {"to": "second"}
    assert leaving["raw_payload"]["page_url"] == allowed_shop.site.url("/")
    _, second = wait_for_raw(conn, "page_view", 2)
    assert second["raw_payload"]["page_url"] == allowed_shop.site.url("/second")
    assert second["raw_payload"]["page_title"] == "Second – Test shop"
    assert second["raw_payload"]["referrer"] == allowed_shop.site.url("/")

    vault = wait_for_vault(conn, [home["event_id"], leaving["event_id"], second["event_id"]])
    assert vault[leaving["event_id"]]["details_properties"]["to"] == "second"
    assert vault[second["event_id"]]["referrer_url"] == allowed_shop.site.url("/")
    assert_quiet(browser_page)


def test_no_token_is_stored(conn: psycopg.Connection, allowed_shop: Shop, browser_page: BrowserPage) -> None:
    """The token in the snippet reaches the service in every request and is stored in no table."""
    page = browser_page.page
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.post_data or "") if "/api/v1/track" in r.url else None)
    page.goto(allowed_shop.site.url("/"))
    wait_for_raw(conn, "page_view")
    # Two events of the same instant: a batch, as well as the single events before and after.
    page.evaluate("onevault.track('a', {n: 1}); onevault.track('b', {n: 2})")
    page.click("#leave")
    page.wait_for_url(allowed_shop.site.url("/second"))
    events = [wait_for_raw(conn, t)[0] for t in ("a", "b", "leaving")] + wait_for_raw(conn, "page_view", 2)
    wait_for_vault(conn, [e["event_id"] for e in events])

    token = allowed_shop.tenant.token
    assert sent and all(token in body for body in sent), "positive control: the browser sent the token"
    assert scalar(conn, "SELECT count(*) FROM raw.site_tracking_events_r") == 5
    credentials = "SELECT count(*) FROM raw.site_tracking_events_r WHERE raw_payload ?| '{token,customer_id}'"
    assert scalar(conn, credentials) == 0
    with_token = "SELECT count(*) FROM raw.site_tracking_events_r r WHERE strpos(r::text, %s) > 0"
    assert scalar(conn, with_token, (token,)) == 0
    assert occurrences(conn, token) == []
    assert occurrences(conn, token.rsplit("_", 1)[1]) == []
    assert_quiet(browser_page)


def test_page_on_an_origin_not_allowed_stores_nothing(
    conn: psycopg.Connection, shop: Shop, live_server: LiveServer, browser_page: BrowserPage
) -> None:
    """A customer allowing only its shop: a copy of the page elsewhere is refused (403), nothing stored."""
    page = browser_page.page
    shop.allow_origin("https://shop.example.com")
    with page.expect_response(lambda r: "/api/v1/track" in r.url) as refused:
        page.goto(shop.site.url("/"))
    assert refused.value.status == 403
    # Chromium sends the beacon's Origin, but Playwright does not report it; the Referer shows the page.
    assert refused.value.request.all_headers()["referer"] == shop.site.url("/")
    page.click("#signup")
    with page.expect_response(lambda r: "/api/v1/track" in r.url) as refused_again:
        page.evaluate("onevault.flush()")
    assert refused_again.value.status == 403
    page.wait_for_timeout(3000)
    assert raw_count(conn) == 0
    assert browser_page.tracker_errors() == [], "the tracker neither logs nor throws on a refused request"
    # What the console does show is Chromium's own report of each refused request, which no script can hide.
    refusals = [m.location["url"] for m in browser_page.console if m.type == "error"]
    assert refusals == [f"{live_server.url}/api/v1/track/async"] * 2, browser_page.console_errors()

    # Positive control: once the customer allows this origin, the same page's events are stored.
    shop.allow_origin(shop.site.origin)
    page.reload()
    [event] = wait_for_raw(conn, "page_view")
    assert event["raw_payload"]["page_url"] == shop.site.url("/")
    assert raw_count(conn) == 1


def test_fetch_with_headers_passes_cors_preflight_from_an_allowed_origin(
    conn: psycopg.Connection, allowed_shop: Shop, live_server: LiveServer, browser_page: BrowserPage
) -> None:
    """A page's own fetch() with X-Customer-ID and Authorization (preflighted) is stored and readable."""
    page = browser_page.page
    page.goto(allowed_shop.site.url("/second"))
    wait_for_raw(conn, "page_view")
    answer = page.evaluate(
        """async ([api, customer, token]) => {
            const response = await fetch(api + "/api/v1/track/async", {
                method: "POST",
                headers: {"Content-Type": "application/json", "X-Customer-ID": customer,
                          "Authorization": "Bearer " + token, "X-Request-ID": "browser-fetch-1"},
                body: JSON.stringify({event_type: "checkout", page_url: location.href,
                                      event_id: crypto.randomUUID ? crypto.randomUUID() : undefined,
                                      event_data: {total: 42}}),
            });
            return {status: response.status, body: await response.json()};
        }""",
        [live_server.url, allowed_shop.tenant.customer_id, allowed_shop.tenant.token],
    )
    assert answer["status"] == 200, answer
    assert answer["body"]["success"] is True
    [event] = wait_for_raw(conn, "checkout")
    assert event["raw_payload"]["page_url"] == allowed_shop.site.url("/second")
    assert event["raw_payload"]["event_data"] == {"total": 42}
    assert event["user_agent"] == page.evaluate("navigator.userAgent")
    assert event["event_id"] == answer["body"]["event_id"]
    wait_for_vault(conn, [event["event_id"]])
    assert_quiet(browser_page)
