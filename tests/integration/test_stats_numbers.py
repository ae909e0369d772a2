"""The numbers are right: the stats API against an independent model of docs/analytics.md.

Three customers (UTC, Europe/Berlin, America/New_York) send a known event set
(tests/helpers/stats_events.py) through the real pipeline in several batches: late events that
join, merge and move sessions, bots, quarantined events, sessions over local and UTC midnights and
over the night clocks go back. For several date ranges of each customer, every metric — without a
dimension, by each of the 16 dimensions and by pairs, with filters, some metrics at a time, over
relative ranges and against the previous period — must equal what the model
(tests/helpers/stats_model.py) computes from the events as they were sent. A case where the API
disagrees with the model (which follows the documentation) is an expected failure, with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest
from click.testing import CliRunner
from tests.helpers.postgres import create_database, drop_database
from tests.helpers.servers import LiveServer
from tests.helpers.stats_events import (
    BERLIN_CUSTOMER,
    CUSTOMERS,
    NEW_YORK_CUSTOMER,
    UTC_CUSTOMER,
    WHOLE_PERIOD,
    Customer,
    ingest,
    set_zone,
)
from tests.helpers.stats_model import (
    DIMENSIONS,
    METRICS,
    VISIT_DIMENSIONS,
    Filter,
    Key,
    StatsModel,
    change,
)
from tests.helpers.tenants import Tenant, make_tenant

from onevault.cli import main as onevault_command
from onevault.config import get_settings
from onevault.pipeline.useragents import ParsedAgent
from onevault.pipeline.useragents import parse as parse_user_agent

# Small batches: even one sending is processed in several transactions.
BATCH_SIZE = 7
LIMIT = 1000  # more than any answer's rows (the whole period has 384 hours)
WHOLE_ISO = (WHOLE_PERIOD[0].isoformat(), WHOLE_PERIOD[1].isoformat())


@dataclass
class Site:
    """The loaded data set and a way to ask the API about it."""

    http: httpx.Client
    tenants: dict[str, Tenant]
    models: dict[str, StatsModel]
    quarantined: dict[str, int]
    # The UTC customer's answers by dimension over the whole period, before the others' events came.
    alone: dict[str, dict[Key, list[Any]]]

    def answer(
        self,
        customer: Customer,
        date_range: str | list[str],
        dimensions: Sequence[str] = (),
        filters: Sequence[Filter] = (),
        metrics: Sequence[str] = METRICS,
        include: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """`POST /api/v1/stats/query`'s answer, every row on one page."""
        body: dict[str, Any] = {
            "date_range": date_range,
            "metrics": list(metrics),
            "dimensions": list(dimensions),
            "filters": [[op, dim, list(values)] for op, dim, values in filters],
            "limit": LIMIT,
        }
        if include is not None:
            body["include"] = include
        headers = self.tenants[customer.customer_id].headers
        response = self.http.post("/api/v1/stats/query", headers=headers, json=body)
        assert response.status_code == 200, (body, response.text)
        answer: dict[str, Any] = response.json()
        assert answer["meta"]["time_zone"] == customer.zone
        assert answer["meta"]["total_rows"] == len(answer["results"])
        return answer

    def ask_together(
        self,
        customer: Customer,
        first: str,
        last: str,
        dimensions: Sequence[str],
        filters: Sequence[Filter],
        metrics: Sequence[str],
    ) -> list[dict[Key, list[Any]]]:
        """`POST /api/v1/stats/queries`: one query by each of `dimensions`, their rows in that order."""
        body = {
            "date_range": [first, last],
            "metrics": list(metrics),
            "filters": [[op, dim, list(values)] for op, dim, values in filters],
            "limit": LIMIT,
        }
        queries = [body | {"dimensions": [d]} for d in dimensions]
        headers = self.tenants[customer.customer_id].headers
        response = self.http.post("/api/v1/stats/queries", headers=headers, json={"queries": queries})
        assert response.status_code == 200, response.text
        return [rows_of(answer) for answer in response.json()["answers"]]

    def ask(
        self,
        customer: Customer,
        first: str,
        last: str,
        dimensions: Sequence[str] = (),
        filters: Sequence[Filter] = (),
        metrics: Sequence[str] = METRICS,
    ) -> dict[Key, list[Any]]:
        """The answer's rows for local days [first, last], by their dimension values."""
        return rows_of(self.answer(customer, [first, last], dimensions, filters, metrics))

    def expect(
        self,
        customer: Customer,
        first: str,
        last: str,
        dimensions: Sequence[str] = (),
        filters: Sequence[Filter] = (),
        metrics: Sequence[str] = METRICS,
    ) -> dict[Key, list[Any]]:
        """The model's rows for the same query."""
        model = self.models[customer.customer_id]
        return model.query(date.fromisoformat(first), date.fromisoformat(last), metrics, dimensions, filters)


