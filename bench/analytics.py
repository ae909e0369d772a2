"""Analytics at 10 million events: the dashboard over the marts against the vault, and the marts' cost.

`python -m bench.analytics [--events 10000000] [--days 90] [--repeat 20]`

1. Generates one big customer's business vault (`--events` events over `--days` days ending now,
   in the customer's time zone, Europe/Berlin) and two small customers' (`--small-share` as many
   each, UTC) with set-based SQL straight into the vault tables the marts read
   (bench/analytics.sql), as the pipeline would have loaded them: hubs, links (one event → session
   link per event, no effectivity rows), event, visitor and page details, session summaries and
   `business.site_session_state`. The vault's indexes are built after the load (as pg_restore
   does): inserting millions of random hash keys into indexes larger than the buffer cache would
   take longer than everything else.
2. Builds the marts as `onevault mart rebuild` does (`mart.clear_tenant`, then
   `mart.rebuild_visitors` chunks, onevault.pipeline.marts.rebuild), `VACUUM ANALYZE`s them, and
   reports their size on disk per million events beside the vault's. Then the last
   `--live-minutes` of the big customer are generated the same way and their sessions refreshed
   with `mart.refresh_sessions`, as the pipeline does when it loads them (so that realtime counts
   someone).
3. Runs the dashboard's queries (the headline figures with the previous period, the chart, the ten
   breakdowns of its panels, realtime) for 30 days and for 12 months through the stats API's
   `run_query`, and the same answers computed the naive way, straight from the vault
   (bench/analytics.sql), in the same run on the same connection: the answers must be equal (each
   pair in one transaction, so that both read the same data and the same `now()`). The marts'
   queries run `--repeat` times, the naive ones `--naive-repeat` times within `--naive-budget`.
   The marts' first round after the naive queries, which read the whole vault through the caches
   just before, is reported on its own (*first round*) and not counted in the percentiles; the
   second column (*never prepared*) runs the rounds again on a new connection, after an untimed one.
   Then the dashboard after a click on a row (realtime aside): the same queries filtered by one
   value each of `FILTERED`'s dimensions (the range's top value, or the next when the top one is
   "none"), `--filtered-repeat` rounds, as the page asks them (totals, chart, the panels in one
   request) with ONEVAULT_STATS_SAMPLE_SESSIONS at its default, against the same p95 target, and
   read whole beside them (the sample's visitors against the whole's).
4. Pipeline events/s with the marts and without them (`mart.refresh_facts` only taking the queue
   in that database), each run on a copy of one database of pending raw events (bench/vault.py's
   drain, as bench/pipeline.py's process_all, with the PostgreSQL CPU time per event), the two
   alternating.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import re
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from bench import data, drive, explain, harness, pipeline, vault
from onevault import sqlfile
from onevault.auth import store
from onevault.config import Settings
from onevault.pipeline import marts, rebuild
from onevault.stats.models import DIMENSIONS, METRICS, StatsQuery
from onevault.stats.query import realtime_visitors, run_queries, run_query
from onevault.stats.routes import REALTIME_WINDOW_SECONDS
from onevault.web.dashboard import PANELS

Q = sqlfile.load(__package__ or "bench", "analytics.sql")
BIG = harness.CUSTOMER_ID
SMALL = ("small_a", "small_b")
BIG_ZONE = "Europe/Berlin"
RECORD_SOURCE = "bench:analytics"
MART_TABLES = (
    "session_f",
    "session_event_f",
    "traffic_hourly",
    "traffic_daily",
    "visitor_days",
    "visitor_key_days",
)
VAULT_TABLES = (
    "site_visitor_h",
    "site_session_h",
    "site_page_h",
    "site_event_h",
    "site_event_session_l",
    "site_event_page_l",
    "site_session_visitor_l",
    "site_event_details_s",
    "site_visitor_details_s",
    "site_page_details_s",
    "site_session_summary_s",
    "site_session_state",
)
TARGET_SPEEDUP = 20.0
TARGET_PIPELINE_SLOWDOWN = 0.15  # with the marts, at most this much below without
BREAKDOWN_LIMIT = 10  # the dashboard's panels show the top 10
# A filtered dashboard's panels: two requests, by their dimension's level (web/static/dashboard.js).
PANEL_REQUESTS = {"visit": "the visit panels, one request", "event": "the event panels, one request"}
# The service's default cap of the sessions a facts statement reads before it samples visitors.
SAMPLE_SESSIONS: int = Settings.model_fields["stats_sample_sessions"].default
# The event panels' second figure and how the naive queries count it (analytics.sql: naive_event_values).
NAIVE_EVENT_FIGURES = {
    "event:page": ("pageviews", sql.SQL("count(*) FILTER (WHERE e.event_type = 'page_view')")),
    "event:type": ("events", sql.SQL("count(*)")),
}
# The rows clicked to filter the dashboard (part 3): an event's page and three visit attributes.
FILTERED = ("event:page", "visit:entry_page", "visit:referrer", "visit:browser")


@dataclass(frozen=True)
class Customer:
    """A generated customer: its id, the prefix of its keys, how many events, its time zone."""

    customer_id: str
    prefix: str
    events: int
    zone: str


def tenant_hk(customer_id: str) -> bytes:
    """The customer's tenant hash key, as util.tenant_hk computes it."""
    return hashlib.sha256(customer_id.encode()).digest()


def say(text: str) -> None:
    """A progress line, flushed."""
    print(text, flush=True)


# -- 1. the vault ------------------------------------------------------------------------------------


def _vault_indexes(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(Q["vault_indexes"], {"tables": list(VAULT_TABLES)}).fetchall()


def _drop_index(conn: psycopg.Connection[Any], index: dict[str, Any]) -> None:
    table = sql.Identifier("business", index["table_name"])
    if index["constraint_name"]:
        conn.execute(
            sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                table, sql.Identifier(index["constraint_name"])
            )
        )
    else:
        conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier("business", index["index_name"])))


def _build_index(conn: psycopg.Connection[Any], index: dict[str, Any]) -> None:
    # The definitions are PostgreSQL's own (pg_get_indexdef, pg_get_constraintdef).
    if index["constraint_name"]:
        conn.execute(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                sql.Identifier("business", index["table_name"]),
                sql.Identifier(index["constraint_name"]),
                sql.SQL(index["constraint_def"]),
            )
        )
    else:
        conn.execute(sql.SQL(index["index_def"]))


