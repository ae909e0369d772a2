"""Read scale-out against a real streaming replica: stats read from the standby, events on the primary.

The primary and the standby are the embedded package's own PostgreSQL, the standby made with
`pg_basebackup -R -X stream` (tests/helpers/replica.py), as docs/operations.md tells operators.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from pydantic import ValidationError
from tests.helpers.replica import ReplicaPair, ReplicatedDatabase, socket_url, wait_until
from tests.helpers.servers import LiveServer
from tests.helpers.tenants import Tenant, make_tenant

from onevault.config import Settings
from onevault.services import ServicesDep

SOURCE = "/api/v1/stats/source"
# A route added to the app under test: which server a read on `services.read_pool` runs on.
READ_POOL_PROBE = "/test/read-pool"


def _with_read_pool_probe(server: LiveServer) -> LiveServer:
    """`server`, whose app also answers READ_POOL_PROBE (added before it starts)."""
    app = server.server.config.app
    assert isinstance(app, FastAPI)

    @app.get(READ_POOL_PROBE)
    async def read_pool_probe(services: ServicesDep) -> dict[str, Any]:
        async with services.read_pool.connection() as conn:
            cur = await conn.execute("SELECT pg_is_in_recovery(), current_setting('port')::int")
            in_recovery, port = await cur.fetchone()  # type: ignore[misc]
        return {"in_recovery": in_recovery, "port": port, "same_pool": services.read_pool is services.pool}

    return server


@pytest.mark.parametrize("url", ["mysql://db/onevault", "replica-host:5432", ""])
def test_the_read_url_must_be_a_postgresql_url(url: str) -> None:
    """A read URL that is not postgresql:// is refused when the settings are read, as the primary's is."""
    with pytest.raises(ValidationError, match="postgresql://"):
        Settings(read_database_url=url)


def _tenant(db: ReplicatedDatabase) -> Tenant:
    with psycopg.connect(db.primary_url, autocommit=True) as conn:
        return make_tenant(conn, f"replica_{uuid.uuid4().hex[:8]}")


def _source(http: httpx.Client, tenant: Tenant) -> dict[str, Any]:
    response = http.get(SOURCE, headers=tenant.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_stats_are_read_from_the_standby_with_its_lag(
    replica_pair: ReplicaPair, replicated_db: ReplicatedDatabase
) -> None:
    """With ONEVAULT_READ_DATABASE_URL the source is the replica, its lag a number that reaches 0."""
    tenant = _tenant(replicated_db)
    server = LiveServer(replicated_db.primary_url, read_database_url=replicated_db.standby_url)
    with _with_read_pool_probe(server), httpx.Client(base_url=server.url, timeout=30) as http:
        body = _source(http, tenant)
        assert body["replica"] is True
        assert isinstance(body["lag_seconds"], float) and body["lag_seconds"] >= 0
        assert datetime.fromisoformat(body["timestamp"]).tzinfo is not None
        # Streaming and idle, the standby has replayed everything the primary sent.
        wait_until(lambda: _source(http, tenant)["lag_seconds"] == 0, "a lag of 0 on an idle primary")

        probe = http.get(READ_POOL_PROBE).json()
        assert probe == {"in_recovery": True, "port": 5433, "same_pool": False}
        health = http.get("/health/detailed").json()
        assert health["status"] == "healthy"
        assert health["read_replica"] == {
            "status": "connected",
            "replica": True,
            "lag_seconds": 0,
            "circuit": "closed",
        }


def test_events_tracked_through_the_app_reach_the_standby(replicated_db: ReplicatedDatabase) -> None:
    """Ingestion writes to the primary; what it writes, and what the pipeline derives, is replayed."""
    tenant = _tenant(replicated_db)
    server = LiveServer(replicated_db.primary_url, read_database_url=replicated_db.standby_url)
    with server, httpx.Client(base_url=server.url, timeout=30) as http:
        response = http.post("/api/v1/track", headers=tenant.headers, json={"page_url": "https://r.test/a"})
        assert response.status_code == 200, response.text
        assert response.json()["pipeline"] == {"status": "complete"}
        event_id = response.json()["event_id"]

    def replicated() -> bool:
        with psycopg.connect(replicated_db.standby_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM raw.site_tracking_events_r WHERE event_id = %(id)s),"
                " (SELECT count(*) FROM business.site_event_h WHERE site_event_bk = %(id)s)",
                {"id": event_id},
            ).fetchone()
        return row == (1, 1)

    wait_until(replicated, "the tracked event and its business hub on the standby")


def test_without_a_read_url_stats_are_read_from_the_primary(replicated_db: ReplicatedDatabase) -> None:
    """ONEVAULT_READ_DATABASE_URL unset: the read pool is the primary pool, and the source says so."""
    tenant = _tenant(replicated_db)
    server = LiveServer(replicated_db.primary_url)
    with _with_read_pool_probe(server), httpx.Client(base_url=server.url, timeout=30) as http:
        body = _source(http, tenant)
        assert (body["replica"], body["lag_seconds"]) == (False, None)
        probe = http.get(READ_POOL_PROBE).json()
        assert probe == {"in_recovery": False, "port": 5432, "same_pool": True}
        assert "read_replica" not in http.get("/health/detailed").json()


def test_a_standby_down_fails_the_stats_but_not_ingestion(
    replica_pair: ReplicaPair, replicated_db: ReplicatedDatabase
) -> None:
    """Stats answer 503 with Retry-After while the standby is down, events are still stored; back after."""
    tenant = _tenant(replicated_db)
    server = LiveServer(replicated_db.primary_url, read_database_url=replicated_db.standby_url)
    with server, httpx.Client(base_url=server.url, timeout=30) as http:
        assert _source(http, tenant)["replica"] is True
        replica_pair.stop_standby()
        try:
            for _ in range(3):  # a pooled connection found broken, then the open circuit
                down = http.get(SOURCE, headers=tenant.headers)
                assert down.status_code == 503, down.text
                assert down.headers["retry-after"] == "2"
            tracked = http.post("/api/v1/track", headers=tenant.headers, json={"page_url": "https://r.test/"})
            assert tracked.status_code == 200, tracked.text
            assert tracked.json()["pipeline"] == {"status": "complete"}
            health = http.get("/health/detailed")
            assert health.status_code == 200 and health.json()["status"] == "healthy"
            assert health.json()["read_replica"]["status"] == "unavailable"
        finally:
            replica_pair.start_standby()
        wait_until(lambda: http.get(SOURCE, headers=tenant.headers).status_code == 200, "stats back")
    query = "SELECT count(*) FROM raw.site_tracking_events_r WHERE event_id = %s"
    with psycopg.connect(replicated_db.primary_url, autocommit=True) as conn:
        stored = conn.execute(query, (tracked.json()["event_id"],)).fetchone()
    assert stored == (1,)


def test_a_replica_unreachable_from_the_start_does_not_stop_the_service(
    replica_pair: ReplicaPair, replicated_db: ReplicatedDatabase
) -> None:
    """The service starts with a read URL nothing answers at: ingestion works, stats are 503."""
    tenant = _tenant(replicated_db)
    nowhere = socket_url(replica_pair.directory, 5439, "onevault")
    server = LiveServer(replicated_db.primary_url, read_database_url=nowhere)
    with server, httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.get(SOURCE, headers=tenant.headers).status_code == 503
        tracked = http.post(
            "/api/v1/track/async", headers=tenant.headers, json={"page_url": "https://r.test/"}
        )
        assert tracked.status_code == 200, tracked.text