def rows_of(answer: dict[str, Any], part: str = "metrics") -> dict[Key, Any]:
    """An answer's rows (their metrics, or another part) by their dimension values, each once."""
    rows: dict[Key, Any] = {}
    for row in answer["results"]:
        key = tuple(row["dimensions"])
        assert key not in rows, f"two rows for {key}"
        rows[key] = row[part]
    return rows


def process(http: httpx.Client, tenant: Tenant) -> dict[str, Any]:
    """`POST /api/v1/track/process`: every due event of the customer through the pipeline."""
    response = http.post("/api/v1/track/process", headers=tenant.headers)
    assert response.status_code == 200, response.text
    results: dict[str, Any] = response.json()["result"]["results"]
    assert results["total_error_count"] == 0, results
    return results


def set_zone_with_command(database_url: str, customer_id: str, zone: str) -> None:
    """`onevault tenant set-timezone CUSTOMER ZONE` (it rebuilds the customer's marts in the zone)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level  # the command configures logging
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(
            onevault_command,
            ["tenant", "set-timezone", customer_id, zone],
            env={"SYSTEM_DATABASE_URL": database_url, "ONEVAULT_DATABASE_URL": None},
            catch_exceptions=False,
        )
    finally:
        get_settings.cache_clear()
        root.handlers[:] = handlers
        root.setLevel(level)
    assert result.exit_code == 0, result.output


def load(
    http: httpx.Client, conn: psycopg.Connection, database_url: str, customer: Customer, tenant: Tenant
) -> int:
    """The customer's batches, each processed before the next; how many events were quarantined.

    Berlin's zone is recorded before its events; New York's is set by `onevault tenant
    set-timezone` after the first batch, so its marts are rebuilt in the zone and then kept.
    """
    if customer is BERLIN_CUSTOMER:
        set_zone(conn, customer.customer_id, customer.zone)
    quarantined = 0
    for n, batch in enumerate(customer.batches, start=1):
        ingest(conn, customer.customer_id, batch)
        quarantined += int(process(http, tenant)["quarantined_count"])
        if customer is NEW_YORK_CUSTOMER and n == 1:
            set_zone_with_command(database_url, customer.customer_id, customer.zone)
    return quarantined


@pytest.fixture(scope="module")
def site(pg_url: str, template_db: str) -> Iterator[Site]:
    """One database for the module: the three customers loaded through the live service."""
    database_url = create_database(pg_url, template_db)
    try:
        with (
            LiveServer(database_url, pipeline_background=False, pipeline_batch_size=BATCH_SIZE) as server,
            httpx.Client(base_url=server.url, timeout=60) as http,
            psycopg.connect(database_url, autocommit=True) as conn,
        ):
            tenants = {c.customer_id: make_tenant(conn, c.customer_id) for c in CUSTOMERS}
            models = {c.customer_id: StatsModel(c.events, c.zone) for c in CUSTOMERS}
            site = Site(http, tenants, models, {}, {})
            for customer in CUSTOMERS:
                tenant = tenants[customer.customer_id]
                site.quarantined[customer.customer_id] = load(http, conn, database_url, customer, tenant)
                if customer is UTC_CUSTOMER:
                    site.alone = {
                        d: site.ask(customer, *WHOLE_ISO, [d] if d else []) for d in ("", *DIMENSIONS)
                    }
            yield site
    finally:
        drop_database(pg_url, database_url)


# Parametrised case id → why the API disagrees with the model (a bug report for the API's owners).
DISAGREEMENTS: dict[str, str] = {}


def case(case_id: str, *values: Any) -> Any:
    """A parametrised case, expected to fail (strictly) when it is a known disagreement."""
    reason = DISAGREEMENTS.get(case_id)
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(*values, id=case_id, marks=marks)


RANGE_CASES = [
    case(f"{c.customer_id}:{first}..{last}", c, first, last) for c in CUSTOMERS for first, last, _ in c.ranges
]
DIMENSION_CASES = [
    case(f"{c.customer_id}:{first}..{last}:{d}", c, first, last, d)
    for c in CUSTOMERS
    for first, last, _ in c.ranges
    for d in DIMENSIONS
]


def filters_of(customer: Customer) -> list[tuple[str, list[Filter], list[str]]]:
    """(name, filters, dimensions): is / is_not / contains on event and visit dimensions, with a breakdown."""
    return [
        ("channel-is-search:by-page", [("is", "visit:channel", ("search",))], ["event:page"]),
        ("page-is-not-root:by-device", [("is_not", "event:page", ("/",))], ["visit:device"]),
        ("page-contains:by-day", [("contains", "event:page", ("DOC", "SHOP", "lamp"))], ["time:day"]),
        ("referrer-is-missing:by-entry", [("is", "visit:referrer", (None,))], ["visit:entry_page"]),
        ("type-is-conversion:by-channel", [("is", "event:type", ("signup", "purchase"))], ["visit:channel"]),
        ("type-is-conversion:by-page", [("is", "event:type", ("signup", "purchase"))], ["event:page"]),
        ("campaign-contains", [("contains", "visit:utm_campaign", (customer.campaign_fragment,))], []),
        (
            "mobile-pageviews:by-page",
            [("is", "visit:device", ("mobile", "tablet")), ("is", "event:type", ("page_view",))],
            ["event:page"],
        ),
        ("browser-is-not-chrome:by-week", [("is_not", "visit:browser", ("Chrome",))], ["time:week"]),
        ("page-is-missing:by-entry", [("is", "event:page", (None,))], ["visit:entry_page"]),
        (
            "utm-source-missing-or-google:by-channel",
            [("is", "visit:utm_source", (None, "google", "tiktok"))],
            ["visit:channel"],
        ),
        ("referrer-contains-GOOGLE:by-week", [("contains", "visit:referrer", ("GOOGLE",))], ["time:week"]),
        ("type-is-not-pageview:by-hour", [("is_not", "event:type", ("page_view",))], ["time:hour"]),
        # LIKE's wildcards are plain characters: "_" is in add_to_cart and page_view, not in signup.
        ("type-contains-underscore:by-type", [("contains", "event:type", ("_",))], ["event:type"]),
        # Two event filters: the events matching both, the sessions with such an event (s-c1 has
        # a page view of /pricing and a signup on /signup: not one event matching both).
        (
            "page-and-type:by-referrer",
            [
                ("is", "event:page", ("/pricing", "/products/chair", "/shop")),
                ("is_not", "event:type", ("page_view",)),
            ],
            ["visit:referrer"],
        ),
        (
            "exit-is-not-missing-or-root:by-hour-and-os",
            [("is_not", "visit:exit_page", (None, "/"))],
            ["time:hour", "visit:os"],
        ),
    ]


FILTER_CASES = [
    case(f"{c.customer_id}:{first}..{last}:{name}", c, first, last, filters, dims)
    for c in CUSTOMERS
    for first, last, _ in c.ranges
    for name, filters, dims in filters_of(c)
]
PAIRS = [
    ("time:day", "visit:channel"),
    ("event:page", "visit:device"),
    ("visit:referrer", "event:type"),
    ("time:hour", "event:page"),
    ("time:week", "visit:utm_campaign"),
]
PAIR_CASES = [
    case(f"{c.customer_id}:{'+'.join(pair)}", c, *WHOLE_ISO, pair) for c in CUSTOMERS for pair in PAIRS
]


def assert_same(got: dict[Key, list[Any]], expected: dict[Key, list[Any]]) -> None:
    """Equal rows; exact numbers (the model rounds like the API is documented to: no tolerance needed)."""
    missing = {k: v for k, v in expected.items() if k not in got}
    extra = {k: v for k, v in got.items() if k not in expected}
    wrong = {k: {"got": got[k], "expected": v} for k, v in expected.items() if k in got and got[k] != v}
    assert (missing, extra, wrong) == ({}, {}, {})


@pytest.mark.parametrize(("customer", "first", "last"), RANGE_CASES)
def test_totals(site: Site, customer: Customer, first: str, last: str) -> None:
    """All 7 metrics without a dimension."""
    assert_same(site.ask(customer, first, last), site.expect(customer, first, last))


@pytest.mark.parametrize(("customer", "first", "last", "dimension"), DIMENSION_CASES)
def test_by_dimension(site: Site, customer: Customer, first: str, last: str, dimension: str) -> None:
    """All 7 metrics by each dimension (time dimensions: every bucket of the range, zeros too)."""
    assert_same(site.ask(customer, first, last, [dimension]), site.expect(customer, first, last, [dimension]))


@pytest.mark.parametrize(("customer", "first", "last", "filters", "dimensions"), FILTER_CASES)
def test_filtered(
    site: Site, customer: Customer, first: str, last: str, filters: list[Filter], dimensions: list[str]
) -> None:
    """Filters on event and visit dimensions, with a breakdown."""
    expected = site.expect(customer, first, last, dimensions, filters)
    assert_same(site.ask(customer, first, last, dimensions, filters), expected)


@pytest.mark.parametrize(("customer", "first", "last", "filters", "dimensions"), FILTER_CASES)
def test_filtered_visitors_and_visits(
    site: Site, customer: Customer, first: str, last: str, filters: list[Filter], dimensions: list[str]
) -> None:
    """The same filters asking what a dashboard's panel asks (visitors and visits, or visitors alone):
    without an event figure, a query on visit dimensions only counts its visitors from the sessions
    that had an event in the range (ranges that cut sessions over midnight included)."""
    for metrics in (["visitors", "visits"], ["visitors"], ["visits", "visitors", "bounce_rate"]):
        expected = site.expect(customer, first, last, dimensions, filters, metrics)
        assert_same(site.ask(customer, first, last, dimensions, filters, metrics), expected)


# Each filter once (the dimensions of filters_of set aside).
PANEL_CASES = [
    pytest.param(c, first, last, filters, id=f"{c.customer_id}:{first}..{last}:{name}")
    for c in CUSTOMERS
    for first, last, _ in c.ranges
    for name, filters in {n.split(":by-")[0]: f for n, f, _ in filters_of(c)}.items()
]


@pytest.mark.parametrize(("customer", "first", "last", "filters"), PANEL_CASES)
def test_filtered_panels_together(
    site: Site, customer: Customer, first: str, last: str, filters: list[Filter]
) -> None:
    """A filtered dashboard's visit panels asked in one batch (counted in one pass over the sessions)
    are each the model's."""
    metrics = ["visitors", "visits", "bounce_rate"]
    answers = site.ask_together(customer, first, last, VISIT_DIMENSIONS, filters, metrics)
    for dimension, got in zip(VISIT_DIMENSIONS, answers, strict=True):
        assert_same(got, site.expect(customer, first, last, [dimension], filters, metrics))


