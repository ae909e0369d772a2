"""Business vault performance: the current tree beside an older commit, in one run, on one PostgreSQL.

`python -m bench.vault [--baseline /tmp/ov-41d2a70] [--parts 1,2,3] [--query-events 1000000]`

Each tree runs its own code: every step that loads or processes events is a subprocess of that
tree's Python (`<tree>/.venv/bin/python`, the current one: this interpreter) importing that tree's
`onevault` and `bench` helpers, on its own databases (migrated by its own migrations) of the one
embedded PostgreSQL this benchmark starts. Steps of the two trees alternate, so both see the same
machine. Beside wall times it reports the PostgreSQL CPU time of the work, and how many cores
other processes used meanwhile: on a shared machine events/s move with other work, CPU per event
hardly does.

1. Pipeline events/s with one run and with two concurrent runs (as bench/pipeline.py's process_all,
   on a copy of a template holding N pending events), best of `--repeats`.
2. A batch of 1,000 late events into existing sessions: after N events are loaded and processed,
   each round stores 1,000 events dated between two consecutive events of one session (sent now,
   so they arrive late) and times the run that processes them; a batch of 1,000 new events is
   timed beside it.
3. `business.site_session_current` for one customer's last 30 days with 1,000,000 events of it
   (over 90 days, through the real pipeline, plus a tenth as many of another customer, interleaved):
   p50/p95 of a summary and a top-20 entry pages query. The old tree has no such view; its
   equivalent reads the latest `business.site_session_summary_s` row of each session, on the current
   tree's database (`--query-trees both`: on the old tree's own database too, a few minutes more).
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import itertools
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg import sql

from bench import dashboard, data, drive, explain, harness, pipeline
from onevault.config import Settings
from onevault.pipeline.runner import lane_groups

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BASELINE = Path("/tmp/ov-41d2a70")
CUSTOMER = harness.CUSTOMER_ID
OTHER = "other_co"
TARGET_TWO_RUNS = 20_000  # events/s
TARGET_MAX_SLOWDOWN = 0.10  # of the old tree's two-run figure
TARGET_P95_MS = 50.0
LATE_GAP = timedelta(minutes=25)  # late events fall between events this close: inside a session
# How many cores other work on the machine used during each step (see Machine).
OTHER_CORES: list[float] = []
# How a worker subprocess runs this file's `worker` with its tree's `bench` and `onevault`: run_path
# leaves sys.path alone, so `bench` is found in the working directory, the tree's root.
_BOOT = "import runpy, sys; runpy.run_path(sys.argv[1])['worker'](sys.argv[2])"

# -- part 3: the consumer's queries -----------------------------------------------------------------

# name: current_30_days
# Sessions, page views and mean duration of one customer's last 30 days, from the current view.
CURRENT_30_DAYS = """
SELECT count(*), sum(page_views), avg(duration_seconds)::numeric(10, 1)
FROM business.site_session_current
WHERE tenant_hk = %(tenant_hk)s AND session_start >= now() - interval '30 days'
"""
# name: current_entry_pages
# The 20 most frequent entry pages of one customer's last 30 days, from the current view.
CURRENT_ENTRY_PAGES = """
SELECT entry_page, count(*) AS sessions
FROM business.site_session_current
WHERE tenant_hk = %(tenant_hk)s AND session_start >= now() - interval '30 days' AND entry_page IS NOT NULL
GROUP BY entry_page
ORDER BY sessions DESC, entry_page
LIMIT 20
"""
# name: latest_30_days
# The same as current_30_days before the view: each session's latest summary row by load date.
LATEST_30_DAYS = """
SELECT count(*), sum(page_views), avg(duration_seconds)::numeric(10, 1)
FROM (SELECT DISTINCT ON (site_session_hk) session_start, page_views, duration_seconds
      FROM business.site_session_summary_s
      WHERE tenant_hk = %(tenant_hk)s
      ORDER BY site_session_hk, load_date DESC) latest
WHERE session_start >= now() - interval '30 days'
"""
# name: latest_entry_pages
# The same as current_entry_pages before the view.
LATEST_ENTRY_PAGES = """
SELECT entry_page, count(*) AS sessions
FROM (SELECT DISTINCT ON (site_session_hk) session_start, entry_page
      FROM business.site_session_summary_s
      WHERE tenant_hk = %(tenant_hk)s
      ORDER BY site_session_hk, load_date DESC) latest
