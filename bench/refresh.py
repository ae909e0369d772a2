"""The marts' refresh alone: backlogs' and a live batch's, timed against variants of its code.

`python -m bench.refresh [--events 100000] [--backlog-batches 20] [--later-batches 20] [--rounds 4]
[--returning-visitors 60] [--returning-history 400] [--variant NAME=FILE ...]`

1. Stores `--events` pending raw events of one customer (bench/data.py's stream, as the pipeline
   part of bench.analytics does) and processes `--backlog-batches` batches of `--batch` without
   refreshing the marts, as a run in a backlog does until 5,000 queue entries wait
   (staging.refresh_marts_if_due).
2. Times `mart.refresh_queued` of that backlog in a transaction that is rolled back, `--rounds`
   times, and the same after each `--variant`'s SQL (run first in that transaction, e.g. a changed
   `CREATE OR REPLACE FUNCTION mart.refresh_facts`), alternating with the installed code; the
   marts are vacuumed between refreshes, and every variant's marts must hold the same totals.
3. Refreshes the backlog, processes `--later-batches` more and times the next backlog's refresh
   the same way: sessions that go on and visitors who come back, whose other sessions count.
4. Refreshes that, processes one more batch and times its refresh the same way: the cost a
   caught-up run pays after every batch.
5. On a database of its own, `--returning-visitors` identified visitors with `--returning-history`
   sessions each over the last 25 days, counted; then one more session of each, processed, and
   its refresh timed the same way: what a visitor's history adds to counting their new session.

Prints the medians and the installed refresh's main statement explained on each. One
database; the machine's speed drifts within a run, which alternating rounds spread over variants.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bench import data, drive, explain, harness, vault
from bench.analytics import refresh_statement, tenant_hk

CUSTOMER = harness.CUSTOMER_ID
INSTALLED = "installed"
REFRESH = "SELECT mart.refresh_queued(util.tenant_hk(%s))"
MART_TABLES = (
    "mart.session_f, mart.session_event_f, mart.session_queue, mart.traffic_daily, mart.traffic_hourly, "
    "mart.visitor_days"
)
TOTALS = """
SELECT (SELECT row(count(*), sum(pageviews), sum(events)) FROM mart.session_f)::text,
       (SELECT row(count(*), sum(pageviews), sum(events)) FROM mart.session_event_f)::text,
       (SELECT row(sum(visitors), sum(visits), sum(pageviews), sum(events)) FROM mart.traffic_hourly)::text,
       (SELECT row(count(*), sum(visits), sum(bounces), sum(duration_seconds), sum(pageviews), sum(events))
        FROM mart.traffic_daily)::text,
       (SELECT row(count(*), sum(visitors)) FROM mart.visitor_days)::text