@pytest.mark.parametrize(("customer", "first", "last", "dimensions"), PAIR_CASES)
def test_two_dimensions(
    site: Site, customer: Customer, first: str, last: str, dimensions: tuple[str, str]
) -> None:
    """Two dimensions at once, an event one and a visit one, or time and a visit one."""
    assert_same(site.ask(customer, first, last, dimensions), site.expect(customer, first, last, dimensions))


@pytest.mark.parametrize("customer", CUSTOMERS, ids=lambda c: c.customer_id)
def test_the_data_set_has_returning_visitors(site: Site, customer: Customer) -> None:
    """Visitors come back on other days: the period's distinct visitors are fewer than the sum of
    each day's (a sum of daily figures would be wrong), and the API says so too."""
    days = site.ask(customer, *WHOLE_ISO, ["time:day"])
    total = site.ask(customer, *WHOLE_ISO)[()]
    assert sum(figures[0] for figures in days.values()) > total[0] > 0
    assert days == site.expect(customer, *WHOLE_ISO, ["time:day"])


def test_other_customers_events_change_nothing(site: Site) -> None:
    """The UTC customer's answers are the same before and after two customers sharing its visitor and
    session ids, event ids and agents sent theirs; and they are the model's."""
    after = {d: site.ask(UTC_CUSTOMER, *WHOLE_ISO, [d] if d else []) for d in site.alone}
    assert after == site.alone
    assert_same(site.alone[""], site.expect(UTC_CUSTOMER, *WHOLE_ISO))
    assert_same(site.alone["visit:browser"], site.expect(UTC_CUSTOMER, *WHOLE_ISO, ["visit:browser"]))


