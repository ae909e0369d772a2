"""`POST /api/v1/stats/query`, `POST /api/v1/stats/queries` and `GET /api/v1/stats/realtime` as API
clients see them.

A small known event set goes through the real pipeline; the answers are checked figure by figure:
shape, comparison with the previous period, order, pages, filters, time buckets with zeros, the
customer's time zone, realtime visitors. Bad queries are refused 422 naming what is wrong, callers
without the `read` scope 401/403, and no customer ever sees another's figures.
"""

from __future__ import annotations

import asyncio
import time as clock
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest
from tests.helpers.http import assert_error
from tests.helpers.tenants import Tenant, make_tenant
from tests.helpers.vault_load import IPHONE, Event, load_one_batch

from onevault.stats.query import TooSlow, time_limited

QUERY = "/api/v1/stats/query"
QUERIES = "/api/v1/stats/queries"
REALTIME = "/api/v1/stats/realtime"
ALL_METRICS = [
    "visitors",
    "visits",
    "pageviews",
    "events",
    "views_per_visit",
    "bounce_rate",
    "visit_duration",
]
# The day of the known event set: a few days back, so that its day before and after are in the past,
# and its day before is within `7d` when the tests run on the next day (past midnight, UTC).
DAY = datetime.now(UTC).date() - timedelta(days=4)


@pytest.fixture
def server_settings() -> dict[str, Any]:
    """No background pipeline: the tests process their events themselves."""
    return {"pipeline_background": False}


def at(day: date, hour: int, minute: int = 0, second: int = 0) -> datetime:
    """A UTC moment of `day`."""
    return datetime.combine(day, time(hour, minute, second), tzinfo=UTC)


def known_events(prefix: str = "k") -> list[Event]:
    """DAY: Anna (3 events, 2 page views, 6 minutes, from Google with UTM tags) and Ben (a bounce on an
    iPhone); the day before, Carl bounces; the day after, Anna comes back to /docs."""
    anna = {"visitor_id": f"{prefix}-anna", "session_id": f"{prefix}-anna-1"}
    return [
        Event(
            f"{prefix}-1", at(DAY, 10), page="/?utm_source=news", referrer="https://www.google.com/", **anna
        ),
        Event(f"{prefix}-2", at(DAY, 10, 5), page="/pricing", **anna),
        Event(f"{prefix}-3", at(DAY, 10, 6), page="/pricing", event_type="signup", **anna),
        Event(f"{prefix}-4", at(DAY, 11), visitor_id=f"{prefix}-ben", page="/pricing", user_agent=IPHONE),
        Event(f"{prefix}-5", at(DAY - timedelta(days=1), 9), visitor_id=f"{prefix}-carl", page="/"),
        Event(f"{prefix}-6", at(DAY + timedelta(days=1), 12), visitor_id=f"{prefix}-anna", page="/docs"),
    ]


