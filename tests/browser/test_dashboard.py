"""The dashboard in a real browser over a live server, on a customer whose events are known.

Screenshots of the signed-in dashboard are written to `test-artifacts/dashboard.png` (desktop,
1280 px wide) and `test-artifacts/dashboard-phone.png` (390 px), for a person to look at.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
from playwright.sync_api import Page, Route, expect

from tests.helpers.browser import BrowserPage
from tests.helpers.servers import LiveServer
from tests.helpers.tenants import Tenant, make_tenant
from tests.helpers.vault_load import DESKTOP, IPHONE, Event, assert_all_processed, ingest_events, process_all

CUSTOMER = "dash_shop"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
FIREFOX = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:125.0) Gecko/20100101 Firefox/125.0"
GOOGLE = "https://www.google.com/search?q=onevault"
NEWS = "https://news.example.org/item?id=1"
TIMEOUT_MS = 30_000


def known_events(now: datetime) -> list[Event]:
    """Six visitors in seven sessions: three today, two three days ago, two twenty days ago (UTC).

    Today: v1 (Chrome, from Google) / → /pricing → /pricing, then signs up (a custom event); v2
    (iPhone, from a news site) / → /blog; v3 (Firefox, direct) /pricing. Three days ago: v4 (Chrome,
    Google) / → /docs 25 minutes later; v1 again /blog.
    Twenty days ago: v5 (Chrome) /pricing → /; v6 (iPhone) /.
    """
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    elapsed = now - midnight

    def today(step: int) -> datetime:
        # Spread over the part of today already past, so every event is today and none in the future.
        return midnight + elapsed * step / 20

    def days_ago(days: int, minute: int) -> datetime:
        return midnight - timedelta(days=days) + timedelta(hours=12, minutes=minute)

    sessions: list[tuple[str, str, str, str | None, list[tuple[datetime, str]]]] = [
        ("v1", "s1", "chrome", GOOGLE, [(today(1), "/"), (today(2), "/pricing"), (today(3), "/pricing")]),
        ("v2", "s2", "iphone", NEWS, [(today(4), "/"), (today(5), "/blog")]),
        ("v3", "s3", "firefox", None, [(today(6), "/pricing")]),
        ("v4", "s4", "chrome", GOOGLE, [(days_ago(3, 0), "/"), (days_ago(3, 25), "/docs")]),
        ("v1", "s5", "chrome", None, [(days_ago(3, 30), "/blog")]),
        ("v5", "s6", "chrome", None, [(days_ago(20, 0), "/pricing"), (days_ago(20, 1), "/")]),
        ("v6", "s7", "iphone", None, [(days_ago(20, 5), "/")]),
    ]
    agents = {"chrome": DESKTOP, "iphone": IPHONE, "firefox": FIREFOX}
    # v1 signs up on /pricing at its last page view: a custom event, no page view.
    events = [Event("s1-signup", today(3), "v1", "s1", "/pricing", "signup", DESKTOP)]
    for visitor, session, agent, referrer, views in sessions:
        for n, (at, path) in enumerate(views):
            events.append(
                Event(
                    event_id=f"{session}-{n}",
                    at=at,
                    visitor_id=visitor,
                    session_id=session,
                    page=path,
                    user_agent=agents[agent],
                    referrer=referrer if n == 0 else None,
                )
            )
    return events


@dataclass(frozen=True)
class Shop:
    """The customer with its known events in the marts, a `read` token, and the live server."""

    tenant: Tenant
    server: LiveServer
    today: str
    three_days_ago: str


def clear_of_midnight(margin: timedelta = timedelta(minutes=5)) -> datetime:
    """Now, once at least `margin` of the UTC day is left: the test's "today" (the dashboard's range,
    its events spread over the part of the day already past) must not become yesterday meanwhile."""
    now = datetime.now(UTC)
    next_midnight = now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    if next_midnight - now < margin:
        time.sleep((next_midnight - now).total_seconds() + 1)
        now = datetime.now(UTC)
    return now


@pytest.fixture
def shop(conn: psycopg.Connection, live_server: LiveServer) -> Shop:
    """`dash_shop` with the known events processed through the pipeline to the marts."""
    tenant = make_tenant(conn, CUSTOMER, ("read",))
    now = clear_of_midnight()
    ingest_events(conn, CUSTOMER, known_events(now))
    process_all(conn, CUSTOMER)
    assert_all_processed(conn, CUSTOMER)
    return Shop(tenant, live_server, now.date().isoformat(), (now - timedelta(days=3)).date().isoformat())


@dataclass
class Browser:
    """A browser page that may reach only the live server: what it tried elsewhere was refused."""

    tab: BrowserPage
    outside: list[str]

    @property
    def page(self) -> Page:
        """The Playwright page."""
        return self.tab.page


def loopback_only(tab: BrowserPage, server_url: str) -> Browser:
    """Refuse (and record) every request of the page that is not for the server at `server_url`."""
    origin = urlsplit(server_url)
    browser = Browser(tab, [])

    def route(route: Route) -> None:
        target = urlsplit(route.request.url)
        if target.scheme in ("data", "blob") or (target.hostname, target.port) == (
            origin.hostname,
            origin.port,
        ):
            route.continue_()
        else:
            browser.outside.append(route.request.url)
            route.abort("blockedbyclient")

    tab.page.route("**/*", route)
    tab.page.set_default_timeout(TIMEOUT_MS)
    return browser


@pytest.fixture
def dashboard(browser_page: BrowserPage, live_server: LiveServer) -> Browser:
    """The browser page, offline but for the live server."""
    return loopback_only(browser_page, live_server.url)


def sign_in(page: Page, shop: Shop, token: str | None = None) -> None:
    """Open the dashboard and sign in with the keyboard (Enter in the token field)."""
    page.goto(f"{shop.server.url}/dashboard")
    page.get_by_label("Customer id").fill(shop.tenant.customer_id)
    page.get_by_label("Read token").fill(token or shop.tenant.token)
    page.get_by_label("Read token").press("Enter")


def wait_ready(page: Page) -> None:
    """Until the last load finished without error."""
    expect(page.locator("#main")).to_have_attribute("data-state", "ready")


def expect_figures(page: Page, visitors: int, pageviews: int, visits: int | None = None) -> None:
    """The headline numbers, as shown and as the raw values the page rendered them from."""
    wait_ready(page)
    figures = {"visitors": visitors, "pageviews": pageviews} | (
        {"visits": visits} if visits is not None else {}
    )
    for metric, value in figures.items():
        card = page.locator(f'.metric[data-metric="{metric}"] .value')
        expect(card).to_have_attribute("data-value", str(value))
        expect(card).to_have_text(f"{value:,}")


def panel_rows(page: Page, key: str) -> list[list[str]]:
    """The rows of a breakdown panel, cell texts."""
    return [
        [cell.strip() for cell in row.locator("td").all_inner_texts()]
        for row in page.locator(f"#panel-{key} tbody tr").all()
    ]


# The lines an element's text takes.
LINES_JS = """(el) => {
    const range = document.createRange();
    range.selectNodeContents(el);
    return range.getClientRects().length;
}"""


# For each visible element holding text (outside the chart's SVG): its text colour against the first
# opaque background behind it, by WCAG's relative luminance.
CONTRAST_JS = """() => {
  const channel = c => { c /= 255; return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4); };
  const rgba = text => (text.match(/[\\d.]+/g) || []).map(Number);
  const luminance = ([r, g, b]) => 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
  const background = node => {
    for (; node; node = node.parentElement) {
      const c = rgba(getComputedStyle(node).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] === 1)) return c;
    }
    return [255, 255, 255];
  };
  const failures = [];
  for (const node of document.querySelectorAll("body *")) {
    if (node.closest("svg") || !node.checkVisibility() || node.closest(".visually-hidden")) continue;
    const text = [...node.childNodes].filter(n => n.nodeType === 3).map(n => n.textContent.trim()).join("");
    if (!text) continue;
    const [fg, bg] = [rgba(getComputedStyle(node).color), background(node)];
    const alpha = fg.length === 4 ? fg[3] : 1;
    const shown = [0, 1, 2].map(i => alpha * fg[i] + (1 - alpha) * bg[i]);
    const [l1, l2] = [luminance(shown), luminance(bg)];
    const ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
    if (ratio < 4.5) failures.push(`${node.tagName}.${node.className} "${text}": ${ratio.toFixed(2)}`);
  }
  return failures;
}"""


def contrast_failures(page: Page) -> list[str]:
    """Visible texts whose contrast with their background is under WCAG AA's 4.5:1."""
    failures: list[str] = page.evaluate(CONTRAST_JS)
    return failures


