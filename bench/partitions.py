"""Day partitions of raw and staging (migration 0011) beside the tree before them, in one run.

`python -m bench.partitions [--baseline /tmp/ov-90a4114] [--parts drop,pipeline,ingest]`

The baseline is the commit before partitioning, with its own virtual environment:
`git worktree add /tmp/ov-90a4114 90a4114 && bash /tmp/ov-90a4114/scripts/_venv.sh '[bench]'`.

As bench/vault.py: each tree runs its own code, every step a subprocess of that tree's Python
(`<tree>/.venv/bin/python`; the current one: this interpreter) importing that tree's `onevault` and
`bench`, on its own databases (migrated by its own migrations) of the one embedded PostgreSQL this
benchmark starts; steps of the two trees alternate, and beside events/s the CPU time per event is
reported, which other work on the machine hardly moves.

1. drop: a database of the current tree holds two past days of N processed events each (raw rows
   with payloads of bench/data.py's shape and size, their staged rows and idempotency keys, written
   set-based) and a later day of N/10 to keep. The first day's partitions (raw's; staging's too
   where staging is partitioned) are detached (CONCURRENTLY) and dropped by timed statements; the
   second day's by a round of `onevault.maintenance.run` with raw retention, timed; then a round
   with nothing to do, one that expires the first day's staged events (staging being one table, its
   retention deletes rows) and one that expires its idempotency keys. Beside it, in a database of
   the old tree, the same N + N/10 events in the unpartitioned tables: the N deleted with DELETE,
   then VACUUM and VACUUM FULL, with the tables' size after each.
2. pipeline: N pending events to the business layer with 1 and 2 runs (bench/vault.py part 1's
   steps), best of `--repeats`, on four templates: each tree fresh, and each tree holding
   `--history-days` past days of already-processed events of the same customer and visitors
   (loaded with bench/data.py, dated on those days, and processed through the pipeline): after
   partitioning, a lookup that carries no raw_event_id reads every partition's index. The
   partition of the pending events is packed (VACUUM FULL) in every template, as a day's partition
   that only took inserts is: moving the history away leaves free space there, in amounts that
   differ from template to template, and where it holds, the runs' status updates of raw are HOT
   updates (in one template 14.7 vs 20.3 ms a batch of 1,000). Whole runs scatter on a shared
   machine by more than the differences looked for, so `--alternate-batches` (30) batches are
   also run on a copy of each template, one tree's batch after the other's (the order swapped
   each time), vault only (the marts' refresh, which partitioning does not touch, left out): the
   mean time of a batch on each tree, and its change (skipped against a baseline before 0014, whose
   process_batch refreshes the marts in its batch). Then one batch on each template with
   history is profiled: the time of each function it calls.
3. ingest: `/api/v1/track/async` at 16 and 64 connections and `/api/v1/track/batch` (100 events a
   request), wrk as bench/ingest.py drives it, each cell against `onevault serve --workers 2` of each
   tree on a fresh copy of that tree's migrated database; events/s, p99, and the CPU of the server
   processes and of their PostgreSQL backends per event.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import psycopg
from psycopg import sql

from bench import data, drive, harness, ingest, pipeline, vault

if TYPE_CHECKING:  # the old tree has no onevault.maintenance: its steps never import it
    from onevault.maintenance import Retention

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BASELINE = Path("/tmp/ov-90a4114")
BASELINE_COMMIT = "90a4114"
CUSTOMER = harness.CUSTOMER_ID
TARGET_DROP_SECONDS = 1.0
TARGET_MAX_SLOWDOWN = 0.10
# The names of the four pipeline templates: (tree label, with history).
PIPELINE_CASES = (("old", False), ("new", False), ("old", True), ("new", True))
# The worker steps run in each tree's Python (bench/vault.py's Tree.run) are this file's.
SCRIPT = Path(__file__).resolve()

# name: fill_raw
# `n` processed events of one customer received evenly over one day, ids from `first_id`: payloads
# of bench/data.py's fields and size (page and UTM, referrer, visitor, session, scroll depth), its
# user agents, a client-IP hash, 10 % of sessions without a client session id. OVERRIDING SYSTEM
# VALUE: the old tree's id is an identity column.
FILL_RAW = """
INSERT INTO raw.site_tracking_events_r
    (raw_event_id, tenant_hk, event_id, raw_payload, received_timestamp, record_source, user_agent,
     client_ip_hash, processing_status, processed_at, processing_lane)
OVERRIDING SYSTEM VALUE
SELECT %(first_id)s::bigint + e.n, %(tenant_hk)s, e.event_id,
       jsonb_strip_nulls(jsonb_build_object(
           'event_id', e.event_id,
           'event_type', (%(event_types)s::text[])[1 + mod(e.n * 13, cardinality(%(event_types)s::text[]))],
           'page_url', 'https://shop.example.com/products/item-' || e.page
                       || coalesce('?' || (%(utm)s::text[])[1 + mod(e.session, cardinality(%(utm)s::text[]))],
                                   ''),
           'page_title', 'Item ' || e.page,
           'timestamp', t.sent_ms - mod(e.n * 17, 2000),
           'sent_at', t.sent_ms,
           'referrer', (%(referrers)s::text[])[1 + mod(e.session * 3, cardinality(%(referrers)s::text[]))],
           'event_data', jsonb_build_object(
               'visitor_id', 'v' || e.visitor,
               'scroll_depth', mod(e.n * 29, 101),
               'session_id', CASE WHEN mod(e.session, 10) <> 0 THEN %(prefix)s || '-s' || e.session END))),
       e.received, 'bench:fill',
       (%(user_agents)s::text[])[1 + mod(e.visitor, cardinality(%(user_agents)s::text[]))],
       sha256(convert_to('198.51.100.' || e.visitor, 'UTF8')), 'PROCESSED', e.received + interval '1 second',
       mod(e.visitor, 8)::smallint
FROM generate_series(0::bigint, %(n)s - 1) AS g(n)
CROSS JOIN LATERAL (
    SELECT g.n, g.n / 5 AS session, mod(g.n / 5 * 7919, %(visitors)s) AS visitor,
           mod(g.n * 31, %(pages)s) AS page,
           %(prefix)s || '-' || g.n AS event_id,
           (%(day)s::date::timestamp AT TIME ZONE 'UTC')
           + make_interval(secs => g.n * 86400.0 / %(n)s) AS received
) e
CROSS JOIN LATERAL (SELECT (extract(epoch FROM e.received) * 1000)::bigint - 50 AS sent_ms) t
"""
# name: fill_staging
# The staging rows of the events fill_raw wrote, as the pipeline leaves them once loaded: parsed URL
# and UTM, referrer, user agent, times, session (derived where the client sent none), hash keys.
FILL_STAGING = """
INSERT INTO staging.site_tracking_events_s
    (raw_event_id, tenant_hk, event_id, record_source, validation_status, quality_score, event_type, page_url,
     page_host, page_path, page_query, page_title, utm_source, utm_medium, utm_campaign, referrer_url,
     referrer_host, referrer_class, user_agent, browser_family, browser_version, os_family, os_version,
     device_type, client_ip_hash, received_at, occurred_at, clock_skew_ms, session_id, session_derived,
     visitor_id, event_properties, site_event_hk, site_session_hk, site_visitor_hk, site_page_hk,
     business_loaded_at)
