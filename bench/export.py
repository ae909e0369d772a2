"""`onevault export` of 1,000,000 raw events: events/s and the peak memory of the exporting process.

`python -m bench.export [--events 1000000] [--business-events 100000]`

Stores N raw events of one customer received over ten days (pending: the raw layer is exported as
received) and M events of a second customer, processed into the business vault. Then runs the
command as a user does, `onevault export ... --output FILE`, each time in a process of its own:
the raw layer for one UTC day (about N/10 events) and for all ten, the business layer for one day
and all, in JSON Lines and CSV, and an export of a day without events (what the command itself
takes). The peak resident memory of each process is the kernel's (ru_maxrss, see _LAUNCHER).
Memory is flat when exporting all the events peaks within FLAT_MB of exporting a tenth of them.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from bench import data, drive, harness

CUSTOMER = harness.CUSTOMER_ID
OTHER = "other_co"
DAYS = 10
# How much more the export of every event may take at its peak than the export of a tenth of them.
FLAT_MB = 5.0
EXPORT_TIMEOUT_SECONDS = 900
_EXPORTED = re.compile(r"^exported (\d+) events", re.MULTILINE)


def load(url: str, customer_id: str, n: int, seed: int, spread: timedelta) -> None:
    """Store `n` pending raw events of `customer_id`, received over `spread` ending now."""
    started = time.perf_counter()
    stream = data.EventStream(prefix=f"{customer_id}-{seed}", seed=seed)
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT util.tenant_hk(%s)", [customer_id]).fetchone()
        assert row is not None
        for done in data.load_raw(conn, row[0], stream, n, chunk=10_000, spread=spread):
            if done % 100_000 == 0 or done == n:
                rate = done / (time.perf_counter() - started)
                print(f"  {customer_id}: {done:,}/{n:,} raw events stored ({rate:,.0f}/s)", flush=True)


def process(url: str, customer_id: str, batch: int) -> float:
    """Process every pending event of `customer_id` as background processing does; the seconds it took."""
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        drive.parse_user_agents(conn, customer_id)
        while drive.run_once(conn, customer_id, batch, prepare=False).processed:
            pass
        conn.execute("VACUUM ANALYZE")
    return time.perf_counter() - started


# Runs the command given as its arguments and prints the child's peak resident memory (KiB). A process
# forked from this benchmark would start with the benchmark's own peak as its ru_maxrss (Linux keeps
# the largest of the memories a process had, its parent's at fork and before exec included); forked
# from this small launcher, it starts with the launcher's few megabytes.
_LAUNCHER = (
    "import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)"
)


def export(
    url: str, customer_id: str, layer: str, fmt: str, first: date, last: date, out: Path
) -> dict[str, Any]:
    """`onevault export` in a process of its own; its events, time, events/s, output size and peak memory."""
    argv = [sys.executable, "-c", _LAUNCHER, sys.executable, "-m", "onevault", "export", customer_id]
    argv += ["--from", str(first), "--to", str(last), "--layer", layer, "--format", fmt, "--output", str(out)]
    env = os.environ | {"SYSTEM_DATABASE_URL": url, "LOG_LEVEL": "WARNING"}
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=EXPORT_TIMEOUT_SECONDS)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"onevault export failed:\n{done.stderr}")
    found = _EXPORTED.search(done.stderr)
    events = int(found.group(1)) if found else -1
    size = out.stat().st_size
    out.unlink()
    return {
        "layer": layer,
        "format": fmt,
        "days": f"{first} to {last}",
        "events": events,
        "seconds": round(seconds, 2),
        "events_per_s": round(events / seconds) if events > 0 else 0,
        "mb_written": round(size / 2**20, 1),
        # Linux reports ru_maxrss in KiB.
        "peak_rss_mb": round(int(done.stdout.split()[-1]) / 1024, 1),
    }


def main() -> None:
    """Load, process the second customer, export each layer and format in a day and in all days."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="raw events of the first customer")
    parser.add_argument(
        "--business-events", type=int, default=100_000, help="events of the second customer, processed"
    )
    parser.add_argument("--batch", type=int, default=5_000, help="pipeline batch size")
    args = parser.parse_args()

    # Received over DAYS days ending now: the UTC days [first, today] hold them all, and the
    # day in the middle about a tenth of them.
    today = datetime.now(UTC).date()
    first = (datetime.now(UTC) - timedelta(days=DAYS)).date()
    middle = today - timedelta(days=DAYS // 2)
    rows: list[dict[str, Any]] = []
    with harness.postgres() as pg, tempfile.TemporaryDirectory(prefix="onevault-bench-export-") as tmp:
        url = harness.create_database(pg, "export")
        harness.tenant_token(url)
        harness.tenant_token(url, OTHER)
        started = time.perf_counter()
        load(url, CUSTOMER, args.events, 1, timedelta(days=DAYS))
        load(url, OTHER, args.business_events, 2, timedelta(days=DAYS))
        load_seconds = time.perf_counter() - started
        process_seconds = process(url, OTHER, args.batch)
        print(f"stored in {load_seconds:.0f} s; {OTHER} processed in {process_seconds:.0f} s", flush=True)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
        out = Path(tmp) / "export.out"
        empty = today + timedelta(days=1)
        rows.append(export(url, CUSTOMER, "raw", "jsonl", empty, empty, out) | {"what": "no events"})
        for customer, layer in ((CUSTOMER, "raw"), (OTHER, "business")):
            for fmt in ("jsonl", "csv"):
                for what, since in (("one day", middle), ("all", first)):
                    until = middle if what == "one day" else today
                    row = export(url, customer, layer, fmt, since, until, out) | {"what": what}
                    rows.append(row)
                    print(
                        f"  {layer} {fmt} {what}: {row['events']:,} events in {row['seconds']} s, "
                        f"peak {row['peak_rss_mb']} MB",
                        flush=True,
                    )

    verdicts = []
    for layer in ("raw", "business"):
        for fmt in ("jsonl", "csv"):
            day, every = (
                next(r for r in rows if r["layer"] == layer and r["format"] == fmt and r["what"] == w)
                for w in ("one day", "all")
            )
            growth = round(every["peak_rss_mb"] - day["peak_rss_mb"], 1)
            every["growth_mb"] = growth
            verdicts.append(
                {
                    "layer": layer,
                    "format": fmt,
                    "events": f"{day['events']:,} -> {every['events']:,}",
                    "peak_rss_mb": f"{day['peak_rss_mb']} -> {every['peak_rss_mb']}",
                    "growth_mb": growth,
                    "flat": "PASS" if growth <= FLAT_MB else "FAIL",
                }
            )
    print(f"\n`onevault export --output FILE`, one process each ({OTHER}'s business layer: processed events)")
    print(
        harness.table(
            rows,
            [
                "layer",
                "format",
                "what",
                "days",
                "events",
                "seconds",
                "events_per_s",
                "mb_written",
                "peak_rss_mb",
            ],
        )
    )
    print(f"\nFlat memory: exporting every event peaks within {FLAT_MB} MB of exporting a tenth of them")
    print(harness.table(verdicts, ["layer", "format", "events", "peak_rss_mb", "growth_mb", "flat"]))
    path = harness.save(
        "export",
        {
            "events": args.events,
            "business_events": args.business_events,
            "load_seconds": round(load_seconds, 1),
            "process_seconds": round(process_seconds, 1),
            "exports": rows,
            "flat": verdicts,
        },
    )
    print(f"\nresults: {path}")
    if any(v["flat"] == "FAIL" for v in verdicts):
        sys.exit(1)


if __name__ == "__main__":
    main()
