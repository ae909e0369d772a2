"""Issue 16's targets (closer to the machine): the current tree beside the commit before the issue, in
one run, each figure beside its same-run limit.

`python -m bench.hardware [--previous /tmp/ov-0aafd39] [--repeats 3] [--seconds 10] [--events 100000]
[--freshness-seconds 60] [--quick]`

The previous tree is 0aafd39, the commit before issue 16's work, with its own virtual environment:
`git worktree add /tmp/ov-0aafd39 0aafd39 && bash /tmp/ov-0aafd39/scripts/_venv.sh '[bench]'`.

As bench/vault.py and bench/partitions.py: one embedded PostgreSQL; each tree runs its own code, every
step a subprocess of that tree's Python importing that tree's `onevault` and `bench`, on its own
databases (migrated by its own migrations); the trees' steps alternate. Each of `--repeats` rounds
(the tree that goes first alternating from round to round) runs, against each tree:

1. wrk cells, bench/partitions.py's ingest step (bench/ingest.py's measure against `onevault serve
   --workers 2` with background processing on, a fresh copy of the tree's migrated database each):
   /track/async at 1, 16 and 64 connections, the same as browsers' beacons send it at 64, /track at 16,
   /track/batch (100 events a request) at 16; events/s, p50/p99, CPU per event, the peak memory of
   each server process, every acknowledged event looked up in raw.
2. The pipeline: N pending events to the business layer with 1 and with 2 runs (bench/vault.py's steps,
   on a copy of the tree's template), verified.
3. Freshness: `--freshness-rate` events/s to /track/async for `--freshness-seconds`, open loop
   (bench/freshness.py's measure: the current tree's client against each tree's server), receipt →
   business p95 and the backlog.

Once, by the current tree: the limits (bench/limits.py: a bare uvicorn hello-world under wrk at 64
connections and at 1, COPY into a copy of the raw table, the service's insert of one event committed
from one connection (with the hello-world's p50, the floor of `/async`'s at 1 connection), the
pipeline's floor — the rows processing
leaves for N events inserted into empty copies of their tables without any logic) and the row-by-row
pipeline (bench/pipeline.py's run_naive). Each target is judged on the median of the current tree's
rounds and printed with their min-max, the previous tree's median, and the same-run limit with the
share of it reached.
"""

from __future__ import annotations

import argparse
import runpy
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import harness, limits, partitions, pipeline, vault

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PREVIOUS = Path("/tmp/ov-0aafd39")
PREVIOUS_COMMIT = "0aafd39"
# This file's steps run in each tree's Python (vault.Tree.run), as do partitions.py's and vault.py's.
SCRIPT = Path(__file__).resolve()
# The freshness client of this tree, loaded from its file in either tree's steps (the previous tree's
# freshness.py has no `measure`): one client for both.
FRESHNESS_SCRIPT = SCRIPT.parent / "freshness.py"
ASYNC, TRACK, BATCH = "/api/v1/track/async", "/api/v1/track", "/api/v1/track/batch"
# The wrk cells of each round: name, endpoint, events a request, connections, where the credentials go.
CELLS: tuple[tuple[str, str, int, int, harness.Credentials], ...] = (
    ("/async 1", ASYNC, 1, 1, "headers"),
    ("/async 16", ASYNC, 1, 16, "headers"),
    ("/async 64", ASYNC, 1, 64, "headers"),
    ("beacon 64", ASYNC, 1, 64, "body"),
    ("/track 16", TRACK, 1, 16, "headers"),
    ("/batch 16", BATCH, 100, 16, "headers"),
)
WORKERS = (1, 2)  # pipeline runs


# -- the worker: one step on one tree, in that tree's own Python -------------------------------------