def no_horizontal_scroll(page: Page) -> bool:
    """Whether the page fits the viewport's width."""
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def test_dashboard_shows_the_known_events_and_follows_filters_and_ranges(
    dashboard: Browser, shop: Shop
) -> None:
    """Signed in with a read token: the numbers the events imply, the chart, filters by click and by
    keyboard, the range picker (30 days → 7 days → today → custom), the phone layout, and log out.

    Writes test-artifacts/dashboard.png and test-artifacts/dashboard-phone.png.
    """
    page = dashboard.page
    sign_in(page, shop)

    # Last 30 days (the default): six visitors, twelve page views, seven visits.
    expect_figures(page, visitors=6, pageviews=12, visits=7)
    expect(page.locator("#period")).to_contain_text(re.compile(r"\(UTC\)"))
    chart = page.locator("#chart svg")
    expect(chart).to_have_attribute("role", "img")
    expect(page.locator("#chart svg > title")).to_have_text("Visitors and page views")
    table = page.locator("#chart-table tbody tr")
    expect(table).to_have_count(30)
    pageviews_by_day = [int(t) for t in page.locator("#chart-table tbody td:nth-child(3)").all_inner_texts()]
    assert sum(pageviews_by_day) == 12
    assert panel_rows(page, "pages") == [
        ["/", "5", "5"],
        ["/pricing", "3", "4"],
        ["/blog", "2", "2"],
        ["/docs", "1", "1"],
    ]
    assert sorted(r[0] for r in panel_rows(page, "referrers")) == sorted(
        ["Direct / none", "www.google.com", "news.example.org"]
    )
    assert sum(int(r[1]) for r in panel_rows(page, "browsers")) == 6
    assert {r[0] for r in panel_rows(page, "devices")} >= {"desktop", "mobile"}
    assert panel_rows(page, "events") == [["page_view", "6", "12"], ["signup", "1", "1"]]
    expect(page.locator("#health-pending")).to_have_text("0")
    expect(page.locator("#health-marts")).to_have_text("0")
    expect(page.locator("#health-quarantined")).to_have_text("0")
    expect(page.locator("#health-errors")).to_have_text("0")
    expect(page.locator("#health-replica")).to_be_hidden()
    realtime = httpx.get(f"{shop.server.url}/api/v1/stats/realtime", headers=shop.tenant.headers).json()
    expect(page.locator("#realtime")).to_have_text(str(realtime["visitors"]))
    page.set_viewport_size({"width": 1280, "height": 800})
    # The mean visit (minutes long whatever the time of day: v4's lasts 25) fits its card on one
    # line, compactly.
    duration = page.locator('.metric[data-metric="visit_duration"] .value')
    expect(duration).to_have_text(re.compile(r"^\d+m\s\d{2}s$"))
    assert duration.evaluate(LINES_JS) == 1
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "dashboard.png", full_page=True)

    # A click on the /pricing row filters everything to that page; the visit panels come in one
    # request, the event panels (pages, events) in another beside it.
    batches: list[list[str]] = []
    page.on(
        "request",
        lambda r: (
            batches.append([q["dimensions"][0] for q in r.post_data_json["queries"]])
            if r.url.endswith("/api/v1/stats/queries")
            else None
        ),
    )
    page.locator("#panel-pages tbody tr", has_text="/pricing").click()
    expect(page.locator("#panel-pages tbody tr")).to_have_count(1)
    expect(page.locator("#panel-browsers tbody tr")).to_have_count(2)
    dimensions = [p.get_attribute("data-dimension") or "" for p in page.locator(".panel").all()]
    assert sorted(batches) == sorted(
        [[d for d in dimensions if d.startswith("visit:")], [d for d in dimensions if d.startswith("event:")]]
    )
    chip = page.locator("#filters .chip")
    expect(chip).to_have_count(1)
    expect(chip).to_contain_text("Page is /pricing")
    expect_figures(page, visitors=3, pageviews=4, visits=3)
    assert panel_rows(page, "pages") == [["/pricing", "3", "4"]]
    assert panel_rows(page, "events") == [["page_view", "3", "4"], ["signup", "1", "1"]]
    assert sum(int(r[1]) for r in panel_rows(page, "browsers")) == 3
    assert contrast_failures(page) == []

    # The range picker keeps the filter: last 7 days.
    page.get_by_label("Date range").select_option("7d")
    expect_figures(page, visitors=2, pageviews=3)
    expect(page.locator("#chart-table tbody tr")).to_have_count(7)

    # Removing the chip shows the whole week again.
    page.get_by_role("button", name="Remove filter: Page is /pricing").click()
    expect(chip).to_have_count(0)
    expect_figures(page, visitors=4, pageviews=9, visits=5)

    # Today, by hour.
    page.get_by_label("Date range").select_option("today")
    expect_figures(page, visitors=3, pageviews=6, visits=3)
    expect(page.locator("#chart-table tbody tr")).to_have_count(24)
    expect(page.locator("#chart svg")).to_be_visible()

    # The keyboard: Enter on the /blog row of today's pages adds the filter, Enter on its chip removes it.
    page.locator("#panel-pages tbody tr", has_text="/blog").get_by_role("button").focus()
    page.keyboard.press("Enter")
    expect(chip).to_contain_text("Page is /blog")
    expect_figures(page, visitors=1, pageviews=1)
    remove = page.get_by_role("button", name="Remove filter: Page is /blog")
    expect(remove).to_be_focused()
    page.keyboard.press("Enter")
    expect(chip).to_have_count(0)
    expect_figures(page, visitors=3, pageviews=6)

    # A custom range of the one day three days ago: v4 and v1's second visit.
    page.get_by_label("Date range").select_option("custom")
    page.get_by_label("From", exact=True).fill(shop.three_days_ago)
    page.get_by_label("To", exact=True).fill(shop.three_days_ago)
    page.get_by_role("button", name="Apply").click()
    expect_figures(page, visitors=2, pageviews=3, visits=2)
    expect(page.locator("#chart-table tbody tr")).to_have_count(1)

    # A reload keeps the session (sessionStorage) and the view (in the address); no cookie was ever set.
    page.reload()
    expect_figures(page, visitors=2, pageviews=3, visits=2)
    expect(page.get_by_label("Date range")).to_have_value("custom")
    assert page.context.cookies() == []
    page.get_by_label("Date range").select_option("30d")
    expect_figures(page, visitors=6, pageviews=12)

    # A phone: one column, nothing wider than the screen.
    page.set_viewport_size({"width": 390, "height": 844})
    # The chart is drawn again for the narrow screen, its text at the same size.
    expect(page.locator("#chart svg")).to_have_attribute("viewBox", re.compile(r"^0 0 3\d\d 260$"))
    assert no_horizontal_scroll(page)
    metric_boxes = [
        page.locator(f'.metric[data-metric="{m}"]').bounding_box() for m in ("visitors", "visits")
    ]
    panel_boxes = [page.locator(f"#panel-{k}").bounding_box() for k in ("pages", "entry-pages")]
    assert all(box is not None and box["x"] + box["width"] <= 390 for box in metric_boxes + panel_boxes)
    assert panel_boxes[0] is not None and panel_boxes[1] is not None
    assert panel_boxes[1]["y"] > panel_boxes[0]["y"], "breakdown panels stack on a phone"
    page.screenshot(path=ARTIFACTS / "dashboard-phone.png", full_page=True)

    # Log out: back to the form, the token gone from the tab.
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_label("Read token")).to_be_visible()
    expect(page.locator("#dashboard")).to_be_hidden()
    assert page.evaluate("sessionStorage.length") == 0
    assert dashboard.tab.console_errors() == []
    assert dashboard.outside == []


