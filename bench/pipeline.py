"""Pipeline throughput: N pending raw events processed to the business layer, against row-by-row.

`python -m bench.pipeline [--events 100000] [--naive-events 5000]`

The events are loaded once (raw.ingest_site_events, 10,000 per call) into a template database;
every configuration (1 or 2 workers, each on its own group of lanes, batch 1000 or 5000) runs on
its own copy of it, calling what the service's background processing calls: the user-agent
preparation, then `staging.auto_process_if_needed`, one transaction each, until nothing is left.
The row-by-row baseline (bench/naive.py) processes freshly loaded events of the same kind one
transaction per event in a separate database.
Afterwards the statements of one `staging.process_batch` call are explained one by one.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from bench import data, drive, explain, harness
from onevault.pipeline.runner import ALL_LANES, lane_groups

CUSTOMER = harness.CUSTOMER_ID
TARGET_EVENTS_PER_S = 20_000
TARGET_RATIO = 20


def clone(pg: harness.Postgres, template: str, name: str) -> str:
    """A copy of database `template` (which nobody may be connected to); its URL."""
    with psycopg.connect(pg.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template))
        )
    return pg.url(name)


def drop(pg: harness.Postgres, name: str) -> None:
    """Drop a database to free its disk space."""
    with psycopg.connect(pg.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def process_all(url: str, workers: int, batch: int, deadline: float) -> dict[str, Any]:
    """Run the pipeline from `workers` threads until it reports nothing left (or the deadline)."""
    runs: list[drive.Run] = []
    errors: list[str] = []
    lock = threading.Lock()

    def work(lanes: tuple[int, ...]) -> None:
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                while time.monotonic() < deadline:
                    run = drive.run_once(conn, CUSTOMER, batch, lanes=lanes)
                    if not run.processed:
                        return
                    with lock:
                        runs.append(run)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")

    # As the service's background processing does: one run per group of lanes, in parallel.
    threads = [
        threading.Thread(target=work, args=(lanes,), name=f"pipeline-worker-{n}")
        for n, lanes in enumerate(lane_groups(workers))
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    events = sum(r.events for r in runs)
    batch_ms = [r.prepare_ms + r.process_ms for r in runs]
    tenth = max(len(runs) // 10, 1)
    return {
        "workers": workers,
        "batch": batch,
        "events": events,
        "seconds": round(elapsed, 2),
        "events_per_s": round(events / elapsed) if elapsed else 0,
        "batches": len(runs),
        "batch_ms_p50": round(statistics.median(batch_ms), 1) if runs else None,
        "batch_ms_max": round(max(batch_ms), 1) if runs else None,
        "first_10pct_ms": round(statistics.mean(batch_ms[:tenth]), 1) if runs else None,
        "last_10pct_ms": round(statistics.mean(batch_ms[-tenth:]), 1) if runs else None,
        "prepare_share": round(sum(r.prepare_ms for r in runs) / sum(batch_ms), 3) if runs else None,
        "timed_out": time.monotonic() >= deadline,
        "errors": errors,
    }


def verify(url: str, n: int, malformed: int) -> dict[str, Any]:
    """Where the events ended: every raw row processed, staged once, loaded unless malformed."""
    counts = {
        "raw_not_processed": harness.count(
            url, "SELECT count(*) FROM raw.site_tracking_events_r WHERE processing_status <> 'PROCESSED'"
        ),
        "staging_rows": harness.count(url, "SELECT count(*) FROM staging.site_tracking_events_s"),
        "quarantined": harness.count(
            url, "SELECT count(*) FROM staging.site_tracking_events_s WHERE validation_status = 'INVALID'"
        ),
        "business_events": harness.count(url, "SELECT count(*) FROM business.site_event_h"),
    }
    counts["ok"] = (
        counts["raw_not_processed"] == 0
        and counts["staging_rows"] == n
        and counts["quarantined"] == malformed
        and counts["business_events"] == n - malformed
    )
    return counts


def run_naive(pg: harness.Postgres, n: int, seconds: float) -> dict[str, Any]:
    """bench/naive.py's process_event over `n` freshly loaded events, one transaction per event."""
    try:
        from bench import naive
    except ImportError as exc:
        return {"available": False, "reason": f"bench.naive not importable: {exc}"}
    url = harness.create_database(pg, "pipeline_naive")
    harness.tenant_token(url)
    stream = data.load(url, CUSTOMER, n, seed=2, label="naive load")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        drive.parse_user_agents(conn, CUSTOMER)
        ids = [r[0] for r in conn.execute("SELECT raw_event_id FROM raw.site_tracking_events_r ORDER BY 1")]
        failures = 0
        done = 0
        started = time.perf_counter()
        deadline = started + seconds
        for raw_event_id in ids:
            try:
                with conn.transaction():
                    naive.process_event(conn, raw_event_id)
            except psycopg.Error:
                failures += 1
            done += 1
            if time.perf_counter() > deadline:
                break
        elapsed = time.perf_counter() - started
    result: dict[str, Any] = {
        "available": True,
        "events": done,
        "seconds": round(elapsed, 2),
        "events_per_s": round(done / elapsed, 1) if elapsed else 0,
        "failures": failures,
        "timed_out": done < len(ids),
    }
    if done == len(ids):
        result["verify"] = verify(url, n, stream.malformed)
    drop(pg, "pipeline_naive")
    return result


