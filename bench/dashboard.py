"""Dashboard and status latency with N events of the customer in the business layer.

`python -m bench.dashboard [--events 1000000]`

A second customer with a tenth as many events (interleaved with the first's) makes tenant
filtering matter. After loading and processing everything (then VACUUM ANALYZE, as autovacuum
would), `onevault serve` is started and each endpoint is requested sequentially (after a
warm-up); the SQL behind them is also timed directly and explained.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import httpx
import psycopg
from psycopg import sql
from psycopg.abc import Params, QueryNoTemplate

from bench import data, drive, explain, harness

CUSTOMER = harness.CUSTOMER_ID
TARGET_P95_MS = 200
OTHER = "other_co"
MONITORING = "onevault.monitoring"
# The named statements of the status and dashboard routes (those present are explained).
ROUTE_QUERIES = ("pipeline_status", "recent_events", "dashboard_summary")
# The deployment guide's queries over the dashboard view (SPEC §5), run as written.
GUIDE_QUERIES = {
    "guide: latest 10 of pipeline_dashboard": (
        "SELECT * FROM staging.pipeline_dashboard ORDER BY raw_load_date DESC LIMIT 10"
    ),
    "guide: counts over pipeline_dashboard": (
        "SELECT COUNT(*) AS raw_events, COUNT(CASE WHEN staging_status = 'PROCESSED' THEN 1 END) AS staged, "
        "COUNT(CASE WHEN business_status = '✅ Complete Pipeline' THEN 1 END) AS completed "
        "FROM staging.pipeline_dashboard"
    ),
}


def load_both(url: str, n: int, other_share: float, chunk: int = 10_000) -> dict[str, int]:
    """Store n raw events of the customer and n * other_share of the other, chunks interleaved."""
    every = max(round(1 / other_share), 1) if other_share > 0 else 0
    other_n = round(n * other_share)
    started = time.perf_counter()
    malformed: dict[str, int] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        streams = {c: data.EventStream(prefix=c, seed=i) for i, c in enumerate((CUSTOMER, OTHER), 1)}
        hks = {c: conn.execute("SELECT util.tenant_hk(%s)", [c]).fetchone() for c in streams}
        main = data.load_raw(conn, _hk(hks[CUSTOMER]), streams[CUSTOMER], n, chunk=chunk)
        other = data.load_raw(conn, _hk(hks[OTHER]), streams[OTHER], other_n, chunk=chunk)
        done = 0
        for k, done in enumerate(main, 1):
            if every and k % every == 0:
                next(other, None)
            if done % 100_000 == 0 or done == n:
                print(f"  load: {done:,}/{n:,} ({done / (time.perf_counter() - started):,.0f}/s)", flush=True)
        for _ in other:
            pass
        malformed = {c: s.malformed for c, s in streams.items()}
    return malformed


def _hk(row: tuple[Any, ...] | None) -> bytes:
    assert row is not None
    value: bytes = row[0]
    return value


def process_everything(url: str, batch: int) -> float:
    """Process every pending event of both customers in batches; the seconds it took."""
    started = time.perf_counter()
    done = 0
    with psycopg.connect(url, autocommit=True) as conn:
        for customer in (CUSTOMER, OTHER):
            drive.parse_user_agents(conn, customer)
            while (run := drive.run_once(conn, customer, batch, prepare=False)).processed:
                done += run.events
                if done % 100_000 < batch:
                    rate = done / (time.perf_counter() - started)
                    print(f"  processed: {done:,} ({rate:,.0f} events/s)", flush=True)
        conn.execute("VACUUM ANALYZE")
    return time.perf_counter() - started


def timings(call: Callable[[], Any], n: int, warmup: int, budget: float) -> dict[str, Any]:
    """Latency of `n` sequential calls after `warmup` ones (stopping early after `budget` seconds)."""
    for _ in range(warmup):
        call()
    ms: list[float] = []
    deadline = time.perf_counter() + budget
    while len(ms) < n and time.perf_counter() < deadline:
        started = time.perf_counter()
        call()
        ms.append((time.perf_counter() - started) * 1000)
    ordered = sorted(ms)
    return {
        "n": len(ms),
        "p50_ms": round(statistics.median(ms), 1),
        "p95_ms": round(ordered[min(int(0.95 * len(ms)), len(ms) - 1)], 1),
        "max_ms": round(ordered[-1], 1),
        "mean_ms": round(statistics.mean(ms), 1),
    }


def http_timings(server: harness.Server, token: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The three monitoring requests, each timed sequentially."""
    headers = {"X-Customer-ID": CUSTOMER, "Authorization": f"Bearer {token}"}
    rows = []
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
        for path in (
            "/api/v1/track/dashboard?limit=20",
            "/api/v1/track/dashboard?limit=1000",
            "/api/v1/track/status",
        ):
            sizes: list[int] = []

            def get(path: str = path, sizes: list[int] = sizes) -> None:
                response = client.get(path)
                response.raise_for_status()
                sizes.append(len(response.content))

            rows.append({"what": f"GET {path}"} | timings(get, args.requests, args.warmup, args.budget))
            rows[-1]["bytes"] = sizes[-1]
            rows[-1]["target_met"] = rows[-1]["p95_ms"] <= TARGET_P95_MS
            print(f"  {rows[-1]['what']}: p95 {rows[-1]['p95_ms']} ms", flush=True)
    return rows


