"""A large range read from the facts is counted over a sample of the visitors, scaled up.

Four hundred identified visitors (one to three sessions each, several pages, browsers, referrers) go through
the real pipeline. Their keys are SHA-256 of the customer's key and their id, so the test knows which
of them a sample holds: with a cap of sessions below the range's, every facts query must answer what
the independent model (tests/helpers/stats_model.py) computes from the sampled visitors' events
alone, counts scaled by 256/below and rounded half up, ratios as they are; the answer's
meta.sample_percent says how much was read. Below the cap, with no cap, and on the rollups path,
every answer is the model's over all visitors, unsampled.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest
from tests.helpers.postgres import create_database, drop_database
from tests.helpers.stats_events import CHROME_WINDOWS, FIREFOX_MAC, SAFARI_IPHONE, Sent, ingest
from tests.helpers.stats_model import METRICS, Filter, Key, StatsModel
from tests.helpers.vault_load import assert_all_processed, new_customer, process_all

from onevault import sqlfile
from onevault.pipeline import useragents
from onevault.pipeline.runner import ALL_LANES
from onevault.stats.models import StatsQuery
from onevault.stats.query import run_queries, run_query

PIPELINE = sqlfile.load("onevault.pipeline", "queries.sql")
FIRST, LAST = date(2026, 11, 1), date(2026, 11, 15)
WHOLE = [FIRST.isoformat(), LAST.isoformat()]
PAGES = ("/", "/pricing", "/docs", "/blog/a", "/blog/b", "/shop")
REFERRERS = (None, None, "https://www.google.com/search?q=x", "https://t.co/abc", "https://news.example.org/")
AGENTS = (CHROME_WINDOWS, FIREFOX_MAC, SAFARI_IPHONE)
PANELS = (
    "visit:entry_page",
    "visit:exit_page",
    "visit:referrer",
    "visit:channel",
    "visit:browser",
    "visit:device",
)
FILTERS: list[list[Filter]] = [
    [("is", "event:page", ["/pricing"])],
    [("is", "visit:browser", ["Firefox"])],
    [("is_not", "visit:referrer", [None])],
    [("contains", "event:page", ["blog"]), ("is", "visit:device", ["Desktop"])],
]


def visitor_key(customer_id: str, visitor_id: str) -> bytes:
    """The vault's hash key of an identified visitor (util.hash_key of util.tenant_hk and util.canon_id)."""
    tenant = hashlib.sha256(customer_id.encode()).digest()
    return hashlib.sha256(tenant + visitor_id.strip().lower().encode()).digest()


def event_set(rng: random.Random) -> list[Sent]:
    """Four hundred visitors' sessions over 1 to 15 November (UTC), no two events at one moment."""
    events: list[Sent] = []
    taken: set[datetime] = set()
    for v in range(400):
        agent = AGENTS[v % len(AGENTS)]
        for s in range(rng.randint(1, 3)):
            at = datetime(2026, 11, rng.randint(1, 15), rng.randint(0, 22), rng.randint(0, 59), tzinfo=UTC)
            referrer = rng.choice(REFERRERS)
            for k in range(rng.randint(1, 4)):
                while at in taken:
                    at += timedelta(milliseconds=1)
                taken.add(at)
                events.append(
                    Sent(
                        event_id=f"e{len(events)}",
                        at=at,
                        url=f"https://shop.example.com{rng.choice(PAGES)}",
                        visitor_id=f"v{v}",
                        session_id=f"v{v}-s{s}",
                        referrer=referrer if k == 0 else None,
                        user_agent=agent,
                    )
                )
                at += timedelta(minutes=rng.randint(1, 9))
    return events


@pytest.fixture(scope="module")
def loaded(pg_url: str, template_db: str) -> Iterator[tuple[str, str, list[Sent]]]:
    """One database for the module: the customer's events stored and processed."""
    url = create_database(pg_url, template_db)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            customer = new_customer(conn, "sampled")
            sent = event_set(random.Random(11))
            ingest(conn, customer, sent)
            # The user agents parsed as background processing parses them, then every event processed.
            params = {"customer_id": customer, "batch_size": len(sent), "lanes": list(ALL_LANES)}
            agents = [r[0] for r in conn.execute(PIPELINE["unparsed_user_agents"], params)]
            conn.execute(PIPELINE["save_user_agents"], useragents.save_parameters(agents))
            process_all(conn, customer)
            assert_all_processed(conn, customer)
        yield url, customer, sent
    finally:
        drop_database(pg_url, url)