def explain_batch(url: str, batch: int) -> dict[str, Any]:
    """Profile one process_batch on the first `batch` pending events: its callees, then its statements."""
    with psycopg.connect(url, autocommit=True) as conn:
        drive.parse_user_agents(conn, CUSTOMER)
        row = conn.execute("SELECT util.tenant_hk(%s)", [CUSTOMER]).fetchone()
        assert row is not None
        tenant_hk = row[0]
        with conn.transaction(force_rollback=True):
            started = time.perf_counter()
            times = explain.function_times(
                conn,
                lambda: conn.execute(
                    drive.PIPELINE["auto_process"],
                    drive.auto_process_params(CUSTOMER, batch),
                ),
            )
            batch_ms = (time.perf_counter() - started) * 1000
        ids = [
            r[0]
            for r in conn.execute(
                "SELECT raw_event_id FROM raw.site_tracking_events_r WHERE tenant_hk = %s "
                "AND processing_status <> 'PROCESSED' ORDER BY raw_event_id LIMIT %s",
                [tenant_hk, batch],
            )
        ]
        # The batch's own values; the counters are what a clean batch would have.
        variables: dict[str, tuple[str, Any]] = {
            "p_raw_ids": ("bigint[]", ids),
            "v_ids": ("bigint[]", ids),
            "v_now": ("timestamptz", datetime.now(UTC)),
            "p_tenant_hk": ("bytea", tenant_hk),
            "p_limit": ("integer", batch),
            "p_lanes": ("smallint[]", list(ALL_LANES)),
            "v_lanes": ("smallint[]", list(ALL_LANES)),
            "p_wait": ("boolean", False),
            "p_customer_id": ("text", CUSTOMER),
            "v_staged": ("integer", len(ids)),
            "v_loaded": ("integer", len(ids)),
            "v_quarantined": ("integer", 0),
            "v_errors": ("integer", 0),
        }
        explained: list[explain.Explained] = []
        with conn.transaction(force_rollback=True):
            explained += [
                explain.explain_query(
                    conn,
                    "pipeline: unparsed_user_agents (PipelineRunner.prepare)",
                    drive.PIPELINE["unparsed_user_agents"],
                    {"customer_id": CUSTOMER, "batch_size": batch, "lanes": list(ALL_LANES)},
                )
            ]
            for function in ("stage_events", "load_business", "process_batch"):
                explained += explain.explain_function(conn, "staging", function, variables)
    return {"batch_ms": batch_ms, "function_times": times, "explained": explained}