def generate(
    url: str,
    customers: Sequence[Customer],
    since: datetime,
    until: datetime,
    seed: float,
    *,
    bulk: bool = True,
) -> dict[str, Any]:
    """Write the customers' events of [since, until] into the business vault (bench/analytics.sql);
    what it wrote and the seconds of each step. `bulk`: drop the vault's indexes first and build them
    after; otherwise the generated sessions are returned as `sessions` (hash keys) for a refresh."""
    steps: dict[str, float] = {}
    started = time.perf_counter()
    quiet = not bulk
    with psycopg.connect(url, autocommit=True) as conn:

        def step(name: str, query: sql.SQL | sql.Composed, params: dict[str, Any] | None = None) -> None:
            at = time.perf_counter()
            with conn.transaction():
                conn.execute("SET LOCAL synchronous_commit = off")
                conn.execute("SET LOCAL work_mem = '256MB'")
                conn.execute("SET LOCAL maintenance_work_mem = '1GB'")
                conn.execute(query, params)
            seconds = time.perf_counter() - at
            steps[name] = steps.get(name, 0.0) + seconds
            if not quiet:
                say(f"  {name}: {seconds:.1f} s")

        conn.execute(Q["gen_prepare"])
        for k, customer in enumerate(customers):
            hk = tenant_hk(customer.customer_id)
            # Each customer's draws are the same from run to run.
            conn.execute("SELECT setseed(%s)", [seed / (k + 1)])
            params = {
                "tenant_hk": hk,
                "prefix": customer.prefix,
                "events": customer.events,
                "since": since,
                "until": until,
                "zone": customer.zone,
            }
            step(f"sessions ({customer.customer_id})", Q["gen_sessions"], params)
            step(f"visitors ({customer.customer_id})", Q["gen_visitors"], {"tenant_hk": hk})
        step("events", Q["gen_events"])
        indexes = _vault_indexes(conn) if bulk else []
        with conn.transaction():
            for index in indexes:
                _drop_index(conn, index)
        written = {"load": until, "source": RECORD_SOURCE}
        for name in ("gen_hubs", "gen_links", "gen_event_details", "gen_details"):
            step(name.removeprefix("gen_"), Q[name], written)
        if indexes:
            at = time.perf_counter()
            for index in indexes:
                with conn.transaction():
                    conn.execute("SET LOCAL maintenance_work_mem = '1GB'")
                    _build_index(conn, index)
            steps["indexes"] = time.perf_counter() - at
            say(f"  {len(indexes)} indexes built: {steps['indexes']:.1f} s")
        with conn.cursor(row_factory=dict_row) as cur:
            counts = cur.execute(Q["gen_counts"]).fetchall()
        sessions: list[bytes] = []
        if not bulk:
            row = conn.execute(Q["live_sessions"]).fetchone()
            sessions = list(row[0] or []) if row else []
        conn.execute(Q["gen_cleanup"])
        if bulk:
            # As autovacuum would have left a vault loaded over months (visibility map set for
            # index-only scans), so the naive queries meet it as they would in production.
            at = time.perf_counter()
            for table in VAULT_TABLES:
                conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier("business", table)))
            conn.execute("ANALYZE")
            steps["vacuum analyze"] = time.perf_counter() - at
    by_customer = {}
    for customer in customers:
        found = next(r for r in counts if r["tenant_hk"] == tenant_hk(customer.customer_id))
        by_customer[customer.customer_id] = {
            k: v.isoformat() if isinstance(v, datetime) else v for k, v in found.items() if k != "tenant_hk"
        }
    result: dict[str, Any] = {
        "seconds": round(time.perf_counter() - started, 1),
        "steps": {k: round(v, 1) for k, v in steps.items()},
        "since": since.isoformat(),
        "until": until.isoformat(),
        "customers": by_customer,
    }
    if not bulk:
        result["sessions"] = sessions
    return result


def live_minutes(url: str, customer: Customer, days: int, minutes: int, seed: float) -> dict[str, Any]:
    """The customer's last `minutes` (at its average rate over `days`), written into the vault now and
    their sessions' marts refreshed as the pipeline's load does; the refresh's time."""
    events = max(round(customer.events / (days * 24 * 60) * minutes), 1)
    until = datetime.now(UTC)
    live = Customer(customer.customer_id, f"{customer.prefix}-live", events, customer.zone)
    written = generate(url, [live], until - timedelta(minutes=minutes), until, seed, bulk=False)
    sessions = written.pop("sessions")
    with psycopg.connect(url, autocommit=True) as conn:
        at = time.perf_counter()
        with conn.transaction():
            conn.execute(Q["refresh_sessions"], {"sessions": sessions})
        refresh = time.perf_counter() - at
        for table in MART_TABLES:
            conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier("mart", table)))
    return {
        "minutes": minutes,
        "events": events,
        "sessions": len(sessions),
        "write_seconds": written["seconds"],
        "refresh_ms": round(refresh * 1000, 1),
    }


# -- 2. the marts ------------------------------------------------------------------------------------


def build_marts(url: str, customers: Sequence[Customer], chunk: int) -> dict[str, Any]:
    """Rebuild each customer's marts as `onevault mart rebuild` does, then VACUUM ANALYZE them."""
    result: dict[str, Any] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for customer in customers:
            hk = tenant_hk(customer.customer_id)
            visitors = rebuild.visitor_count(conn, hk)
            at = time.perf_counter()
            done = 0
            every = max(visitors // 10, 1)
            for n in marts.rebuild(conn, hk, chunk):
                if (done + n) // every > done // every:
                    seconds = time.perf_counter() - at
                    say(
                        f"  {customer.customer_id}: {done + n:,}/{visitors:,} visitors, {seconds:.0f} s "
                        f"({(done + n) / seconds:,.0f} visitors/s)"
                    )
                done += n
            seconds = time.perf_counter() - at
            counted = marts.counted(conn, hk)
            result[customer.customer_id] = {
                "visitors": visitors,
                "sessions": counted.sessions,
                "events": counted.events,
                "vault_events": customer.events,
                "seconds": round(seconds, 1),
                "events_per_s": round(customer.events / seconds) if seconds else None,
            }
        at = time.perf_counter()
        for table in MART_TABLES:
            conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier("mart", table)))
        vacuum = time.perf_counter() - at
    events = sum(c.events for c in customers)
    seconds = sum(r["seconds"] for r in result.values())
    return {
        "chunk": chunk,
        "customers": result,
        "seconds": round(seconds, 1),
        "events_per_s": round(events / seconds) if seconds else None,
        "vacuum_analyze_seconds": round(vacuum, 1),
    }


def sizes(url: str, events: int) -> dict[str, Any]:
    """Size on disk (tables with their indexes and TOAST) of the marts and of the vault, also per
    million events of all customers."""
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            Q["table_sizes"], {"marts": list(MART_TABLES), "vault": list(VAULT_TABLES)}
        ).fetchall()
    out: dict[str, Any] = {"events": events, "tables": rows}
    for schema in ("mart", "business"):
        total = sum(r["bytes"] for r in rows if r["schema"] == schema)
        out[schema] = {
            "mb": round(total / 2**20, 1),
            "mb_per_million_events": round(total / 2**20 / (events / 1e6), 1),
        }
    return out


