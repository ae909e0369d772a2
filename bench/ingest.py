"""Ingestion benchmark: /track/async, /track and /track/batch, side by side with the naive baseline.

`python -m bench.ingest [--seconds 10] [--connections 1,16,64] [--quick]`

One PostgreSQL, two databases (the service's, the baseline's), both servers with 2 workers, wrk
as the load generator. Each endpoint and concurrency runs against the service, then against the
baseline; between runs each server's background backlog is drained. /track/async also runs as
browsers' beacons send it (text/plain, customer_id and a track-only token in the body, Origin and a
browser User-Agent, no auth headers), against the service only. Then /track/batch once more
against an ingestion-only node (ONEVAULT_PIPELINE_BACKGROUND=false: processing runs elsewhere).
Also measured in the same run: a bare uvicorn hello-world and bare PostgreSQL inserts (the
physical limits), and the peak RSS of every server process.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from bench import harness, limits
from bench.naive_baseline import naive_server

ENDPOINTS: list[tuple[str, int]] = [
    ("/api/v1/track/async", 1),
    ("/api/v1/track", 1),
    ("/api/v1/track/batch", 100),
]
# The endpoint browsers' beacons post to; the baseline has no body credentials, so no beacon run.
BEACON_ENDPOINT = "/api/v1/track/async"
BEACON_LABEL = "beacon (text/plain, body credentials)"
# Events still to be processed, counted in the queue (not failed ones: a row out of retries would
# otherwise hold every drain for its whole timeout).
BACKLOG = "SELECT pending FROM raw.queue_counts()"
# A run's stored rows, and those still holding a credential (the server must take them out).
ROWS_OF_RUN = (
    "SELECT count(*), count(*) FILTER (WHERE raw_payload ?| array['customer_id', 'token'])"
    " FROM raw.site_tracking_events_r WHERE event_id LIKE %s"
)


def drain(url: str, timeout: float) -> tuple[float, int]:
    """Wait until nothing is left to process in `url` (or `timeout`); seconds waited and backlog left."""
    started = time.monotonic()
    while True:
        left = harness.count(url, BACKLOG)
        waited = time.monotonic() - started
        if left == 0 or waited >= timeout:
            return round(waited, 1), left
        time.sleep(0.25)


def rows_of_run(url: str, prefix: str) -> tuple[int, int]:
    """Raw rows whose event id carries the run's wrk prefix (`<prefix>-<thread>-<n>`), and how many of
    them kept a credential."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(ROWS_OF_RUN, (prefix + "-%",)).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def measure(
    server: harness.Server,
    db_url: str,
    token: str,
    endpoint: str,
    per_request: int,
    connections: int,
    seconds: int,
    drain_timeout: float,
    credentials: harness.Credentials = "headers",
) -> dict[str, Any]:
    """One wrk run against `server`, then drain its backlog and check the rows it stored."""
    result = harness.wrk(
        server.url + endpoint,
        harness.CUSTOMER_ID,
        token,
        connections,
        seconds,
        events_per_request=per_request,
        credentials=credentials,
    )
    result["drain_s"], result["backlog_left"] = drain(db_url, drain_timeout)
    rows, result["rows_with_credentials"] = rows_of_run(db_url, result["prefix"])
    # wrk stops with requests in flight: the server may commit them after wrk stopped counting,
    # so up to one request per connection (and per failed request) may be stored unacknowledged.
    # Every acknowledged event must be there.
    in_flight = (connections + result["errors"]) * per_request
    result["rows"] = rows
    result["unacknowledged_rows"] = rows - result["events"]
    result["rows_ok"] = result["events"] <= rows <= result["events"] + in_flight
    return result


def _ratio(ours: float, base: float) -> float | None:
    return round(ours / base, 1) if base else None


def _run(
    endpoint: str, connections: int, per_request: int, ours: dict[str, Any], base: dict[str, Any] | None
) -> dict[str, Any]:
    """One cell of the table: the service's wrk run and, unless it has none, the baseline's."""
    return {
        "endpoint": endpoint,
        "credentials": ours["credentials"],
        "connections": connections,
        "events_per_request": per_request,
        "ratio": _ratio(ours["events_per_s"], base["events_per_s"]) if base else None,
        "ours": ours,
        "baseline": base,
    }


