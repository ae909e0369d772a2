"""Behaviour under racing duplicates and a database that goes away."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from tests.helpers.postgres import EmbeddedServer, start_embedded_server
from tests.helpers.servers import LiveServer
from tests.helpers.tenants import Tenant, make_tenant

from onevault import migrations


@pytest.fixture
def server_settings() -> dict[str, object]:
    """Generous timeouts: this module is about correctness under load, not about time limits."""
    return {"db_timeout_seconds": 10.0}


def test_200_concurrent_copies_of_one_event_store_one_row(
    live_server: LiveServer, conn: psycopg.Connection, tenant: Tenant
) -> None:
    """Racing re-sends of the same event_id are all acknowledged and stored once."""
    event = {"event_id": str(uuid.uuid4()), "page_url": "https://shop.test/cart", "event_type": "add_to_cart"}

    async def send_all() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(base_url=live_server.url, limits=limits, timeout=30) as http:
            return await asyncio.gather(
                *(http.post("/api/v1/track/async", headers=tenant.headers, json=event) for _ in range(200))
            )

    responses = asyncio.run(send_all())
    assert [r.status_code for r in responses] == [200] * 200
    assert sum(not r.json()["duplicate"] for r in responses) == 1
    assert {r.json()["event_id"] for r in responses} == {event["event_id"]}
    count = conn.execute("SELECT count(*) FROM raw.site_tracking_events_r").fetchone()
    assert count == (1,)


@pytest.fixture
def own_server() -> Iterator[EmbeddedServer]:
    """A PostgreSQL of this test's own, so it can be stopped without disturbing other tests."""
    base = Path(f"/tmp/onevault-outage-{uuid.uuid4().hex[:8]}")
    server = start_embedded_server(base)
    try:
        yield server
    finally:
        server.handle.cleanup()
        shutil.rmtree(base, ignore_errors=True)


def test_database_outage_answers_503_fast_loses_nothing_and_recovers(own_server: EmbeddedServer) -> None:
    """While PostgreSQL is down: quick 503 + Retry-After; acknowledged events survive; service recovers."""
    migrations.upgrade(own_server.url)
    with psycopg.connect(own_server.url, autocommit=True) as conn:
        tenant = make_tenant(conn, "one_spa")
    results: list[tuple[float, str, int, float, str | None]] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            while not stop.is_set():
                event_id = str(uuid.uuid4())
                started = time.monotonic()
                try:
                    response = http.post(
                        "/api/v1/track/async", headers=tenant.headers, json={"event_id": event_id}
                    )
                    status, retry_after = response.status_code, response.headers.get("retry-after")
                except httpx.HTTPError:
                    status, retry_after = 0, None
                results.append((started, event_id, status, time.monotonic() - started, retry_after))

    with LiveServer(own_server.url) as server:
        workers = [threading.Thread(target=load) for _ in range(4)]
        for worker in workers:
            worker.start()
        time.sleep(1.0)
        own_server.stop("immediate")  # a crash: nothing gets flushed politely
        down_at = time.monotonic()
        time.sleep(4.0)
        own_server.start()
        up_at = time.monotonic()
        deadline = up_at + 20
        while time.monotonic() < deadline and not any(s == 200 and t > up_at for t, _, s, _, _ in results):
            time.sleep(0.1)
        time.sleep(0.5)
        stop.set()
        for worker in workers:
            worker.join()

    during = [r for r in results if down_at + 0.1 < r[0] < up_at - 2.5]
    assert during, "no request was made while the database was down"
    assert {r[2] for r in during} == {503}
    assert all(r[4] is not None and int(r[4]) >= 1 for r in during)
    assert max(r[3] for r in during) < 2.0, "a 503 took longer than 2 seconds"
    assert any(r[2] == 200 and r[0] > up_at for r in results), "the service did not recover"
    acknowledged = {r[1] for r in results if r[2] == 200}
    with psycopg.connect(own_server.url, autocommit=True) as conn:
        stored = {row[0] for row in conn.execute("SELECT event_id FROM raw.site_tracking_events_r")}
    assert acknowledged <= stored, f"{len(acknowledged - stored)} acknowledged event(s) lost"