def test_a_link_to_the_dashboard_shows_its_range_and_filters(dashboard: Browser, shop: Shop) -> None:
    """The range and filters are in the page's address (never the token): a link opened after signing
    out shows them once signed in again; an address naming nothing valid shows the default view."""
    page = dashboard.page
    sign_in(page, shop)
    expect_figures(page, visitors=6, pageviews=12, visits=7)
    page.locator("#panel-pages tbody tr", has_text="/pricing").click()
    page.get_by_label("Date range").select_option("7d")
    expect_figures(page, visitors=2, pageviews=3)
    link = page.url
    assert "range=7d" in link and "pricing" in link and shop.tenant.token not in link

    page.get_by_role("button", name="Log out").click()
    assert "#" not in page.url
    for address, figures, chips in (
        (link, {"visitors": 2, "pageviews": 3}, 1),
        (f"{shop.server.url}/dashboard#range=yesterday&filter=%5B1%5D", {"visitors": 6, "pageviews": 12}, 0),
    ):
        page.goto(address)
        page.get_by_label("Customer id").fill(shop.tenant.customer_id)
        page.get_by_label("Read token").fill(shop.tenant.token)
        page.get_by_label("Read token").press("Enter")
        expect_figures(page, **figures)
        expect(page.locator("#filters .chip")).to_have_count(chips)
        page.get_by_role("button", name="Log out").click()
    assert dashboard.tab.console_errors() == []
    assert dashboard.outside == []