def main() -> None:
    """Load, process under each configuration, compare with row-by-row, explain one batch."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--naive-events", type=int, default=5_000)
    parser.add_argument("--naive-seconds", type=float, default=300, help="time bound of the row-by-row run")
    parser.add_argument("--run-seconds", type=float, default=600, help="time bound of each configuration")
    parser.add_argument("--explain-batch", type=int, default=1000)
    parser.add_argument("--workers", default="1,2", help="worker counts to run, comma-separated")
    parser.add_argument("--batches", default="1000,5000", help="batch sizes to run, comma-separated")
    args = parser.parse_args()
    n = args.events

    with harness.postgres() as pg:
        template = "pipeline_template"
        url = harness.create_database(pg, template)
        harness.tenant_token(url)
        started = time.perf_counter()
        stream = data.load(url, CUSTOMER, n)
        load_seconds = time.perf_counter() - started
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
        print(f"loaded {n:,} raw events in {load_seconds:.1f} s ({stream.malformed} malformed)", flush=True)

        rows: list[dict[str, Any]] = []
        configs = [(int(b), int(w)) for b in args.batches.split(",") for w in args.workers.split(",")]
        for batch, workers in configs:
            name = f"pipeline_w{workers}_b{batch}"
            print(f"processing with {workers} worker(s), batch {batch} ...", flush=True)
            run_url = clone(pg, template, name)
            result = process_all(run_url, workers, batch, time.monotonic() + args.run_seconds)
            result["verify"] = verify(run_url, n, stream.malformed)
            rows.append(result)
            print(f"  {result['events_per_s']:,} events/s, verified: {result['verify']['ok']}", flush=True)
            drop(pg, name)

        print(f"row-by-row (bench/naive.py) over {args.naive_events:,} events ...", flush=True)
        naive_result = run_naive(pg, args.naive_events, args.naive_seconds)
        naive_rate = naive_result.get("events_per_s") or 0
        for row in rows:
            row["vs_row_by_row"] = round(row["events_per_s"] / naive_rate, 1) if naive_rate else None
            row["verified"] = row["verify"]["ok"]

        print(f"explaining one process_batch of {args.explain_batch} events ...", flush=True)
        explain_url = clone(pg, template, "pipeline_explain")
        profile = explain_batch(explain_url, args.explain_batch)
        drop(pg, "pipeline_explain")
    explained: list[explain.Explained] = profile["explained"]

    table_rows = [*rows]
    if naive_result.get("available"):
        table_rows.append(
            {
                "workers": 1,
                "batch": "1 (row-by-row)",
                "events": naive_result["events"],
                "seconds": naive_result["seconds"],
                "events_per_s": naive_result["events_per_s"],
                "vs_row_by_row": 1.0,
                "verified": naive_result.get("verify", {}).get("ok"),
            }
        )
    print()
    print(f"Pipeline: {n:,} pending raw events → business layer (load: {n / load_seconds:,.0f} events/s)")
    print(
        harness.table(
            table_rows,
            [
                "workers",
                "batch",
                "events",
                "seconds",
                "events_per_s",
                "vs_row_by_row",
                "batches",
                "batch_ms_p50",
                "batch_ms_max",
                "first_10pct_ms",
                "last_10pct_ms",
                "prepare_share",
                "verified",
            ],
        )
    )
    if not naive_result.get("available"):
        print(f"row-by-row baseline: {naive_result.get('reason')}")
    best = max(rows, key=lambda r: r["events_per_s"])
    ratio = best.get("vs_row_by_row")
    rate_met = best["events_per_s"] >= TARGET_EVENTS_PER_S
    ratio_met = bool(ratio and ratio >= TARGET_RATIO)
    print(
        f"\nBest: {best['events_per_s']:,} events/s ({best['workers']} worker(s), batch {best['batch']}), "
        f"target {TARGET_EVENTS_PER_S:,}: {'met' if rate_met else 'NOT met'}; "
        f"{ratio}× row-by-row, target {TARGET_RATIO}×: {'met' if ratio_met else 'NOT met'}. "
        f"All runs verified: {all(r['verified'] for r in rows)}"
    )
    print(
        f"\nOne auto_process_if_needed batch of {args.explain_batch} events: {profile['batch_ms']:,.0f} ms;"
        " time per function called (track_functions; inlined SQL functions do not show):"
    )
    print(explain.report_functions(profile["function_times"]))
    total = sum(e.execution_ms for e in explained)
    print(f"\nThe same batch statement by statement (EXPLAIN ANALYZE, {total:,.0f} ms in all), top 5:")
    print(explain.report(explained))
    path = harness.save(
        "pipeline",
        {
            "events": n,
            "malformed": stream.malformed,
            "load_seconds": round(load_seconds, 2),
            "runs": rows,
            "targets": {
                "events_per_s": TARGET_EVENTS_PER_S,
                "ratio": TARGET_RATIO,
                "best_events_per_s": best["events_per_s"],
                "best_ratio": ratio,
            },
            "row_by_row": naive_result,
            "explain_batch": args.explain_batch,
            "explain_batch_ms": round(profile["batch_ms"], 1),
            "function_times": profile["function_times"],
            "explained": [e.summary() for e in sorted(explained, key=lambda e: -e.execution_ms)],
        },
    )
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
