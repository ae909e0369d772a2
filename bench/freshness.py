"""Freshness: events sent to `/api/v1/track/async` at a constant rate; time until each is in business.

`python -m bench.freshness [--rate 1000] [--seconds 30]`

Request i is sent at t0 + i/rate whatever the answers (open loop, up to `--connections`
keep-alive connections in flight) by a lean HTTP/1.1 client on raw asyncio streams, so the
client is not the bottleneck (its CPU use and lag behind schedule are reported). Every second
the backlog (raw events not PROCESSED) is sampled. Freshness of an event is
staging.business_loaded_at - raw.received_timestamp, both taken by the database server's clock;
received_timestamp is taken before the 200 is sent, so this bounds "200 → business" from above.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import statistics
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg

from bench import data, harness

CUSTOMER = harness.CUSTOMER_ID
TARGET_P95_MS = 1000
BACKLOG = "SELECT pending + errors FROM raw.queue_counts()"
FRESHNESS = """
SELECT count(*) AS loaded,
       percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY f) AS p,
       max(f) AS max
FROM (SELECT (extract(epoch FROM s.business_loaded_at - r.received_timestamp) * 1000)::float8 AS f
      FROM raw.site_tracking_events_r r
      JOIN staging.site_tracking_events_s s ON s.raw_event_id = r.raw_event_id
      WHERE r.tenant_hk = util.tenant_hk(%(customer_id)s) AND s.business_loaded_at IS NOT NULL) x
"""
FRESHNESS_PER_SECOND = """
SELECT floor(extract(epoch FROM x.received - %(t0)s))::int AS second, count(*) AS events,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY x.f) AS p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY x.f) AS p95
FROM (SELECT r.received_timestamp AS received,
             (extract(epoch FROM s.business_loaded_at - r.received_timestamp) * 1000)::float8 AS f
      FROM raw.site_tracking_events_r r
      JOIN staging.site_tracking_events_s s ON s.raw_event_id = r.raw_event_id
      WHERE r.tenant_hk = util.tenant_hk(%(customer_id)s) AND s.business_loaded_at IS NOT NULL) x
GROUP BY 1 ORDER BY 1
"""
STATES = """
SELECT count(*) AS raw_rows,
       count(*) FILTER (WHERE s.validation_status = 'INVALID') AS quarantined,
       count(*) FILTER (WHERE s.business_loaded_at IS NOT NULL) AS loaded,
       count(*) FILTER (WHERE r.processing_status = 'ERROR') AS errors
