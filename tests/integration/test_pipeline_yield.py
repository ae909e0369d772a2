"""Background processing yields to saturated ingestion: rests every process keeps, bounded in time."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
from prometheus_client import REGISTRY
from tests.helpers.tenants import Tenant

from onevault.config import get_settings
from onevault.db import open_pool
from onevault.ingest.writer import EventWriter, NewEvent
from onevault.pipeline.result import PipelineResult
from onevault.pipeline.runner import PipelineRunner

CUSTOMER = "one_spa"
PENDING = "SELECT count(*) FROM raw.site_tracking_events_r WHERE processing_status <> 'PROCESSED'"
RESTS = "SELECT lane, rest_until > now() AS resting FROM staging.pipeline_rest ORDER BY lane"


def count(conn: psycopg.Connection, query: str) -> int:
    row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0])


def store(conn: psycopg.Connection, n: int, received_seconds_ago: float = 0, prefix: str = "yield") -> None:
    """`n` page views of 50 visitors (so every lane has some), received that long ago."""
    conn.execute(
        """
        SELECT count(*) FROM raw.ingest_site_events(
            array_fill(util.tenant_hk(%(c)s), ARRAY[%(n)s]),
            ARRAY(SELECT %(p)s || '-' || g FROM generate_series(1, %(n)s) g ORDER BY g),
            ARRAY(SELECT jsonb_build_object('page_url', 'https://shop.example/p/' || g %% 7,
                                            'visitor_id', 'visitor-' || g %% 50)
                  FROM generate_series(1, %(n)s) g ORDER BY g),
            array_fill(NULL::text, ARRAY[%(n)s]), array_fill(NULL::inet, ARRAY[%(n)s]),
            array_fill(now() - make_interval(secs => %(ago)s), ARRAY[%(n)s]),
            array_fill('test:yield'::text, ARRAY[%(n)s]))
        """,
        {"c": CUSTOMER, "n": n, "ago": received_seconds_ago, "p": prefix},
    )


async def until(check: Callable[[], bool], seconds: float) -> bool:
    """Whether `check()` came true within `seconds`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not check():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def background(db_url: str, conn: psycopg.Connection, **runner: Any) -> tuple[int, bool]:
    """Background processing of CUSTOMER: events pending after 0.7 s; whether all were done within 20 s."""

    async def main() -> tuple[int, bool]:
        async with open_pool(db_url, get_settings()) as pool:
            pipeline = PipelineRunner(pool, batch_size=20, sweep_seconds=60, **runner)
            pipeline.start()
            pipeline.notify(CUSTOMER)
            await asyncio.sleep(0.7)
            early = count(conn, PENDING)
            done = await until(lambda: count(conn, PENDING) == 0, 20)
            await pipeline.close()
            return early, done

    return asyncio.run(main())


def test_saturated_ingestion_makes_every_lane_rest_after_its_batches(
    db_url: str, conn: psycopg.Connection, tenant: Tenant
) -> None:
    store(conn, 200)
    rested = REGISTRY.get_sample_value("onevault_pipeline_rest_seconds_total") or 0.0
    _, done = background(db_url, conn, busy=lambda: True, yield_seconds=30)
    assert done
    assert [lane for lane, _ in conn.execute(RESTS).fetchall()] == list(range(8))
    assert (REGISTRY.get_sample_value("onevault_pipeline_rest_seconds_total") or 0.0) > rested


def test_background_runs_keep_a_rest_set_elsewhere_and_requests_do_not(
    db_url: str, conn: psycopg.Connection, tenant: Tenant
) -> None:
    store(conn, 30)
    conn.execute(
        "INSERT INTO staging.pipeline_rest (tenant_hk, lane, rest_until)"
        " SELECT util.tenant_hk(%s), l, now() + interval '1.5 seconds' FROM generate_series(0, 7) l",
        [CUSTOMER],
    )
    early, done = background(db_url, conn)
    assert (early, done) == (30, True)

    conn.execute("UPDATE staging.pipeline_rest SET rest_until = now() + interval '1 minute'")
    store(conn, 5, prefix="request")

    async def request_run() -> PipelineResult:
        async with open_pool(db_url, get_settings()) as pool:
            return await PipelineRunner(pool, batch_size=20, sweep_seconds=60).process(CUSTOMER)

    assert asyncio.run(request_run()).processed == 5


def test_no_rest_once_the_oldest_due_event_has_waited_longer_than_yield_seconds(
    db_url: str, conn: psycopg.Connection, tenant: Tenant
) -> None:
    store(conn, 200, received_seconds_ago=120)
    _, done = background(db_url, conn, busy=lambda: True, yield_seconds=60)
    assert done
    assert conn.execute(RESTS).fetchall() == []


def test_writer_is_saturated_only_when_events_outrun_full_transactions(db_url: str, tenant: Tenant) -> None:
    tenant_hk = hashlib.sha256(CUSTOMER.encode()).digest()

    def event(n: int) -> NewEvent:
        return NewEvent(tenant_hk, f"w-{n}", json.dumps({"n": n}), None, None, datetime.now(UTC), "test")

    async def main() -> tuple[bool, bool]:
        async with open_pool(db_url, get_settings()) as pool:
            writer = EventWriter(pool, batch_size=10, concurrency=1, timeout=10)
            writer.start()
            await writer.write([event(0)])
            alone = writer.saturated()
            await asyncio.gather(*(writer.write([event(n)]) for n in range(1, 200)))
            burst = writer.saturated()
            await writer.close()
            return alone, burst

    assert asyncio.run(main()) == (False, True)