def step_freshness(
    pg: harness.Postgres, name: str, request: dict[str, Any], say: Callable[[str], None]
) -> Any:
    """This tree's server on a new database, sent events at a constant rate by the current tree's
    freshness client; its results and the peak memory of each server process."""
    measure = runpy.run_path(request["freshness_script"])["measure"]
    url = harness.create_database(pg, name)
    token = harness.tenant_token(url)
    port = harness.free_port()
    with harness.onevault(url, port) as server, harness.peak_rss(server) as rss:
        result: dict[str, Any] = measure(
            url, port, token, request["rate"], request["seconds"], drain_seconds=request["drain_seconds"]
        )
    result["peak_rss_mb"] = round(max(rss.values(), default=0.0), 1)
    pipeline.drop(pg, name)
    return result


STEPS: dict[str, partitions.Step] = {"freshness": step_freshness}


def worker(request_json: str) -> None:
    """Run one step with this process's tree: bench/partitions.py's worker, taught this file's steps."""
    partitions.STEPS.update(STEPS)
    partitions.worker(request_json)


# -- the orchestrator ------------------------------------------------------------------------------


def measure_limits(pg: harness.Postgres, seconds: int, events: int) -> dict[str, Any]:
    """The same-run limits, by the current tree: bare uvicorn at 64 connections and at 1, COPY into raw,
    one event's committed insert from one connection, the pipeline's floor for `events` events."""
    since = vault.Machine.snapshot()
    url = harness.create_database(pg, "hw_limits")
    harness.tenant_token(url)
    out: dict[str, Any] = {
        "postgres_copy": limits.copy_ceiling(url),
        "one_event_commit": limits.one_event_commit(url),
    }
    pipeline.drop(pg, "hw_limits")
    out["pipeline_floor"] = limits.pipeline_floor(pg, events)
    with limits.hello_server(harness.free_port()) as hello:
        for connections in (64, 1):
            out[f"uvicorn_hello_{connections}"] = harness.wrk(
                hello.url + ASYNC, harness.CUSTOMER_ID, "x", connections, seconds
            )
    out["other_cores"] = vault.Machine.others_since(since)
    return out


def _say_cell(label: str, cell: str, r: dict[str, Any]) -> None:
    print(
        f"[{label}] {cell}: {r['events_per_s']:,.0f} events/s, p50/p99 {r['p50_ms']}/{r['p99_ms']} ms, "
        f"cpu per event {r['server_cpu_us_per_event']} µs server, {r['pg_cpu_us_per_event']} µs PostgreSQL, "
        f"peak RSS {r['peak_rss_mb']} MB, errors {r['errors']}, rows ok {r['rows_ok']} "
        f"(other work: {r['other_cores']} cores)",
        flush=True,
    )


def one_round(
    pg: harness.Postgres,
    trees: list[vault.Tree],
    setup: dict[str, dict[str, Any]],
    args: argparse.Namespace,
) -> dict[str, dict[str, Any]]:
    """Every cell, the pipeline and freshness against each tree in `trees`' order; per tree its figures."""
    out: dict[str, dict[str, Any]] = {t.label: {"cells": {}, "pipeline": {}} for t in trees}
    for cell, endpoint, per_request, connections, credentials in CELLS:
        for tree in trees:
            tokens = setup[tree.label]["ingest"]
            result = tree.run(
                pg,
                "ingest_cell",
                f"hw_ingest_{tree.label}_run",
                args.seconds + 300,
                partitions.SCRIPT,
                template=f"hw_ingest_{tree.label}",
                token=tokens["browser_token" if credentials == "body" else "token"],
                endpoint=endpoint,
                per_request=per_request,
                connections=connections,
                seconds=args.seconds,
                ingestion_only=False,
                credentials=credentials,
            )
            out[tree.label]["cells"][cell] = result
            _say_cell(tree.label, cell, result)
    for w in WORKERS:
        for tree in trees:
            out[tree.label]["pipeline"][w] = vault.run_pipeline(
                pg,
                tree,
                f"hw_pipeline_{tree.label}",
                w,
                args,
                events=args.events,
                malformed=setup[tree.label]["pipeline"]["malformed"],
                title=f"{tree.label}: pipeline",
            )
    for tree in trees:
        result = tree.run(
            pg,
            "freshness",
            f"hw_fresh_{tree.label}",
            args.freshness_seconds * 4 + args.drain_seconds + 600,
            SCRIPT,
            freshness_script=str(FRESHNESS_SCRIPT),
            rate=args.freshness_rate,
            seconds=args.freshness_seconds,
            drain_seconds=args.drain_seconds,
        )
        out[tree.label]["freshness"] = result
        fresh, client, backlog = result["freshness_ms"], result["client"], result["backlog"]
        print(
            f"[{tree.label}] freshness at {args.freshness_rate:,.0f}/s: p50/p95 {fresh['p50_ms']}/"
            f"{fresh['p95_ms']} ms, achieved {client['achieved_rate']:,}/s, backlog max {backlog['max']:,}, "
            f"slope {backlog['last10_slope_per_s']}/s, peak RSS {result['peak_rss_mb']} MB "
            f"(other work: {result['other_cores']} cores)",
            flush=True,
        )
    return out