def _row(run: dict[str, Any]) -> dict[str, Any]:
    """A run as a line of the printed table ("-" where the baseline has no run)."""
    ours, base = run["ours"], run["baseline"]

    def both(cell: Callable[[dict[str, Any]], object]) -> str:
        return f"{cell(ours)}/{cell(base) if base else '-'}"

    beacon = run["credentials"] == "body"
    return {
        "endpoint": f"{run['endpoint']} {BEACON_LABEL}" if beacon else run["endpoint"],
        "conn": run["connections"],
        "ours ev/s": f"{ours['events_per_s']:,.0f}",
        "base ev/s": f"{base['events_per_s']:,.0f}" if base else "-",
        "ratio": run["ratio"] if base else "-",
        "ours p50/p99 ms": f"{ours['p50_ms']}/{ours['p99_ms']}",
        "base p50/p99 ms": f"{base['p50_ms']}/{base['p99_ms']}" if base else "-",
        "errors ours/base": both(lambda r: r["errors"]),
        "rows_ok ours/base": both(lambda r: r["rows_ok"]),
        "drain s ours/base": both(lambda r: r["drain_s"]),
    }


def _peak(peaks: dict[str, float]) -> float:
    return round(max(peaks.values(), default=0.0), 1)


def targets(
    runs: list[dict[str, Any]], rss_mb: float, ingestion_only: dict[str, Any]
) -> list[dict[str, Any]]:
    """Issue 5's ingestion targets, each with what was measured and PASS/FAIL."""

    def of(endpoint: str, credentials: harness.Credentials = "headers") -> list[dict[str, Any]]:
        return [r for r in runs if r["endpoint"] == endpoint and r["credentials"] == credentials]

    def pick(
        endpoint: str, connections: int | None = None, credentials: harness.Credentials = "headers"
    ) -> dict[str, Any] | None:
        rows = of(endpoint, credentials)
        if connections is not None:
            exact = [r for r in rows if r["connections"] == connections]
            rows = exact or rows
        return max(rows, key=lambda r: r["connections"]) if rows else None

    out: list[dict[str, Any]] = []

    def add(target: str, measured: str, ok: bool) -> None:
        out.append({"target": target, "measured": measured, "result": "PASS" if ok else "FAIL"})

    async_hi = pick("/api/v1/track/async", 64)
    if async_hi:
        c = async_hi["connections"]
        ratio = async_hi["ratio"] or 0.0
        add(f"/track/async >= 5x baseline events/s ({c} conn)", f"{ratio}x", ratio >= 5)
        add(
            f"/track/async p99 <= 50 ms ({c} conn)",
            f"{async_hi['ours']['p99_ms']} ms",
            async_hi["ours"]["p99_ms"] <= 50,
        )
    beacon_hi = pick(BEACON_ENDPOINT, 64, credentials="body")
    if async_hi and beacon_hi:
        beacon_rate, async_rate = beacon_hi["ours"]["events_per_s"], async_hi["ours"]["events_per_s"]
        # One-sided: the beacon path fails the target only by being slower than /async.
        change = (beacon_rate / async_rate - 1) * 100 if async_rate else -100.0
        add(
            f"beacon path within 10 % of /async events/s ({beacon_hi['connections']} conn)",
            f"{beacon_rate:,.0f} vs {async_rate:,.0f} ({change:+.1f} %)",
            change >= -10,
        )
    paths: tuple[tuple[str, harness.Credentials], ...] = (
        ("/track/async", "headers"),
        ("beacon /track/async", "body"),
    )
    for name, credentials in paths:
        chosen = of(BEACON_ENDPOINT, credentials)
        if not chosen:
            continue
        errors = sum(r["ours"]["errors"] for r in chosen)
        add(f"{name} zero errors (all conn)", str(errors), errors == 0)
        lost = sum(max(0, r["ours"]["events"] - r["ours"]["rows"]) for r in chosen)
        rows_ok = all(r["ours"]["rows_ok"] for r in chosen)
        add(f"{name} no lost rows (all conn)", f"{lost} lost, rows_ok={rows_ok}", rows_ok and lost == 0)
    beacon_runs = of(BEACON_ENDPOINT, "body")
    if beacon_runs:
        kept = sum(r["ours"]["rows_with_credentials"] for r in beacon_runs)
        add("beacon: no credentials stored in raw (all conn)", f"{kept} rows", kept == 0)
    track_hi = pick("/api/v1/track", 64)
    if track_hi:
        ratio = track_hi["ratio"] or 0.0
        add(f"/track >= 3x baseline events/s ({track_hi['connections']} conn)", f"{ratio}x", ratio >= 3)
    async_16, track_16 = pick("/api/v1/track/async", 16), pick("/api/v1/track", 16)
    if async_16 and track_16:
        diff = round(track_16["ours"]["p50_ms"] - async_16["ours"]["p50_ms"], 2)
        add(
            f"/track p50 - /track/async p50 <= 10 ms ({track_16['connections']} conn)",
            f"{diff} ms",
            diff <= 10,
        )
    batch_runs = [r for r in runs if r["endpoint"] == "/api/v1/track/batch"]
    if batch_runs:
        best = max(batch_runs, key=lambda r: r["ours"]["events_per_s"])
        rate = best["ours"]["events_per_s"]
        add(
            "/track/batch >= 50,000 events/s (best conn, processing on the same cores)",
            f"{rate:,.0f} ({best['connections']} conn)",
            rate >= 50_000,
        )
    rate = ingestion_only["events_per_s"]
    add(
        "/track/batch >= 50,000 events/s (ingestion-only node)",
        f"{rate:,.0f} ({ingestion_only['connections']} conn, {ingestion_only['errors']} errors)",
        rate >= 50_000 and ingestion_only["errors"] == 0 and ingestion_only["rows_ok"],
    )
    add("RSS <= 300 MB per process (ours)", f"{rss_mb} MB", rss_mb <= 300)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ingestion benchmark; print the tables and save the JSON results."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=10, help="length of each wrk run")
    parser.add_argument("--connections", default="1,16,64", help="comma-separated concurrencies")
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=180,
        help="longest wait for a backlog to drain before the next run",
    )
    parser.add_argument("--quick", action="store_true", help="3-second runs at 16 connections only")
    args = parser.parse_args(argv)
    seconds = 3 if args.quick else args.seconds
    concurrencies = [16] if args.quick else [int(c) for c in args.connections.split(",")]

    runs: list[dict[str, Any]] = []
    with harness.postgres() as pg:
        ours_db = harness.create_database(pg, "bench_ingest_ours")
        base_db = harness.create_database(pg, "bench_ingest_naive")
        limits_db = harness.create_database(pg, "bench_ingest_limits")
        ours_token = harness.tenant_token(ours_db)
        beacon_token = harness.browser_token(ours_db)
        base_token = harness.tenant_token(base_db)
        harness.tenant_token(limits_db)

        print("limits: COPY, the service's insert statement, bare uvicorn ...", file=sys.stderr)
        physical: dict[str, Any] = {
            "postgres_copy": limits.copy_ceiling(limits_db),
            "postgres_ingest_function": limits.ingest_function_ceiling(limits_db),
        }
        with limits.hello_server(harness.free_port()) as hello:
            physical["uvicorn_hello"] = harness.wrk(
                hello.url + "/api/v1/track/async", harness.CUSTOMER_ID, "x", 64, seconds
            )

        with (
            harness.onevault(ours_db, harness.free_port()) as ours,
            naive_server(base_db, harness.free_port()) as base,
            harness.peak_rss(ours) as ours_rss,
            harness.peak_rss(base) as base_rss,
        ):
            for endpoint, per_request in ENDPOINTS:
                for connections in concurrencies:
                    print(f"{endpoint} at {connections} connections ...", file=sys.stderr)
                    common = (endpoint, per_request, connections, seconds, args.drain_timeout)
                    ours_run = measure(ours, ours_db, ours_token, *common)
                    base_run = measure(base, base_db, base_token, *common)
                    runs.append(_run(endpoint, connections, per_request, ours_run, base_run))
                    if endpoint == BEACON_ENDPOINT:
                        print(f"{endpoint} {BEACON_LABEL} at {connections} connections ...", file=sys.stderr)
                        beacon_run = measure(ours, ours_db, beacon_token, *common, credentials="body")
                        runs.append(_run(endpoint, connections, per_request, beacon_run, None))
            ours_pids, base_pids = ours.pids(), base.pids()
        memory = {"ours_mb": dict(ours_rss), "baseline_mb": dict(base_rss)}

        # The same service as an ingestion-only node: its background processing runs elsewhere
        # (`onevault process --follow` on another machine), so it does not share these 2 cores.
        widest = max(concurrencies)
        print(f"/api/v1/track/batch at {widest} connections, ingestion-only ...", file=sys.stderr)
        with harness.onevault(ours_db, harness.free_port(), ONEVAULT_PIPELINE_BACKGROUND="false") as node:
            ingestion_only = measure(
                node, ours_db, ours_token, "/api/v1/track/batch", 100, widest, seconds, 0
            )

    rows = [_row(r) for r in runs]
    print(f"\nIngestion ({seconds} s per run, wrk, 2 server workers each)")
    print(harness.table(rows, list(rows[0]) if rows else []))
    print(
        f"{BEACON_LABEL}: {BEACON_ENDPOINT} as navigator.sendBeacon() posts it: "
        "Content-Type text/plain;charset=UTF-8, customer_id and a track-only token in the JSON body, "
        f"Origin {harness.BROWSER_ORIGIN} (allowed for the customer) and a desktop Chrome User-Agent, "
        "no X-Customer-ID/Authorization. Service only: the baseline has no body credentials."
    )
    only = ingestion_only
    print(
        f"\n/track/batch, ingestion-only node (ONEVAULT_PIPELINE_BACKGROUND=false), {widest} conn: "
        f"{only['events_per_s']:,.0f} events/s, p50/p99 {only['p50_ms']}/{only['p99_ms']} ms, "
        f"errors {only['errors']}, rows_ok {only['rows_ok']}"
    )

    hello_run = physical["uvicorn_hello"]
    limit_rows = [
        {
            "limit": "bare uvicorn hello-world, 64 conn, 2 workers",
            "events/s": f"{hello_run['events_per_s']:,.0f}",
            "detail": f"p50/p99 {hello_run['p50_ms']}/{hello_run['p99_ms']} ms",
        },
        {
            "limit": "PostgreSQL COPY into a copy of the raw table",
            "events/s": f"{physical['postgres_copy']['events_per_s']:,.0f}",
            "detail": f"{physical['postgres_copy']['rows']:,} rows",
        },
        {
            "limit": "raw.ingest_site_events, 1 connection, 500/commit",
            "events/s": f"{physical['postgres_ingest_function']['events_per_s']:,.0f}",
            "detail": f"{physical['postgres_ingest_function']['rows']:,} rows",
        },
    ]
    print("\nPhysical limits (same run)")
    print(harness.table(limit_rows, ["limit", "events/s", "detail"]))

    ours_peak, base_peak = _peak(memory["ours_mb"]), _peak(memory["baseline_mb"])
    memory_rows = [
        {
            "server": "ours",
            "processes": len(memory["ours_mb"]),
            "max MB/process": ours_peak,
            "per process MB": ", ".join(f"{v:.0f}" for v in sorted(memory["ours_mb"].values(), reverse=True)),
        },
        {
            "server": "baseline",
            "processes": len(memory["baseline_mb"]),
            "max MB/process": base_peak,
            "per process MB": ", ".join(
                f"{v:.0f}" for v in sorted(memory["baseline_mb"].values(), reverse=True)
            ),
        },
    ]
    print("\nPeak RSS over the whole run")
    print(harness.table(memory_rows, ["server", "processes", "max MB/process", "per process MB"]))

    verdicts = targets(runs, ours_peak, ingestion_only)
    print("\nTargets (issue 5)")
    print(harness.table(verdicts, ["target", "measured", "result"]))

    path = harness.save(
        "ingest",
        {
            "seconds": seconds,
            "connections": concurrencies,
            "quick": args.quick,
            "runs": runs,
            "limits": physical,
            "memory": memory
            | {
                "ours_max_mb": ours_peak,
                "baseline_max_mb": base_peak,
                "ours_pids": ours_pids,
                "baseline_pids": base_pids,
            },
            "ingestion_only_batch": ingestion_only,
            "targets": verdicts,
        },
    )
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