WHERE session_start >= now() - interval '30 days' AND entry_page IS NOT NULL
GROUP BY entry_page
ORDER BY sessions DESC, entry_page
LIMIT 20
"""
VIEW_QUERIES = {"30-day summary": CURRENT_30_DAYS, "top 20 entry pages": CURRENT_ENTRY_PAGES}
LATEST_QUERIES = {"30-day summary": LATEST_30_DAYS, "top 20 entry pages": LATEST_ENTRY_PAGES}


# -- the worker: one step on one tree, in that tree's own Python -------------------------------------


def _tenant_hk(conn: psycopg.Connection[Any], customer: str) -> bytes:
    row = conn.execute("SELECT util.tenant_hk(%s)", [customer]).fetchone()
    assert row is not None
    value: bytes = row[0]
    return value


def _say(label: str, text: str) -> None:
    print(f"  [{label}] {text}", flush=True)


def backend_cpu_ms(conn: psycopg.Connection[Any]) -> float:
    """CPU time (user + system) the connection's PostgreSQL backend has used so far, in ms.

    Unlike wall time it hardly moves when other work shares the machine's cores.
    """
    times = psutil.Process(conn.info.backend_pid).cpu_times()
    return (times.user + times.system) * 1000


def drain(
    url: str, customer: str, runs: int, batch: int, deadline: float, say: Callable[[str], None]
) -> dict[str, Any]:
    """Process the customer's pending events from `runs` concurrent runs on disjoint lanes until
    nothing is left or the deadline, and the marts after them: what background processing does
    (each run asks a refresh task of its own for the marts after every batch), with the CPU time
    of the backends besides."""
    counts: list[int] = []
    batch_ms: list[float] = []
    # Each refresh that found sessions: when it began and ended (s), the sessions; when the last batch
    # that found events ended (s).
    refreshes: list[tuple[float, float, int]] = []
    loaded = [0.0]
    failed: list[int] = []
    cpu_ms: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    step = 100_000
    # PipelineRunner._refresh_soon: the asks (None: none; True: a run had caught up) and their signal.
    asked: list[bool | None] = [None]
    ask = threading.Condition(lock)
    working = [runs]
    # A tree before ff101ea (bench.hardware's previous tree) refreshes the marts in its runs.
    beside = "refresh" in inspect.signature(drive.run_once).parameters
    leave_marts: dict[str, Any] = {"refresh": False} if beside else {}
    # The service's least time between two live refreshes (bench.hardware's previous tree: none).
    field = Settings.model_fields.get("marts_refresh_seconds")
    interval = float(field.default) if field else 0.0

    def work(lanes: tuple[int, ...]) -> None:
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                cpu_before = backend_cpu_ms(conn)
                while time.monotonic() < deadline:
                    run = drive.run_once(conn, customer, batch, lanes=lanes, **leave_marts)
                    with lock:
                        asked[0] = bool(asked[0]) or run.events < batch
                        ask.notify()
                    if not run.processed:
                        break
                    with lock:
                        before = sum(counts)
                        counts.append(run.events)
                        loaded[0] = time.perf_counter() - started
                        batch_ms.append(run.prepare_ms + run.process_ms)
                        failed.append(int(run.result.get("errors") or 0))
                        if (before + run.events) // step > before // step:
                            say(f"{customer}: {before + run.events:,} processed")
                cpu_ms.append(backend_cpu_ms(conn) - cpu_before)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            with lock:
                working[0] -= 1
                ask.notify()

    def refresh() -> None:
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                cpu_before = backend_cpu_ms(conn)
                while True:
                    with lock:
                        ask.wait_for(lambda: asked[0] is not None or not working[0])
                        caught_up, asked[0] = asked[0], None
                    if caught_up is None:
                        break
                    began = time.perf_counter() - started
                    sessions = drive.refresh_marts(conn, customer, caught_up)
                    if sessions:
                        refreshes.append((began, time.perf_counter() - started, sessions))
                    if sessions and caught_up:
                        # As the service, under live traffic the next one no sooner than the interval
                        # after this one began; but once the runs are done at once (the service's
                        # wait adds no work).
                        with lock:
                            remaining = interval - (time.perf_counter() - started - began)
                            ask.wait_for(lambda: not working[0], timeout=max(remaining, 0.0))
                cpu_ms.append(backend_cpu_ms(conn) - cpu_before)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=work, args=(lanes,)) for lanes in lane_groups(runs)]
    if beside:
        threads.append(threading.Thread(target=refresh))
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"processing failed: {errors[0]}")
    events = sum(counts)
    tenth = max(len(batch_ms) // 10, 1)
    return {
        "runs": runs,
        "batch": batch,
        "events": events,
        "seconds": round(seconds, 1),
        "events_per_s": round(events / seconds) if seconds else 0,
        "batches": len(counts),
        # As bench/pipeline.py: whether batches get slower as the vault grows.
        "first_10pct_ms": round(statistics.mean(batch_ms[:tenth]), 1) if batch_ms else None,
        "last_10pct_ms": round(statistics.mean(batch_ms[-tenth:]), 1) if batch_ms else None,
        "failed": sum(failed),
        "pg_cpu_ms_per_1000": round(sum(cpu_ms) / events * 1000, 1) if events else None,
        "complete": time.monotonic() < deadline,
        "refreshes": [
            {"began_s": round(began, 2), "ended_s": round(ended, 2), "sessions": n}
            for began, ended, n in refreshes
        ],
        # The marts' tail: refreshing after the last batch, the runs' cores idle.
        "refresh_tail_s": round(
            sum(max(0.0, ended - max(began, loaded[0])) for began, ended, _ in refreshes), 2
        ),
    }


def _store(
    conn: psycopg.Connection[Any], tenant_hk: bytes, events: list[dict[str, Any]], source: str
) -> None:
    """Store events ({payload, user_agent, client_ip}) as received now, as raw.ingest_site_events does."""
    now = datetime.now(UTC)
    with conn.transaction():
        rows = conn.execute(
            data.INGEST,
            {
                "tenant_hks": [tenant_hk] * len(events),
                "event_ids": [e["payload"]["event_id"] for e in events],
                "payloads": [json.dumps(e["payload"], separators=(",", ":")) for e in events],
                "user_agents": [e["user_agent"] for e in events],
                "client_ips": [e["client_ip"] for e in events],
                "received": [now] * len(events),
                "record_sources": [source] * len(events),
            },
        ).fetchall()
    if sum(1 for row in rows if not row[2]) != len(events):
        raise RuntimeError("late events were not all stored")


def late_events(
    conn: psycopg.Connection[Any], tenant_hk: bytes, size: int, seed: int
) -> list[dict[str, Any]]:
    """`size` page views, each dated between two consecutive events (at most LATE_GAP apart) of one
    session already stored: same visitor, session id (or none), user agent and address, sent now."""
    rows = conn.execute(
        "SELECT event_id, raw_payload, user_agent, received_timestamp FROM raw.site_tracking_events_r "
        "WHERE tenant_hk = %s AND record_source = 'bench:load' ORDER BY event_id",
        [tenant_hk],
    ).fetchall()
    sessions: dict[tuple[str, str | None], list[tuple[float, str, str | None]]] = {}
    for event_id, payload, agent, received in rows:
        if payload.get("page_url") == "not a url":  # quarantined: in no session
            continue
        d = payload["event_data"]
        # The pipeline dates an event at its receipt less the client's delay (sent_at - timestamp).
        at = received.timestamp() * 1000 - (payload["sent_at"] - payload["timestamp"])
        sessions.setdefault((d["visitor_id"], d.get("session_id")), []).append((at, event_id, agent))
    pairs: list[tuple[str, str | None, float, float, str, str | None]] = []
    gap = LATE_GAP.total_seconds() * 1000
    for (visitor, session), events in sessions.items():
        events.sort()
        for (a, first, agent), (b, _, _) in itertools.pairwise(events):
            if 1 < b - a <= gap:
                pairs.append((visitor, session, a, b, first, agent))
    pairs.sort(key=lambda p: p[4])
    rng = random.Random(seed)
    now_ms = int(time.time() * 1000)
    out = []
    for n, (visitor, session, a, b, neighbour, agent) in enumerate(rng.sample(pairs, min(size, len(pairs)))):
        page = rng.randrange(data.PAGES)
        event_data: dict[str, Any] = {"visitor_id": visitor}
        if session is not None:
            event_data["session_id"] = session
        payload = {
            "event_id": f"late-{seed}-{n}",
            "event_type": "page_view",
            "page_url": f"https://shop.example.com/products/item-{page}",
            "page_title": f"Item {page}",
            "timestamp": int(rng.uniform(a + 1, b - 1)),
            "sent_at": now_ms,
            "event_data": event_data,
        }
        out.append(
            {
                "payload": payload,
                "user_agent": agent,
                "client_ip": data.EventStream.client_ip(visitor),
                "neighbour": neighbour,
            }
        )
    return out


def _joined(conn: psycopg.Connection[Any], tenant_hk: bytes, events: list[dict[str, Any]]) -> int | None:
    """How many late events staging put in the session of the event they were dated after."""
    try:
        row = conn.execute(
            "SELECT count(*) FROM unnest(%(late)s::text[], %(neighbours)s::text[]) AS p(late, neighbour) "
            "JOIN staging.site_tracking_events_s l ON l.tenant_hk = %(hk)s AND l.event_id = p.late "
            "JOIN staging.site_tracking_events_s n ON n.tenant_hk = %(hk)s AND n.event_id = p.neighbour "
            "WHERE l.session_id = n.session_id",
            {
                "late": [e["payload"]["event_id"] for e in events],
                "neighbours": [e["neighbour"] for e in events],
                "hk": tenant_hk,
            },
        ).fetchone()
    except psycopg.Error:
        return None
    return int(row[0]) if row else None


def _timed_batch(conn: psycopg.Connection[Any], size: int, batch: int) -> dict[str, Any]:
    """Process every pending event (one run, all lanes, as background processing would); its time."""
    cpu_before = backend_cpu_ms(conn)
    started = time.perf_counter()
    events = 0
    runs = 0
    while (run := drive.run_once(conn, CUSTOMER, batch)).processed:
        events += run.events
        runs += 1
        if run.result.get("errors"):
            raise RuntimeError(f"a batch failed: {run.result.get('message')}")
    ms = (time.perf_counter() - started) * 1000
    if events != size:
        raise RuntimeError(f"processed {events} events instead of {size} (some left from before?)")
    return {"ms": round(ms, 1), "pg_cpu_ms": round(backend_cpu_ms(conn) - cpu_before, 1), "runs": runs}


def _load_interleaved(
    conn: psycopg.Connection[Any], n: int, other_share: float, spread: timedelta, say: Callable[[str], None]
) -> dict[str, int]:
    """n pending events of the customer and n * other_share of the other, chunks interleaved, spread
    over `spread` up to now; their malformed counts."""
    streams = {c: data.EventStream(prefix=c, seed=i) for i, c in enumerate((CUSTOMER, OTHER), 1)}
    main = data.load_raw(conn, _tenant_hk(conn, CUSTOMER), streams[CUSTOMER], n, spread=spread)
    other_n = round(n * other_share)
    other = data.load_raw(conn, _tenant_hk(conn, OTHER), streams[OTHER], other_n, spread=spread)
    every = max(round(1 / other_share), 1) if other_n else 0
    started = time.perf_counter()
    for k, done in enumerate(main, 1):
        if every and k % every == 0:
            next(other, None)
        if done % 100_000 == 0 or done == n:
            say(f"stored {done:,}/{n:,} raw events ({done / (time.perf_counter() - started):,.0f}/s)")
    for _ in other:
        pass
    return {c: s.malformed for c, s in streams.items()}


def worker(request_json: str) -> None:
    """Run one step (`request["step"]`) with this process's tree; write its result as JSON."""
    request = json.loads(request_json)
    pg = harness.Postgres(request["admin_url"], Path(request["socket_dir"]))
    step, label, name = request["step"], request["label"], request["database"]
    say = partial(_say, label)
    url = pg.url(name)
    result: dict[str, Any] = {}
    if step == "pipeline_template":
        harness.create_database(pg, name)
        harness.tenant_token(url)
        stream = data.EventStream(prefix=f"{CUSTOMER}-1", seed=1)
        started = time.perf_counter()
        with psycopg.connect(url, autocommit=True) as conn:
            for _ in data.load_raw(conn, _tenant_hk(conn, CUSTOMER), stream, request["events"]):
                pass
            conn.execute("VACUUM ANALYZE")
        result = {"malformed": stream.malformed, "load_seconds": round(time.perf_counter() - started, 1)}
    elif step == "pipeline_run":
        run_url = pipeline.clone(pg, request["template"], name)
        deadline = time.monotonic() + request["seconds"]
        result = drain(run_url, CUSTOMER, request["workers"], request["batch"], deadline, lambda _: None)
        result["verify"] = pipeline.verify(run_url, request["events"], request["malformed"])
        pipeline.drop(pg, name)
    elif step == "late_setup":
        harness.create_database(pg, name)
        harness.tenant_token(url)
        stream = data.EventStream(prefix=f"{CUSTOMER}-1", seed=1)
        with psycopg.connect(url, autocommit=True) as conn:
            for _ in data.load_raw(conn, _tenant_hk(conn, CUSTOMER), stream, request["events"]):
                pass
            result = drain(url, CUSTOMER, 1, request["batch"], time.monotonic() + request["seconds"], say)
            left = harness.count(url, "SELECT pending + errors FROM raw.queue_counts()")
            if left:
                raise RuntimeError(f"{left} events were not processed ({result['failed']} in failed batches)")
            conn.execute("VACUUM ANALYZE")
            row = conn.execute("SELECT count(*) FROM business.site_session_h").fetchone()
            result["sessions"] = row[0] if row else 0
    elif step == "late_round":
        seed, size = request["round"], request["size"]
        with psycopg.connect(url, autocommit=True) as conn:
            hk = _tenant_hk(conn, CUSTOMER)
            events = late_events(conn, hk, size, seed)
            _store(conn, hk, events, "bench:late")
            result["late"] = _timed_batch(conn, len(events), request["batch"])
            result["late"]["joined"] = _joined(conn, hk, events)
            fresh = data.EventStream(prefix=f"fresh-{seed}", seed=1000 + seed)
            for _ in data.load_raw(conn, hk, fresh, size, spread=timedelta(minutes=1)):
                pass
            result["fresh"] = _timed_batch(conn, size, request["batch"])
    elif step == "query_load":
        harness.create_database(pg, name)
        harness.tenant_token(url)
        harness.tenant_token(url, OTHER)
        deadline = time.monotonic() + request["seconds"]
        started = time.perf_counter()
        with psycopg.connect(url, autocommit=True) as conn:
            spread = timedelta(days=request["days"])
            result["malformed"] = _load_interleaved(
                conn, request["events"], request["other_share"], spread, say
            )
            result["load_seconds"] = round(time.perf_counter() - started, 1)
            for customer in (CUSTOMER, OTHER):
                result[f"process_{customer}"] = drain(url, customer, 2, request["batch"], deadline, say)
            result["not_processed"] = harness.count(url, "SELECT pending + errors FROM raw.queue_counts()")
            conn.execute("VACUUM ANALYZE")
    else:
        raise ValueError(f"unknown step {step}")
    Path(request["result"]).write_text(json.dumps(result, default=str))


