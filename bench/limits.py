"""Physical limits measured beside the service: a bare uvicorn hello-world and bare PostgreSQL inserts."""

from __future__ import annotations

import contextlib
import json
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from bench import harness
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


def ingest_function_ceiling(url: str, rows: int = 100_000, per_call: int = 500) -> dict[str, Any]:
    """Events/s of the service's own insert statement from one connection, a commit per `per_call` events."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT util.tenant_hk(%s)", (harness.CUSTOMER_ID,)).fetchone()
        if row is None:
            raise RuntimeError("no tenant")
        tenant_hk = bytes(row[0])
        calls = [
            {
                "tenant_hks": [tenant_hk] * per_call,
                "event_ids": [f"fn-{n}" for n in range(start, start + per_call)],
                "payloads": [_payload(n) for n in range(start, start + per_call)],
                "user_agents": [None] * per_call,
                "client_ips": ["127.0.0.1"] * per_call,
                "received": [datetime.now(UTC)] * per_call,
                "record_sources": ["bench:ceiling"] * per_call,
            }
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