def ask(url: str, customer: str, cap: int, queries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each query's answer alone (run_query) and, when there are several, all in one batch, which
    must be the same; with `cap` as the sessions a facts statement may read."""

    async def answers() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            alone = [await run_query(conn, customer, q, sample_sessions=cap) for q in queries]
            together = await run_queries(
                conn, customer, [StatsQuery.model_validate(q) for q in queries], sample_sessions=cap
            )
            return alone, together

    alone, together = asyncio.run(answers())
    assert alone == together
    return alone


def query(dimensions: Sequence[str], filters: Sequence[Filter], metrics: Sequence[str]) -> dict[str, Any]:
    return {
        "date_range": WHOLE,
        "metrics": list(metrics),
        "dimensions": list(dimensions),
        "filters": [[op, dim, list(values)] for op, dim, values in filters],
        "limit": 1000,
    }


def rows(answer: dict[str, Any]) -> dict[Key, list[Any]]:
    return {tuple(r["dimensions"]): r["metrics"] for r in answer["results"]}


def scaled(expected: dict[Key, list[Any]], metrics: Sequence[str], below: int) -> dict[Key, list[Any]]:
    """The model's rows over the sample as the whole's estimate: counts times 256/below, half up."""
    counts = {"visitors", "visits", "pageviews", "events"}
    return {
        k: [
            (v * 512 + below) // (2 * below) if m in counts else v
            for m, v in zip(metrics, values, strict=True)
        ]
        for k, values in expected.items()
    }


def sessions_of(sent: list[Sent]) -> int:
    return len({e.session_id for e in sent})


def test_a_large_range_is_counted_over_a_sample_of_visitors(loaded: tuple[str, str, list[Sent]]) -> None:
    url, customer, sent = loaded
    sessions = sessions_of(sent)
    cap = sessions // 3
    below = 256 * cap // sessions
    inside = [e for e in sent if visitor_key(customer, e.visitor_id or "")[0] < below]
    # The sample holds about its share of the sessions, not all or none.
    assert 0.5 * cap < sessions_of(inside) < 1.5 * cap
    model = StatsModel(inside, "UTC")
    cases = [
        ([dimension], filters, ["visitors", "visits", "bounce_rate"])
        for filters in FILTERS
        for dimension in PANELS
    ]
    cases += [(["event:page"], filters, ["visitors", "pageviews"]) for filters in FILTERS]
    cases += [(["event:type"], filters, ["visitors", "events"]) for filters in FILTERS]
    cases += [
        ([], FILTERS[1] + FILTERS[2], list(METRICS)),
        (["event:page", "visit:browser"], [], list(METRICS)),
        (["visit:referrer"], FILTERS[0], list(METRICS)),
    ]
    everyone = StatsModel(sent, "UTC")
    answers = ask(url, customer, cap, [query(*c) for c in cases])
    for (dimensions, filters, metrics), answer in zip(cases, answers, strict=True):
        if answer["meta"]["source"] == "rollups":
            # A filter's own panel (browsers filtered by one browser): from the rollups, exact.
            assert "sample_percent" not in answer["meta"]
            assert rows(answer) == everyone.query(FIRST, LAST, metrics, dimensions, filters)
            continue
        assert answer["meta"]["sample_percent"] == round(100 * below / 256, 2)
        expected = model.query(FIRST, LAST, metrics, dimensions, filters)
        assert rows(answer) == scaled(expected, metrics, below), (dimensions, filters)


def test_the_previous_period_is_counted_over_the_same_visitors(loaded: tuple[str, str, list[Sent]]) -> None:
    url, customer, sent = loaded
    starts: dict[str | None, datetime] = {}
    for e in sent:
        starts[e.session_id] = min(starts.get(e.session_id, e.at), e.at)
    sessions = sum(8 <= start.day <= 14 for start in starts.values())
    cap = sessions // 2
    below = 256 * cap // sessions
    model = StatsModel([e for e in sent if visitor_key(customer, e.visitor_id or "")[0] < below], "UTC")
    body = query(["visit:browser"], FILTERS[2], ["visitors", "visits"]) | {
        "date_range": ["2026-11-08", "2026-11-14"],
        "include": {"comparison": "previous_period"},
    }
    (answer,) = ask(url, customer, cap, [body])
    assert answer["meta"]["sample_percent"] == round(100 * below / 256, 2)
    metrics = ["visitors", "visits"]
    now = scaled(
        model.query(date(2026, 11, 8), date(2026, 11, 14), metrics, ["visit:browser"], FILTERS[2]),
        metrics,
        below,
    )
    then = scaled(
        model.query(date(2026, 11, 1), date(2026, 11, 7), metrics, ["visit:browser"], FILTERS[2]),
        metrics,
        below,
    )
    assert rows(answer) == now
    assert {tuple(r["dimensions"]): r["comparison"]["metrics"] for r in answer["results"]} == {
        k: then.get(k, [0, 0]) for k in now
    }


@pytest.mark.parametrize("cap", [0, 10_000], ids=["no-cap", "range-below-cap"])
def test_otherwise_every_visitor_counts(loaded: tuple[str, str, list[Sent]], cap: int) -> None:
    url, customer, sent = loaded
    model = StatsModel(sent, "UTC")
    cases = [
        (["visit:referrer"], FILTERS[1], ["visitors", "visits"]),
        (["event:page"], FILTERS[0], list(METRICS)),
    ]
    for (dimensions, filters, metrics), answer in zip(
        cases, ask(url, customer, cap, [query(*c) for c in cases]), strict=True
    ):
        assert "sample_percent" not in answer["meta"]
        assert rows(answer) == model.query(FIRST, LAST, metrics, dimensions, filters)


def test_the_rollups_are_never_sampled(loaded: tuple[str, str, list[Sent]]) -> None:
    """Unfiltered, or filtered by one value of the dimension asked (a dashboard's own panel): exact."""
    url, customer, sent = loaded
    model = StatsModel(sent, "UTC")
    cases = [
        ([], [], list(METRICS)),
        (["visit:browser"], [], ["visitors", "visits"]),
        (["event:page"], [("is", "event:page", ["/pricing"])], ["visitors", "pageviews"]),
    ]
    for (dimensions, filters, metrics), answer in zip(
        cases, ask(url, customer, 10, [query(*c) for c in cases]), strict=True
    ):
        assert answer["meta"]["source"] == "rollups"
        assert "sample_percent" not in answer["meta"]
        assert rows(answer) == model.query(FIRST, LAST, metrics, dimensions, filters)