# -- the orchestrator ------------------------------------------------------------------------------


class Machine:
    """CPU time of the whole machine and of this benchmark, to tell how much other work shared the
    cores: the benchmark's own PostgreSQL is the only one whose postmaster it started."""

    postmaster: int | None = None

    @classmethod
    def watch(cls, pg: harness.Postgres) -> None:
        """Count the processes of `pg` (its postmaster and every backend) as the benchmark's."""
        cls.postmaster = int((pg.socket_dir / "postmaster.pid").read_text().split()[0])

    @classmethod
    def _ours(cls) -> float:
        own = os.times()  # this process and its finished workers
        total = own.user + own.system + own.children_user + own.children_system
        if cls.postmaster is not None:
            with contextlib.suppress(psutil.Error):
                postmaster = psutil.Process(cls.postmaster)
                # children_*: backends that ended; the live ones are added one by one.
                t = postmaster.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
                for child in postmaster.children():
                    with contextlib.suppress(psutil.Error):
                        c = child.cpu_times()
                        total += c.user + c.system
        return total

    @classmethod
    def snapshot(cls) -> tuple[float, float, float]:
        """(monotonic time, CPU seconds of the machine, CPU seconds of the benchmark)."""
        t = psutil.cpu_times()
        busy = t.user + t.nice + t.system + t.irq + t.softirq
        return time.monotonic(), busy, cls._ours()

    @classmethod
    def others_since(cls, since: tuple[float, float, float]) -> float:
        """Cores used by other processes on average since `since` (recorded in OTHER_CORES)."""
        now = cls.snapshot()
        cores = max(now[1] - since[1] - (now[2] - since[2]), 0.0) / max(now[0] - since[0], 1e-6)
        OTHER_CORES.append(round(cores, 2))
        return round(cores, 2)