# -- the report ------------------------------------------------------------------------------------


Figure = Callable[[dict[str, Any]], float | None]


@dataclass(frozen=True)
class Target:
    """One of issue 16's targets: a figure of one round against one tree, and its bound."""

    name: str
    unit: str
    bound: float
    at_least: bool
    figure: Figure
    # The same-run limit (what it is, its value in the figure's unit, whether a share of it is meaningful).
    limit: tuple[str, float, bool] | None = None
    # Judged on the worst round instead of the median (correctness: any failure fails).
    worst: bool = False

    def met(self, value: float | None) -> bool:
        """Whether `value` is within the bound."""
        if value is None:
            return False
        return value >= self.bound if self.at_least else value <= self.bound


def _cell(name: str, key: str) -> Figure:
    return lambda r: r["cells"][name][key]


def _problems(r: dict[str, Any]) -> float:
    """Cells with errors, missing rows or stored credentials; unverified pipeline runs; a freshness run
    with errors or rows other than its answered events."""
    cells = sum(
        1 for c in r["cells"].values() if c["errors"] or not c["rows_ok"] or c["rows_with_credentials"]
    )
    runs = sum(1 for p in r["pipeline"].values() if not p["verify"]["ok"])
    f = r["freshness"]
    fresh = bool(f["client"]["errors"] or f["checks"]["errors"] or not f["checks"]["raw_rows_equal_200s"])
    return cells + runs + int(fresh)


def _rss(r: dict[str, Any]) -> float:
    return float(max([c["peak_rss_mb"] for c in r["cells"].values()] + [r["freshness"]["peak_rss_mb"]]))