def test_refused_tokens_are_explained(dashboard: Browser, shop: Shop, conn: psycopg.Connection) -> None:
    """An unknown token (401) and a token without the read scope (403) get a visible message."""
    page = dashboard.page
    sign_in(page, shop, token="ovt_test_" + "0" * 64)
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("401")
    expect(page.locator("#dashboard")).to_be_hidden()
    assert page.evaluate("sessionStorage.length") == 0

    track_only = make_tenant(conn, CUSTOMER, ("track",))
    page.get_by_label("Read token").fill(track_only.token)
    page.get_by_role("button", name="Open the dashboard").click()
    expect(alert).to_contain_text("403")
    expect(alert).to_contain_text("read scope")
    expect(page.locator("#dashboard")).to_be_hidden()
    # The browser logs each refused request; nothing else went wrong.
    refused = ("status of 401", "status of 403")
    assert [m for m in dashboard.tab.console_errors() if not any(r in m for r in refused)] == []
    assert dashboard.outside == []


def test_ranges_the_service_refuses_are_explained(dashboard: Browser, shop: Shop) -> None:
    """A custom range ending before it starts is caught on the page; one over ten years gets the 422."""
    page = dashboard.page
    sign_in(page, shop)
    expect_figures(page, visitors=6, pageviews=12)
    page.get_by_label("Date range").select_option("custom")
    page.get_by_label("From", exact=True).fill(shop.today)
    page.get_by_label("To", exact=True).fill(shop.three_days_ago)
    page.get_by_label("To", exact=True).press("Enter")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("comes after the last one")
    expect(page.get_by_label("From", exact=True)).to_be_focused()

    page.get_by_label("From", exact=True).fill("2000-01-01")
    page.get_by_label("To", exact=True).fill(shop.today)
    page.get_by_role("button", name="Apply").click()
    expect(alert).to_contain_text("422")
    expect(alert).to_contain_text("3660 days")
    expect(page.locator("#main")).to_have_attribute("data-state", "error")
    assert contrast_failures(page) == []

    # A range the service answers clears the message.
    page.get_by_label("Date range").select_option("30d")
    expect_figures(page, visitors=6, pageviews=12)
    expect(page.locator("#error")).to_be_empty()
    assert [m for m in dashboard.tab.console_errors() if "status of 422" not in m] == []
    assert dashboard.outside == []