@dataclass(frozen=True)
class Tree:
    """A checkout whose code is measured, with the Python of its own virtual environment."""

    label: str
    root: Path
    python: Path

    def describe(self) -> str:
        """The commit, marked when the checkout's code has uncommitted changes."""
        commit = subprocess.run(
            ["git", "-C", str(self.root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "-C", str(self.root), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        return f"{commit or '?'}{' + uncommitted changes' if changed else ''}"

    def run(
        self,
        pg: harness.Postgres,
        step: str,
        database: str,
        timeout: float,
        script: Path | None = None,
        **params: Any,
    ) -> dict[str, Any]:
        """One worker step of `script` (by default this file) in this tree's Python; its result.

        Past `timeout` seconds the worker is asked to stop (SIGTERM, so that a step unwinds and stops
        the servers and load generators it started), then killed a minute later.
        """
        with tempfile.NamedTemporaryFile(prefix="onevault-bench-", suffix=".json", delete=False) as out:
            result_path = Path(out.name)
        request = {
            "step": step,
            "label": self.label,
            "database": database,
            "admin_url": pg.admin_url,
            "socket_dir": str(pg.socket_dir),
            "result": str(result_path),
            **params,
        }
        argv = [str(self.python), "-c", _BOOT, str(script or Path(__file__).resolve()), json.dumps(request)]
        env = os.environ | {"PYTHONPATH": str(self.root), "PYTHONUNBUFFERED": "1"}
        since = Machine.snapshot()
        process = subprocess.Popen(argv, cwd=self.root, env=env)
        try:
            try:
                code = process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.terminate()
                try:
                    process.wait(60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
                raise RuntimeError(f"{self.label}: step {step} took more than {timeout:.0f} s") from None
            if code != 0:
                raise RuntimeError(f"{self.label}: step {step} failed (exit {code})")
            result: dict[str, Any] = json.loads(result_path.read_text())
            result["other_cores"] = Machine.others_since(since)
            return result
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            result_path.unlink(missing_ok=True)


def checkouts(trees: list[Tree], setup: str) -> dict[str, str]:
    """Each tree's commit, printed; exits with `setup` (how to make the baseline) where a tree has no
    checkout or no Python."""
    for tree in trees:
        if not (tree.root / "src" / "onevault").is_dir() or not tree.python.exists():
            sys.exit(f"{tree.label}: no checkout at {tree.root} or no {tree.python}; {setup}")
    commits = {t.label: t.describe() for t in trees}
    for tree in trees:
        print(f"{tree.label}: {tree.root} at {commits[tree.label]} ({tree.python})", flush=True)
    return commits


def print_other_work(hint: str) -> None:
    """How many cores other work used during the steps (OTHER_CORES); `hint` after it if that was a
    noticeable share."""
    if OTHER_CORES:
        low, high, mean = min(OTHER_CORES), max(OTHER_CORES), statistics.mean(OTHER_CORES)
        print(
            f"\nMachine: {os.cpu_count()} cores; other work used {low:.1f}-{high:.1f} of them during the "
            f"steps (mean {mean:.1f})" + (f": {hint}" if mean > 0.25 else "")
        )


def _change(new: float | None, old: float | None) -> str:
    if not new or not old:
        return ""
    return f"{(new - old) / old * 100:+.1f} %"


def run_pipeline(
    pg: harness.Postgres,
    tree: Tree,
    template: str,
    workers: int,
    args: argparse.Namespace,
    events: int,
    malformed: int,
    title: str | None = None,
) -> dict[str, Any]:
    """The pipeline_run step in `tree`: a copy of `template` processed by `workers` runs (`args.batch`,
    within `args.run_seconds`) and verified against `events` and `malformed`; printed under `title`."""
    result = tree.run(
        pg,
        "pipeline_run",
        f"{template}_w{workers}",
        args.run_seconds + 300,
        template=template,
        workers=workers,
        batch=args.batch,
        seconds=args.run_seconds,
        events=events,
        malformed=malformed,
    )
    print(
        f"[{title or tree.label}] {workers} run(s), batch {args.batch}: {result['events_per_s']:,} events/s, "
        f"cpu {result['pg_cpu_ms_per_1000']} ms per 1,000, verified: {result['verify']['ok']} "
        f"(other work: {result['other_cores']} cores)",
        flush=True,
    )
    return result


def part_pipeline(pg: harness.Postgres, trees: list[Tree], args: argparse.Namespace) -> dict[str, Any]:
    """Part 1: events/s with one run and with two, each tree on its own copy of its template."""
    templates: dict[str, dict[str, Any]] = {}
    for tree in trees:
        print(f"[{tree.label}] storing {args.events:,} pending events in a template database ...", flush=True)
        templates[tree.label] = tree.run(
            pg, "pipeline_template", f"vault_{tree.label}_template", 1800, events=args.events
        )
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {t.label: {} for t in trees}
    workers = [int(w) for w in args.workers.split(",")]
    for repeat in range(args.repeats):
        order = trees if repeat % 2 == 0 else trees[::-1]
        for w in workers:
            for tree in order:
                result = run_pipeline(
                    pg,
                    tree,
                    f"vault_{tree.label}_template",
                    w,
                    args,
                    events=args.events,
                    malformed=templates[tree.label]["malformed"],
                )
                runs[tree.label].setdefault(w, []).append(result)
    for tree in trees:
        pipeline.drop(pg, f"vault_{tree.label}_template")
    best = {
        label: {w: max(rs, key=lambda r: r["events_per_s"]) for w, rs in by_workers.items()}
        for label, by_workers in runs.items()
    }
    return {"templates": templates, "runs": runs, "best": best, "workers": workers}


def part_late(pg: harness.Postgres, trees: list[Tree], args: argparse.Namespace) -> dict[str, Any]:
    """Part 2: rounds of 1,000 late events into existing sessions, and 1,000 new events beside them."""
    setup: dict[str, dict[str, Any]] = {}
    for tree in trees:
        print(f"[{tree.label}] loading and processing {args.late_base_events:,} events ...", flush=True)
        setup[tree.label] = tree.run(
            pg,
            "late_setup",
            f"vault_{tree.label}_late",
            1800,
            events=args.late_base_events,
            batch=args.batch,
            seconds=args.run_seconds,
        )
    rounds: dict[str, list[dict[str, Any]]] = {t.label: [] for t in trees}
    for r in range(args.late_rounds):
        for tree in trees if r % 2 == 0 else trees[::-1]:
            result = tree.run(
                pg,
                "late_round",
                f"vault_{tree.label}_late",
                600,
                round=r + 1,
                size=args.late_size,
                batch=args.batch,
            )
            rounds[tree.label].append(result)
            print(
                f"[{tree.label}] round {r + 1}: {args.late_size:,} late events {result['late']['ms']:,} ms "
                f"(cpu {result['late']['pg_cpu_ms']:,} ms) "
                f"({result['late']['joined']} in their neighbour's session), "
                f"{args.late_size:,} new events {result['fresh']['ms']:,} ms "
                f"(other work: {result['other_cores']} cores)",
                flush=True,
            )
    for tree in trees:
        pipeline.drop(pg, f"vault_{tree.label}_late")
    summary = {
        label: {
            kind: {
                "p50_ms": round(statistics.median(r[kind]["ms"] for r in rs), 1),
                "min_ms": min(r[kind]["ms"] for r in rs),
                "max_ms": max(r[kind]["ms"] for r in rs),
                "cpu_p50_ms": round(statistics.median(r[kind]["pg_cpu_ms"] for r in rs), 1),
            }
            for kind in ("late", "fresh")
        }
        for label, rs in rounds.items()
        if rs
    }
    return {"setup": setup, "rounds": rounds, "summary": summary}


def _has_view(url: str) -> bool:
    return harness.count(url, "SELECT (to_regclass('business.site_session_current') IS NOT NULL)::int") == 1


def _answer(rows: list[Any]) -> str:
    """A query's answer, short: the 30-day figures, or the entry pages' count and the first."""
    if len(rows) == 1 and len(rows[0]) == 3:
        sessions, views, duration = rows[0]
        return f"{sessions:,} sessions, {views or 0:,} page views, {duration or 0} s mean"
    first = f", first {rows[0][0].rsplit('/', 1)[-1]} ({rows[0][1]:,})" if rows else ""
    return f"{len(rows)} pages{first}"


def _fetch(conn: psycopg.Connection[Any], query: str, params: dict[str, Any]) -> list[Any]:
    return conn.execute(query.encode(), params).fetchall()


def part_query(pg: harness.Postgres, trees: list[Tree], args: argparse.Namespace) -> dict[str, Any]:
    """Part 3: the 30-day queries at 1,000,000 events, the view (new) and the latest summary rows."""
    loads: dict[str, dict[str, Any]] = {}
    trees = trees if args.query_trees == "both" else trees[-1:]
    for tree in trees:
        print(
            f"[{tree.label}] loading {args.query_events:,} events over {args.days} days "
            f"(+{args.other_share:.0%} of {OTHER}) through the pipeline ...",
            flush=True,
        )
        loads[tree.label] = tree.run(
            pg,
            "query_load",
            f"vault_{tree.label}_query",
            args.query_seconds + 1800,
            events=args.query_events,
            other_share=args.other_share,
            days=args.days,
            batch=args.batch,
            seconds=args.query_seconds,
        )
        load = loads[tree.label]
        processed = ", ".join(
            f"{c} {load[f'process_{c}']['events']:,} in {load[f'process_{c}']['seconds']} s "
            f"(batch ms first/last 10 %: {load[f'process_{c}']['first_10pct_ms']}/"
            f"{load[f'process_{c}']['last_10pct_ms']})"
            + ("" if load[f"process_{c}"]["complete"] else " (stopped by --query-seconds)")
            for c in (CUSTOMER, OTHER)
        )
        left = f"; {load['not_processed']:,} events not processed" if load["not_processed"] else ""
        print(f"[{tree.label}] stored in {load['load_seconds']} s, processed {processed}{left}", flush=True)
    rows: list[dict[str, Any]] = []
    explained: list[explain.Explained] = []
    for tree in trees:
        url = pg.url(f"vault_{tree.label}_query")
        sets = {"site_session_current": VIEW_QUERIES} if _has_view(url) else {}
        sets["latest site_session_summary_s"] = LATEST_QUERIES
        with psycopg.connect(url, autocommit=True) as conn:
            params = {"tenant_hk": _tenant_hk(conn, CUSTOMER)}
            for source, queries in sets.items():
                for what, query in queries.items():
                    call = partial(_fetch, conn, query, params)
                    answer = call()
                    since = Machine.snapshot()
                    timing = dashboard.timings(call, args.query_runs, 3, args.query_budget)
                    rows.append(
                        {"tree": tree.label, "source": source, "query": what, **timing}
                        | {"answer": _answer(answer), "other_cores": Machine.others_since(since)}
                    )
                    print(f"[{tree.label}] {source}, {what}: p95 {timing['p95_ms']} ms", flush=True)
                    explained.append(
                        explain.explain_query(conn, f"{tree.label}: {source}, {what}", sql.SQL(query), params)
                    )
        pipeline.drop(pg, f"vault_{tree.label}_query")
    return {"loads": loads, "rows": rows, "explained": explained}


def report(
    trees: list[Tree], results: dict[str, Any], args: argparse.Namespace
) -> list[tuple[str, bool, str]]:
    """Print each part's table; the targets as (name, met, detail)."""
    old, new = trees[0].label, trees[-1].label
    targets: list[tuple[str, bool, str]] = []
    if "pipeline" in results:
        best = results["pipeline"]["best"]
        print(
            f"\n1. Pipeline: {args.events:,} pending events → business layer, batch {args.batch}, "
            f"best of {args.repeats}"
        )
        table = []
        for w in results["pipeline"]["workers"]:
            o, n = best[old].get(w, {}), best[new].get(w, {})
            table.append(
                {
                    "runs": w,
                    f"{old} events/s": f"{o.get('events_per_s', 0):,}",
                    f"{new} events/s": f"{n.get('events_per_s', 0):,}",
                    "change": _change(n.get("events_per_s"), o.get("events_per_s")),
                    f"{old} cpu": o.get("pg_cpu_ms_per_1000"),
                    f"{new} cpu": n.get("pg_cpu_ms_per_1000"),
                    "cpu change": _change(n.get("pg_cpu_ms_per_1000"), o.get("pg_cpu_ms_per_1000")),
                    "batch ms, first/last 10 %": f"{o.get('first_10pct_ms')}/{o.get('last_10pct_ms')} "
                    f"vs {n.get('first_10pct_ms')}/{n.get('last_10pct_ms')}",
                    f"{old} all": ", ".join(
                        f"{r['events_per_s']:,}" for r in results["pipeline"]["runs"][old][w]
                    ),
                    f"{new} all": ", ".join(
                        f"{r['events_per_s']:,}" for r in results["pipeline"]["runs"][new][w]
                    ),
                    "verified": all(
                        r["verify"]["ok"] for t in (old, new) for r in results["pipeline"]["runs"][t][w]
                    ),
                }
            )
        print(harness.table(table, list(table[0])))
        print(
            "   cpu: PostgreSQL CPU ms per 1,000 events in the runs' backends (of the best run): "
            "hardly moved by other work on the machine, unlike events/s"
        )
        if 2 in best[new]:
            o2, n2 = best[old][2]["events_per_s"], best[new][2]["events_per_s"]
            ok_new = all(r["verify"]["ok"] for r in results["pipeline"]["runs"][new][2])
            targets.append(
                (
                    f"pipeline, 2 runs >= {TARGET_TWO_RUNS:,} events/s",
                    n2 >= TARGET_TWO_RUNS and ok_new,
                    f"{new} {n2:,}, {old} {o2:,}" + ("" if ok_new else " (not verified)"),
                )
            )
            targets.append(
                (
                    f"pipeline, 2 runs at most {TARGET_MAX_SLOWDOWN:.0%} below {old}",
                    n2 >= o2 * (1 - TARGET_MAX_SLOWDOWN),
                    f"{_change(n2, o2)} ({new} {n2:,}, {old} {o2:,}); PostgreSQL CPU per event "
                    f"{_change(best[new][2]['pg_cpu_ms_per_1000'], best[old][2]['pg_cpu_ms_per_1000'])}",
                )
            )
    if "late" in results:
        summary = results["late"]["summary"]
        print(
            f"\n2. A batch of {args.late_size:,} late events into existing sessions "
            f"({args.late_base_events:,} events loaded first), {args.late_rounds} rounds, ms"
        )
        table = []
        for kind, what in (
            ("late", "late events, in existing sessions"),
            ("fresh", "new events (for comparison)"),
        ):
            o, n = summary.get(old, {}).get(kind, {}), summary.get(new, {}).get(kind, {})
            table.append(
                {
                    "batch": what,
                    f"{old} p50 (min-max)": f"{o.get('p50_ms')} ({o.get('min_ms')}-{o.get('max_ms')})",
                    f"{new} p50 (min-max)": f"{n.get('p50_ms')} ({n.get('min_ms')}-{n.get('max_ms')})",
                    "change": _change(n.get("p50_ms"), o.get("p50_ms")),
                    f"{old} cpu": o.get("cpu_p50_ms"),
                    f"{new} cpu": n.get("cpu_p50_ms"),
                    "cpu change": _change(n.get("cpu_p50_ms"), o.get("cpu_p50_ms")),
                }
            )
        print(harness.table(table, list(table[0])))
        print("   cpu: PostgreSQL CPU ms of the batch's backend, p50")
        for label in (old, new):
            joined = [r["late"]["joined"] for r in results["late"]["rounds"][label]]
            print(f"   {label}: late events staged in their neighbour's session, per round: {joined}")
    if "query" in results:
        rows = results["query"]["rows"]
        print(
            f"\n3. One customer's last 30 days, {args.query_events:,} of its events over {args.days} days "
            f"(+{args.other_share:.0%} of another), {args.query_runs} runs each"
        )
        for label, load in results["query"]["loads"].items():
            if load["not_processed"]:
                print(
                    f"   INCOMPLETE ({label}): {load['not_processed']:,} events were not processed within "
                    f"--query-seconds {args.query_seconds:.0f}, and the oldest go first: "
                    "the last 30 days are missing or partial"
                )
        columns = ["tree", "source", "query", "n", "p50_ms", "p95_ms", "max_ms", "answer", "other_cores"]
        print(harness.table(rows, columns))
        print("\nEXPLAIN ANALYZE, slowest first:")
        print(explain.report(results["query"]["explained"], top=8, plan_lines=12))

        def p95(tree: str, source: str) -> float | None:
            found = [
                r["p95_ms"]
                for r in rows
                if (r["tree"], r["source"], r["query"]) == (tree, source, "30-day summary")
            ]
            return found[0] if found else None

        view = p95(new, "site_session_current")
        detail = (
            f"{new} {view} ms" if view is not None else f"{new}: business.site_session_current is missing"
        )
        left = results["query"]["loads"][new]["not_processed"]
        if left:
            detail = (
                f"{new}: not measured at {args.query_events:,} events, {left:,} were still unprocessed "
                f"after --query-seconds {args.query_seconds:.0f} (p95 {view} ms over what was processed)"
            )
        if (before := p95(old, "latest site_session_summary_s")) is not None:
            detail += f", {old} (latest summary row of each session) {before} ms"
        elif (before := p95(new, "latest site_session_summary_s")) is not None:
            detail += (
                f"; the {old} query (latest summary row of each session) on the same database {before} ms"
            )
        targets.append(
            (
                f"site_session_current 30-day query p95 <= {TARGET_P95_MS:.0f} ms",
                view is not None and view <= TARGET_P95_MS and not left,
                detail,
            )
        )
    return targets


def main() -> None:
    """Measure both trees part by part, print each target with PASS or FAIL, save the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE, help="the older checkout")
    parser.add_argument("--baseline-python", type=Path, help="default: <baseline>/.venv/bin/python")
    parser.add_argument("--current", type=Path, default=ROOT, help="the checkout measured against it")
    parser.add_argument("--current-python", type=Path, default=Path(sys.executable))
    parser.add_argument("--parts", default="1,2,3", help="which parts to run, comma-separated")
    parser.add_argument("--events", type=int, default=100_000, help="part 1: pending events")
    parser.add_argument("--workers", default="1,2", help="part 1: concurrent runs, comma-separated")
    parser.add_argument("--repeats", type=int, default=2, help="part 1: runs of each configuration")
    parser.add_argument("--batch", type=int, default=1000, help="pipeline batch size")
    parser.add_argument("--run-seconds", type=float, default=120, help="time bound of each processing")
    parser.add_argument("--late-base-events", type=int, default=50_000, help="part 2: events loaded first")
    parser.add_argument("--late-size", type=int, default=1000, help="part 2: late events per round")
    parser.add_argument("--late-rounds", type=int, default=5)
    parser.add_argument("--query-events", type=int, default=1_000_000, help="part 3: the customer's events")
    parser.add_argument(
        "--other-share", type=float, default=0.1, help="part 3: the other customer's, relative"
    )
    parser.add_argument("--days", type=int, default=90, help="part 3: the events' time span")
    parser.add_argument(
        "--query-seconds", type=float, default=240, help="part 3: time bound of processing (per tree)"
    )
    parser.add_argument(
        "--query-trees",
        choices=("new", "both"),
        default="new",
        help="part 3: load the events into the current tree only (the old query form then runs on its "
        "database) or into both (a few minutes more)",
    )
    parser.add_argument("--query-runs", type=int, default=50)
    parser.add_argument(
        "--query-budget", type=float, default=60, help="part 3: time bound of each query's runs"
    )
    args = parser.parse_args()
    parts = {int(p) for p in args.parts.split(",")}
    baseline_python = args.baseline_python or args.baseline / ".venv" / "bin" / "python"
    trees = [Tree("old", args.baseline, baseline_python), Tree("new", args.current, args.current_python)]
    commits = checkouts(
        trees,
        f"for the baseline:\n  git worktree add {DEFAULT_BASELINE} 41d2a70\n"
        f"  python3 -m venv {DEFAULT_BASELINE}/.venv && "
        f"{DEFAULT_BASELINE}/.venv/bin/pip install -e '{DEFAULT_BASELINE}[bench,test]'",
    )

    started = time.perf_counter()
    results: dict[str, Any] = {}
    with harness.postgres() as pg:
        Machine.watch(pg)
        if 1 in parts:
            results["pipeline"] = part_pipeline(pg, trees, args)
        if 2 in parts:
            results["late"] = part_late(pg, trees, args)
        if 3 in parts:
            results["query"] = part_query(pg, trees, args)
    seconds = time.perf_counter() - started

    print(f"\nBusiness vault, {trees[0].label} = {commits['old']}, {trees[1].label} = {commits['new']}")
    targets = report(trees, results, args)
    print_other_work("compare old with new, and read the cpu columns, not events/s against other runs")
    print("\nTargets:" if targets else "\nTargets: none in the parts run")
    for name, met, detail in targets:
        print(f"  {'PASS' if met else 'FAIL'}  {name}: {detail}")
    if "query" in results:
        results["query"]["explained"] = [e.summary() for e in results["query"]["explained"]]
    path = harness.save(
        "vault",
        {
            "trees": {t.label: {"root": str(t.root), "commit": commits[t.label]} for t in trees},
            "options": {k: str(v) for k, v in vars(args).items()},
            "seconds": round(seconds),
            "other_cores": OTHER_CORES,
            "targets": [{"target": name, "met": met, "detail": detail} for name, met, detail in targets],
            **results,
        },
    )
    print(f"\n{seconds / 60:.1f} min; results: {path}")


if __name__ == "__main__":
    main()