"""


def say(text: str) -> None:
    print(text, flush=True)


def process(conn: psycopg.Connection[Any], batches: int, batch: int) -> int:
    """Process up to `batches` batches without refreshing the marts; the events processed."""
    done = 0
    for _ in range(batches):
        drive.parse_user_agents(conn, CUSTOMER, batch)
        with conn.transaction():
            row = conn.execute(
                drive.PIPELINE["auto_process"], drive.auto_process_params(CUSTOMER, batch)
            ).fetchone()
        processed = int((row[0] if row else {}).get("events_processed", 0))
        if not processed:
            break
        done += processed
    return done


def store_sessions(conn: psycopg.Connection[Any], starts: list[tuple[int, int, datetime]]) -> None:
    """Store pending sessions of identified visitors, (visitor, session, start) each: five page views a
    minute apart, one transaction per 5,000 events."""
    tenant = tenant_hk(CUSTOMER)
    events = []
    for visitor, session, start in starts:
        for i in range(5):
            at = start + timedelta(minutes=i)
            ms = int(at.timestamp() * 1000)
            event_id = f"{CUSTOMER}-v{visitor}-s{session}-e{i}"
            payload = {
                "event_id": event_id,
                "event_type": "page_view",
                "page_url": f"https://shop.example.com/products/item-{(session + i) % 40}",
                "timestamp": ms,
                "sent_at": ms,
                "event_data": {"visitor_id": f"v{visitor}", "session_id": f"v{visitor}-s{session}"},
            }
            events.append((event_id, json.dumps(payload, separators=(",", ":")), at))
    for k in range(0, len(events), 5000):
        chunk = events[k : k + 5000]
        with conn.transaction():
            conn.execute(
                data.INGEST,
                {
                    "tenant_hks": [tenant] * len(chunk),
                    "event_ids": [e[0] for e in chunk],
                    "payloads": [e[1] for e in chunk],
                    "user_agents": [data.USER_AGENTS[0]] * len(chunk),
                    "client_ips": ["198.51.100.7"] * len(chunk),
                    "received": [e[2] for e in chunk],
                    "record_sources": ["bench:returning"] * len(chunk),
                },
            )


def returning_visitors(
    pg: harness.Postgres, variants: list[tuple[str, str | None]], args: argparse.Namespace
) -> tuple[dict[str, Any], explain.Explained | None]:
    """Part 5: visitors with a long history each start one more session; its refresh timed."""
    url = harness.create_database(pg, "refresh_returning")
    harness.tenant_token(url)
    visitors, history = args.returning_visitors, args.returning_history
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    first, step = now - timedelta(days=25), timedelta(days=24) / history
    with psycopg.connect(url, autocommit=True) as conn:
        say(f"storing {visitors} visitors' {history} sessions each ...")
        store_sessions(
            conn,
            [
                (v, s, first + step * s + timedelta(minutes=v % 50))
                for v in range(visitors)
                for s in range(history)
            ],
        )
        while process(conn, 50, args.batch):
            conn.execute(REFRESH, (CUSTOMER,))
        conn.execute(REFRESH, (CUSTOMER,))
        store_sessions(conn, [(v, history, now - timedelta(minutes=30)) for v in range(visitors)])
        process(conn, 1, args.batch)
        conn.execute("VACUUM ANALYZE")
        return time_refreshes(conn, variants, args.rounds), explain_queue(
            conn, "returning visitors' sessions"
        )


def time_refreshes(
    conn: psycopg.Connection[Any], variants: list[tuple[str, str | None]], rounds: int
) -> dict[str, Any]:
    """The queue's refresh, rolled back, for each variant in alternating order; milliseconds and totals."""
    queue = conn.execute(
        "SELECT count(*), count(DISTINCT site_session_hk) FROM mart.session_queue"
    ).fetchone()
    assert queue is not None
    ms: dict[str, list[float]] = {name: [] for name, _ in variants}
    totals: dict[str, tuple[Any, ...]] = {}
    for round_ in range(rounds):
        for name, code in variants if round_ % 2 == 0 else variants[::-1]:
            with conn.transaction(force_rollback=True):
                if code is not None:
                    conn.execute(code)
                started = time.perf_counter()
                conn.execute(REFRESH, (CUSTOMER,))
                ms[name].append((time.perf_counter() - started) * 1000)
                row = conn.execute(TOTALS).fetchone()
                assert row is not None
                totals[name] = tuple(row)
            conn.execute(f"VACUUM {MART_TABLES}")
    return {
        "queue_entries": queue[0],
        "sessions": queue[1],
        "ms": {name: [round(x, 1) for x in values] for name, values in ms.items()},
        "median_ms": {name: round(statistics.median(values), 1) for name, values in ms.items()},
        "equal_totals": all(t == totals[INSTALLED] for t in totals.values()),
    }


def explain_queue(conn: psycopg.Connection[Any], what: str) -> explain.Explained | None:
    """The installed refresh's main statement (run by EXECUTE with the sessions as $1) on the queue."""
    body = conn.execute(
        "SELECT prosrc FROM pg_proc WHERE oid = 'mart.refresh_facts(bytea[], boolean)'::regprocedure"
    ).fetchone()
    statement = refresh_statement(body[0]) if body else None
    if statement is None:
        return None
    with conn.transaction(force_rollback=True):
        row = conn.execute("SELECT array_agg(DISTINCT site_session_hk) FROM mart.session_queue").fetchone()
        sessions = list(row[0] or []) if row else []
        label = f"mart.refresh_facts' main statement, {what} of {len(sessions):,} sessions"
        return explain.explain_query(conn, label, sql.SQL(statement), {"sessions": sessions}, False)