SELECT r.raw_event_id, r.tenant_hk, r.event_id, r.record_source, 'VALID', 1.00, p.doc ->> 'event_type',
       p.doc ->> 'page_url', 'shop.example.com', p.path, nullif(split_part(p.doc ->> 'page_url', '?', 2), ''),
       p.doc ->> 'page_title', substring(p.doc ->> 'page_url' FROM 'utm_source=([^&]*)'),
       substring(p.doc ->> 'page_url' FROM 'utm_medium=([^&]*)'),
       substring(p.doc ->> 'page_url' FROM 'utm_campaign=([^&]*)'), p.doc ->> 'referrer',
       substring(p.doc ->> 'referrer' FROM '//([^/]*)'),
       CASE WHEN p.doc ? 'referrer' THEN 'search' ELSE 'direct' END,
       r.user_agent, 'Chrome', '124.0.0', 'Windows', '10', 'desktop', r.client_ip_hash, r.received_timestamp,
       r.received_timestamp - interval '1 second', -50, p.session_id,
       p.doc -> 'event_data' ->> 'session_id' IS NULL,
       p.doc -> 'event_data' ->> 'visitor_id', p.doc -> 'event_data',
       sha256(r.tenant_hk || convert_to(r.event_id, 'UTF8')),
       sha256(r.tenant_hk || convert_to(p.session_id, 'UTF8')),
       sha256(r.tenant_hk || convert_to(p.doc -> 'event_data' ->> 'visitor_id', 'UTF8')),
       sha256(r.tenant_hk || convert_to(p.path, 'UTF8')), r.received_timestamp + interval '1 second'
FROM raw.site_tracking_events_r r
CROSS JOIN LATERAL (
    SELECT r.raw_payload AS doc, split_part(substr(r.raw_payload ->> 'page_url', 25), '?', 1) AS path,
           coalesce(r.raw_payload -> 'event_data' ->> 'session_id',
                    'derived-' || (r.raw_payload -> 'event_data' ->> 'visitor_id')) AS session_id
) p
WHERE r.raw_event_id >= %(first_id)s AND r.raw_event_id < %(first_id)s + %(n)s
"""
# name: fill_keys
# The idempotency keys of the events fill_raw wrote (partitioned tree: raw.event_key), stored that day.
FILL_KEYS = """
INSERT INTO raw.event_key (tenant_hk, event_id, raw_event_id, stored_on)
SELECT r.tenant_hk, r.event_id, r.raw_event_id, %(day)s::date
FROM raw.site_tracking_events_r r
WHERE r.raw_event_id >= %(first_id)s AND r.raw_event_id < %(first_id)s + %(n)s
"""
# name: table_bytes
# A table's size on disk with its indexes and TOAST, summed over its partitions if it has any
# (pg_partition_tree has no rows for a table that is not partitioned).
TABLE_BYTES = """
SELECT coalesce((SELECT sum(pg_total_relation_size(t.relid)) FROM pg_partition_tree(%(table)s::regclass) t),
                pg_total_relation_size(%(table)s::regclass))
"""
# name: date_history
# Moves the history (every raw row so far, received up to now) back to the days before `today`:
# its receipt ends one second before today's midnight (UTC). The pipeline dates an event at its
# receipt less the client's delay, so the whole history moves with it.
DATE_HISTORY = """
UPDATE raw.site_tracking_events_r r
SET received_timestamp = r.received_timestamp - s.by
FROM (SELECT max(received_timestamp) - (%(today)s::date::timestamp AT TIME ZONE 'UTC')
             + interval '1 second' AS by
      FROM raw.site_tracking_events_r) s
"""
# name: date_history_partitioned
# The same in the partitioned tree, where an event's id carries the day it was stored: each row is
# stored again in the partition of its new day (its sequence number kept; deleted and inserted, as
# an event's id never changes in place), and its key follows it.
DATE_HISTORY_PARTITIONED = """
WITH s AS (
    SELECT max(received_timestamp) - (%(today)s::date::timestamp AT TIME ZONE 'UTC')
           + interval '1 second' AS by
    FROM raw.site_tracking_events_r
), gone AS (
    DELETE FROM raw.site_tracking_events_r r RETURNING r.*
), moved AS (
    INSERT INTO raw.site_tracking_events_r
        (raw_event_id, tenant_hk, event_id, raw_payload, received_timestamp, load_date, record_source,
         user_agent, client_ip_hash, processing_status, error_message, retry_count, next_attempt_at,
         processed_at, processing_lane)
    SELECT raw.day_first_id(((g.received_timestamp - s.by) AT TIME ZONE 'UTC')::date)
               + (g.raw_event_id - raw.day_first_id(raw.event_day(g.raw_event_id))),
           g.tenant_hk, g.event_id, g.raw_payload, g.received_timestamp - s.by, g.load_date, g.record_source,
           g.user_agent, g.client_ip_hash, g.processing_status, g.error_message, g.retry_count,
           g.next_attempt_at, g.processed_at, g.processing_lane
    FROM gone g CROSS JOIN s
    RETURNING raw_event_id, tenant_hk, event_id, (received_timestamp AT TIME ZONE 'UTC')::date AS day
)
UPDATE raw.event_key k
SET raw_event_id = m.raw_event_id, stored_on = m.day
FROM moved m
WHERE k.tenant_hk = m.tenant_hk AND k.event_id = m.event_id
"""
# name: partitions_with_rows
# Per partitioned table of raw and staging: how many of its partitions hold rows (by the statistics).
# name: vault_batch
# One batch of the customer's due events to the business layer, the marts left to a later run.
VAULT_BATCH = """
SELECT staging.process_batch(util.tenant_hk(%(customer)s), %(size)s, NULL, false, false)
"""
# name: latest_partition
# The schema and name of the table (raw's partition, or raw itself) holding the latest event.
LATEST_PARTITION = """
SELECT n.nspname, c.relname
FROM (SELECT tableoid FROM raw.site_tracking_events_r ORDER BY raw_event_id DESC LIMIT 1) r
JOIN pg_class c ON c.oid = r.tableoid JOIN pg_namespace n ON n.oid = c.relnamespace
"""
PARTITIONS_WITH_ROWS = """
SELECT i.inhparent::regclass::text, count(*) FILTER (WHERE c.reltuples > 0)
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent IN ('raw.site_tracking_events_r'::regclass, 'staging.site_tracking_events_s'::regclass)
GROUP BY 1
"""
# name: what_is_left
# After the drop: the events and keys left, and how many of the expired days' partitions exist.
WHAT_IS_LEFT = """
SELECT (SELECT count(*) FROM raw.site_tracking_events_r),
       (SELECT count(*) FROM staging.site_tracking_events_s),
       (SELECT count(*) FROM raw.event_key), (SELECT count(*) FROM pg_class WHERE relname = ANY (%s::text[]))