def fetch_all(
    conn: psycopg.Connection[Any], query: QueryNoTemplate, params: Params | None = None
) -> list[Any]:
    """Every row of `query` on `conn`: the statement is timed with its results read."""
    return conn.execute(query, params).fetchall()


def sql_timings(url: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The SQL behind the endpoints, and the deployment guide's queries, timed on one connection."""
    queries = explain_sources()
    rows = []
    with psycopg.connect(url, autocommit=True) as conn:
        for name, (query, params) in queries.items():
            rows.append(
                {"what": f"SQL {name}"}
                | timings(partial(fetch_all, conn, query, params), args.requests, 3, args.budget)
            )
        for name, text in GUIDE_QUERIES.items():
            rows.append({"what": name} | timings(partial(fetch_all, conn, text.encode()), 5, 1, args.budget))
    return rows


def explain_sources() -> dict[str, tuple[Any, dict[str, Any]]]:
    """The route statements present in the monitoring queries, with the customer's parameters."""
    from onevault import sqlfile

    statements = sqlfile.load(MONITORING, "queries.sql")
    params = {"customer_id": CUSTOMER, "limit": 20}
    return {name: (statements[name], params) for name in ROUTE_QUERIES if name in statements}


def explain_all(url: str) -> list[explain.Explained]:
    """EXPLAIN ANALYZE of the route statements and of get_pipeline_status's statements."""
    explained: list[explain.Explained] = []
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction(force_rollback=True):
        for name, (query, params) in explain_sources().items():
            explained.append(explain.explain_query(conn, f"monitoring: {name}", query, params))
        for name, query in GUIDE_QUERIES.items():
            explained.append(explain.explain_query(conn, name, sql.SQL(query), {}))
        variables: explain.Variables = {"p_customer_id": ("text", CUSTOMER), "v_tenants": ("bytea[]", [])}
        explained += explain.explain_function(conn, "staging", "get_pipeline_status", variables)
    return explained


def main() -> None:
    """Load, process, serve, and time the dashboard and status endpoints."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument(
        "--other-share", type=float, default=0.1, help="the second customer's events, relative"
    )
    parser.add_argument("--batch", type=int, default=10_000, help="pipeline batch size while loading")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--budget", type=float, default=120, help="time bound of each measurement (s)")
    args = parser.parse_args()
    n = args.events

    with harness.postgres() as pg:
        url = harness.create_database(pg, "dashboard")
        token = harness.tenant_token(url)
        harness.tenant_token(url, OTHER)
        started = time.perf_counter()
        malformed = load_both(url, n, args.other_share)
        load_seconds = time.perf_counter() - started
        process_seconds = process_everything(url, args.batch)
        business = harness.count(
            url, "SELECT count(*) FROM business.site_event_h WHERE tenant_hk = util.tenant_hk('bench_co')"
        )
        print(
            f"loaded in {load_seconds:.0f} s, processed in {process_seconds:.0f} s: {business:,} in business"
        )
        with harness.onevault(url, harness.free_port()) as server:
            http_rows = http_timings(server, token, args)
        sql_rows = sql_timings(url, args)
        explained = explain_all(url)

    print(
        f"\nDashboard and status with {business:,} events of {CUSTOMER} in the business layer "
        f"(+{round(n * args.other_share):,} of {OTHER}); target p95 ≤ {TARGET_P95_MS} ms"
    )
    print(
        harness.table(
            [*http_rows, *sql_rows],
            ["what", "n", "p50_ms", "p95_ms", "max_ms", "mean_ms", "bytes", "target_met"],
        )
    )
    print("\nEXPLAIN ANALYZE, slowest first:")
    print(explain.report(explained, top=6, plan_lines=20))
    path = harness.save(
        "dashboard",
        {
            "events": n,
            "business_events": business,
            "other_events": round(n * args.other_share),
            "malformed": malformed,
            "load_seconds": round(load_seconds, 1),
            "process_seconds": round(process_seconds, 1),
            "http": http_rows,
            "sql": sql_rows,
            "explained": [e.summary() for e in sorted(explained, key=lambda e: -e.execution_ms)],
        },
    )
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