def targets(args: argparse.Namespace, lim: dict[str, Any], naive: float | None) -> list[Target]:
    """Issue 16's targets, with the same-run limits where one applies."""
    hello, hello_1, commit = lim["uvicorn_hello_64"], lim["uvicorn_hello_1"], lim["one_event_commit"]
    copy = lim["postgres_copy"]["events_per_s"]
    floor = lim["pipeline_floor"]["with_marts_events_per_s_per_core"]
    rps = (
        f"bare uvicorn hello-world, 64 conn: {hello['requests_per_s']:,.0f} req/s",
        hello["requests_per_s"],
        True,
    )
    p99 = (f"hello-world p99 {hello['p99_ms']} ms", hello["p99_ms"], False)
    rate = args.freshness_rate
    return [
        Target("/async 64 conn: events/s", "events/s", 12_000, True, _cell("/async 64", "events_per_s"), rps),
        Target("/async 64 conn: p99", "ms", 25, False, _cell("/async 64", "p99_ms"), p99),
        Target(
            "/async 1 conn: p50",
            "ms",
            1,
            False,
            _cell("/async 1", "p50_ms"),
            (
                f"hello-world, 1 conn: p50 {hello_1['p50_ms']} ms + one event's committed insert p50 "
                f"{commit['p50_ms']} ms",
                hello_1["p50_ms"] + commit["p50_ms"],
                False,
            ),
        ),
        Target("beacon 64 conn: events/s", "events/s", 12_000, True, _cell("beacon 64", "events_per_s"), rps),
        Target("beacon 64 conn: p99", "ms", 25, False, _cell("beacon 64", "p99_ms"), p99),
        Target(
            "/track p50 above /async p50, 16 conn",
            "ms",
            5,
            False,
            lambda r: r["cells"]["/track 16"]["p50_ms"] - r["cells"]["/async 16"]["p50_ms"],
        ),
        Target(
            "/batch 16 conn, processing on: events/s",
            "events/s",
            90_000,
            True,
            _cell("/batch 16", "events_per_s"),
            (f"PostgreSQL COPY into a copy of raw: {copy:,} rows/s", copy, True),
        ),
        Target("/batch 16 conn: p99", "ms", 100, False, _cell("/batch 16", "p99_ms")),
        Target(
            f"pipeline, {args.events:,} events, 2 runs",
            "events/s",
            40_000,
            True,
            lambda r: r["pipeline"][2]["events_per_s"],
            (f"the rows it writes, inserted without logic, 2 cores: {2 * floor:,} events/s", 2 * floor, True),
        ),
        Target(
            f"pipeline, {args.events:,} events, 1 run",
            "events/s",
            20_000,
            True,
            lambda r: r["pipeline"][1]["events_per_s"],
            (f"the rows it writes, inserted without logic, 1 core: {floor:,} events/s", floor, True),
        ),
        Target(
            "pipeline, 2 runs, against row by row",
            "×",
            100,
            True,
            lambda r: r["pipeline"][2]["events_per_s"] / naive if naive else None,
            (f"row by row: {naive:,} events/s", naive, False) if naive else None,
        ),
        Target(
            f"freshness at {rate:,.0f} events/s for {args.freshness_seconds:.0f} s: p95",
            "ms",
            250,
            False,
            lambda r: r["freshness"]["freshness_ms"]["p95_ms"],
        ),
        Target(
            "freshness: backlog flat (growth over the last 10 s, events/s)",
            "events/s",
            0.05 * rate,
            False,
            lambda r: r["freshness"]["backlog"]["last10_slope_per_s"],
        ),
        Target(
            "freshness: the rate held (answered events/s)",
            "events/s",
            0.97 * rate,
            True,
            lambda r: r["freshness"]["client"]["achieved_rate"],
        ),
        Target("RSS per server process (peak)", "MB", 150, False, _rss),
        Target(
            "no errors, every acknowledged event stored, no credential stored, pipeline verified",
            "problems",
            0,
            False,
            _problems,
            worst=True,
        ),
    ]


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "–"
    if unit == "ms":
        return f"{value:.2f}" if abs(value) < 10 else f"{value:,.1f}"
    if unit == "×":
        return f"{value:,.0f}×" if abs(value) >= 10 else f"{value:.1f}×"
    return f"{value:,.0f}"


def _bound(t: Target) -> str:
    value = f"{t.bound:,.0f}" if t.unit in ("events/s", "×") else f"{t.bound:g}"
    return f"{'≥' if t.at_least else '≤'} {value}{'×' if t.unit == '×' else ' ' + t.unit}"


def _values(runs: list[dict[str, Any]], figure: Figure) -> list[float]:
    return [v for v in map(figure, runs) if v is not None]


def _judged(t: Target, values: list[float]) -> float | None:
    """The figure a target is judged on: the median of the rounds, or the worst round."""
    if not values:
        return None
    if t.worst:
        return min(values) if t.at_least else max(values)
    return statistics.median(values)


