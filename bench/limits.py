"""Physical limits measured beside the service: a bare uvicorn hello-world and bare PostgreSQL inserts.

`python -m bench.limits [--events 100000]` measures the pipeline's floor alone (pipeline_floor).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from bench import data, harness, pipeline, vault
from bench.naive_baseline import ROOT
from onevault.ingest.writer import Q as INGEST

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_HELLO_BODY = b'{"success":true}'


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    """The smallest ASGI app: reads the body and answers 200 to any request."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body", False):
        pass
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(_HELLO_BODY)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": _HELLO_BODY})


@contextlib.contextmanager
def hello_server(port: int, workers: int = 2) -> Iterator[harness.Server]:
    """`hello` under uvicorn on 127.0.0.1:`port` with `workers` processes."""
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.limits:hello",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    server = harness.Server("hello", argv, port, {"PYTHONPATH": str(ROOT)})
    try:
        yield server
    finally:
        server.stop()


def _payload(n: int) -> str:
    return json.dumps(
        {
            "event_id": f"copy-{n}",
            "page_url": f"https://bench.test/p{n % 200}?utm_source=bench",
            "event_type": "page_view",
            "event_data": {"visitor_id": f"v{n % 1000}", "session_id": f"s{n % 3000}"},
        }
    )


def copy_ceiling(url: str, rows: int = 200_000) -> dict[str, Any]:
    """Events/s of one `COPY` of `rows` events into a scratch copy of the raw table (indexes included)."""
    scratch = sql.Identifier("raw", "copy_ceiling_r")
    tenant_hk = bytes.fromhex(uuid.uuid4().hex * 2)
    now = datetime.now(UTC).isoformat()
    # COPY text format: the bytea's backslash is itself escaped.
    lines = [f"\\\\x{tenant_hk.hex()}\tcopy-{n}\t{_payload(n)}\t{now}\tcopy\n".encode() for n in range(rows)]
    chunks = [b"".join(lines[i : i + 10_000]) for i in range(0, rows, 10_000)]
    with psycopg.connect(url) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(scratch))
        conn.execute(
            sql.SQL("CREATE TABLE {} (LIKE raw.site_tracking_events_r INCLUDING ALL)").format(scratch)
        )
        conn.commit()
        started = time.perf_counter()
        with conn.cursor() as cur:
            copy_sql = sql.SQL(
                "COPY {} (tenant_hk, event_id, raw_payload, received_timestamp, record_source) FROM STDIN"
            ).format(scratch)
            with cur.copy(copy_sql) as copy:
                for chunk in chunks:
                    copy.write(chunk)
        conn.commit()
        elapsed = time.perf_counter() - started
        stored = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(scratch)).fetchone()
        conn.execute(sql.SQL("DROP TABLE {}").format(scratch))
        conn.commit()
    if stored is None or stored[0] != rows:
        raise RuntimeError(f"COPY stored {stored} rows instead of {rows}")
    return {"rows": rows, "seconds": round(elapsed, 2), "events_per_s": round(rows / elapsed)}


def _ingest_params(tenant_hk: bytes, prefix: str, numbers: range, source: str) -> dict[str, Any]:
    """The parameters of the service's insert statement for events `numbers` of one tenant."""
    count = len(numbers)
    return {
        "tenant_hks": [tenant_hk] * count,
        "event_ids": [f"{prefix}-{n}" for n in numbers],
        "payloads": [_payload(n) for n in numbers],
        "user_agents": [None] * count,
        "client_ips": ["127.0.0.1"] * count,
        "received": [datetime.now(UTC)] * count,
        "record_sources": [source] * count,
    }


def ingest_function_ceiling(url: str, rows: int = 100_000, per_call: int = 500) -> dict[str, Any]:
    """Events/s of the service's own insert statement from one connection, a commit per `per_call` events."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT util.tenant_hk(%s)", (harness.CUSTOMER_ID,)).fetchone()
        if row is None:
            raise RuntimeError("no tenant")
        tenant_hk = bytes(row[0])
        calls = [
            _ingest_params(tenant_hk, "fn", range(start, start + per_call), "bench:ceiling")
            for start in range(0, rows, per_call)
        ]
        started = time.perf_counter()
        for params in calls:
            conn.execute(INGEST["ingest_events"], params).fetchall()
            conn.commit()
        elapsed = time.perf_counter() - started
    return {
        "rows": rows,
        "per_call": per_call,
        "seconds": round(elapsed, 2),
        "events_per_s": round(rows / elapsed),
    }


def one_event_commit(url: str, writes: int = 2000) -> dict[str, Any]:
    """The service's own insert statement with one event, each committed before the next, from one
    connection (what a 1-connection `/async` needs of PostgreSQL): p50/p99 ms, beside a `SELECT 1`
    round trip's p50 on the same connection."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT util.tenant_hk(%s)", (harness.CUSTOMER_ID,)).fetchone()
        if row is None:
            raise RuntimeError("no tenant")
        tenant_hk = bytes(row[0])
        commits: list[float] = []
        for n in range(writes):
            params = _ingest_params(tenant_hk, "one", range(n, n + 1), "bench:commit")
            started = time.perf_counter()
            conn.execute(INGEST["ingest_events"], params).fetchall()
            commits.append((time.perf_counter() - started) * 1000)
        trips: list[float] = []
        for _ in range(writes):
            started = time.perf_counter()
            conn.execute("SELECT 1").fetchall()
            trips.append((time.perf_counter() - started) * 1000)
    commits.sort()
    return {
        "writes": writes,
        "p50_ms": round(statistics.median(commits), 3),
        "p99_ms": round(commits[int(len(commits) * 0.99)], 3),
        "round_trip_p50_ms": round(statistics.median(trips), 3),
    }