# -- 3. the dashboard's queries ----------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """A date range of the dashboard: its API name, the chart's bucket, the p95 target of a query."""

    label: str
    date_range: str
    unit: Literal["day", "month"]
    target_ms: float

    def days(self, today: date) -> tuple[date, date]:
        """The local days it covers, ending today (as docs/analytics.md and the API's schema say)."""
        if self.date_range == "30d":
            return today - timedelta(days=29), today
        month = today.year * 12 + today.month - 1 - 11
        return date(month // 12, month % 12 + 1, 1), today


PERIODS = (Period("30 days", "30d", "day", 150.0), Period("12 months", "12mo", "month", 500.0))


@dataclass(frozen=True)
class DashboardQuery:
    """One request of the dashboard: the headline figures, the chart, a panel's breakdown, realtime."""

    name: str
    kind: Literal["totals", "chart", "breakdown", "realtime"]
    dimension: str | None = None
    second: str | None = None

    def body(self, period: Period) -> dict[str, Any]:
        """The stats query the dashboard sends for it (web/static/dashboard.js)."""
        if self.kind == "totals":
            return {
                "date_range": period.date_range,
                "metrics": list(METRICS),
                "include": {"comparison": "previous_period"},
            }
        if self.kind == "chart":
            return {
                "date_range": period.date_range,
                "metrics": ["visitors", "pageviews"],
                "dimensions": [f"time:{period.unit}"],
            }
        return {
            "date_range": period.date_range,
            "metrics": ["visitors", self.second],
            "dimensions": [self.dimension],
            "order_by": [["visitors", "desc"]],
            "limit": BREAKDOWN_LIMIT,
        }


def dashboard_queries() -> list[DashboardQuery]:
    """What the dashboard asks for a date range: realtime, totals (all seven metrics, with the previous
    period), the chart, and each panel's top 10 by visitors with its second figure."""
    # Realtime first: it counts the last five minutes, which the live minutes written just before
    # the queries fill.
    queries = [DashboardQuery("realtime visitors (5 min)", "realtime")]
    queries.append(DashboardQuery("totals, 7 metrics + previous period", "totals"))
    queries.append(DashboardQuery("chart: visitors, pageviews by time", "chart"))
    for panel in PANELS:
        # What bench/analytics.sql computes beside the visitors.
        if panel.second != NAIVE_EVENT_FIGURES.get(panel.dimension, ("visits",))[0]:
            raise SystemExit(f"the naive queries have no {panel.dimension} by visitors and {panel.second}")
        queries.append(
            DashboardQuery(
                f"top 10 {panel.dimension} (+{panel.second})", "breakdown", panel.dimension, panel.second
            )
        )
    return queries


Answer = list[tuple[Any, ...]]


class RecordingCursor(psycopg.AsyncCursor[Any]):
    """An async cursor that keeps the statements it runs while `recording`, to explain them."""

    recording: ClassVar[list[tuple[Any, Any]] | None] = None

    async def execute(self, query: Any, params: Any = None, **options: Any) -> Self:
        if RecordingCursor.recording is not None:
            RecordingCursor.recording.append((query, params))
        return await super().execute(query, params, **options)


def _plain(value: Any) -> Any:
    """A figure or key as the API's JSON has it: Decimal as float, dates as ISO text, '' as None."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, date | datetime):
        return value.isoformat()[:10]
    if value == "":
        return None
    return value


async def ask_marts(conn: psycopg.AsyncConnection[Any], query: DashboardQuery, period: Period) -> Answer:
    """The dashboard's request through the stats code over the marts, as rows of plain values."""
    if query.kind == "realtime":
        visitors, _ = await realtime_visitors(conn, BIG, REALTIME_WINDOW_SECONDS)
        return [(visitors,)]
    answer = await run_query(conn, BIG, query.body(period))
    if query.kind == "totals":
        row = answer["results"][0]
        return [tuple(_plain(v) for v in [*row["metrics"], *row["comparison"]["metrics"]])]
    return [tuple(_plain(v) for v in [*r["dimensions"], *r["metrics"]]) for r in answer["results"]]


async def _rows(
    conn: psycopg.AsyncConnection[Any], query: sql.SQL | sql.Composed, params: dict[str, Any]
) -> Answer:
    cur = await conn.execute(query, params)
    return [tuple(_plain(v) for v in row) for row in await cur.fetchall()]


async def ask_naive(
    conn: psycopg.AsyncConnection[Any], query: DashboardQuery, period: Period, days: tuple[date, date]
) -> Answer:
    """The same answer computed straight from the vault (bench/analytics.sql)."""
    start, end = days
    params: dict[str, Any] = {
        "tenant": tenant_hk(BIG),
        "zone": BIG_ZONE,
        "start": start,
        "end": end,
        "limit": BREAKDOWN_LIMIT,
    }
    if query.kind == "realtime":
        return await _rows(
            conn, Q["naive_realtime"], {"tenant": tenant_hk(BIG), "seconds": REALTIME_WINDOW_SECONDS}
        )
    if query.kind == "totals":
        length = end - start + timedelta(days=1)
        before = await _rows(
            conn, Q["naive_totals"], params | {"start": start - length, "end": start - timedelta(days=1)}
        )
        now = await _rows(conn, Q["naive_totals"], params)
        return [now[0] + before[0]]
    if query.kind == "chart":
        return await _rows(conn, Q["naive_timeseries"], params | {"unit": period.unit})
    assert query.dimension is not None
    column = sql.Identifier(DIMENSIONS[query.dimension].column)
    if query.dimension in NAIVE_EVENT_FIGURES:
        figure = NAIVE_EVENT_FIGURES[query.dimension][1]
        return await _rows(conn, Q["naive_event_values"].format(value=column, figure=figure), params)
    return await _rows(conn, Q["naive_visit_values"].format(value=column), params)


def _summary(ms: list[float]) -> dict[str, Any]:
    ordered = sorted(ms)
    return {
        "n": len(ms),
        "p50_ms": round(statistics.median(ms), 1) if ms else None,
        "p95_ms": round(ordered[min(int(0.95 * len(ms)), len(ms) - 1)], 1) if ms else None,
        "max_ms": round(ordered[-1], 1) if ms else None,
    }


_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%%")


def explain_generic(
    conn: psycopg.Connection[Any], label: str, query: sql.Composable, params: dict[str, Any]
) -> explain.Explained:
    """EXPLAIN ANALYZE of `query` with the generic plan PostgreSQL caches for a prepared statement
    (PREPARE with $n, plan_cache_mode = force_generic_plan, EXECUTE with the values)."""
    names: list[str] = []

    def numbered(match: re.Match[str]) -> str:
        if match.group(0) == "%%":
            return "%"
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    text = _PLACEHOLDER.sub(numbered, query.as_string(conn))
    values = sql.SQL(", ").join(sql.Literal(params[name]) for name in names)
    try:
        conn.execute("SET plan_cache_mode = force_generic_plan")
        conn.execute(sql.SQL("PREPARE bench_generic AS {}").format(sql.SQL(text)))
        return explain.explain_query(conn, label, sql.SQL("EXECUTE bench_generic ({})").format(values), {})
    except psycopg.Error as exc:
        return explain.Explained(label, text, error=f"{type(exc).__name__}: {exc}")
    finally:
        conn.execute("DEALLOCATE ALL")
        conn.execute("RESET plan_cache_mode")


async def _naive_timed(
    conn: psycopg.AsyncConnection[Any],
    query: DashboardQuery,
    period: Period,
    days: tuple[date, date],
    limit_s: float,
) -> tuple[Answer | None, float]:
    """The naive answer and its time (ms), or None when it ran longer than `limit_s` seconds."""
    at = time.perf_counter()
    try:
        async with conn.transaction():
            await conn.execute(Q["statement_timeout"], {"ms": str(round(limit_s * 1000))})
            answer = await ask_naive(conn, query, period, days)
    except psycopg.errors.QueryCanceled:
        return None, (time.perf_counter() - at) * 1000
    return answer, (time.perf_counter() - at) * 1000


async def measure_period(
    url: str, queries: list[DashboardQuery], period: Period, args: argparse.Namespace
) -> dict[str, Any]:
    """Each query through the marts and the naive way: answers compared once (each pair in one
    transaction), then timed; the whole set's time per round besides."""
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True, cursor_factory=RecordingCursor)
    async with conn:
        cur = await conn.execute(Q["naive_today"], {"zone": BIG_ZONE})
        row = await cur.fetchone()
        assert row is not None
        days = period.days(row[0])
        marts_ms: dict[str, list[float]] = {q.name: [] for q in queries}
        custom_ms: dict[str, list[float]] = {q.name: [] for q in queries}
        cold_ms: dict[str, float] = {}
        naive_ms: dict[str, list[float]] = {q.name: [] for q in queries}
        timed_out: set[str] = set()
        sets: dict[str, list[float]] = {"marts": [], "custom": [], "naive": []}
        checks: list[dict[str, Any]] = []
        say(f"[{period.label}] answers, marts against naive ({days[0]} to {days[1]}) ...")
        for q in queries:
            async with conn.transaction():
                at = time.perf_counter()
                got = await ask_marts(conn, q, period)
                marts_first = (time.perf_counter() - at) * 1000
                expected, ms = await _naive_timed(conn, q, period, days, args.naive_timeout)
            naive_ms[q.name].append(ms)
            if expected is None:
                timed_out.add(q.name)
            equal = got == expected
            checks.append(
                {
                    "query": q.name,
                    "compared": expected is not None,
                    "equal": equal,
                    "rows": len(got),
                    "marts": got[:3],
                    "naive": expected[:3] if expected is not None else None,
                }
                | ({} if equal or expected is None else {"marts_all": got, "naive_all": expected})
            )
            verdict = (
                "equal" if equal else "not compared: naive timed out" if expected is None else "DIFFERENT"
            )
            say(f"  {q.name}: {verdict} ({len(got)} rows), marts {marts_first:,.1f} ms, naive {ms:,.0f} ms")
        sets["naive"].append(sum(ms[0] for ms in naive_ms.values()))
        # One round first, kept apart: the naive queries have just read the whole vault through
        # PostgreSQL's and the system's caches, and the marts' pages come back from the disk.
        say(f"[{period.label}] marts: a first round after the naive queries, then {args.repeat} rounds ...")
        for q in queries:
            at = time.perf_counter()
            await ask_marts(conn, q, period)
            cold_ms[q.name] = (time.perf_counter() - at) * 1000
        deadline = time.monotonic() + args.budget
        for _ in range(args.repeat):
            total = 0.0
            for q in queries:
                at = time.perf_counter()
                await ask_marts(conn, q, period)
                ms = (time.perf_counter() - at) * 1000
                marts_ms[q.name].append(ms)
                total += ms
            sets["marts"].append(total)
            if time.monotonic() > deadline:
                break
        # The same on a connection that never prepares its statements: every execution gets a
        # plan for its own values. psycopg prepares a statement run 5 times (as the service's pool
        # does), and PostgreSQL may then settle on a generic plan.
        say(f"[{period.label}] marts, statements never prepared: {len(sets['marts'])} rounds ...")
        unprepared = await psycopg.AsyncConnection.connect(url, autocommit=True, prepare_threshold=None)
        async with unprepared:
            for q in queries:  # untimed: a new connection fills its catalog caches
                await ask_marts(unprepared, q, period)
            for _ in range(len(sets["marts"])):
                total = 0.0
                for q in queries:
                    at = time.perf_counter()
                    await ask_marts(unprepared, q, period)
                    ms = (time.perf_counter() - at) * 1000
                    custom_ms[q.name].append(ms)
                    total += ms
                sets["custom"].append(total)
        # Queries that timed out once are not run again (their time stays a lower bound).
        deadline = time.monotonic() + args.naive_budget
        for _ in range(args.naive_repeat - 1):
            if time.monotonic() + sets["naive"][-1] / 1000 > deadline:
                break
            say(f"[{period.label}] naive: one more round ...")
            total = 0.0
            for q in queries:
                if q.name in timed_out:
                    total += naive_ms[q.name][0]
                    continue
                answer, ms = await _naive_timed(conn, q, period, days, args.naive_timeout)
                if answer is None:
                    timed_out.add(q.name)
                naive_ms[q.name].append(ms)
                total += ms
            sets["naive"].append(total)
        slowest = max(queries, key=lambda q: statistics.median(marts_ms[q.name]))
        RecordingCursor.recording = []
        await ask_marts(conn, slowest, period)
        statements, RecordingCursor.recording = RecordingCursor.recording, None
    rows = []
    for q in queries:
        m, n = _summary(marts_ms[q.name]), _summary(naive_ms[q.name])
        n["timed_out"] = q.name in timed_out
        speedup = n["p50_ms"] / m["p50_ms"] if m["p50_ms"] else None
        rows.append(
            {
                "query": q.name,
                "marts": m,
                "marts_never_prepared": _summary(custom_ms[q.name]),
                "marts_first_round_ms": round(cold_ms[q.name], 1),
                "naive": n,
                # A lower bound when the naive query timed out.
                "speedup": round(speedup, 1) if speedup else None,
                "p95_met": m["p95_ms"] <= period.target_ms,
                "speedup_met": bool(speedup and speedup >= TARGET_SPEEDUP),
            }
        )
    m, n = _summary(sets["marts"]), _summary(sets["naive"])
    n["timed_out"] = bool(timed_out)
    whole = {
        "query": f"the whole set ({len(queries)} queries, one after another)",
        "marts": m,
        "marts_never_prepared": _summary(sets["custom"]),
        "marts_first_round_ms": round(sum(cold_ms.values()), 1),
        "naive": n,
        "speedup": round(n["p50_ms"] / m["p50_ms"], 1) if m["p50_ms"] else None,
    }
    explained = []
    with psycopg.connect(url, autocommit=True) as sync:
        for k, (query, params) in enumerate(statements, 1):
            if isinstance(query, sql.Composable) and isinstance(params, dict):
                label = f"{period.label}: {slowest.name}, statement {k}"
                explained.append(explain.explain_query(sync, label, query, params))
                explained.append(explain_generic(sync, f"{label}, generic plan", query, params))
    return {
        "period": period.label,
        "date_range": [days[0].isoformat(), days[1].isoformat()],
        "target_ms": period.target_ms,
        "naive_timeout_s": args.naive_timeout,
        "rows": rows,
        "whole_set": whole,
        "checks": checks,
        "slowest": slowest.name,
        "explained": explained,
    }


