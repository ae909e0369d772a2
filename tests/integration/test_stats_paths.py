"""The stats API's two paths agree: every query the rollups answer, the facts answer the same.

A varied event set (visitors on desktops and phones, sessions with and without client ids, over
local midnight, with referrers, UTM tags, pages, custom events and events without a page, over three
weeks) goes through the real pipeline for a customer in Europe/Berlin, beside another customer's
events. Then every unfiltered query the rollups path answers — no dimension, each dimension, each
time dimension, each day/week/month bucket by each other dimension — over several ranges (whole
period, a range cutting weeks, months and a session over midnight, relative ranges) gives exactly the
same answer through `run_query(..., force_facts=True)`: rows, order, totals and comparisons. So do
the queries of a dashboard filtered by one value of a dimension (a click on a row): totals, charts
and the breakdown by that dimension. A batch of queries (`run_queries`) answers each query as it is
answered alone, the panels of a filtered dashboard in one statement.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from tests.helpers.postgres import create_database, drop_database
from tests.helpers.vault_load import IPHONE, Event, load_one_batch, new_customer

from onevault import sqlfile
from onevault.stats.models import DIMENSIONS, METRICS, TIME_DIMENSIONS, StatsQuery
from onevault.stats.query import Sample, batch_statement, run_queries, run_query, statement, uses_rollups

ZONE = "Europe/Berlin"
FIREFOX_MAC = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:125.0) Gecko/20100101 Firefox/125.0"
ANDROID = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Mobile Safari/537.36"
)
AGENTS = (None, IPHONE, FIREFOX_MAC, ANDROID)
PAGES = ("/", "/pricing", "/docs", "/docs/start", "/blog/post-1", "/blog/post-2", "/shop?item=lamp")
REFERRERS = (
    None,
    None,
    "https://www.google.com/search?q=x",
    "https://t.co/abc",
    "https://example.com/pricing",
    "https://blog.other.org/links",
)
UTMS = ("", "", "", "?utm_source=news&utm_medium=email&utm_campaign=Winter", "?utm_source=ads&utm_medium=cpc")
NON_TIME = tuple(d for d in DIMENSIONS if d not in TIME_DIMENSIONS)
VISIT_DIMENSIONS = tuple(n for n, d in DIMENSIONS.items() if d.level == "visit")
EVENTS = tuple(n for n, d in DIMENSIONS.items() if d.level == "event")


def event_set(prefix: str, today: date, rng: random.Random) -> list[Event]:
    """Visitors and their sessions over the 21 days before today (local), with a few late-night ones."""
    zone = ZoneInfo(ZONE)
    events: list[Event] = []
    n = 0
    for v in range(14):
        agent = AGENTS[v % len(AGENTS)]
        visitor = f"{prefix}-v{v}"
        for s in range(rng.randint(1, 4)):
            day = today - timedelta(days=rng.randint(1, 21))
            # Some sessions start just before local midnight and run past it.
            hour, minute = (23, 50) if rng.random() < 0.2 else (rng.randint(0, 22), rng.randint(0, 59))
            at = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone).astimezone(UTC)
            client_session = f"{visitor}-s{s}" if rng.random() < 0.5 else None
            referrer = rng.choice(REFERRERS)
            utm = rng.choice(UTMS)
            for k in range(rng.randint(1, 5)):
                n += 1
                custom = rng.random() < 0.25
                page: str | None = rng.choice(PAGES) + (utm if k == 0 else "")
                if custom and rng.random() < 0.4:
                    page = None
                fields: dict[str, Any] = {"user_agent": agent} if agent else {}
                events.append(
                    Event(
                        event_id=f"{prefix}-{n}",
                        at=at,
                        visitor_id=visitor,
                        session_id=client_session,
                        page=page,
                        event_type=rng.choice(("signup", "download")) if custom else "page_view",
                        referrer=referrer if k == 0 else None,
                        **fields,
                    )
                )
                at += timedelta(minutes=rng.randint(1, 12))
    return events


@pytest.fixture(scope="module")
def loaded(pg_url: str, template_db: str) -> Iterator[tuple[str, str]]:
    """One database for the module: the customer in Berlin and another one, loaded and processed."""
    url = create_database(pg_url, template_db)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            customer = new_customer(conn, "paths")
            other = new_customer(conn, "other")
            conn.execute(
                "INSERT INTO auth.tenant_zone_s (tenant_hk, time_zone, record_source) "
                "VALUES (util.tenant_hk(%s), %s, 'test')",
                (customer, ZONE),
            )
            today = datetime.now(ZoneInfo(ZONE)).date()
            load_one_batch(conn, customer, event_set("p", today, random.Random(7)))
            load_one_batch(conn, other, event_set("o", today, random.Random(8)))
        yield url, customer
    finally:
        drop_database(pg_url, url)


def both(url: str, customer: str, query: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The answers of the rollups path and of the facts path to `query`."""

    async def ask() -> tuple[dict[str, Any], dict[str, Any]]:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            return (
                await run_query(conn, customer, query),
                await run_query(conn, customer, query, force_facts=True),
            )

    return asyncio.run(ask())