"""
# name: database_backends
# The PostgreSQL backends connected to this database, but this one: a server's pool.
DATABASE_BACKENDS = (
    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
)


# -- the worker: one step on one tree, in that tree's own Python -------------------------------------


def _tenant_hk(conn: psycopg.Connection[Any]) -> bytes:
    row = conn.execute("SELECT util.tenant_hk(%s)", [CUSTOMER]).fetchone()
    assert row is not None
    return bytes(row[0])


def _partitioned(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT to_regproc('raw.create_day_partitions') IS NOT NULL").fetchone()
    return bool(row and row[0])


def _vault_batches(url: str) -> bool:
    """Whether the database's process_batch can leave the marts out (VAULT_BATCH): from 0014 on."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT to_regprocedure('staging.process_batch(bytea, integer, smallint[], boolean, boolean)')"
        ).fetchone()
    return row is not None and row[0] is not None


def _pack_pending(url: str) -> None:
    """VACUUM FULL the partition of raw holding the latest event (the pending ones)."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(LATEST_PARTITION).fetchone()
        assert row is not None
        table = sql.Identifier(row[0], row[1])
        conn.execute(sql.SQL("VACUUM FULL ANALYZE {}").format(table))


def _bytes(conn: psycopg.Connection[Any], table: str) -> int:
    row = conn.execute(TABLE_BYTES, {"table": table}).fetchone()
    return int(row[0]) if row else 0


def _seconds(conn: psycopg.Connection[Any], statement: sql.Composed, params: Any = None) -> float:
    """Run one statement; its wall time in seconds."""
    started = time.perf_counter()
    conn.execute(statement, params)
    return round(time.perf_counter() - started, 3)


def _fill_day(conn: psycopg.Connection[Any], day: date, n: int, first_id: int, keys: bool) -> dict[str, Any]:
    """`n` processed events received on `day` (raw, staging and, with `keys`, idempotency keys)."""
    params = {
        "first_id": first_id,
        "n": n,
        "day": day,
        "tenant_hk": _tenant_hk(conn),
        "prefix": f"fill-{day:%Y%m%d}",
        "event_types": list(data.EVENT_TYPES),
        "utm": list(data.UTM),
        "referrers": list(data.REFERRERS),
        "user_agents": list(data.USER_AGENTS),
        "visitors": data.VISITORS,
        "pages": data.PAGES,
    }
    started = time.perf_counter()
    with conn.transaction():
        conn.execute(FILL_RAW, params)
        conn.execute(FILL_STAGING, params)
        if keys:
            conn.execute(FILL_KEYS, params)
    return {"day": str(day), "events": n, "seconds": round(time.perf_counter() - started, 1)}


# The two partitioned tables: schema, table, the column of an event's receipt.
LAYERS = (
    ("raw", "site_tracking_events_r", "received_timestamp"),
    ("staging", "site_tracking_events_s", "received_at"),
)


def _day_table(schema: str, table: str, day: date) -> str:
    """The name of a day's partition (raw.create_day_partitions names them so)."""
    return f"{schema}.{table}_{day:%Y%m%d}"


def _sizes_mb(conn: psycopg.Connection[Any]) -> dict[str, float]:
    return {schema: round(_bytes(conn, f"{schema}.{table}") / 2**20, 1) for schema, table, _ in LAYERS}


def _timed_round(url: str, retention: Retention, today: date) -> dict[str, Any]:
    """One round of onevault.maintenance (the current tree's), timed, and what its report says."""
    from onevault import maintenance

    started = time.perf_counter()
    report = maintenance.run(url, retention, today=today)
    seconds = round(time.perf_counter() - started, 3)
    if report is None:
        raise RuntimeError("maintenance did not run: another process holds its lock")
    return {
        "seconds": seconds,
        "dropped": report.dropped,
        "held": report.held,
        "keys_expired": report.keys_expired,
    }


def step_drop(pg: harness.Postgres, name: str, request: dict[str, Any], say: Callable[[str], None]) -> Any:
    """Part 1, current tree: two expired days and a kept one; the first day's partitions detached and
    dropped by statements, the second day's raw partition by a maintenance round; then a round with
    nothing to do, the round that drops the second day's staging partition, and the one that
    expires the first day's idempotency keys."""
    from onevault.maintenance import Retention

    url = harness.create_database(pg, name)
    harness.tenant_token(url)
    n, keep, raw_days = request["events"], request["keep"], request["raw_days"]
    today = datetime.now(UTC).date()
    first, second, kept = (today - timedelta(raw_days + k) for k in (2, 1, 0))
    result: dict[str, Any] = {
        "days": {"statements": str(first), "maintenance": str(second), "kept": str(kept)}
    }
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT raw.create_day_partitions(%s, %s)", [first, today])
        result["fill"] = []
        for day, size in ((first, n), (second, n), (kept, keep)):
            row = conn.execute("SELECT raw.day_first_id(%s)", [day]).fetchone()
            assert row is not None
            result["fill"].append(_fill_day(conn, day, size, int(row[0]), keys=True))
            say(f"stored {size:,} processed events on {day} in {result['fill'][-1]['seconds']} s")
        conn.execute("VACUUM ANALYZE")
        conn.execute("CHECKPOINT")
        partitioned = [
            (schema, table)
            for schema, table, _ in LAYERS
            if conn.execute("SELECT to_regclass(%s)", [_day_table(schema, table, first)]).fetchone()
            != (None,)
        ]
        result["partitioned"] = [schema for schema, _ in partitioned]
        result["partition_mb"] = {
            schema: round(_bytes(conn, _day_table(schema, table, second)) / 2**20, 1)
            for schema, table in partitioned
        }
        result["mb"] = {"before": _sizes_mb(conn)}
        result["statements"] = {}
        for schema, table in partitioned:
            part = sql.Identifier(*_day_table(schema, table, first).split("."))
            detach = sql.SQL("ALTER TABLE {} DETACH PARTITION {} CONCURRENTLY")
            result["statements"][schema] = {
                "detach": _seconds(conn, detach.format(sql.Identifier(schema, table), part)),
                "drop": _seconds(conn, sql.SQL("DROP TABLE {}").format(part)),
            }
        say(f"DETACH CONCURRENTLY, DROP TABLE of {first}: {result['statements']}")
    # The keys outlive both expired days in the first rounds (their window reaches back before the
    # first day), so that each round does one thing; the keys' own round comes last.
    window = raw_days + 3
    retention = Retention(raw_days=raw_days, idempotency_days=window)
    result["round"] = _timed_round(url, retention, today)
    say(f"maintenance round dropping {second}: {result['round']['seconds']} s ({result['round']['dropped']})")
    result["idle_round"] = _timed_round(url, retention, today)
    # Staging's retention (the first day's staging partition went by statements).
    result["staging_round"] = _timed_round(
        url, Retention(staging_days=raw_days, idempotency_days=window), today
    )
    with psycopg.connect(url, autocommit=True) as conn:
        result["mb"]["staging_round"] = _sizes_mb(conn)
    say(f"maintenance round dropping staging's {second}: {result['staging_round']['seconds']} s")
    result["keys_round"] = _timed_round(url, Retention(idempotency_days=raw_days + 1), today)
    say(f"maintenance round expiring the keys of {first}: {result['keys_round']['seconds']} s")
    names = [_day_table(s, t, d).split(".")[1] for s, t, _ in LAYERS for d in (first, second)]
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(WHAT_IS_LEFT, [names]).fetchone()
    assert row is not None
    result["left"] = dict(zip(("raw", "staging", "keys", "expired_partitions"), map(int, row), strict=True))
    pipeline.drop(pg, name)
    return result