async def filter_values(conn: psycopg.AsyncConnection[Any], period: Period) -> list[tuple[str, str]]:
    """A (dimension, value) to filter by for each of FILTERED: the range's top value that is not none."""
    chosen = []
    for dimension in FILTERED:
        answer = await run_query(
            conn,
            BIG,
            {"date_range": period.date_range, "metrics": ["visitors"], "dimensions": [dimension], "limit": 2},
        )
        values = [r["dimensions"][0] for r in answer["results"] if r["dimensions"][0] is not None]
        if values:
            chosen.append((dimension, values[0]))
    return chosen


async def measure_filtered(
    url: str, queries: list[DashboardQuery], period: Period, rounds: int, sample_sessions: int
) -> list[dict[str, Any]]:
    """The dashboard after a click on a row (realtime aside), filtered by each of filter_values,
    `rounds` times, as the page asks it with the service's ONEVAULT_STATS_SAMPLE_SESSIONS
    (`sample_sessions`): the totals and the chart each in a request of its own, the visit panels in
    one and the event panels in another (`run_queries`). Each request is timed alone, one after the
    other; the page is its requests at once, each on a connection of its own as the server's pool
    serves them. Beside them, in the same rounds, the same requests read whole (no sample), one after
    the other. Each filter's requests, whole set and page, ms; the percent of the visitors read; and
    the sample's estimates against the whole's (equal when nothing was sampled)."""
    panels = [q for q in queries if q.kind == "breakdown"]
    together = {
        name: [q for q in panels if q.dimension and DIMENSIONS[q.dimension].level == level]
        for level, name in PANEL_REQUESTS.items()
    }
    alone = [q for q in queries if q.kind in ("totals", "chart")]
    order = [q.name for q in queries if q.kind != "realtime"]
    results = []
    conns = [
        await psycopg.AsyncConnection.connect(url, autocommit=True) for _ in range(len(alone) + len(together))
    ]

    async def requests(cap: int, timed: dict[str, list[float]] | None) -> dict[str, Any]:
        """The page's requests one after the other, read with `cap`; each one's ms into `timed`."""
        answers: dict[str, Any] = {}
        for q in alone:
            at = time.perf_counter()
            answers[q.name] = await run_query(conn, BIG, asked[q.name], sample_sessions=cap)
            if timed is not None:
                timed[q.name].append((time.perf_counter() - at) * 1000)
        for name, members in together.items():
            at = time.perf_counter()
            grouped = [asked[q.name] for q in members]
            answers |= zip(
                (q.name for q in members),
                await run_queries(conn, BIG, grouped, sample_sessions=cap),
                strict=True,
            )
            if timed is not None:
                timed[name].append((time.perf_counter() - at) * 1000)
        return answers

    try:
        conn = conns[0]
        for dimension, value in await filter_values(conn, period):
            say(f"[{period.label}] filtered by {dimension} is {value!r}: {rounds} rounds ...")
            chosen = {"filters": [["is", dimension, [value]]]}
            asked = {
                q.name: StatsQuery.model_validate(q.body(period) | chosen)
                for q in queries
                if q.kind != "realtime"
            }
            per_request: dict[str, list[float]] = {name: [] for name in [*(q.name for q in alone), *together]}
            whole: list[float] = []
            page: list[float] = []
            unsampled: list[float] = []
            for _ in range(rounds):
                answers = await requests(sample_sessions, per_request)
                whole.append(sum(ms[-1] for ms in per_request.values()))
                at = time.perf_counter()
                await asyncio.gather(
                    *(
                        run_query(c, BIG, asked[q.name], sample_sessions=sample_sessions)
                        for c, q in zip(conns[: len(alone)], alone, strict=True)
                    ),
                    *(
                        run_queries(c, BIG, [asked[q.name] for q in members], sample_sessions=sample_sessions)
                        for c, members in zip(conns[len(alone) :], together.values(), strict=True)
                    ),
                )
                page.append((time.perf_counter() - at) * 1000)
                at = time.perf_counter()
                exact = await requests(0, None)
                unsampled.append((time.perf_counter() - at) * 1000)
            slowest = max(per_request, key=lambda name: statistics.median(per_request[name]))
            percents = {a["meta"].get("sample_percent") for a in answers.values()} - {None}
            results.append(
                {
                    "filter": [dimension, value],
                    "whole_set": _summary(whole),
                    "page": _summary(page),
                    "unsampled": _summary(unsampled),
                    "sample_percent": min(percents) if percents else None,
                    "estimates": estimate_errors([answers[n] for n in order], [exact[n] for n in order]),
                    "slowest": slowest,
                    "slowest_ms": _summary(per_request[slowest]),
                    "p95_met": all(_summary(ms)["p95_ms"] <= period.target_ms for ms in per_request.values()),
                }
            )
    finally:
        for c in conns:
            await c.close()
    return results