@pytest.mark.parametrize("customer", CUSTOMERS, ids=lambda c: c.customer_id)
def test_bots_and_quarantined_events_count_nowhere(site: Site, customer: Customer) -> None:
    """Quarantined events and bot sessions are in no figure and no dimension value."""
    model = site.models[customer.customer_id]
    assert site.quarantined[customer.customer_id] == len(model.quarantined) > 0
    pages = site.ask(customer, *WHOLE_ISO, ["event:page"])
    assert ("/bot-trap",) not in pages
    assert ("/quarantine-page",) not in pages
    assert {("bot",), ("Googlebot",), ("bingbot",)}.isdisjoint(
        site.ask(customer, *WHOLE_ISO, ["visit:device"]) | site.ask(customer, *WHOLE_ISO, ["visit:browser"])
    )
    types = site.ask(customer, *WHOLE_ISO, ["event:type"])
    assert {("crawl",), ("sign up!",), ("add to cart",)}.isdisjoint(types)
    # The totals are the model's, which would be others if bots counted: the check can fail.
    totals = site.ask(customer, *WHOLE_ISO)
    assert_same(totals, site.expect(customer, *WHOLE_ISO))
    with_bots = StatsModel(customer.events, customer.zone, agent=human_agent)
    assert totals != with_bots.query(*WHOLE_PERIOD)