def step_delete(pg: harness.Postgres, name: str, request: dict[str, Any], say: Callable[[str], None]) -> Any:
    """Part 1, old tree: the same events in the unpartitioned tables; the expired day's deleted, then
    VACUUM, then VACUUM FULL, the tables' size after each."""
    url = harness.create_database(pg, name)
    harness.tenant_token(url)
    n, keep, raw_days = request["events"], request["keep"], request["raw_days"]
    today = datetime.now(UTC).date()
    expired, kept = today - timedelta(raw_days + 1), today - timedelta(raw_days)
    cutoff = datetime(kept.year, kept.month, kept.day, tzinfo=UTC)
    result: dict[str, Any] = {"days": {"deleted": str(expired), "kept": str(kept)}}
    with psycopg.connect(url, autocommit=True) as conn:
        result["fill"] = [
            _fill_day(conn, expired, n, 1, keys=False),
            _fill_day(conn, kept, keep, n + 1, keys=False),
        ]
        say(f"stored {n:,} + {keep:,} processed events in {sum(f['seconds'] for f in result['fill']):.1f} s")
        conn.execute("VACUUM ANALYZE")
        conn.execute("CHECKPOINT")
        result["mb"] = {"before": _sizes_mb(conn)}
        result["seconds"] = {}
        for stage, command in (
            ("delete", "DELETE FROM {} WHERE {} < %s"),
            ("vacuum", "VACUUM {}"),
            ("vacuum_full", "VACUUM FULL {}"),
        ):
            result["seconds"][stage] = {
                schema: _seconds(
                    conn,
                    sql.SQL(command).format(sql.Identifier(schema, table), sql.Identifier(column)),
                    [cutoff] if stage == "delete" else None,
                )
                for schema, table, column in LAYERS
            }
            result["mb"][stage] = _sizes_mb(conn)
            say(f"{stage}: {result['seconds'][stage]} s, {result['mb'][stage]} MB")
    result["left"] = {
        "raw": harness.count(url, "SELECT count(*) FROM raw.site_tracking_events_r"),
        "staging": harness.count(url, "SELECT count(*) FROM staging.site_tracking_events_s"),
    }
    pipeline.drop(pg, name)
    return result


def step_history(pg: harness.Postgres, name: str, request: dict[str, Any], say: Callable[[str], None]) -> Any:
    """Part 2: a template whose customer has `history_days` past days of events, processed through
    the pipeline, then the N pending events of bench/vault.py's template."""
    url = harness.create_database(pg, name)
    harness.tenant_token(url)
    days, total = request["history_days"], request["history_days"] * request["history_per_day"]
    today = datetime.now(UTC).date()
    # The same customer and visitors (bench/data.py's v0 to v4999) as the pending events; other sessions.
    history = data.EventStream(prefix=f"{CUSTOMER}-history", seed=2)
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        partitioned = _partitioned(conn)
        for done in data.load_raw(conn, _tenant_hk(conn), history, total, spread=timedelta(days=days)):
            if done % 100_000 == 0 or done == total:
                say(f"history: {done:,}/{total:,} raw events stored")
        if partitioned:
            conn.execute("SELECT raw.create_day_partitions(%s, %s)", [today - timedelta(days + 1), today])
            conn.execute(DATE_HISTORY_PARTITIONED, {"today": today})
        else:
            conn.execute(DATE_HISTORY, {"today": today})
        conn.execute("VACUUM ANALYZE")
    loaded = time.perf_counter() - started
    processing = vault.drain(url, CUSTOMER, 2, request["batch"], time.monotonic() + request["seconds"], say)
    left = harness.count(url, "SELECT pending + errors FROM raw.queue_counts()")
    if left:
        raise RuntimeError(f"{left:,} history events were not processed within {request['seconds']} s")
    result: dict[str, Any] = {
        "history": {
            "events": total,
            "days": days,
            "malformed": history.malformed,
            "load_seconds": round(loaded, 1),
            "processing": processing,
            "mart_queue_left": harness.count(url, "SELECT count(*) FROM mart.session_queue"),
        }
    }
    stream = data.load(url, CUSTOMER, request["events"], seed=1, label=f"[{request['label']}] pending")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        # Today's, with the pending events, included.
        result["history"]["partitions_with_rows"] = dict(conn.execute(PARTITIONS_WITH_ROWS).fetchall())
    result["malformed"] = stream.malformed
    return result


def step_profile(pg: harness.Postgres, name: str, request: dict[str, Any], say: Callable[[str], None]) -> Any:
    """Part 2: one batch of a template's pending events profiled (bench/pipeline.py's explain_batch, rolled
    back): the time of each function it called."""
    url = pipeline.clone(pg, request["template"], name)
    profile = pipeline.explain_batch(url, request["batch"])
    pipeline.drop(pg, name)
    return {"batch_ms": round(profile["batch_ms"], 1), "function_times": profile["function_times"]}


def step_ingest_template(
    pg: harness.Postgres, name: str, request: dict[str, Any], say: Callable[[str], None]
) -> Any:
    """Part 3: a migrated database with the benchmark customer, copied for every cell; its token (and, with
    `request["browser"]`, a web page's token for beacons)."""
    url = harness.create_database(pg, name)
    result = {"token": harness.tenant_token(url)}
    if request.get("browser"):
        result["browser_token"] = harness.browser_token(url)
    return result


def _cpu_seconds(pids: Iterable[int]) -> dict[int, float]:
    """CPU time (user + system) each live process of `pids` has used so far."""
    out: dict[int, float] = {}
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        out[pid] = times.user + times.system
    return out


def _backends(url: str) -> list[int]:
    with psycopg.connect(url, autocommit=True) as conn:
        return [int(r[0]) for r in conn.execute(DATABASE_BACKENDS)]