def test_api_docs_render_offline(browser_page: BrowserPage, live_server: LiveServer) -> None:
    """Swagger UI renders with every request outside the server refused, and none is tried."""
    docs = loopback_only(browser_page, live_server.url)
    docs.page.goto(f"{live_server.url}/docs")
    expect(docs.page.locator(".swagger-ui .info .title")).to_contain_text("OneVault Site Tracking")
    operations = docs.page.locator(".opblock-summary-path")
    expect(operations.filter(has_text="/api/v1/stats/query")).to_have_count(1)
    expect(operations.filter(has_text="/dashboard/chart")).to_have_count(1)
    assert docs.outside == []
    assert docs.tab.console_errors() == []


class TestFiguresThatTakeTooLong:
    """ONEVAULT_STATS_TIMEOUT_SECONDS as the page shows it."""

    @pytest.fixture
    def server_settings(self) -> dict[str, Any]:
        return {"stats_timeout_seconds": 1.0}

    def test_figures_given_up_are_explained(
        self, dashboard: Browser, shop: Shop, conn: psycopg.Connection
    ) -> None:
        """While the hourly rollup is locked, the headline figures wait past the limit: the page says
        they took too long (504) and what to do; once it is free, the next range is shown."""
        page = dashboard.page
        alert = page.get_by_role("alert")
        with conn.transaction():
            conn.execute("LOCK TABLE mart.traffic_hourly IN ACCESS EXCLUSIVE MODE")
            sign_in(page, shop)
            expect(alert).to_contain_text("took too long")
            expect(alert).to_contain_text("504")
            expect(alert).to_contain_text("shorter range")
            expect(page.locator("#main")).to_have_attribute("data-state", "error")
        page.get_by_label("Date range").select_option("7d")
        expect_figures(page, visitors=4, pageviews=9, visits=5)
        expect(page.locator("#error")).to_be_empty()
        assert [m for m in dashboard.tab.console_errors() if "status of 504" not in m] == []
        assert dashboard.outside == []


class TestSampledPanels:
    """ONEVAULT_STATS_SAMPLE_SESSIONS as the page shows it."""

    @pytest.fixture
    def server_settings(self) -> dict[str, Any]:
        return {"stats_sample_sessions": 1}

    def test_a_sampled_panel_says_so(self, dashboard: Browser, shop: Shop) -> None:
        """Unfiltered, the panels read the rollups, whole; filtered by a page, the visit panels of a range
        with more sessions than the cap are counted over a sample, and each says how much."""
        page = dashboard.page
        sign_in(page, shop)
        expect_figures(page, visitors=6, pageviews=12, visits=7)
        expect(page.locator(".panel .sampled:visible")).to_have_count(0)
        page.locator("#panel-pages tbody tr", has_text="/pricing").click()
        expect_figures(page, visitors=3, pageviews=4, visits=3)
        note = page.locator("#panel-browsers .sampled")
        expect(note).to_be_visible()
        expect(note).to_have_text(re.compile(r"^Estimated from a sample of [\d.]+ % of the visitors\.$"))
        assert dashboard.tab.console_errors() == []
        assert dashboard.outside == []