def ask(client: httpx.Client, tenant: Tenant, **body: Any) -> dict[str, Any]:
    """A stats query that must be answered 200; the answer."""
    response = client.post(QUERY, headers=tenant.headers, json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def ask_within_a_day(client: httpx.Client, tenant: Tenant, **body: Any) -> tuple[dict[str, Any], date]:
    """A stats query asked and answered within one UTC day: the answer and that day."""
    while True:
        today = datetime.now(UTC).date()
        answer = ask(client, tenant, **body)
        if datetime.now(UTC).date() == today:
            return answer, today


def days(first: date, last: date | None = None) -> list[str]:
    """A custom date range."""
    return [first.isoformat(), (last or first).isoformat()]


@pytest.fixture
def loaded(conn: psycopg.Connection, tenant: Tenant) -> Tenant:
    """The tenant with the known event set in its marts."""
    load_one_batch(conn, tenant.customer_id, known_events())
    return tenant


def test_the_answer_has_the_documented_shape(client: httpx.Client, loaded: Tenant) -> None:
    """results, meta and the query as answered; a day's figures from the rollups, in the query's order."""
    answer = ask(client, loaded, date_range=days(DAY), metrics=ALL_METRICS)
    assert answer["results"] == [{"dimensions": [], "metrics": [2, 2, 3, 4, 1.5, 50.0, 180]}]
    assert answer["meta"] == {
        "time_zone": "UTC",
        "date_range": days(DAY),
        "total_rows": 1,
        "source": "rollups",
    }
    assert answer["query"] == {
        "date_range": days(DAY),
        "metrics": ALL_METRICS,
        "dimensions": [],
        "filters": [],
        "order_by": [["visitors", "desc"]],
        "limit": 100,
        "offset": 0,
    }


def test_relative_ranges_end_today(client: httpx.Client, loaded: Tenant) -> None:
    """`7d` is today and the six days before (in UTC here); `all` starts on the first day with data."""
    week, today = ask_within_a_day(client, loaded, date_range="7d", metrics=["visits", "pageviews"])
    assert week["meta"]["date_range"] == days(today - timedelta(days=6), today)
    assert week["results"][0]["metrics"] == [4, 5]
    whole, today = ask_within_a_day(
        client, loaded, date_range="all", metrics=["visitors"], include={"comparison": "previous_period"}
    )
    assert whole["meta"]["date_range"] == days(DAY - timedelta(days=1), today)
    assert whole["results"][0]["metrics"] == [3]
    assert whole["results"][0]["comparison"] == {"metrics": [0], "change": [None]}
    month, today = ask_within_a_day(client, loaded, date_range="month", metrics=["visits"])
    assert month["meta"]["date_range"] == days(today.replace(day=1), today)
    year, today = ask_within_a_day(client, loaded, date_range="12mo", metrics=["visits"])
    first = date(today.year - (today.month < 12), (today.month % 12) + 1, 1)
    assert year["meta"]["date_range"] == days(first, today)


def test_dimensions_and_missing_values(client: httpx.Client, loaded: Tenant) -> None:
    """By page and by referrer: a missing value is null; visits count once per page they had."""
    pages = ask(
        client,
        loaded,
        date_range=days(DAY),
        metrics=["visitors", "visits", "pageviews", "events"],
        dimensions=["event:page"],
    )
    assert pages["results"] == [
        {"dimensions": ["/pricing"], "metrics": [2, 2, 2, 3]},
        {"dimensions": ["/"], "metrics": [1, 1, 1, 1]},
    ]
    referrers = ask(
        client,
        loaded,
        date_range=days(DAY),
        metrics=["visits"],
        dimensions=["visit:referrer"],
        order_by=[["visit:referrer", "asc"]],
    )
    assert [r["dimensions"] for r in referrers["results"]] == [[None], ["www.google.com"]]
    sources = ask(
        client,
        loaded,
        date_range=days(DAY),
        metrics=["visits", "bounce_rate"],
        dimensions=["visit:utm_source", "visit:device"],
    )
    assert sources["meta"]["source"] == "facts"
    assert sources["results"] == [
        {"dimensions": [None, "mobile"], "metrics": [1, 100.0]},
        {"dimensions": ["news", "desktop"], "metrics": [1, 0.0]},
    ]


def test_comparison_with_the_previous_period(client: httpx.Client, loaded: Tenant) -> None:
    """The day before's figures beside each row: percent change, bounce rate in points, null after 0."""
    answer = ask(
        client, loaded, date_range=days(DAY), metrics=ALL_METRICS, include={"comparison": "previous_period"}
    )
    before = days(DAY - timedelta(days=1))
    assert answer["meta"]["comparison_date_range"] == before
    assert answer["query"]["include"] == {"comparison": "previous_period"}
    (row,) = answer["results"]
    assert row["comparison"] == {
        "metrics": [1, 1, 1, 1, 1.0, 100.0, 0],
        "change": [100.0, 100.0, 200.0, 300.0, 50.0, -50.0, None],
    }
    by_page = ask(
        client,
        loaded,
        date_range=days(DAY),
        metrics=["visits"],
        dimensions=["event:page"],
        include={"comparison": "previous_period"},
    )
    assert [(r["dimensions"], r["comparison"]) for r in by_page["results"]] == [
        (["/pricing"], {"metrics": [0], "change": [None]}),
        (["/"], {"metrics": [1], "change": [0.0]}),
    ]


def test_order_limit_and_offset(client: httpx.Client, loaded: Tenant) -> None:
    """Rows come in order_by's order, a page at a time; total_rows counts them all."""
    whole = days(DAY - timedelta(days=1), DAY + timedelta(days=1))
    body: dict[str, Any] = {"date_range": whole, "metrics": ["pageviews"], "dimensions": ["event:page"]}
    default = ask(client, loaded, **body)["results"]
    assert [(r["dimensions"][0], r["metrics"][0]) for r in default] == [
        ("/", 2),
        ("/pricing", 2),
        ("/docs", 1),
    ]
    by_name = ask(client, loaded, **body, order_by=[["event:page", "desc"]])["results"]
    assert [r["dimensions"][0] for r in by_name] == ["/pricing", "/docs", "/"]
    page = ask(client, loaded, **body, order_by=[["pageviews", "asc"]], limit=1, offset=1)
    assert [r["dimensions"][0] for r in page["results"]] == ["/"]
    assert page["meta"]["total_rows"] == 3
    beyond = ask(client, loaded, **body, offset=10)
    assert beyond["results"] == []
    assert beyond["meta"]["total_rows"] == 3


def test_filters(client: httpx.Client, loaded: Tenant) -> None:
    """is / is_not / contains on visit and event dimensions, null for a missing value: the rollups
    answer one value alone (one `is` filter of one value), the facts every other filter."""
    whole = days(DAY - timedelta(days=1), DAY + timedelta(days=1))

    def figures(*filters: list[Any]) -> list[Any]:
        answer = ask(
            client, loaded, date_range=whole, metrics=["visitors", "visits", "events"], filters=list(filters)
        )
        one_value = len(filters) == 1 and filters[0][0] == "is" and len(filters[0][2]) == 1
        assert answer["meta"]["source"] == ("facts" if filters and not one_value else "rollups")
        return answer["results"][0]["metrics"]  # type: ignore[no-any-return]

    assert figures() == [3, 4, 6]
    assert figures(["is", "visit:device", ["mobile"]]) == [1, 1, 1]
    assert figures(["is_not", "visit:device", ["mobile"]]) == [2, 3, 5]
    # Direct visits: those without a referrer.
    assert figures(["is", "visit:referrer", [None]]) == [3, 3, 3]
    # Event filters: the matching events, and the visits that had one.
    assert figures(["is", "event:type", ["signup"]]) == [1, 1, 1]
    assert figures(["contains", "event:page", ["PRIC"]]) == [2, 2, 3]
    assert figures(["contains", "event:page", ["PRIC"]], ["is", "visit:os", ["iOS"]]) == [1, 1, 1]


def test_time_buckets_are_all_there(client: httpx.Client, loaded: Tenant) -> None:
    """Every day, hour, week and month of the range is a row, zeros included, labelled by its start."""
    week = days(DAY - timedelta(days=3), DAY + timedelta(days=3))
    by_day = ask(client, loaded, date_range=week, metrics=["visitors", "pageviews"], dimensions=["time:day"])
    assert [r["dimensions"][0] for r in by_day["results"]] == [
        (DAY + timedelta(days=d)).isoformat() for d in range(-3, 4)
    ]
    assert [r["metrics"] for r in by_day["results"]] == [
        [0, 0],
        [0, 0],
        [1, 1],
        [2, 3],
        [1, 1],
        [0, 0],
        [0, 0],
    ]
    by_hour = ask(
        client, loaded, date_range=days(DAY), metrics=["events"], dimensions=["time:hour"], limit=24
    )
    hours = by_hour["results"]
    assert [r["dimensions"][0] for r in hours] == [f"{DAY.isoformat()}T{h:02d}:00:00" for h in range(24)]
    assert [r["metrics"][0] for r in hours if r["metrics"][0]] == [3, 1]
    by_week = ask(client, loaded, date_range=week, metrics=["visits"], dimensions=["time:week"])
    mondays = sorted({(DAY + timedelta(days=d - (DAY + timedelta(days=d)).weekday())) for d in range(-3, 4)})
    assert [r["dimensions"][0] for r in by_week["results"]] == [m.isoformat() for m in mondays]
    assert sum(r["metrics"][0] for r in by_week["results"]) == 4
    by_month = ask(client, loaded, date_range=days(DAY), metrics=["visits"], dimensions=["time:month"])
    assert by_month["results"] == [{"dimensions": [DAY.replace(day=1).isoformat()], "metrics": [2]}]


def test_the_customers_time_zone_moves_a_late_event_to_the_next_day(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant
) -> None:
    """An event at 23:30 UTC is on the next local day in Berlin once the marts are rebuilt in the zone."""
    load_one_batch(conn, tenant.customer_id, [Event("late-1", at(DAY, 23, 30), visitor_id="night", page="/")])
    body: dict[str, Any] = {
        "date_range": days(DAY, DAY + timedelta(days=1)),
        "metrics": ["visitors", "visits"],
        "dimensions": ["time:day"],
    }
    utc = ask(client, tenant, **body)
    assert [r["metrics"] for r in utc["results"]] == [[1, 1], [0, 0]]
    conn.execute(
        "INSERT INTO auth.tenant_zone_s (tenant_hk, time_zone, record_source) "
        "VALUES (util.tenant_hk(%s), 'Europe/Berlin', 'test')",
        (tenant.customer_id,),
    )
    conn.execute("SELECT mart.clear_tenant(util.tenant_hk(%s))", (tenant.customer_id,))
    conn.execute("SELECT mart.rebuild_visitors(util.tenant_hk(%s), NULL, 100000)", (tenant.customer_id,))
    berlin = ask(client, tenant, **body)
    assert berlin["meta"]["time_zone"] == "Europe/Berlin"
    assert [r["metrics"] for r in berlin["results"]] == [[0, 0], [1, 1]]
    local = at(DAY, 23, 30).astimezone(ZoneInfo("Europe/Berlin"))
    assert local.date() == DAY + timedelta(days=1)
    hour = ask(client, tenant, date_range=days(local.date()), metrics=["events"], dimensions=["time:hour"])
    assert [r["dimensions"][0] for r in hour["results"] if r["metrics"][0]] == [
        f"{local.date().isoformat()}T{local.hour:02d}:00:00"
    ]


def test_realtime_counts_the_visitors_of_the_last_five_minutes(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant
) -> None:
    """A visitor who just arrived counts; one whose last event is ten minutes old does not."""
    now = datetime.now(UTC)
    load_one_batch(
        conn,
        tenant.customer_id,
        [
            Event("rt-1", now - timedelta(minutes=10), visitor_id="gone", page="/"),
            Event("rt-2", now - timedelta(minutes=11), visitor_id="gone", page="/a"),
            Event("rt-3", now - timedelta(seconds=5), visitor_id="here", page="/"),
        ],
    )
    response = client.get(REALTIME, headers=tenant.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["visitors"] == 1
    assert body["window_seconds"] == 300
    assert abs(datetime.fromisoformat(body["timestamp"]) - datetime.now(UTC)) < timedelta(minutes=1)


@pytest.mark.parametrize("path", [QUERY, QUERIES, REALTIME])
def test_the_read_scope_is_required(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant, path: str
) -> None:
    """No token: 401; a track-only token: 403; another customer's token: 403; no customer: 400."""

    def call(headers: dict[str, str]) -> httpx.Response:
        if path == REALTIME:
            return client.get(path, headers=headers)
        body = {"date_range": "7d", "metrics": ["visitors"]}
        return client.post(path, headers=headers, json={"queries": [body]} if path == QUERIES else body)

    assert_error(call({"X-Customer-ID": tenant.customer_id}), 401)
    track_only = make_tenant(conn, tenant.customer_id, scopes=("track",))
    assert "read" in assert_error(call(track_only.headers), 403, track_only.token)
    other = make_tenant(conn, "other_co")
    assert_error(call({**other.headers, "X-Customer-ID": tenant.customer_id}), 403, other.token)
    assert_error(call({"Authorization": f"Bearer {tenant.token}"}), 400, tenant.token)
    assert call(tenant.headers).status_code == 200


def test_no_customer_sees_another_ones_figures(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant
) -> None:
    """Another customer's events on the same days count for it alone, on both paths and in realtime."""
    other = make_tenant(conn, "other_co")
    load_one_batch(
        conn,
        other.customer_id,
        [
            Event("o-1", at(DAY, 10), visitor_id="o-v", page="/secret"),
            Event("o-2", datetime.now(UTC) - timedelta(seconds=5), visitor_id="o-w", page="/secret"),
        ],
    )
    load_one_batch(conn, tenant.customer_id, known_events())
    for body in (
        {"metrics": ["visitors", "events"], "dimensions": ["event:page"]},
        {
            "metrics": ["visitors", "events"],
            "dimensions": ["event:page"],
            "filters": [["contains", "event:page", ["e"]]],
        },
        {"metrics": ["visitors", "events"], "dimensions": ["event:page", "visit:browser"]},
    ):
        mine = ask(client, tenant, date_range=days(DAY), **body)
        assert "/secret" not in [r["dimensions"][0] for r in mine["results"]], body
        theirs = ask(client, other, date_range="7d", **body)
        assert {r["dimensions"][0] for r in theirs["results"]} == {"/secret"}, body
    assert ask(client, tenant, date_range=days(DAY), metrics=["visitors"])["results"][0]["metrics"] == [2]
    assert ask(client, other, date_range=days(DAY), metrics=["visitors"])["results"][0]["metrics"] == [1]
    assert client.get(REALTIME, headers=tenant.headers).json()["visitors"] == 0
    assert client.get(REALTIME, headers=other.headers).json()["visitors"] == 1


BAD_QUERIES = [
    ({"metrics": []}, "metrics"),
    ({"metrics": ["visitors", "sessions"]}, "'sessions'"),
    ({"metrics": ["visits", "visits"]}, "'visits' is listed twice"),
    ({"dimensions": ["visit:color"]}, "'visit:color'"),
    ({"dimensions": ["time:day", "time:week"]}, "time:day, time:week"),
    ({"dimensions": ["event:page", "event:page"]}, "'event:page' is listed twice"),
    ({"filters": [["equals", "visit:browser", ["Chrome"]]]}, "'equals'"),
    ({"filters": [["is", "time:day", ["2026-11-01"]]]}, "'time:day'"),
    ({"filters": [["is", "visit:browser", []]]}, "'visit:browser'"),
    ({"filters": [["is", "visit:browser", "Chrome"]]}, "'Chrome'"),
    ({"filters": [["contains", "event:page", [None]]]}, "contains"),
    ({"filters": [["is", "visit:os", [3]]]}, "3"),
    ({"filters": [["is", "visit:os"]]}, "[operator, dimension, [values]]"),
    ({"date_range": "yesterday"}, "'yesterday'"),
    ({"date_range": ["2026-11-30", "2026-11-01"]}, "start 2026-11-30 is after end 2026-11-01"),
    ({"date_range": ["2000-01-01", "2026-01-01"]}, "longer than"),
    ({"date_range": ["2026-02-30", "2026-03-01"]}, "'2026-02-30'"),
    ({"date_range": ["2026-02-01"]}, "date_range"),
    (
        {"date_range": ["0001-01-05", "0001-01-09"], "include": {"comparison": "previous_period"}},
        "previous period",
    ),
    ({"order_by": [["bounce_rate", "desc"]]}, "'bounce_rate'"),
    ({"order_by": [["visitors", "up"]]}, "'up'"),
    ({"limit": 0}, "limit"),
    ({"limit": 10_001}, "limit"),
    ({"limit": "10"}, "'10'"),
    ({"offset": -1}, "offset"),
    ({"colour": "blue"}, "colour"),
    ({"include": {"comparison": "last_year"}}, "comparison"),
]


@pytest.mark.parametrize(("change", "culprit"), BAD_QUERIES, ids=[str(c) for c, _ in BAD_QUERIES])
def test_a_bad_query_is_refused_naming_the_culprit(
    client: httpx.Client, tenant: Tenant, change: dict[str, Any], culprit: str
) -> None:
    """422 with the project's error body, its detail naming the wrong metric, dimension, filter, range..."""
    body = {"date_range": "7d", "metrics": ["visitors"]} | change
    detail = assert_error(client.post(QUERY, headers=tenant.headers, json=body), 422, tenant.token)
    assert culprit in detail, detail


def test_a_missing_date_range_or_body_is_refused(client: httpx.Client, tenant: Tenant) -> None:
    """The date range and the metrics are required; the body is a JSON object."""
    assert "date_range" in assert_error(
        client.post(QUERY, headers=tenant.headers, json={"metrics": ["visits"]}), 422
    )
    assert "metrics" in assert_error(
        client.post(QUERY, headers=tenant.headers, json={"date_range": "7d"}), 422
    )
    assert_error(client.post(QUERY, headers=tenant.headers, json=["7d"]), 422)


def test_a_batch_answers_each_query_as_query_does(client: httpx.Client, loaded: Tenant) -> None:
    """`/queries`: each answer is `/query`'s to the same query, in the batch's order (the dashboard's
    panels, filtered by a page and by a device, beside totals and a chart)."""
    date_range = days(DAY - timedelta(days=1), DAY + timedelta(days=1))
    for filters in ([["is", "event:page", ["/pricing"]]], [["is", "visit:device", ["mobile"]]]):
        queries = [
            {"metrics": ALL_METRICS, "include": {"comparison": "previous_period"}},
            {"metrics": ["visitors", "pageviews"], "dimensions": ["time:day"]},
            {"metrics": ["visitors", "visits"], "dimensions": ["visit:referrer"], "limit": 10},
            {"metrics": ["visitors", "pageviews"], "dimensions": ["event:page"], "limit": 10},
            {"metrics": ["visitors", "visits"], "dimensions": ["visit:device"], "limit": 10},
            {"metrics": ["visitors", "events"], "dimensions": ["event:type"], "limit": 10},
            {
                "metrics": ["visitors", "bounce_rate"],
                "dimensions": ["visit:entry_page"],
                "limit": 1,
                "offset": 1,
            },
        ]
        queries = [{"date_range": date_range, "filters": filters, **q} for q in queries]
        response = client.post(QUERIES, headers=loaded.headers, json={"queries": queries})
        assert response.status_code == 200, response.text
        answers = response.json()["answers"]
        alone = [client.post(QUERY, headers=loaded.headers, json=q).json() for q in queries]
        assert answers == alone
        assert all(answer["results"] for answer in answers[:6]), answers


BAD_BATCHES = [
    ({"queries": []}, "queries"),
    ({"queries": [{"date_range": "7d", "metrics": ["visitors"]}] * 21}, "queries"),
    (
        {"queries": [{"date_range": "7d", "metrics": ["visitors"]}, {"date_range": "7d", "metrics": ["x"]}]},
        "1",
    ),
    ({"query": [{"date_range": "7d", "metrics": ["visitors"]}]}, "query"),
    (
        {
            "queries": [
                {"date_range": "7d", "metrics": ["visitors"]},
                {
                    "date_range": ["0001-01-05", "0001-01-09"],
                    "metrics": ["visitors"],
                    "include": {"comparison": "previous_period"},
                },
            ]
        },
        "queries[1]: date_range: no previous period",
    ),
]


@pytest.mark.parametrize(("body", "culprit"), BAD_BATCHES, ids=[c for _, c in BAD_BATCHES])
def test_a_bad_batch_is_refused_naming_the_query(
    client: httpx.Client, tenant: Tenant, body: dict[str, Any], culprit: str
) -> None:
    """422: no query, more than 20, a bad query (its place named), or one without an answer."""
    detail = assert_error(client.post(QUERIES, headers=tenant.headers, json=body), 422, tenant.token)
    assert culprit in detail, detail


class TestATimeLimit:
    """ONEVAULT_STATS_TIMEOUT_SECONDS: a query still running after it is given up, answered 504."""

    @pytest.fixture
    def server_settings(self) -> dict[str, Any]:
        return {"pipeline_background": False, "stats_timeout_seconds": 0.5}

    def test_a_query_that_runs_too_long_is_given_up(
        self, client: httpx.Client, conn: psycopg.Connection, loaded: Tenant
    ) -> None:
        """While the sessions' facts are locked, a query that reads them waits until the time limit,
        alone or in a batch; the connection then serves the next query as usual."""
        body = {"date_range": "7d", "metrics": ["visitors"], "dimensions": ["event:page", "visit:device"]}
        with conn.transaction():
            conn.execute("LOCK TABLE mart.session_f IN ACCESS EXCLUSIVE MODE")
            for path, sent in ((QUERY, body), (QUERIES, {"queries": [body, body]})):
                started = clock.monotonic()
                detail = assert_error(client.post(path, headers=loaded.headers, json=sent), 504)
                assert 0.5 <= clock.monotonic() - started < 5
                assert "ONEVAULT_STATS_TIMEOUT_SECONDS" in detail and "0.5 s" in detail
        assert ask(client, loaded, **body)["results"]

    def test_the_limit_is_the_whole_requests(self, conn: psycopg.Connection) -> None:
        """The statements of one request share the limit: each under it but together over it, they are
        given up as one over it is, within moments, and the connection serves the next statement;
        under it, they run to their end."""

        async def run(*statements: str) -> str | None:
            async with await psycopg.AsyncConnection.connect(conn.info.dsn, autocommit=True) as reader:
                outcome = None
                try:
                    async with time_limited(reader, 0.5):
                        for statement in statements:
                            await reader.execute(statement)
                except TooSlow as exc:
                    outcome = str(exc)
                assert await (await reader.execute("SELECT 1")).fetchone() == (1,)
                return outcome

        for statements in (["SELECT pg_sleep(0.3)"] * 3, ["SELECT pg_sleep(5)"]):
            started = clock.monotonic()
            outcome = asyncio.run(run(*statements))
            assert outcome is not None and "0.5 s" in outcome
            assert 0.5 <= clock.monotonic() - started < 3
        assert asyncio.run(run("SELECT pg_sleep(0.1)", "SELECT pg_sleep(0.1)")) is None


class TestASampleOfVisitors:
    """ONEVAULT_STATS_SAMPLE_SESSIONS: a range read from the facts that more sessions start in than
    that is counted over a sample of visitors (tests/integration/test_stats_sampling.py checks its
    figures), and the answer says how much was read."""

    @pytest.fixture
    def server_settings(self) -> dict[str, Any]:
        return {"pipeline_background": False, "stats_sample_sessions": 1}

    def test_the_answer_says_it_was_sampled(self, client: httpx.Client, loaded: Tenant) -> None:
        """Two sessions start on DAY: over the cap of one, the facts read 1/2 of the visitors (128 of 256
        first bytes); the rollups and a day with one session are read whole."""
        filtered = {"date_range": days(DAY), "metrics": ["visitors"], "dimensions": ["visit:device"]}
        filtered["filters"] = [["is", "event:page", ["/pricing"]]]
        answers = [ask(client, loaded, **filtered)]
        batch = client.post(QUERIES, headers=loaded.headers, json={"queries": [filtered, filtered]})
        assert batch.status_code == 200, batch.text
        answers += batch.json()["answers"]
        for answer in answers:
            assert answer["meta"]["sample_percent"] == 50.0
            assert sum(r["metrics"][0] for r in answer["results"]) in (0, 2, 4)
        whole = ask(client, loaded, date_range=days(DAY), metrics=ALL_METRICS)
        assert whole["meta"]["source"] == "rollups" and "sample_percent" not in whole["meta"]
        one = ask(client, loaded, **(filtered | {"date_range": days(DAY - timedelta(days=1))}))
        assert "sample_percent" not in one["meta"]