def step_ingest_cell(
    pg: harness.Postgres, name: str, request: dict[str, Any], say: Callable[[str], None]
) -> Any:
    """Part 3: one wrk run against this tree's server on a fresh copy of its template (bench/ingest.py's
    measure; `request["credentials"]` "body": as beacons send it), with the CPU its server processes and
    their PostgreSQL backends used meanwhile and the peak memory of each server process."""
    url = pipeline.clone(pg, request["template"], name)
    env = {"ONEVAULT_PIPELINE_BACKGROUND": "false"} if request["ingestion_only"] else {}
    with harness.onevault(url, harness.free_port(), **env) as server, harness.peak_rss(server) as rss:
        server_before, pg_before = _cpu_seconds(server.pids()), _cpu_seconds(_backends(url))
        result = ingest.measure(
            server,
            url,
            request["token"],
            request["endpoint"],
            request["per_request"],
            request["connections"],
            request["seconds"],
            0,
            request.get("credentials", "headers"),
        )
        server_after, pg_after = _cpu_seconds(server.pids()), _cpu_seconds(_backends(url))
    result["peak_rss_mb"] = round(max(rss.values(), default=0.0), 1)
    # A process started during the run counts from zero.
    for what, before, after in (("server", server_before, server_after), ("pg", pg_before, pg_after)):
        used = sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())
        result[f"{what}_cpu_us_per_event"] = (
            round(used / result["events"] * 1e6, 1) if result["events"] else None
        )
    pipeline.drop(pg, name)
    return result


Step = Callable[[harness.Postgres, str, dict[str, Any], Callable[[str], None]], Any]
STEPS: dict[str, Step] = {
    "drop": step_drop,
    "delete": step_delete,
    "history": step_history,
    "profile": step_profile,
    "ingest_template": step_ingest_template,
    "ingest_cell": step_ingest_cell,
}


def worker(request_json: str) -> None:
    """Run one step (`request["step"]`) with this process's tree; write its result as JSON."""
    # SIGTERM (a step past its time) unwinds like an exception: servers and wrk are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    request = json.loads(request_json)
    pg = harness.Postgres(request["admin_url"], Path(request["socket_dir"]))

    def say(text: str) -> None:
        print(f"  [{request['label']}] {text}", flush=True)

    result = STEPS[request["step"]](pg, request["database"], request, say)
    Path(request["result"]).write_text(json.dumps(result, default=str))


# -- the orchestrator ------------------------------------------------------------------------------