def human_agent(user_agent: str) -> ParsedAgent:
    """A user agent parsed as usual, but never a bot: what the figures would be if bots counted."""
    return replace(parse_user_agent(user_agent), is_bot=False)


def local_today(zone: str) -> date:
    """Today on the customer's wall clock."""
    return datetime.now(ZoneInfo(zone)).date()


RELATIVE_CASES = [case(f"{c.customer_id}:{r}", c, r) for c in CUSTOMERS for r in ("all", "30d", "12mo")]


@pytest.mark.parametrize(("customer", "date_range"), RELATIVE_CASES)
def test_relative_ranges(site: Site, customer: Customer, date_range: str) -> None:
    """A range relative to today in the customer's zone, by day: `all` starts on the first day with data."""
    before = local_today(customer.zone)
    answer = site.answer(customer, date_range, ["time:day"])
    after = local_today(customer.zone)
    first, last = (date.fromisoformat(d) for d in answer["meta"]["date_range"])
    assert last in (before, after)
    model = site.models[customer.customer_id]
    twelve_months_before = (last.year * 12 + last.month - 1) - 11
    assert (
        first
        == {
            "all": model.first_day(),
            "30d": last - timedelta(days=29),
            "12mo": date(twelve_months_before // 12, twelve_months_before % 12 + 1, 1),
        }[date_range]
    )
    assert_same(rows_of(answer), model.query(first, last, METRICS, ["time:day"]))


COMPARED = ("2026-11-09", "2026-11-15")
PREVIOUS = ("2026-11-02", "2026-11-08")


@pytest.mark.parametrize(
    "dimensions", [[], ["visit:channel"], ["event:page"], ["time:day"], ["visit:device"]], ids=str
)
@pytest.mark.parametrize("customer", CUSTOMERS, ids=lambda c: c.customer_id)
def test_comparison_with_the_previous_period(site: Site, customer: Customer, dimensions: list[str]) -> None:
    """`include.comparison: previous_period`: each row's figures of the 7 days before (a time bucket:
    the one at the same place), and the change (the answer schema's definition)."""
    answer = site.answer(customer, list(COMPARED), dimensions, include={"comparison": "previous_period"})
    assert answer["meta"]["comparison_date_range"] == list(PREVIOUS)
    now = site.expect(customer, *COMPARED, dimensions)
    then = site.expect(customer, *PREVIOUS, dimensions)
    if dimensions and dimensions[0].startswith("time:"):
        # Buckets by place: the current period's i-th bucket against the previous period's i-th.
        then = dict(zip(sorted(now), (then[k] for k in sorted(then)), strict=True))
    expected = {
        key: {
            "metrics": then.get(key, [0] * len(METRICS)),
            "change": [
                change(m, new, old)
                for m, new, old in zip(METRICS, figures, then.get(key, [0] * 7), strict=True)
            ],
        }
        for key, figures in now.items()
    }
    assert_same(rows_of(answer), now)
    assert rows_of(answer, "comparison") == expected


SUBSETS = [
    (("visitors",), "event:page"),
    (("pageviews", "visitors"), "visit:channel"),
    (("bounce_rate", "visit_duration"), "visit:entry_page"),
    (("events",), "event:type"),
    (("views_per_visit", "events"), "visit:device"),
    (("visits",), "time:day"),
]
SUBSET_CASES = [
    case(f"{c.customer_id}:{'+'.join(metrics)}:by-{dimension}", c, list(metrics), dimension)
    for c in CUSTOMERS
    for metrics, dimension in SUBSETS
]


@pytest.mark.parametrize(("customer", "metrics", "dimension"), SUBSET_CASES)
def test_some_metrics(site: Site, customer: Customer, metrics: list[str], dimension: str) -> None:
    """Some metrics only, in any order (the figures not asked are not read): the same numbers, and
    the rows with a non-zero figure among those asked."""
    for first, last, _ in customer.ranges:
        expected = site.expect(customer, first, last, [dimension], metrics=metrics)
        assert_same(site.ask(customer, first, last, [dimension], metrics=metrics), expected)


@pytest.mark.parametrize("customer", CUSTOMERS, ids=lambda c: c.customer_id)
def test_top_rows_in_the_default_order(site: Site, customer: Customer) -> None:
    """limit and offset page the rows in the default order: the first metric descending, then the
    dimension ascending; total_rows counts them all."""
    everything = site.expect(customer, *WHOLE_ISO, ["visit:channel"])
    ordered = sorted(everything.items(), key=lambda row: (-row[1][0], row[0]))
    query = {"metrics": list(METRICS), "dimensions": ["visit:channel"], "limit": 2, "offset": 1}
    headers = site.tenants[customer.customer_id].headers
    body = {"date_range": list(WHOLE_ISO)} | query
    answer = site.http.post("/api/v1/stats/query", headers=headers, json=body).json()
    assert [(tuple(r["dimensions"]), r["metrics"]) for r in answer["results"]] == ordered[1:3]
    assert answer["meta"]["total_rows"] == len(everything)