def report(name: str, part: dict[str, Any]) -> None:
    installed = part["median_ms"][INSTALLED]
    say(
        f"\n{name}: {part['queue_entries']:,} queue entries, {part['sessions']:,} sessions; "
        f"totals equal: {part['equal_totals']}"
    )
    for variant, median in part["median_ms"].items():
        change = "" if variant == INSTALLED else f"  ({(median - installed) / installed * 100:+.1f} %)"
        say(f"  {variant:<12} median {median:,.1f} ms{change}   all {part['ms'][variant]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="pending events stored")
    parser.add_argument(
        "--backlog-batches", type=int, default=20, help="batches processed before the backlog refresh"
    )
    parser.add_argument(
        "--later-batches", type=int, default=20, help="batches processed after it, before the next backlog's"
    )
    parser.add_argument("--batch", type=int, default=1000, help="pipeline batch size")
    parser.add_argument("--rounds", type=int, default=4, help="refreshes of each variant, alternating")
    parser.add_argument(
        "--returning-visitors", type=int, default=60, help="identified visitors coming back (0: no part 5)"
    )
    parser.add_argument("--returning-history", type=int, default=400, help="earlier sessions of each")
    parser.add_argument(
        "--variant", action="append", default=[], metavar="NAME=FILE", help="SQL run before the refresh"
    )
    args = parser.parse_args()
    variants: list[tuple[str, str | None]] = [(INSTALLED, None)]
    for item in args.variant:
        name, _, path = item.partition("=")
        variants.append((name, Path(path).read_text()))

    code = vault.Tree("current", vault.ROOT, Path(sys.executable)).describe()
    say(f"measuring {vault.ROOT} at {code}")
    started = time.perf_counter()
    results: dict[str, Any] = {"code": code, "options": vars(args)}
    with harness.postgres() as pg:
        url = harness.create_database(pg, "refresh")
        harness.tenant_token(url)
        stream = data.EventStream(prefix=f"{CUSTOMER}-r", seed=3)
        with psycopg.connect(url, autocommit=True) as conn:
            for _ in data.load_raw(conn, tenant_hk(CUSTOMER), stream, args.events):
                pass
            conn.execute("VACUUM ANALYZE")
            say(f"processing {args.backlog_batches} batches without the marts' refresh ...")
            results["backlog_events"] = process(conn, args.backlog_batches, args.batch)
            conn.execute("VACUUM ANALYZE")
            results["backlog"] = time_refreshes(conn, variants, args.rounds)
            explained = [explain_queue(conn, "a backlog")]
            conn.execute(REFRESH, (CUSTOMER,))
            results["later_events"] = process(conn, args.later_batches, args.batch)
            conn.execute("VACUUM ANALYZE")
            results["later"] = time_refreshes(conn, variants, args.rounds)
            explained.append(explain_queue(conn, "the next backlog"))
            conn.execute(REFRESH, (CUSTOMER,))
            process(conn, 1, args.batch)
            conn.execute("VACUUM ANALYZE")
            results["live_batch"] = time_refreshes(conn, variants, args.rounds)
            explained.append(explain_queue(conn, "a live batch"))
        if args.returning_visitors:
            results["returning"], returning_explained = returning_visitors(pg, variants, args)
            explained.append(returning_explained)
    report(f"A backlog ({results['backlog_events']:,} events processed)", results["backlog"])
    report(
        f"The next backlog ({results['later_events']:,} events more: returning visitors)", results["later"]
    )
    report("A live batch (the next batch after that backlog's refresh)", results["live_batch"])
    if args.returning_visitors:
        report(
            f"Returning visitors ({args.returning_visitors} visitors' next session after"
            f" {args.returning_history} sessions each)",
            results["returning"],
        )
    shown = [e for e in explained if e is not None]
    if shown:
        say("\n" + explain.report(shown, top=8, plan_lines=0))
        results["explained"] = [e.summary() for e in shown]
    path = harness.save("refresh", results)
    say(f"\n{(time.perf_counter() - started) / 60:.1f} min; results: {path}")
    parts = (
        ("backlog", "later", "live_batch", "returning")
        if args.returning_visitors
        else ("backlog", "later", "live_batch")
    )
    ok = all(results[part]["equal_totals"] for part in parts)
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