FROM raw.site_tracking_events_r r
LEFT JOIN staging.site_tracking_events_s s ON s.raw_event_id = r.raw_event_id
WHERE r.tenant_hk = util.tenant_hk(%(customer_id)s)
"""


@dataclass
class Sent:
    """What happened to each scheduled request (times from time.perf_counter)."""

    scheduled: list[float]
    sent: list[float] = field(default_factory=list)
    done: list[float] = field(default_factory=list)
    status: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.scheduled)
        self.sent, self.done, self.status = [0.0] * n, [0.0] * n, [0] * n


def requests(port: int, token: str, n: int) -> list[bytes]:
    """`n` ready-to-send HTTP/1.1 requests, each a distinct realistic event."""
    stream = data.EventStream(prefix=f"fresh-{uuid.uuid4().hex[:8]}")
    now = datetime.now(UTC)
    out = []
    for _ in range(n):
        _, payload, agent = stream.next(now)
        body = json.dumps(payload, separators=(",", ":")).encode()
        head = (
            f"POST /api/v1/track/async HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Customer-ID: {CUSTOMER}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\nUser-Agent: {agent}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        out.append(head.encode() + body)
    return out


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


async def send_all(port: int, payloads: list[bytes], rate: float, connections: int, t0: float) -> Sent:
    """Send request i at t0 + i/rate on a pool of keep-alive connections opened before t0."""
    queue: asyncio.Queue[int | None] = asyncio.Queue()
    streams = [await asyncio.open_connection("127.0.0.1", port) for _ in range(connections)]
    for _, writer in streams:
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    outcome = Sent([t0 + i / rate for i in range(len(payloads))])

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (i := await queue.get()) is not None:
            outcome.sent[i] = time.perf_counter()
            try:
                writer.write(payloads[i])
                outcome.status[i] = await _read_response(reader)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                outcome.status[i] = -1
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            outcome.done[i] = time.perf_counter()
        writer.close()

    workers = [asyncio.create_task(connection(r, w)) for r, w in streams]
    for i, at in enumerate(outcome.scheduled):
        delay = at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait(i)
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    return outcome


async def sample_backlog(
    url: str, t0: float, sent: asyncio.Event, drained: asyncio.Event, series: list[tuple[float, int]]
) -> None:
    """Every second after t0, the number of raw events not yet processed; until cancelled.

    Sets `drained` at the first empty backlog after `sent` is set.
    """
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        k = 0
        while True:
            k += 1
            await asyncio.sleep(max(t0 + k - time.perf_counter(), 0))
            cur = await conn.execute(BACKLOG)
            row = await cur.fetchone()
            backlog = int(row[0]) if row else 0
            series.append((round(time.perf_counter() - t0, 1), backlog))
            if sent.is_set() and backlog == 0:
                drained.set()


async def run(
    url: str, port: int, token: str, rate: float, seconds: float, connections: int, drain_seconds: float
) -> dict[str, Any]:
    """Send, sample, drain, and measure; the results."""
    n = int(rate * seconds)
    payloads = requests(port, token, n)
    series: list[tuple[float, int]] = []
    sent, drained = asyncio.Event(), asyncio.Event()
    cpu = time.process_time()
    wall = time.perf_counter()
    db_t0 = await _db_now(url)
    t0 = time.perf_counter() + 1.0
    sampler = asyncio.create_task(sample_backlog(url, t0, sent, drained, series))
    outcome = await send_all(port, payloads, rate, connections, t0)
    sending_seconds = time.perf_counter() - t0
    client_cpu = (time.process_time() - cpu) / (time.perf_counter() - wall)
    sent.set()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(drained.wait(), timeout=drain_seconds)
    sampler.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sampler
    return {
        "outcome": outcome,
        "t0": t0,
        "db_t0": db_t0,
        "series": series,
        "drained": drained.is_set(),
        "sending_seconds": sending_seconds,
        "client_cpu": client_cpu,
    }


async def _db_now(url: str) -> datetime:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute("SELECT clock_timestamp()")
        row = await cur.fetchone()
    assert row is not None
    value: datetime = row[0]
    return value


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def _slope(points: list[tuple[float, int]]) -> float:
    """Least-squares growth of the backlog in events per second."""
    if len(points) < 2:
        return 0.0
    xs, ys = [p[0] for p in points], [float(p[1]) for p in points]
    mx, my = statistics.mean(xs), statistics.mean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def measure(
    url: str,
    port: int,
    token: str,
    rate: float,
    seconds: float,
    connections: int = 128,
    drain_seconds: float = 60,
) -> dict[str, Any]:
    """Send `rate` events/s for `seconds` to the server on `port` (database `url`), wait for the
    backlog to drain, and measure freshness; the results."""
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    result = asyncio.run(run(url, port, token, rate, seconds, connections, drain_seconds))
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(FRESHNESS, {"customer_id": CUSTOMER}).fetchone()
        per_second = conn.execute(
            FRESHNESS_PER_SECOND, {"customer_id": CUSTOMER, "t0": result["db_t0"]}
        ).fetchall()
        states = conn.execute(STATES, {"customer_id": CUSTOMER}).fetchone()
    assert row is not None and states is not None

    outcome: Sent = result["outcome"]
    n = len(outcome.scheduled)
    ok = [i for i in range(n) if outcome.status[i] == 200]
    lag_ms = [(outcome.sent[i] - outcome.scheduled[i]) * 1000 for i in range(n)]
    latency_ms = [(outcome.done[i] - outcome.sent[i]) * 1000 for i in ok]
    from_schedule_ms = [(outcome.done[i] - outcome.scheduled[i]) * 1000 for i in ok]
    last_done = max(outcome.done) - result["t0"] if n else 0.0
    series: list[tuple[float, int]] = result["series"]
    during = [p for p in series if p[0] <= seconds]
    last10 = [p for p in during if p[0] > seconds - 10]
    slope = _slope(last10)
    p50, p95, p99 = row[1] or [None, None, None]
    client = {
        "target_rate": rate,
        "achieved_rate": round(len(ok) / last_done, 1) if last_done else 0,
        "requests": n,
        "ok": len(ok),
        "errors": n - len(ok),
        "error_statuses": {str(k): v for k, v in Counter(s for s in outcome.status if s != 200).items()},
        "lag_ms_p50": round(_pct(lag_ms, 0.5), 2),
        "lag_ms_p99": round(_pct(lag_ms, 0.99), 2),
        "lag_ms_max": round(max(lag_ms, default=0.0), 2),
        "latency_ms_p50": round(_pct(latency_ms, 0.5), 2),
        "latency_ms_p99": round(_pct(latency_ms, 0.99), 2),
        "from_schedule_ms_p99": round(_pct(from_schedule_ms, 0.99), 2),
        "client_cpu_share": round(result["client_cpu"], 3),
    }
    # The rate was held if nearly every request went out on time (a free connection was there).
    client["kept_up"] = client["achieved_rate"] >= 0.97 * rate and client["lag_ms_p99"] <= 100
    fresh = {
        "events_loaded": row[0],
        "p50_ms": round(p50, 1) if p50 is not None else None,
        "p95_ms": round(p95, 1) if p95 is not None else None,
        "p99_ms": round(p99, 1) if p99 is not None else None,
        "max_ms": round(row[2], 1) if row[2] is not None else None,
    }
    checks = {
        "raw_rows": states[0],
        "raw_rows_equal_200s": states[0] == len(ok),
        "quarantined": states[1],
        "loaded": states[2],
        "errors": states[3],
        "all_drained": result["drained"],
    }
    backlog = {
        "max": max((b for _, b in during), default=0),
        "mean": round(statistics.mean([b for _, b in during]), 1) if during else 0,
        "last10_slope_per_s": round(slope, 1),
        "flat": slope <= 0.05 * rate,
        "series": [b for _, b in series],
    }
    return {
        "rate": rate,
        "seconds": seconds,
        "connections": connections,
        "client": client,
        "freshness_ms": fresh,
        "checks": checks,
        "backlog": backlog,
        "per_second": [{"second": r[0], "events": r[1], "p50_ms": r[2], "p95_ms": r[3]} for r in per_second],
    }


def main() -> None:
    """Run the freshness benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000, help="events per second")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--connections", type=int, default=128, help="client connections (max in flight)")
    parser.add_argument(
        "--drain-seconds", type=float, default=60, help="how long to wait for the backlog after"
    )
    parser.add_argument("--batch-size", type=int, help="ONEVAULT_PIPELINE_BATCH_SIZE for the server")
    args = parser.parse_args()

    env = {"ONEVAULT_PIPELINE_BATCH_SIZE": str(args.batch_size)} if args.batch_size else {}
    with harness.postgres() as pg:
        url = harness.create_database(pg, "freshness")
        token = harness.tenant_token(url)
        port = harness.free_port()
        with harness.onevault(url, port, **env) as server, harness.peak_rss(server) as rss:
            result = measure(url, port, token, args.rate, args.seconds, args.connections, args.drain_seconds)
    client, fresh, checks, backlog = (result[k] for k in ("client", "freshness_ms", "checks", "backlog"))
    print(f"\nFreshness: {args.rate:,.0f} events/s to /api/v1/track/async for {args.seconds:.0f} s")
    print(harness.table([client], list(client)))
    if not client["kept_up"]:
        print(
            "  ! the target rate was not held: requests waited for a free connection (lag) because the server"
            " answered too slowly for --connections in flight; the figures below are at the achieved rate"
        )
    print()
    print(harness.table([fresh | {"target_p95_ms": TARGET_P95_MS}], [*fresh, "target_p95_ms"]))
    print()
    print(harness.table([checks], list(checks)))
    print(
        f"\nBacklog (raw not PROCESSED) every second: max {backlog['max']}, mean {backlog['mean']}, "
        f"slope over the last 10 s {backlog['last10_slope_per_s']} events/s → flat: {backlog['flat']}"
    )
    print("  " + " ".join(str(b) for b in backlog["series"]))
    met = (
        client["kept_up"]
        and backlog["flat"]
        and fresh["p95_ms"] is not None
        and fresh["p95_ms"] <= TARGET_P95_MS
    )
    print(f"Target (rate held, p95 ≤ {TARGET_P95_MS} ms, backlog flat): {'met' if met else 'NOT met'}")
    p95_series = [round(r["p95_ms"]) for r in result["per_second"]]
    print(f"p95 freshness (ms) by second of receipt:\n  {' '.join(str(v) for v in p95_series)}")
    print(f"server peak RSS (MB): {', '.join(f'{v:.0f}' for v in rss.values())}")
    path = harness.save("freshness", result | {"server_peak_rss_mb": rss})
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