def ranges() -> list[Any]:
    """Whole period, a range cutting weeks and months, relative ranges."""
    today = datetime.now(ZoneInfo(ZONE)).date()
    return [
        [(today - timedelta(days=22)).isoformat(), today.isoformat()],
        [(today - timedelta(days=17)).isoformat(), (today - timedelta(days=5)).isoformat()],
        "7d",
        "month",
        "all",
    ]


def shapes() -> list[list[str]]:
    """Every dimension list the rollups answer."""
    found: list[list[str]] = [[], *([d] for d in DIMENSIONS)]
    found += [[t, d] for t in TIME_DIMENSIONS if t != "time:hour" for d in NON_TIME]
    found += [[d, "time:week"] for d in ("event:page", "visit:channel")]
    return found


def test_the_shapes_are_the_rollups_ones() -> None:
    """The queries of this module are exactly those the rollups answer: a filter only when it picks
    one value of the query's dimension, or of any dimension but time when there is none."""
    chrome = [["is", "visit:browser", ["Chrome"]]]
    for dims in shapes():
        assert uses_rollups_of(dims)
    for dims in ([], ["time:day"], ["time:month"], ["visit:browser"], ["visit:browser", "time:week"]):
        assert uses_rollups_of(dims, chrome)
    assert uses_rollups_of([], [["is", "event:page", [None]]])
    assert not uses_rollups_of(["time:hour", "visit:browser"])
    assert not uses_rollups_of(["event:page", "visit:browser"])
    assert not uses_rollups_of(["visit:os"], chrome)
    assert not uses_rollups_of(["time:hour"], chrome)
    assert not uses_rollups_of([], [["is", "visit:browser", ["Chrome", "Firefox"]]])
    assert not uses_rollups_of([], [["is_not", "visit:browser", ["Chrome"]]])
    assert not uses_rollups_of([], [["contains", "visit:browser", ["Chr"]]])
    assert not uses_rollups_of([], [*chrome, ["is", "visit:os", ["Mac OS X"]]])


def tenant_aliases(text: str) -> set[str]:
    """Aliases of the customer-keyed mart tables a statement reads (mart.dimension is everyone's)."""
    found = re.findall(r"(?:FROM|JOIN)\s+mart\.(\w+)\s+(\w+)", text)
    return {alias for table, alias in found if table != "dimension"}


def assert_callers_rows_only(text: str) -> None:
    """Each clause of `text` that reads a mart table starts with `tenant_hk = %(tenant)s` (an aggregate's
    FILTER (WHERE ...) reads none)."""
    aliases = tenant_aliases(text)
    assert aliases, text
    clauses = [
        m
        for m in re.finditer(r"(?<!FILTER \()\b(?:ON|WHERE)\s+(\w+)\.(\S+ \S+ \S+)", text)
        if m[1] in aliases
    ]
    assert {m[1] for m in clauses} == aliases, text
    assert all(m[2] == "tenant_hk = %(tenant)s" for m in clauses), text