def part_drop(pg: harness.Postgres, trees: dict[str, vault.Tree], args: argparse.Namespace) -> dict[str, Any]:
    """Part 1: a day's partitions dropped (current tree) against its rows deleted (old tree)."""
    params = {"events": args.drop_events, "keep": args.drop_events // 10, "raw_days": args.raw_days}
    timeout = 600 + args.drop_events / 500
    print(f"[new] two days of {args.drop_events:,} processed events, dropped ...", flush=True)
    dropped = trees["new"].run(pg, "drop", "part_drop", timeout, SCRIPT, **params)
    print(f"[old] {args.drop_events:,} processed events in the unpartitioned tables, deleted ...", flush=True)
    deleted = trees["old"].run(pg, "delete", "part_delete", timeout, SCRIPT, **params)
    return {"options": params, "new": dropped, "old": deleted}


def _case(label: str, history: bool) -> str:
    return f"{label}_{'history' if history else 'fresh'}"


def _case_title(key: str, days: int) -> str:
    label, kind = key.split("_")
    return ("before" if label == "old" else "after") + (f", {days} days" if kind == "history" else "")


def part_pipeline(
    pg: harness.Postgres, trees: dict[str, vault.Tree], args: argparse.Namespace
) -> dict[str, Any]:
    """Part 2: events/s with 1 and 2 runs on each tree's templates, fresh and with history."""
    cases = [c for c in PIPELINE_CASES if not c[1] or args.history_trees == "both" or c[0] == "new"]
    templates: dict[str, dict[str, Any]] = {}
    for label, history in cases:
        key, tree = _case(label, history), trees[label]
        if history:
            print(
                f"[{label}] {args.history_days} days of {args.history_per_day:,} events processed, then "
                f"{args.events:,} pending events, in a template ...",
                flush=True,
            )
            templates[key] = tree.run(
                pg,
                "history",
                f"part_{key}",
                args.history_seconds + 1800,
                SCRIPT,
                events=args.events,
                history_days=args.history_days,
                history_per_day=args.history_per_day,
                batch=args.batch,
                seconds=args.history_seconds,
            )
        else:
            print(f"[{label}] {args.events:,} pending events in a template ...", flush=True)
            # bench/vault.py's own step, in this tree.
            templates[key] = tree.run(pg, "pipeline_template", f"part_{key}", 1800, events=args.events)
    for key in templates:
        _pack_pending(pg.url(f"part_{key}"))
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {key: {} for key in templates}
    workers = [int(w) for w in args.workers.split(",")]
    for repeat in range(args.repeats):
        order = list(templates) if repeat % 2 == 0 else list(templates)[::-1]
        for w in workers:
            for key in order:
                history = templates[key].get("history", {})
                result = vault.run_pipeline(
                    pg,
                    trees[key.split("_")[0]],
                    f"part_{key}",
                    w,
                    args,
                    # What verify expects of the whole database: the history is processed too.
                    events=args.events + history.get("events", 0),
                    malformed=templates[key]["malformed"] + history.get("malformed", 0),
                    title=_case_title(key, args.history_days),
                )
                runs[key].setdefault(w, []).append(result)
    alternated = {}
    for label in ("fresh", "history"):
        pair = (f"old_{label}", f"new_{label}")
        if args.alternate_batches and all(key in templates for key in pair):
            if not all(_vault_batches(pg.url(f"part_{key}")) for key in pair):
                print(
                    f"[{label}] batches alternating: skipped — the baseline's process_batch refreshes the "
                    "marts in its batch (no batch of the vault alone to compare)"
                )
                continue
            print(
                f"[{label}] {args.alternate_rounds} x {args.alternate_batches} batches of {args.batch:,} "
                "on each tree, alternating ..."
            )
            alternated[label] = _alternate_batches(
                pg, pair, args.alternate_batches, args.batch, args.alternate_rounds
            )
    profiled = {}
    for key in ("old_history", "new_history"):
        if args.profile_batch and key in templates:
            print(f"[{_case_title(key, args.history_days)}] one batch of {args.profile_batch:,} profiled ...")
            profiled[key] = trees[key.split("_")[0]].run(
                pg,
                "profile",
                f"part_{key}_profile",
                900,
                SCRIPT,
                template=f"part_{key}",
                batch=args.profile_batch,
            )
    for key in templates:
        pipeline.drop(pg, f"part_{key}")
    best = {
        key: {w: max(rs, key=lambda r: r["events_per_s"]) for w, rs in ws.items()} for key, ws in runs.items()
    }
    return {
        "templates": templates,
        "runs": runs,
        "best": best,
        "workers": workers,
        "alternated": alternated,
        "profiled": profiled,
    }


def _mean_batches(times: dict[str, list[float]], label: str) -> tuple[int, float, float]:
    """How many batches each tree ran, and the mean time of a batch before and after, ms."""
    before, after = times[f"old_{label}"], times[f"new_{label}"]
    return len(before), statistics.fmean(before), statistics.fmean(after)


def _alternate_batches(
    pg: harness.Postgres, keys: tuple[str, str], n: int, size: int, rounds: int
) -> dict[str, list[float]]:
    """`rounds` times, `n` committed batches of `size` on a new copy of each template, one tree's
    after the other's (the order swapped each time, and each round starting with the other tree),
    the marts left out: each batch's time in ms, by template."""
    times: dict[str, list[float]] = {key: [] for key in keys}
    for r in range(rounds):
        conns: dict[str, psycopg.Connection[Any]] = {}
        try:
            for key in keys:
                conns[key] = psycopg.connect(
                    pipeline.clone(pg, f"part_{key}", f"part_{key}_alternated"), autocommit=True
                )
                drive.parse_user_agents(conns[key], CUSTOMER)
            for i in range(n):
                for key in keys if (i + r) % 2 == 0 else keys[::-1]:
                    started = time.perf_counter()
                    conns[key].execute(VAULT_BATCH, {"customer": CUSTOMER, "size": size})
                    times[key].append(round((time.perf_counter() - started) * 1000, 1))
        finally:
            for conn in conns.values():
                conn.close()
            for key in keys:
                pipeline.drop(pg, f"part_{key}_alternated")
    return times


def part_ingest(
    pg: harness.Postgres, trees: dict[str, vault.Tree], args: argparse.Namespace
) -> dict[str, Any]:
    """Part 3: each wrk cell against each tree's server, alternating, best of `--ingest-repeats`."""
    tokens = {
        label: tree.run(pg, "ingest_template", f"part_ingest_{label}", 600, SCRIPT)["token"]
        for label, tree in trees.items()
    }
    cells = [("/api/v1/track/async", 1, int(c)) for c in args.connections.split(",")] + [
        ("/api/v1/track/batch", 100, int(c)) for c in args.batch_connections.split(",")
    ]
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {label: {} for label in trees}
    for repeat in range(args.ingest_repeats):
        for endpoint, per_request, connections in cells:
            cell = f"{endpoint} {connections}"
            for label in list(trees) if repeat % 2 == 0 else list(trees)[::-1]:
                result = trees[label].run(
                    pg,
                    "ingest_cell",
                    f"part_ingest_{label}_run",
                    args.seconds + 300,
                    SCRIPT,
                    template=f"part_ingest_{label}",
                    token=tokens[label],
                    endpoint=endpoint,
                    per_request=per_request,
                    connections=connections,
                    seconds=args.seconds,
                    ingestion_only=args.ingestion_only,
                )
                runs[label].setdefault(cell, []).append(result)
                print(
                    f"[{label}] {endpoint} at {connections} connections: "
                    f"{result['events_per_s']:,.0f} events/s, p99 {result['p99_ms']} ms, "
                    f"cpu per event {result['server_cpu_us_per_event']} µs server, "
                    f"{result['pg_cpu_us_per_event']} µs PostgreSQL, errors {result['errors']}, "
                    f"rows ok {result['rows_ok']} (other work: {result['other_cores']} cores)",
                    flush=True,
                )
    for label in trees:
        pipeline.drop(pg, f"part_ingest_{label}")
    best = {
        label: {cell: max(rs, key=lambda r: r["events_per_s"]) for cell, rs in by_cell.items()}
        for label, by_cell in runs.items()
    }
    return {"cells": [f"{e} {c}" for e, _, c in cells], "runs": runs, "best": best}


Target = tuple[str, bool, str]


def report_drop(results: dict[str, Any], args: argparse.Namespace) -> list[Target]:
    """Part 1's table; its targets."""
    new, old = results["new"], results["old"]
    n, kept = args.drop_events, args.drop_events // 10
    rnd, statements = new["round"], new["statements"]
    print(
        f"\n1. Retention of a day of {n:,} processed events (raw rows, staged rows, idempotency keys; a "
        f"later day of {kept:,} kept), {args.raw_days} days; partitioned: {', '.join(new['partitioned'])}"
    )
    rows = [
        {
            "what": f"maintenance round dropping the raw partition of {new['days']['maintenance']}",
            "seconds": rnd["seconds"],
            "detail": f"dropped {', '.join(rnd['dropped']) or 'nothing'}; held {rnd['held'] or 'none'}",
        },
        {
            "what": "maintenance round with nothing to do (its fixed cost)",
            "seconds": new["idle_round"]["seconds"],
            "detail": "",
        },
    ]
    for schema, times in statements.items():
        rows += [
            {
                "what": f"  {schema}: DETACH PARTITION … CONCURRENTLY ({new['days']['statements']})",
                "seconds": times["detach"],
                "detail": f"a partition of {new['partition_mb'][schema]:,} MB",
            },
            {"what": f"  {schema}: DROP TABLE", "seconds": times["drop"], "detail": ""},
        ]
    staged, mb = new["staging_round"], new["mb"]
    rows.append(
        {
            "what": f"maintenance round dropping the staging partition of {new['days']['maintenance']}",
            "seconds": staged["seconds"],
            "detail": f"dropped {', '.join(staged['dropped']) or 'nothing'}; staging "
            f"{mb['before']['staging']:,} MB before, {mb['staging_round']['staging']:,} MB after",
        }
    )
    keys = new["keys_round"]
    rows.append(
        {
            "what": "maintenance round expiring a day's idempotency keys",
            "seconds": keys["seconds"],
            "detail": f"{keys['keys_expired']:,} keys deleted (DELETE, 50,000 a statement)",
        }
    )
    mb = old["mb"]
    for schema, _, _ in LAYERS:
        rows += [
            {
                "what": f"naive, {schema}: DELETE … WHERE received < cutoff (before: unpartitioned)",
                "seconds": old["seconds"]["delete"][schema],
                "detail": f"table {mb['before'][schema]:,} MB before, {mb['delete'][schema]:,} MB after",
            },
            {
                "what": f"naive, {schema}: VACUUM",
                "seconds": old["seconds"]["vacuum"][schema],
                "detail": f"{mb['vacuum'][schema]:,} MB after (space reusable, not returned)",
            },
            {
                "what": f"naive, {schema}: VACUUM FULL (blocks reads and writes)",
                "seconds": old["seconds"]["vacuum_full"][schema],
                "detail": f"{mb['vacuum_full'][schema]:,} MB after",
            },
        ]
    print(harness.table(rows, ["what", "seconds", "detail"]))
    left = new["left"]
    intact = left["raw"] == kept and left["expired_partitions"] == 0
    print(
        f"   left afterwards: {left['raw']:,} raw rows (the kept day: {kept:,}), {left['staging']:,} staged, "
        f"{left['keys']:,} keys, {left['expired_partitions']} expired partitions; naive: "
        f"{old['left']['raw']:,} raw and {old['left']['staging']:,} staged rows"
    )
    raw_alone = statements["raw"]["detach"] + statements["raw"]["drop"]
    delete = old["seconds"]["delete"]["raw"]
    return [
        (
            f"dropping a raw partition of {n:,} events < {TARGET_DROP_SECONDS:.0f} s (maintenance round)",
            rnd["seconds"] < TARGET_DROP_SECONDS and len(rnd["dropped"]) == 1 and intact,
            f"{rnd['seconds']} s, newer day intact: {intact}; DETACH CONCURRENTLY + DROP TABLE alone "
            f"{raw_alone:.3f} s; the naive DELETE of the same rows {delete} s "
            f"({delete / max(rnd['seconds'], 1e-3):,.0f}×), its space kept until VACUUM FULL",
        ),
    ]


def report_pipeline(results: dict[str, Any], args: argparse.Namespace) -> list[Target]:
    """Part 2's tables; its targets."""
    best, days = results["best"], args.history_days
    keys = list(best)
    titles = {key: _case_title(key, days) for key in keys}
    history = results["templates"].get("new_history", {}).get("history", {})
    print(
        f"\n2. Pipeline: {args.events:,} pending events → business layer, batch {args.batch}, best of "
        f"{args.repeats}; '{days} days': the customer already has {days} days of "
        f"{args.history_per_day:,} processed events of the same visitors"
        + (
            " (after: partitions holding rows, today's included: "
            + (", ".join(f"{t} {n}" for t, n in history["partitions_with_rows"].items()) or "none")
            + ")"
            if history
            else ""
        )
    )
    rows = []
    for w in results["workers"]:
        row: dict[str, Any] = {"runs": w}
        for key in keys:
            row[f"{titles[key]} ev/s"] = f"{best[key][w]['events_per_s']:,}"
        row["change"] = vault._change(
            best["new_fresh"][w]["events_per_s"], best["old_fresh"][w]["events_per_s"]
        )
        if "new_history" in best:
            old_history = best.get("old_history", {}).get(w)
            row[f"change, {days} days"] = (
                vault._change(best["new_history"][w]["events_per_s"], old_history["events_per_s"])
                if old_history
                else ""
            )
            row[f"after {days} days vs after"] = vault._change(
                best["new_history"][w]["events_per_s"], best["new_fresh"][w]["events_per_s"]
            )
        row["cpu ms/1,000: " + " / ".join(titles[k] for k in keys)] = " / ".join(
            str(best[k][w]["pg_cpu_ms_per_1000"]) for k in keys
        )
        row["verified"] = all(r["verify"]["ok"] for k in keys for r in results["runs"][k][w])
        rows.append(row)
    print(harness.table(rows, list(rows[0])))
    print(
        "   cpu: PostgreSQL CPU ms per 1,000 events in the runs' backends (of the best run): hardly moved "
        "by other work on the machine, unlike events/s"
    )
    for key in keys:
        print(
            f"   {titles[key]}, all runs: "
            + "; ".join(
                f"{w}: " + ", ".join(f"{r['events_per_s']:,}" for r in results["runs"][key][w])
                for w in results["workers"]
            )
        )
    alternated = results.get("alternated", {})
    for label, times in alternated.items():
        count, old_ms, new_ms = _mean_batches(times, label)
        old_median = statistics.median(times[f"old_{label}"])
        new_median = statistics.median(times[f"new_{label}"])
        print(
            f"   {count} batches of {args.batch:,} alternating ({args.alternate_rounds} rounds), {label}, "
            f"vault only: mean {old_ms:.1f} ms before, {new_ms:.1f} ms after "
            f"({vault._change(new_ms, old_ms)} time a batch); median {old_median:.1f} / {new_median:.1f} ms "
            f"({vault._change(new_median, old_median)})"
        )
    report_profiled(results["profiled"], args)
    targets: list[Target] = []
    pairs = [("old_fresh", "new_fresh", "fresh databases")]
    if "old_history" in best:
        pairs.append(("old_history", "new_history", f"{days} days of history"))
    for w in results["workers"]:
        for before, after, what in pairs:
            o, n = best[before][w], best[after][w]
            ok = all(r["verify"]["ok"] for k in (before, after) for r in results["runs"][k][w])
            targets.append(
                (
                    f"pipeline, {w} run(s), {what}: after partitioning within "
                    f"{TARGET_MAX_SLOWDOWN:.0%} of before",
                    n["events_per_s"] >= o["events_per_s"] * (1 - TARGET_MAX_SLOWDOWN) and ok,
                    f"{vault._change(n['events_per_s'], o['events_per_s'])} (after {n['events_per_s']:,}, "
                    f"before {o['events_per_s']:,}); CPU per event "
                    f"{vault._change(n['pg_cpu_ms_per_1000'], o['pg_cpu_ms_per_1000'])}"
                    + ("" if ok else " (not verified)"),
                )
            )
    for label, times in alternated.items():
        _, old_ms, new_ms = _mean_batches(times, label)
        targets.append(
            (
                f"pipeline batch by batch, {label}: a batch after partitioning within "
                f"{TARGET_MAX_SLOWDOWN:.0%} of before's time",
                new_ms <= old_ms * (1 + TARGET_MAX_SLOWDOWN),
                f"mean {new_ms:.1f} ms against {old_ms:.1f} ms ({vault._change(new_ms, old_ms)})",
            )
        )
    return targets


def report_profiled(profiled: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    """Where one batch's time goes with the history: each function's own time in each tree."""
    if not profiled:
        return
    days = args.history_days
    print(
        f"\n   One batch of {args.profile_batch:,} events with {days} days of history (one sample), "
        + ", ".join(f"{_case_title(k, days)} {e['batch_ms']:,.0f} ms" for k, e in profiled.items())
        + "; ms of each function (track_functions), the slowest after partitioning first:"
    )
    times = {k: {t["function"]: t for t in e["function_times"]} for k, e in profiled.items()}
    last = list(times)[-1]
    rows = [
        {"function": function}
        | {
            f"{_case_title(k, days)} self / total ms": (
                f"{t[function]['self_ms']} / {t[function]['total_ms']}" if function in t else ""
            )
            for k, t in times.items()
        }
        for function in list(times[last])[:6]
    ]
    print(harness.table(rows, list(rows[0])) if rows else "   (no function times)")


def report_ingest(results: dict[str, Any], args: argparse.Namespace) -> list[Target]:
    """Part 3's table; its targets."""
    old, new = results["best"]["old"], results["best"]["new"]
    print(
        f"\n3. Ingestion: wrk, {args.seconds} s a cell, onevault serve --workers 2"
        + (" (ingestion only)" if args.ingestion_only else " (background processing on)")
        + f", best of {args.ingest_repeats}; every cell on a fresh copy of the tree's database"
    )
    rows = []
    targets: list[Target] = []
    for cell in results["cells"]:
        o, n = old[cell], new[cell]
        every = [r for label in ("old", "new") for r in results["runs"][label][cell]]
        clean = all(r["errors"] == 0 and r["rows_ok"] for r in every)
        rows.append(
            {
                "endpoint, connections": cell,
                "before ev/s": f"{o['events_per_s']:,.0f}",
                "after ev/s": f"{n['events_per_s']:,.0f}",
                "change": vault._change(n["events_per_s"], o["events_per_s"]),
                "p99 ms before/after": f"{o['p99_ms']}/{n['p99_ms']}",
                "server µs/event before/after": (
                    f"{o['server_cpu_us_per_event']}/{n['server_cpu_us_per_event']}"
                ),
                "PG µs/event before/after": f"{o['pg_cpu_us_per_event']}/{n['pg_cpu_us_per_event']}",
                "before all": ", ".join(f"{r['events_per_s']:,.0f}" for r in results["runs"]["old"][cell]),
                "after all": ", ".join(f"{r['events_per_s']:,.0f}" for r in results["runs"]["new"][cell]),
                "no errors, rows ok": clean,
            }
        )
        targets.append(
            (
                f"{cell} connections: after partitioning within {TARGET_MAX_SLOWDOWN:.0%} of before",
                n["events_per_s"] >= o["events_per_s"] * (1 - TARGET_MAX_SLOWDOWN) and clean,
                f"{vault._change(n['events_per_s'], o['events_per_s'])} (after {n['events_per_s']:,.0f}, "
                f"before {o['events_per_s']:,.0f}); p99 {n['p99_ms']} vs {o['p99_ms']} ms"
                + ("" if clean else "; errors or rows missing"),
            )
        )
    print(harness.table(rows, list(rows[0])))
    print(
        "   µs/event: CPU of the server's processes and of their PostgreSQL backends during the cell, per "
        "acknowledged event (with background processing on, what it processed meanwhile counts too)"
    )
    return targets


def main() -> None:
    """Measure both trees part by part, print each target with PASS or FAIL, save the results."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--baseline", type=Path, default=DEFAULT_BASELINE, help="the checkout before partitioning"
    )
    parser.add_argument("--baseline-python", type=Path, help="default: <baseline>/.venv/bin/python")
    parser.add_argument("--current", type=Path, default=ROOT, help="the partitioned checkout")
    parser.add_argument("--current-python", type=Path, default=Path(sys.executable))
    parser.add_argument("--parts", default="drop,pipeline,ingest", help="which parts to run, comma-separated")
    parser.add_argument("--drop-events", type=int, default=1_000_000, help="drop: events of the dropped day")
    parser.add_argument("--raw-days", type=int, default=30, help="drop: the retention of raw and staging")
    parser.add_argument("--events", type=int, default=100_000, help="pipeline: pending events")
    parser.add_argument("--workers", default="1,2", help="pipeline: concurrent runs, comma-separated")
    parser.add_argument("--repeats", type=int, default=2, help="pipeline: runs of each configuration")
    parser.add_argument("--batch", type=int, default=1000, help="pipeline batch size")
    parser.add_argument("--run-seconds", type=float, default=120, help="pipeline: time bound of each run")
    parser.add_argument("--history-days", type=int, default=30, help="pipeline: days of processed events")
    parser.add_argument("--history-per-day", type=int, default=20_000, help="pipeline: events a day")
    parser.add_argument(
        "--history-trees",
        choices=("both", "new"),
        default="both",
        help="pipeline: the history in both trees (the before column tells what the history costs without "
        "partitions) or in the current one only",
    )
    parser.add_argument(
        "--history-seconds", type=float, default=1200, help="pipeline: time bound of processing the history"
    )
    parser.add_argument(
        "--alternate-batches",
        type=int,
        default=30,
        help="pipeline: batches on each tree, alternating between them, vault only (0: none)",
    )
    parser.add_argument(
        "--alternate-rounds",
        type=int,
        default=2,
        help="pipeline: rounds of --alternate-batches, each on new copies of the templates",
    )
    parser.add_argument(
        "--profile-batch",
        type=int,
        default=1000,
        help="pipeline: time the functions of one batch of this size with the history (0: none)",
    )
    parser.add_argument("--seconds", type=int, default=10, help="ingest: length of each wrk run")
    parser.add_argument("--connections", default="16,64", help="ingest: /track/async concurrencies")
    parser.add_argument("--batch-connections", default="64", help="ingest: /track/batch concurrencies")
    parser.add_argument("--ingest-repeats", type=int, default=2, help="ingest: runs of each cell")
    parser.add_argument(
        "--ingestion-only",
        action="store_true",
        help="ingest: servers with ONEVAULT_PIPELINE_BACKGROUND=false (processing elsewhere)",
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if unknown := parts - {"drop", "pipeline", "ingest"}:
        sys.exit(f"unknown parts: {', '.join(sorted(unknown))}")
    baseline_python = args.baseline_python or args.baseline / ".venv" / "bin" / "python"
    trees = {
        "old": vault.Tree("old", args.baseline, baseline_python),
        "new": vault.Tree("new", args.current, args.current_python),
    }
    commits = vault.checkouts(
        list(trees.values()),
        f"for the baseline:\n  git -C {ROOT} worktree add {DEFAULT_BASELINE} {BASELINE_COMMIT}\n"
        f"  bash {DEFAULT_BASELINE}/scripts/_venv.sh '[bench]'",
    )
    if not (trees["new"].root / "src" / "onevault" / "maintenance").is_dir():
        sys.exit(f"{trees['new'].root} has no onevault.maintenance: not the partitioned tree")

    started = time.perf_counter()
    results: dict[str, Any] = {}
    with harness.postgres() as pg:
        vault.Machine.watch(pg)
        if "drop" in parts:
            results["drop"] = part_drop(pg, trees, args)
        if "pipeline" in parts:
            results["pipeline"] = part_pipeline(pg, trees, args)
        if "ingest" in parts:
            results["ingest"] = part_ingest(pg, trees, args)
    seconds = time.perf_counter() - started

    print(f"\nPartitions: before = {commits['old']}, after = {commits['new']}")
    targets: list[Target] = []
    for part, report in (("drop", report_drop), ("pipeline", report_pipeline), ("ingest", report_ingest)):
        if part in results:
            targets += report(results[part], args)
    vault.print_other_work(
        "compare before with after, and read the cpu columns, not events/s against other runs"
    )
    print("\nTargets:")
    for name, met, detail in targets:
        print(f"  {'PASS' if met else 'FAIL'}  {name}: {detail}")
    path = harness.save(
        "partitions",
        {
            "trees": {label: {"root": str(t.root), "commit": commits[label]} for label, t in trees.items()},
            "options": {k: str(v) for k, v in vars(args).items()},
            "seconds": round(seconds),
            "other_cores": vault.OTHER_CORES,
            "targets": [{"target": name, "met": met, "detail": detail} for name, met, detail in targets],
            **results,
        },
    )
    print(f"\n{seconds / 60:.1f} min; results: {path}")


if __name__ == "__main__":
    main()