def report(
    rounds: dict[str, list[dict[str, Any]]], targets_: list[Target]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The table of targets (new and previous, limit and share, PASS/FAIL) and their figures per round."""
    rows, raw = [], []
    for t in targets_:
        new, previous = _values(rounds["new"], t.figure), _values(rounds["previous"], t.figure)
        judged = _judged(t, new)
        spread = f" ({_fmt(min(new), t.unit)}–{_fmt(max(new), t.unit)})" if len(new) > 1 else ""
        share = ""
        if t.limit and t.limit[2] and judged is not None:
            share = f"{judged / t.limit[1]:.1%}"
        rows.append(
            {
                "target": f"{t.name}{' (every round)' if t.worst else ''} {_bound(t)}",
                "new: median (min–max)": f"{_fmt(judged, t.unit)}{spread}",
                "previous: median": _fmt(_judged(t, previous), t.unit),
                "same-run limit": t.limit[0] if t.limit else "",
                "share": share,
                "result": "PASS" if t.met(judged) else "FAIL",
            }
        )
        raw.append(
            {
                "figure": t.name,
                "new, each round": ", ".join(_fmt(v, t.unit) for v in new),
                "previous, each round": ", ".join(_fmt(v, t.unit) for v in previous),
            }
        )
    return rows, raw


def cell_rows(rounds: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Each cell's figures per round, both trees."""
    rows = []
    for cell, *_ in CELLS:
        for label in ("previous", "new"):
            runs = [r["cells"][cell] for r in rounds[label]]

            def each(key: str, runs: list[dict[str, Any]] = runs) -> str:
                return ", ".join(str(r[key]) for r in runs)

            rows.append(
                {
                    "cell": cell,
                    "tree": label,
                    "events/s": ", ".join(f"{r['events_per_s']:,.0f}" for r in runs),
                    "p50 ms": each("p50_ms"),
                    "p99 ms": each("p99_ms"),
                    "server µs/event": each("server_cpu_us_per_event"),
                    "PG µs/event": each("pg_cpu_us_per_event"),
                    "peak RSS MB": each("peak_rss_mb"),
                    "errors": each("errors"),
                    "rows ok": each("rows_ok"),
                }
            )
    return rows


def main() -> None:
    """Measure both trees round by round, print each target with PASS or FAIL, save the results."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--previous", type=Path, default=DEFAULT_PREVIOUS, help="the checkout before issue 16"
    )
    parser.add_argument("--previous-python", type=Path, help="default: <previous>/.venv/bin/python")
    parser.add_argument("--current", type=Path, default=ROOT, help="the checkout measured")
    parser.add_argument("--current-python", type=Path, default=Path(sys.executable))
    parser.add_argument("--repeats", type=int, default=3, help="rounds: every measurement of both trees")
    parser.add_argument("--seconds", type=int, default=10, help="length of each wrk cell")
    parser.add_argument("--events", type=int, default=100_000, help="pipeline: pending events")
    parser.add_argument("--batch", type=int, default=1000, help="pipeline batch size")
    parser.add_argument("--run-seconds", type=float, default=300, help="pipeline: time bound of each run")
    parser.add_argument("--naive-events", type=int, default=5000, help="row by row: events processed")
    parser.add_argument("--naive-seconds", type=float, default=300, help="row by row: time bound")
    parser.add_argument("--freshness-rate", type=float, default=5000, help="freshness: events/s sent")
    parser.add_argument("--freshness-seconds", type=float, default=60, help="freshness: seconds sending")
    parser.add_argument(
        "--drain-seconds", type=float, default=60, help="freshness: longest wait for the backlog after"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="to check the benchmark works: 1 round, 3-second cells, 20,000 pipeline events, 1,000 row by "
        "row, freshness at 1,000 events/s for 15 s",
    )
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.seconds, args.events, args.naive_events = 1, 3, 20_000, 1000
        args.freshness_rate, args.freshness_seconds, args.drain_seconds = 1000, 15, 30
    previous_python = args.previous_python or args.previous / ".venv" / "bin" / "python"
    trees = [
        vault.Tree("previous", args.previous, previous_python),
        vault.Tree("new", args.current, args.current_python),
    ]
    commits = vault.checkouts(
        trees,
        f"for the previous tree:\n  git -C {ROOT} worktree add {DEFAULT_PREVIOUS} {PREVIOUS_COMMIT}\n"
        f"  bash {DEFAULT_PREVIOUS}/scripts/_venv.sh '[bench]'",
    )

    started = time.perf_counter()
    rounds: dict[str, list[dict[str, Any]]] = {t.label: [] for t in trees}
    setup: dict[str, dict[str, Any]] = {}
    with harness.postgres() as pg:
        vault.Machine.watch(pg)
        print(
            "limits: COPY into raw, the pipeline's floor, bare uvicorn at 64 and 1 connections ...",
            flush=True,
        )
        lim = measure_limits(pg, args.seconds, args.events)
        print(f"row by row (bench/pipeline.py's run_naive) over {args.naive_events:,} events ...", flush=True)
        naive = pipeline.run_naive(pg, args.naive_events, args.naive_seconds)
        for tree in trees:
            print(
                f"[{tree.label}] templates: a migrated database, {args.events:,} pending events ...",
                flush=True,
            )
            ingest = tree.run(
                pg, "ingest_template", f"hw_ingest_{tree.label}", 600, partitions.SCRIPT, browser=True
            )
            # bench/vault.py's own step.
            template = tree.run(
                pg, "pipeline_template", f"hw_pipeline_{tree.label}", 1800, events=args.events
            )
            setup[tree.label] = {"ingest": ingest, "pipeline": template}
        for r in range(args.repeats):
            order = trees if r % 2 == 0 else trees[::-1]
            print(f"\nround {r + 1}/{args.repeats}: {' then '.join(t.label for t in order)}", flush=True)
            for label, figures in one_round(pg, order, setup, args).items():
                rounds[label].append(figures)
        for tree in trees:
            pipeline.drop(pg, f"hw_ingest_{tree.label}")
            pipeline.drop(pg, f"hw_pipeline_{tree.label}")
    seconds = time.perf_counter() - started

    naive_rate = naive.get("events_per_s") if naive.get("available") and not naive.get("timed_out") else None
    chosen = targets(args, lim, naive_rate)
    rows, raw = report(rounds, chosen)
    print(
        f"\nIssue 16: new = {commits['new']}, previous = {commits['previous']}; {args.repeats} round(s), "
        f"{args.seconds} s cells, onevault serve --workers 2, background processing on"
    )
    print(harness.table(rows, list(rows[0])))
    print("   share: the new median's share of the same-run limit (one event a request for hello-world)")
    print("\nEach round's figures:")
    print(harness.table(raw, list(raw[0])))
    print("\nEach cell, each round:")
    cells = cell_rows(rounds)
    print(harness.table(cells, list(cells[0])))
    h64, h1, floor = lim["uvicorn_hello_64"], lim["uvicorn_hello_1"], lim["pipeline_floor"]
    commit = lim["one_event_commit"]
    print(
        f"\nLimits: COPY {lim['postgres_copy']['events_per_s']:,} rows/s; one event's insert committed from "
        f"one connection p50/p99 {commit['p50_ms']}/{commit['p99_ms']} ms (a round trip "
        f"{commit['round_trip_p50_ms']} ms); the pipeline's floor per core "
        f"{floor['with_marts_events_per_s_per_core']:,} events/s with the marts, "
        f"{floor['without_marts_events_per_s_per_core']:,} without (µs per event: "
        + ", ".join(f"{layer} {f['us_per_event']}" for layer, f in floor["layers"].items())
        + "); bare uvicorn hello-world at 64 "
        f"connections {h64['requests_per_s']:,.0f} req/s, p50/p99 {h64['p50_ms']}/{h64['p99_ms']} ms, at 1 "
        f"connection p50 {h1['p50_ms']} ms; row by row "
        + (f"{naive_rate:,} events/s" if naive_rate else f"not measured ({naive})")
    )
    vault.print_other_work(
        "a noisy run: compare new with previous, and the CPU per event, not with other runs"
    )
    path = harness.save(
        "hardware",
        {
            "trees": {t.label: {"root": str(t.root), "commit": commits[t.label]} for t in trees},
            "options": {k: str(v) for k, v in vars(args).items()},
            "seconds": round(seconds),
            "other_cores": vault.OTHER_CORES,
            "limits": lim,
            "row_by_row": naive,
            "templates": {label: s["pipeline"] for label, s in setup.items()},
            "rounds": rounds,
            "targets": rows,
            "figures": raw,
        },
    )
    print(f"\n{seconds / 60:.1f} min; results: {path}")


if __name__ == "__main__":
    main()