def test_every_statement_reads_the_callers_rows_only() -> None:
    """In every composed statement (both paths, every kind of filter, a batch's), each clause that reads
    a mart table starts with `tenant_hk = %(tenant)s`, and the facts are bounded by the range's hours."""
    filters = [["is", "visit:os", ["x"]], ["contains", "event:type", ["a"]], ["is_not", "event:page", [None]]]
    dimension_lists = [*shapes(), ["time:hour", "visit:browser"], ["event:page", "visit:os", "time:week"]]
    cases = itertools.product(
        dimension_lists, [[], *([f] for f in filters), filters], [list(METRICS), ["visitors", "visits"]]
    )
    for dims, chosen, metrics in cases:
        query = StatsQuery.model_validate(
            {"date_range": "7d", "metrics": metrics, "dimensions": dims, "filters": chosen}
        )
        for source in ("rollups", "facts") if uses_rollups(query) else ("facts",):
            text = statement(query, source).as_string(None)
            assert_callers_rows_only(text)
            if source == "facts":
                assert "e.hour >= %(lo)s AND e.hour < %(hi)s" in text
                assert "s.start_hour >= %(lo)s" in text and "s.start_hour < %(hi)s" in text
                sampled = statement(query, source, Sample(16)).as_string(None)
                assert_callers_rows_only(sampled)
                # Every read of the sessions is of the sample's visitors.
                reads = re.findall(r"(?:FROM|JOIN) mart\.session_f s\b", text)
                assert sampled.count("s.site_visitor_hk < %(sample_below)s") == len(reads)
                # Every read of the events is by session key or by the sample's visitor bytes.
                reads = re.findall(r"\be\.tenant_hk = %\(tenant\)s AND e\.(\w+)", text)
                assert set(reads) <= {"site_session_hk", "visitor_byte"}, text
        batch = [query.model_copy(update={"dimensions": [d]}) for d in VISIT_DIMENSIONS]
        event_metrics = ["visitors", "pageviews", "events"]
        batches = [
            batch,
            [query.model_copy(update={"dimensions": [d], "metrics": event_metrics}) for d in EVENTS],
        ]
        for batch in batches:
            assert_callers_rows_only(batch_statement(batch).as_string(None))
            assert_callers_rows_only(batch_statement(batch, Sample(16)).as_string(None))
    named = sqlfile.load("onevault.stats", "queries.sql")
    assert "WHERE f.tenant_hk = util.tenant_hk(%(customer_id)s)" in named["realtime_visitors"].as_string(None)


def uses_rollups_of(dims: list[str], filters: list[Any] | None = None) -> bool:
    """Whether the rollups answer a query by `dims` with `filters`."""
    query = StatsQuery.model_validate(
        {"date_range": "7d", "metrics": ["visits"], "dimensions": dims, "filters": filters or []}
    )
    return uses_rollups(query)


@pytest.mark.parametrize("date_range", ranges(), ids=str)
def test_every_rollups_query_has_the_facts_answer(loaded: tuple[str, str], date_range: Any) -> None:
    """All metrics by every rollups shape: the same rows, in the same order, from both paths."""
    url, customer = loaded
    nonzero = 0
    for dims in shapes():
        query = {"date_range": date_range, "metrics": list(METRICS), "dimensions": dims, "limit": 10_000}
        rollups, facts = both(url, customer, query)
        assert rollups["meta"].pop("source") == "rollups"
        assert facts["meta"].pop("source") == "facts"
        assert rollups == facts, dims
        nonzero += any(any(r["metrics"]) for r in rollups["results"])
    if date_range == ranges()[0]:
        # The whole period: every shape has figures (the comparison is not vacuous).
        assert nonzero == len(shapes())


@pytest.mark.parametrize("metric", METRICS)
def test_each_metric_alone_is_the_same(loaded: tuple[str, str], metric: str) -> None:
    """One metric at a time (rows are those where it is not zero), by a few dimensions and buckets."""
    url, customer = loaded
    few: list[list[str]] = [[], ["event:page"], ["visit:referrer"], ["time:day"], ["time:hour"]]
    for dims in [*few, ["time:week", "event:type"]]:
        query = {"date_range": ranges()[0], "metrics": [metric], "dimensions": dims, "limit": 10_000}
        rollups, facts = both(url, customer, query)
        assert rollups["results"] == facts["results"], (metric, dims)
        assert rollups["meta"]["total_rows"] == facts["meta"]["total_rows"]