# The layers processing writes into, in the order it writes them; the copies' schemas (with the
# tables' indexes, without any).
FLOOR_LAYERS = ("staging", "business", "mart")
FLOOR_COPIES = {"floor_indexed": "INCLUDING ALL", "floor_heap": "INCLUDING DEFAULTS"}
_FLOOR_TABLES = """
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY (%s) AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY 1, 2
"""


def _copy_layer(
    conn: psycopg.Connection[Any], tables: list[tuple[str, str]], layer: str, into: str
) -> tuple[int, float]:
    """Rows and seconds of one transaction copying `layer`'s tables into schema `into`'s copies."""
    rows = 0
    started = time.perf_counter()
    with conn.transaction():
        for schema, table in tables:
            if schema == layer:
                cur = conn.execute(
                    sql.SQL("INSERT INTO {} SELECT * FROM {}").format(
                        sql.Identifier(into, f"{schema}__{table}"), sql.Identifier(schema, table)
                    )
                )
                rows += cur.rowcount
    return rows, time.perf_counter() - started


def pipeline_floor(pg: harness.Postgres, events: int = 100_000, batch: int = 1000) -> dict[str, Any]:
    """What processing cannot go below with this data model: the rows it leaves in staging, the vault
    and the marts for `events` events, inserted into empty copies of their tables by one
    `INSERT ... SELECT` per table and a commit per layer — no parsing, lookups, joins or rollups —
    into copies with the tables' indexes, and into copies without any index (what no index design
    can go below).

    The events are processed first (two runs, marts refreshed, untimed). A lower bound: a real run
    also updates session rows again and again, marks raw rows and its queue, and writes in batches.
    Events/s per core; two runs writing in parallel could at best double it.
    """
    name = "limits_floor"
    url = harness.create_database(pg, name)
    harness.tenant_token(url)
    stream = data.EventStream(prefix="floor", seed=5)
    with psycopg.connect(url, autocommit=True) as conn:
        tenant_hk = conn.execute("SELECT util.tenant_hk(%s)", (harness.CUSTOMER_ID,)).fetchone()
        assert tenant_hk is not None
        for _ in data.load_raw(conn, bytes(tenant_hk[0]), stream, events):
            pass
    processed = vault.drain(url, harness.CUSTOMER_ID, 2, batch, time.monotonic() + 1800, lambda _: None)
    per_event = 1e6 / processed["events"]
    layers: dict[str, dict[str, Any]] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        tables = [(str(s), str(t)) for s, t in conn.execute(_FLOOR_TABLES, (list(FLOOR_LAYERS),))]
        for into, like in FLOOR_COPIES.items():
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(into)))
            for schema, table in tables:
                conn.execute(
                    sql.SQL("CREATE TABLE {} (LIKE {} {})").format(
                        sql.Identifier(into, f"{schema}__{table}"),
                        sql.Identifier(schema, table),
                        sql.SQL(like),
                    )
                )
        for layer in FLOOR_LAYERS:
            rows, indexed = _copy_layer(conn, tables, layer, "floor_indexed")
            _, heap = _copy_layer(conn, tables, layer, "floor_heap")
            layers[layer] = {
                "rows": rows,
                "us_per_event": round(indexed * per_event, 1),
                "us_per_event_no_index": round(heap * per_event, 1),
            }
    pipeline.drop(pg, name)

    def rate(key: str, names: tuple[str, ...]) -> int:
        return round(1e6 / float(sum(layers[n][key] for n in names)))

    return {
        "events": processed["events"],
        "layers": layers,
        "without_marts_events_per_s_per_core": rate("us_per_event", FLOOR_LAYERS[:2]),
        "with_marts_events_per_s_per_core": rate("us_per_event", FLOOR_LAYERS),
        "no_index_with_marts_events_per_s_per_core": rate("us_per_event_no_index", FLOOR_LAYERS),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="The pipeline's floor (bench.limits.pipeline_floor).")
    parser.add_argument(
        "--events", type=int, default=100_000, help="events processed, then their rows copied"
    )
    args = parser.parse_args()
    with harness.postgres() as pg:
        floor = pipeline_floor(pg, args.events)
    for layer, figures in floor["layers"].items():
        print(
            f"{layer:<9} {figures['rows']:>9,} rows  {figures['us_per_event']:>6} µs per event "
            f"({figures['us_per_event_no_index']} without indexes)"
        )
    print(
        f"floor per core: {floor['with_marts_events_per_s_per_core']:,} events/s with the marts, "
        f"{floor['without_marts_events_per_s_per_core']:,} without; with the marts and no index "
        f"{floor['no_index_with_marts_events_per_s_per_core']:,} ({floor['events']:,} events processed)"
    )
    harness.save("limits", floor)


if __name__ == "__main__":
    main()