def estimate_errors(sampled: list[dict[str, Any]], exact: list[dict[str, Any]]) -> dict[str, Any]:
    """How far a sample's visitors are from the whole's, over the rows both show with at least 1,000
    visitors in the whole (percent: the median and the largest), and whether answers read whole are
    equal."""
    errors = []
    for got, whole in zip(sampled, exact, strict=True):
        if "sample_percent" not in got["meta"]:
            continue
        truth = {tuple(r["dimensions"]): r["metrics"][0] for r in whole["results"]}
        for row in got["results"]:
            actual = truth.get(tuple(row["dimensions"]), 0)
            if actual >= 1000:
                errors.append(100 * abs(row["metrics"][0] - actual) / actual)
    unsampled_equal = all(
        g == w for g, w in zip(sampled, exact, strict=True) if "sample_percent" not in g["meta"]
    )
    return {
        "rows": len(errors),
        "median_pct": round(statistics.median(errors), 1) if errors else None,
        "max_pct": round(max(errors), 1) if errors else None,
        "unsampled_equal": unsampled_equal,
    }


def measure_queries(url: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The dashboard's queries for each period."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(Q["naive_views"])
    queries = dashboard_queries()
    measured = []
    for period in PERIODS:
        result = asyncio.run(measure_period(url, queries, period, args))
        result["filtered"] = asyncio.run(
            measure_filtered(url, queries, period, args.filtered_repeat, SAMPLE_SESSIONS)
        )
        measured.append(result)
    return measured


# -- 4. the cost of keeping the marts ----------------------------------------------------------------


def refresh_statement(body: str) -> str | None:
    """mart.refresh_facts' main statement (run by EXECUTE, the sessions as $1) from the function's
    body, with psycopg placeholders: `sessions` and deltas on."""
    if body.count("$refresh$") != 2:
        return None
    statement = body.split("$refresh$")[1].replace("%", "%%")
    return statement.replace("$1", "%(sessions)s::bytea[]").replace("$2", "true")


def profile_refresh(pg: harness.Postgres, template: str, args: argparse.Namespace) -> dict[str, Any]:
    """Where the marts' share of a batch goes: half the events processed, then one batch with the
    refresh a no-op, then the refresh of that batch's sessions, timed and explained (rolled back)."""
    name = "analytics_pipeline_profile"
    url = pipeline.clone(pg, template, name)
    with psycopg.connect(url, autocommit=True) as conn:
        done = 0
        while done < args.pipeline_events // 2 and (run := drive.run_once(conn, BIG, args.batch)).processed:
            done += run.events
        drive.parse_user_agents(conn, BIG)
        with conn.transaction(force_rollback=True):
            row = conn.execute(Q["refresh_definition"]).fetchone()
            assert row is not None
            definition, body = row
            conn.execute(Q["no_marts"])
            at = time.perf_counter()
            conn.execute(
                drive.PIPELINE["auto_process"],
                drive.auto_process_params(BIG, args.batch),
            )
            batch_ms = (time.perf_counter() - at) * 1000
            row = conn.execute(Q["batch_sessions"]).fetchone()
            sessions = list(row[0] or []) if row else []
            conn.execute(sql.SQL(definition))
            explained = None
            if (statement := refresh_statement(body)) is not None:
                label = f"mart.refresh_facts of one batch ({len(sessions):,} sessions), main statement"
                explained = explain.explain_query(
                    conn, label, sql.SQL(statement), {"sessions": sessions}, False
                )
            at = time.perf_counter()
            conn.execute(Q["refresh_batch"], {"sessions": sessions})
            refresh_ms = (time.perf_counter() - at) * 1000
    pipeline.drop(pg, name)
    return {
        "after_events": done,
        "batch_without_marts_ms": round(batch_ms, 1),
        "sessions": len(sessions),
        "refresh_ms": round(refresh_ms, 1),
        "explained": explained,
    }


def pipeline_cost(pg: harness.Postgres, args: argparse.Namespace) -> dict[str, Any]:
    """Pipeline events/s with the marts and with their refresh only taking the queue, runs alternating."""
    template = "analytics_pipeline"
    url = harness.create_database(pg, template)
    harness.tenant_token(url)
    stream = data.EventStream(prefix=f"{BIG}-p", seed=3)
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in data.load_raw(conn, tenant_hk(BIG), stream, args.pipeline_events):
            pass
        conn.execute("VACUUM ANALYZE")
    say(f"stored {args.pipeline_events:,} pending events in {time.perf_counter() - started:.0f} s")
    workers = [int(w) for w in args.pipeline_workers.split(",")]
    variants = ("with marts", "without marts")
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {v: {w: [] for w in workers} for v in variants}
    vault.Machine.watch(pg)
    for repeat in range(args.pipeline_repeats):
        for w in workers:
            for variant in variants if repeat % 2 == 0 else variants[::-1]:
                name = "analytics_pipeline_run"
                run_url = pipeline.clone(pg, template, name)
                if variant == "without marts":
                    with psycopg.connect(run_url, autocommit=True) as conn:
                        conn.execute(Q["without_marts"])
                since = vault.Machine.snapshot()
                deadline = time.monotonic() + args.pipeline_seconds
                result = vault.drain(run_url, BIG, w, args.batch, deadline, lambda _: None)
                result["other_cores"] = vault.Machine.others_since(since)
                result["verify"] = pipeline.verify(run_url, args.pipeline_events, stream.malformed)
                result["mart_sessions"] = harness.count(run_url, "SELECT count(*) FROM mart.session_f")
                result["ok"] = result["verify"]["ok"] and (result["mart_sessions"] > 0) == (
                    variant == "with marts"
                )
                runs[variant][w].append(result)
                pipeline.drop(pg, name)
                say(
                    f"  {variant}, {w} run(s): {result['events_per_s']:,} events/s, "
                    f"PostgreSQL CPU {result['pg_cpu_ms_per_1000']} ms per 1,000 events, ok: {result['ok']} "
                    f"(other work: {result['other_cores']} cores)"
                )
    say("profiling one batch's refresh ...")
    profile = profile_refresh(pg, template, args)
    pipeline.drop(pg, template)
    best = {
        v: {w: max(rs, key=lambda r: r["events_per_s"]) for w, rs in by.items()} for v, by in runs.items()
    }
    rows = []
    for w in workers:
        with_marts, without = best["with marts"][w], best["without marts"][w]
        change = (with_marts["events_per_s"] - without["events_per_s"]) / without["events_per_s"]
        cpu = (with_marts["pg_cpu_ms_per_1000"] - without["pg_cpu_ms_per_1000"]) / without[
            "pg_cpu_ms_per_1000"
        ]
        medians = {v: statistics.median(r["events_per_s"] for r in runs[v][w]) for v in variants}
        refreshes = with_marts["refreshes"]
        refreshing = sum(r["ended_s"] - r["began_s"] for r in refreshes)
        tail = with_marts["refresh_tail_s"]
        rows.append(
            {
                "runs": w,
                "with marts": f"{with_marts['events_per_s']:,}",
                "without marts": f"{without['events_per_s']:,}",
                "change": f"{change * 100:+.1f} %",
                "medians' change": f"{(medians['with marts'] / medians['without marts'] - 1) * 100:+.1f} %",
                "refreshes (tail)": f"{len(refreshes)}: {refreshing:.1f} s ({tail:.1f} s)",
                "cpu/1000 with": with_marts["pg_cpu_ms_per_1000"],
                "cpu/1000 without": without["pg_cpu_ms_per_1000"],
                "cpu change": f"{cpu * 100:+.1f} %",
                "all with": ", ".join(f"{r['events_per_s']:,}" for r in runs["with marts"][w]),
                "all without": ", ".join(f"{r['events_per_s']:,}" for r in runs["without marts"][w]),
                "verified": all(r["ok"] for v in variants for r in runs[v][w]),
                "change_value": change,
            }
        )
    return {
        "events": args.pipeline_events,
        "batch": args.batch,
        "runs": runs,
        "rows": rows,
        "profile": profile,
    }


# -- the report --------------------------------------------------------------------------------------


def _ms(summary: dict[str, Any]) -> str:
    if not summary["n"]:
        return "-"
    more = ">" if summary.get("timed_out") else ""
    return f"{more}{summary['p50_ms']:,} / {more}{summary['p95_ms']:,}"


def _speedup(row: dict[str, Any]) -> str:
    if not row["speedup"]:
        return "-"
    return f"{'>' if row['naive'].get('timed_out') else ''}{row['speedup']:,}x"


def report(results: dict[str, Any], args: argparse.Namespace) -> list[tuple[str, bool, str]]:
    """Print each part's figures; the targets as (name, met, detail)."""
    targets: list[tuple[str, bool, str]] = []
    if "vault" in results:
        gen, built, size, live = results["vault"], results["marts"], results["sizes"], results["live"]
        big = gen["customers"][BIG]
        sessions = big["sessions"]
        print(
            f"\n1. Vault: {gen['events']:,} events generated in {gen['seconds']:,.0f} s "
            f"({gen['events'] / gen['seconds']:,.0f} events/s); {BIG}: {big['events']:,} events in "
            f"{sessions:,} sessions of {big['visitors']:,} visitors "
            f"({big['one_event_sessions'] / sessions:.0%} with one event, "
            f"{big['bot_sessions'] / sessions:.1%} bots, {big['utm_sessions'] / sessions:.0%} with UTM tags)"
        )
        print("   steps (s): " + ", ".join(f"{k} {v}" for k, v in gen["steps"].items()))
        counted = built["customers"][BIG]
        print(
            f"2. Marts rebuilt in {built['seconds']:,.0f} s ({built['events_per_s']:,} events/s, chunks of "
            f"{built['chunk']:,} visitors), VACUUM ANALYZE {built['vacuum_analyze_seconds']} s; {BIG}: "
            f"{counted['sessions']:,} sessions and {counted['events']:,} events counted (bots left out)"
        )
        marts_size, vault_size = size["mart"], size["business"]
        print(
            f"   size on disk: marts {marts_size['mb']:,} MB ({marts_size['mb_per_million_events']:,} MB per "
            f"million events), vault {vault_size['mb']:,} MB ({vault_size['mb_per_million_events']:,} MB per "
            "million events; its indexes built after the load, so tighter than the pipeline's)"
        )
        mart_tables = [t for t in size["tables"] if t["schema"] == "mart"]
        print("   " + ", ".join(f"{t['table_name']} {t['bytes'] / 2**20:,.0f} MB" for t in mart_tables))
        print(
            f"   the last {live['minutes']} minutes ({live['events']:,} events, {live['sessions']:,} "
            f"sessions) refreshed by mart.refresh_sessions in {live['refresh_ms']:,} ms"
        )
    for period in results.get("queries", []):
        print(
            f"\n3. The dashboard's queries for {period['period']} ({period['date_range'][0]} to "
            f"{period['date_range'][1]}, {BIG_ZONE}): ms p50 / p95; target p95 <= "
            f"{period['target_ms']:.0f} ms and >= {TARGET_SPEEDUP:.0f}x the naive"
        )
        table = [
            {
                "query": r["query"],
                "marts p50 / p95": _ms(r["marts"]),
                "n": r["marts"]["n"],
                "never prepared": _ms(r["marts_never_prepared"]),
                "first round": f"{r['marts_first_round_ms']:,.1f}",
                "naive p50 / p95": _ms(r["naive"]),
                "n ": r["naive"]["n"],
                "speed-up": _speedup(r),
                "p95 target": "PASS" if r["p95_met"] else "FAIL",
                "speed-up target": "PASS" if r["speedup_met"] else "FAIL",
                "answers": "equal" if c["equal"] else "not compared" if not c["compared"] else "DIFFERENT",
            }
            for r, c in zip(period["rows"], period["checks"], strict=True)
        ]
        w = period["whole_set"]
        table.append(
            {
                "query": w["query"],
                "marts p50 / p95": _ms(w["marts"]),
                "n": w["marts"]["n"],
                "never prepared": _ms(w["marts_never_prepared"]),
                "first round": f"{w['marts_first_round_ms']:,.1f}",
                "naive p50 / p95": _ms(w["naive"]),
                "n ": w["naive"]["n"],
                "speed-up": _speedup(w),
            }
        )
        print(harness.table(table, list(table[0])))
        worst = max(period["rows"], key=lambda r: r["marts"]["p95_ms"])
        least = min(period["rows"], key=lambda r: r["speedup"] or 0)
        targets.append(
            (
                f"{period['period']}: every query's p95 over the marts <= {period['target_ms']:.0f} ms",
                all(r["p95_met"] for r in period["rows"]),
                f"slowest {worst['query']}: {worst['marts']['p95_ms']} ms",
            )
        )
        targets.append(
            (
                f"{period['period']}: every query >= {TARGET_SPEEDUP:.0f}x faster than the naive (p50)",
                all(r["speedup_met"] for r in period["rows"]),
                f"least {least['query']}: {least['speedup']}x; the whole set {w['speedup']}x",
            )
        )
        different = [c["query"] for c in period["checks"] if c["compared"] and not c["equal"]]
        uncompared = [c["query"] for c in period["checks"] if not c["compared"]]
        detail = "DIFFERENT: " + "; ".join(different) if different else "all compared are equal"
        if uncompared:
            detail += f"; not compared (the naive query ran over {args.naive_timeout:.0f} s): " + "; ".join(
                uncompared
            )
        targets.append(
            (f"{period['period']}: the marts' answers equal the naive ones", not different, detail)
        )
        filtered = period.get("filtered", [])
        if filtered:
            print(
                f"\n   After a click on a row, as the page asks (totals, chart, the visit panels in one "
                f"request, the event panels in another) with ONEVAULT_STATS_SAMPLE_SESSIONS at its "
                f"default ({SAMPLE_SESSIONS:,}): each request timed alone, their sum, the page (its requests "
                f"at once), beside the same requests read whole; the sample's visitors against the whole's "
                f"(rows with 1,000 or more): ms p50 / p95 of {filtered[0]['whole_set']['n']} rounds"
            )
            print(
                harness.table(
                    [
                        {
                            "filter": f"{f['filter'][0]} is {f['filter'][1]}",
                            "the page's requests": _ms(f["whole_set"]),
                            "the page": _ms(f["page"]),
                            "read whole": _ms(f["unsampled"]),
                            "sample": f"{f['sample_percent']} %" if f["sample_percent"] else "none",
                            "error median / max": (
                                f"{f['estimates']['median_pct']} / {f['estimates']['max_pct']} % "
                                f"({f['estimates']['rows']} rows)"
                                if f["estimates"]["rows"]
                                else "-"
                            ),
                            "slowest request": f"{f['slowest']}: {_ms(f['slowest_ms'])}",
                            "p95 target": "PASS" if f["p95_met"] else "FAIL",
                        }
                        for f in filtered
                    ],
                    [
                        "filter",
                        "the page's requests",
                        "the page",
                        "read whole",
                        "sample",
                        "error median / max",
                        "slowest request",
                        "p95 target",
                    ],
                )
            )
            worst_filtered = max(filtered, key=lambda f: f["slowest_ms"]["p95_ms"])
            targets.append(
                (
                    f"{period['period']}: every request of a filtered dashboard, p95 over the marts "
                    f"<= {period['target_ms']:.0f} ms",
                    all(f["p95_met"] for f in filtered),
                    f"slowest {worst_filtered['slowest']} filtered by {worst_filtered['filter'][0]}: "
                    f"{worst_filtered['slowest_ms']['p95_ms']} ms",
                )
            )
            targets.append(
                (
                    f"{period['period']}: a filtered dashboard's answers not sampled equal those read whole",
                    all(f["estimates"]["unsampled_equal"] for f in filtered),
                    "",
                )
            )
        print(
            f"\n   EXPLAIN ANALYZE of the slowest query over the marts ({period['slowest']}), with the plan "
            "for its values and with the generic plan of a prepared statement:"
        )
        print(explain.report(period["explained"], top=4, plan_lines=25))
    if "pipeline" in results:
        cost = results["pipeline"]
        print(
            f"\n4. Pipeline: {cost['events']:,} pending events → business layer, batch {cost['batch']}, "
            f"best of {args.pipeline_repeats} alternating runs; cpu: PostgreSQL CPU ms per 1,000 events; "
            "refreshes (tail): the best run's refreshes that found sessions, their time in all and "
            "after its last batch"
        )
        print(harness.table(cost["rows"], [k for k in cost["rows"][0] if k != "change_value"]))
        profile = cost["profile"]
        print(
            f"   one batch of {cost['batch']:,} after {profile['after_events']:,} events: "
            f"{profile['batch_without_marts_ms']:,} ms without the marts, then mart.refresh_sessions of its "
            f"{profile['sessions']:,} sessions {profile['refresh_ms']:,} ms"
        )
        if profile["explained"] is not None:
            print(explain.report([profile["explained"]], top=1, plan_lines=0))
        for row in cost["rows"]:
            targets.append(
                (
                    f"pipeline with the marts at most {TARGET_PIPELINE_SLOWDOWN:.0%} below without "
                    f"({row['runs']} run(s))",
                    row["change_value"] >= -TARGET_PIPELINE_SLOWDOWN and row["verified"],
                    f"{row['with marts']} against {row['without marts']} events/s ({row['change']}), "
                    f"CPU per event {row['cpu change']}" + ("" if row["verified"] else " (NOT verified)"),
                )
            )
    return targets


def main() -> None:
    """Generate, build the marts, time the dashboard's queries against the naive ones, the pipeline's cost."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000, help="the big customer's events")
    parser.add_argument("--days", type=int, default=90, help="the days they span, ending now")
    parser.add_argument(
        "--small-share", type=float, default=0.01, help="each small customer's events, relative"
    )
    parser.add_argument("--seed", type=float, default=0.42)
    parser.add_argument("--chunk", type=int, default=5000, help="visitors per mart rebuild chunk")
    parser.add_argument(
        "--live-minutes", type=int, default=30, help="the last minutes, refreshed as the pipeline does"
    )
    parser.add_argument(
        "--repeat", type=int, default=20, help="rounds of the dashboard's queries over the marts"
    )
    parser.add_argument(
        "--budget", type=float, default=300, help="time bound of the marts' rounds, per period (s)"
    )
    parser.add_argument(
        "--filtered-repeat",
        type=int,
        default=5,
        help="rounds of the queries after a click on a row, per filter",
    )
    parser.add_argument(
        "--naive-repeat", type=int, default=3, help="rounds of the naive queries (at least 1)"
    )
    parser.add_argument(
        "--naive-budget",
        type=float,
        default=900,
        help="time bound of the naive rounds after the first, per period (s)",
    )
    parser.add_argument(
        "--naive-timeout", type=float, default=600, help="a naive query running longer is stopped (s)"
    )
    parser.add_argument("--pipeline-events", type=int, default=100_000)
    parser.add_argument("--pipeline-workers", default="1,2", help="concurrent pipeline runs, comma-separated")
    parser.add_argument("--pipeline-repeats", type=int, default=2)
    parser.add_argument("--pipeline-seconds", type=float, default=300, help="time bound of each pipeline run")
    parser.add_argument("--batch", type=int, default=1000, help="pipeline batch size")
    parser.add_argument("--parts", default="queries,pipeline", help="queries (parts 1-3), pipeline (part 4)")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    small = max(round(args.events * args.small_share), 1)
    customers = [Customer(BIG, "big", args.events, BIG_ZONE)] + [Customer(c, c, small, "UTC") for c in SMALL]

    # The code measured: the marts' SQL is applied from this checkout's files, committed or not.
    code = vault.Tree("current", vault.ROOT, Path(sys.executable)).describe()
    say(f"measuring {vault.ROOT} at {code}")
    started = time.perf_counter()
    results: dict[str, Any] = {"code": code}
    with harness.postgres() as pg:
        if "queries" in parts:
            url = harness.create_database(pg, "analytics")
            for customer in customers:
                harness.tenant_token(url, customer.customer_id)
            with psycopg.connect(url, autocommit=True) as conn:
                store.set_time_zone(conn, BIG, BIG_ZONE)
            until = datetime.now(UTC)
            say(f"generating {sum(c.events for c in customers):,} events over {args.days} days ...")
            results["vault"] = generate(url, customers, until - timedelta(days=args.days), until, args.seed)
            results["vault"]["events"] = sum(c.events for c in customers)
            say(f"generated in {results['vault']['seconds']:,.0f} s; building the marts ...")
            results["marts"] = build_marts(url, customers, args.chunk)
            built = results["marts"]
            say(f"marts built in {built['seconds']:,.0f} s ({built['events_per_s']:,} events/s)")
            results["sizes"] = sizes(url, results["vault"]["events"])
            results["live"] = live_minutes(url, customers[0], args.days, args.live_minutes, args.seed)
            results["queries"] = measure_queries(url, args)
            pipeline.drop(pg, "analytics")
        if "pipeline" in parts:
            say("pipeline with and without the marts ...")
            results["pipeline"] = pipeline_cost(pg, args)
    seconds = time.perf_counter() - started

    targets = report(results, args)
    print(f"\nCode: {vault.ROOT} at {code}")
    print(
        f"\nMachine: {os.cpu_count()} cores shared with other work"
        + (
            f" (during the pipeline runs other processes used {min(vault.OTHER_CORES):.1f}-"
            f"{max(vault.OTHER_CORES):.1f} cores)"
            if vault.OTHER_CORES
            else ""
        )
    )
    print("\nTargets:")
    for name, met, detail in targets:
        print(f"  {'PASS' if met else 'FAIL'}  {name}: {detail}")
    for period in results.get("queries", []):
        period["explained"] = [e.summary() for e in period["explained"]]
    if results.get("pipeline", {}).get("profile", {}).get("explained") is not None:
        results["pipeline"]["profile"]["explained"] = results["pipeline"]["profile"]["explained"].summary()
    path = harness.save(
        "analytics",
        {
            "options": vars(args),
            "seconds": round(seconds),
            "targets": [{"target": name, "met": met, "detail": detail} for name, met, detail in targets],
            **results,
        },
    )
    print(f"\n{seconds / 60:.1f} min; results: {path}")
    different = [
        c for p in results.get("queries", []) for c in p["checks"] if c["compared"] and not c["equal"]
    ]
    if different:
        for check in different:
            print(
                f"\nDIFFERENT: {check['query']}\n  marts: {check['marts_all']}\n  naive: {check['naive_all']}"
            )
        raise SystemExit("the marts' answers differ from the naive ones")


if __name__ == "__main__":
    main()