@pytest.mark.parametrize("dimension", NON_TIME)
def test_a_filter_on_one_value_is_the_same(loaded: tuple[str, str], dimension: str) -> None:
    """Filtered by one value of `dimension` (its most visited, its second, and none): the totals with
    the previous period, charts by day and month, and the breakdown by that dimension alone and by
    week, from both paths."""
    url, customer = loaded
    whole = ranges()[0]
    top, _ = both(url, customer, {"date_range": whole, "metrics": ["visitors"], "dimensions": [dimension]})
    values = [r["dimensions"][0] for r in top["results"][:2]]
    assert values, dimension
    previous = {"comparison": "previous_period"}
    for value, date_range in itertools.product([*values, None], [whole, ranges()[1]]):
        for shape in ([], ["time:day"], ["time:month"], [dimension], [dimension, "time:week"]):
            query = {
                "date_range": date_range,
                "metrics": list(METRICS),
                "dimensions": shape,
                "filters": [["is", dimension, [value]]],
                "limit": 10_000,
            } | ({"include": previous} if not shape else {})
            rollups, facts = both(url, customer, query)
            assert rollups["meta"].pop("source") == "rollups"
            assert facts["meta"].pop("source") == "facts"
            assert rollups == facts, (dimension, value, shape)


def test_pages_orders_and_comparisons_are_the_same(loaded: tuple[str, str]) -> None:
    """order_by, limit, offset and the previous period give the same rows from both paths."""
    url, customer = loaded
    today = datetime.now(ZoneInfo(ZONE)).date()
    second_week = [(today - timedelta(days=13)).isoformat(), (today - timedelta(days=7)).isoformat()]
    previous = {"comparison": "previous_period"}
    for query in (
        {"metrics": ["visitors", "bounce_rate"], "dimensions": ["event:page"], "limit": 3, "offset": 1},
        {"metrics": ["pageviews"], "dimensions": ["visit:browser"], "order_by": [["visit:browser", "desc"]]},
        {"metrics": ["visit_duration", "visits"], "dimensions": ["time:day", "visit:device"], "limit": 5},
        {
            "metrics": ["views_per_visit"],
            "dimensions": ["visit:os"],
            "order_by": [["views_per_visit", "asc"]],
        },
        {"metrics": list(METRICS), "include": previous},
        {"metrics": list(METRICS), "dimensions": ["time:day"], "include": previous},
        {"metrics": ["visitors", "events"], "dimensions": ["event:type"], "include": previous},
    ):
        rollups, facts = both(url, customer, {"date_range": second_week, **query})
        assert rollups["results"] == facts["results"], query
        assert rollups["meta"]["total_rows"] == facts["meta"]["total_rows"]
        assert rollups["results"], query


class CountingCursor(psycopg.AsyncCursor[Any]):
    """An async cursor that counts the statements its connection runs."""

    executed = 0

    async def execute(self, query: Any, params: Any = None, **options: Any) -> Any:
        CountingCursor.executed += 1
        return await super().execute(query, params, **options)


BATCH_FILTERS: list[list[Any]] = [
    [],
    [["is", "visit:browser", ["Firefox"]]],
    [["is", "visit:referrer", [None]]],
    [["is", "event:page", ["/pricing"]]],
    [["is_not", "event:page", [None]]],
    [["contains", "event:page", ["DOC"]]],
    [["is", "event:type", ["signup"]]],
    [
        ["is", "event:page", ["/docs"]],
        ["is", "event:type", ["page_view"]],
        ["is_not", "visit:device", ["mobile"]],
    ],
]


@pytest.mark.parametrize("filters", BATCH_FILTERS, ids=str)
def test_a_batch_answers_each_query_as_alone(loaded: tuple[str, str], filters: list[Any]) -> None:
    """A filtered dashboard's queries and others in one batch: each answer is the one its query gets
    alone, in the batch's order; the visit panels on the facts are counted in one statement, the
    event panels on the facts in another."""
    url, customer = loaded
    previous = {"comparison": "previous_period"}
    panels = [
        {
            "metrics": ["visitors", "visits"],
            "dimensions": [d],
            "order_by": [["visitors", "desc"]],
            "limit": 10,
        }
        for d in VISIT_DIMENSIONS
    ]
    panels[1] = {
        "metrics": [m for m in METRICS if m not in ("pageviews", "events")],
        "dimensions": ["visit:os"],
    }
    panels[2] = {
        "metrics": ["visits", "bounce_rate"],
        "dimensions": ["visit:referrer"],
        "limit": 2,
        "offset": 1,
    }
    panels[3] = {
        "metrics": ["visit_duration"],
        "dimensions": ["visit:device"],
        "order_by": [["visit:device", "desc"]],
    }
    events = [
        {"metrics": ["visitors", "pageviews"], "dimensions": ["event:page"], "limit": 10},
        {"metrics": ["events", "visitors"], "dimensions": ["event:type"], "order_by": [["events", "desc"]]},
    ]
    others = [
        {"metrics": list(METRICS), "include": previous},
        {"metrics": ["visitors", "pageviews"], "dimensions": ["time:day"]},
        {"metrics": ["visitors", "visits"], "dimensions": ["visit:browser"], "include": previous},
    ]

    async def ask(date_range: Any) -> None:
        bodies = [others[0], *panels[:5], others[1], events[0], *panels[5:], events[1], others[2]]
        queries = [
            StatsQuery.model_validate({"date_range": date_range, "filters": filters, **body})
            for body in bodies
        ]
        async with await psycopg.AsyncConnection.connect(
            url, autocommit=True, cursor_factory=CountingCursor
        ) as conn:
            alone = [await run_query(conn, customer, query) for query in queries]
            CountingCursor.executed = 0
            together = await run_queries(conn, customer, queries)
        assert together == alone
        assert sum(bool(a["results"]) for a in alone) >= 3
        grouped = []
        for kind in (panels, events):
            members = sum(
                a["meta"]["source"] == "facts" and b in kind for a, b in zip(alone, bodies, strict=True)
            )
            grouped += [members] if members > 1 else []
        # The clock once; one statement for each kind of panel on the facts; each other query's
        # statement, and its previous period's.
        assert CountingCursor.executed == 1 + len(grouped) + (len(queries) - sum(grouped)) + 2

    for date_range in (ranges()[0], ranges()[1], "7d"):
        asyncio.run(ask(date_range))


def test_a_batch_counts_a_visitor_once_where_an_unseen_session_comes_first(
    pg_url: str, template_db: str
) -> None:
    """A visitor seen in two sessions of the range, whose third session starts on the range's last day
    and has its matching event only after it (its visit counts, its visitor does not), counts once
    under the browser and OS its sessions share: in a batch as alone."""
    url = create_database(pg_url, template_db)
    try:
        today = datetime.now(UTC).date()
        first, last = today - timedelta(days=4), today - timedelta(days=2)

        def at(day: date, hour: int, minute: int) -> datetime:
            return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)

        visits = [("s1", at(first, 10, 0), "/pricing"), ("s2", at(last, 9, 0), "/pricing")]
        visits += [("s3", at(last, 23, 50), "/"), ("s3", at(last + timedelta(days=1), 0, 5), "/pricing")]
        events = [
            Event(f"e{i}", when, visitor_id="v1", session_id=session, page=page, user_agent=FIREFOX_MAC)
            for i, (session, when, page) in enumerate(visits)
        ]
        with psycopg.connect(url, autocommit=True) as conn:
            customer = new_customer(conn, "unseen")
            load_one_batch(conn, customer, events)
        queries = [
            StatsQuery.model_validate(
                {
                    "date_range": [first.isoformat(), last.isoformat()],
                    "metrics": ["visitors", "visits"],
                    "dimensions": [dimension],
                    "filters": [["is", "event:page", ["/pricing"]]],
                }
            )
            for dimension in ("visit:browser", "visit:os")
        ]

        async def ask() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                alone = [await run_query(conn, customer, query) for query in queries]
                return alone, await run_queries(conn, customer, queries)

        alone, together = asyncio.run(ask())
        assert together == alone
        assert [a["results"] for a in together] == [
            [{"dimensions": ["Firefox"], "metrics": [1, 3]}],
            [{"dimensions": ["Mac OS X"], "metrics": [1, 3]}],
        ]
    finally:
        drop_database(pg_url, url)
