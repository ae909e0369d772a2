"""`GET /health`, `GET /health/detailed` and `GET /metrics`."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any

import psycopg
from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from psycopg.rows import dict_row
from psycopg_pool import PoolTimeout

from onevault import __version__, metrics, sqlfile
from onevault.errors import ErrorResponse, responses
from onevault.monitoring.models import Health, HealthDetailed
from onevault.services import Services, ServicesDep
from onevault.stats.source import read_source

logger = logging.getLogger(__name__)
router = APIRouter(tags=["health"])
Q = sqlfile.load(__package__, "queries.sql")
SERVICE_NAME = "onevault-site-tracking"


def _now() -> str:
    return datetime.now(UTC).isoformat()


@router.get(
    "/health",
    summary="Liveness (does not touch the database)",
    response_model=Health,
    responses=responses({}),
)
async def health() -> dict[str, str]:
    """The process is up and serving."""
    return {"status": "healthy", "service": SERVICE_NAME, "version": __version__, "timestamp": _now()}


async def _probe(services: Services) -> dict[str, Any]:
    started = time.perf_counter()
    async with services.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(Q["server_info"])
        info = await cur.fetchone()
        await cur.execute(Q["backlog"])
        backlog = await cur.fetchone()
    return {
        "status": "connected",
        "latency_ms": round((time.perf_counter() - started) * 1000, 2),
        "server_version": info["server_version"] if info else None,
        "schema_version": info["schema_version"] if info else None,
        "raw_partitions_through": str(info["partitions_through"])
        if info and info["partitions_through"]
        else None,
        "backlog": backlog,
    }


@router.get(
    "/health/detailed",
    summary="Readiness: database connectivity, pool and backlog",
    response_model=HealthDetailed,
    responses=responses({503: "The database is unreachable"}, bodies={503: HealthDetailed | ErrorResponse}),
)
async def health_detailed(services: ServicesDep) -> JSONResponse:
    """Service health including the database; 503 when PostgreSQL does not answer."""
    stats = services.pool.get_stats()
    pool = {
        k: stats.get(k, 0)
        for k in ("pool_min", "pool_max", "pool_size", "pool_available", "requests_waiting")
    }
    body: dict[str, Any] = {
        "service": SERVICE_NAME,
        "version": __version__,
        "timestamp": _now(),
        "pool": pool,
    }
    try:
        database = await asyncio.wait_for(_probe(services), timeout=services.settings.db_timeout_seconds)
    except (psycopg.OperationalError, PoolTimeout, TimeoutError) as exc:
        # While the circuit is open this is answered at once, without trying PostgreSQL.
        status = "unreachable" if services.pool.circuit.state != "closed" else "unavailable"
        body |= {
            "status": "unhealthy",
            "database": {"status": status, "error": type(exc).__name__},
            "circuit": services.pool.circuit.state,
        }
        headers = {"Retry-After": str(services.settings.retry_after_seconds)}
        return JSONResponse(body, status_code=503, headers=headers)
    body |= {"status": "healthy", "database": database, "circuit": services.pool.circuit.state}
    if services.read_pool is not services.pool:
        body["read_replica"] = await _probe_replica(services)
    return JSONResponse(body)


async def _probe_replica(services: Services) -> dict[str, Any]:
    """The read replica (ONEVAULT_READ_DATABASE_URL): connected with its lag, or why not. Its absence
    leaves the service healthy: ingestion and processing do not need it."""
    try:
        source = await asyncio.wait_for(read_source(services), timeout=services.settings.db_timeout_seconds)
        found = {"status": "connected"} | source
    except (psycopg.OperationalError, PoolTimeout, TimeoutError) as exc:
        found = {"status": "unavailable", "error": type(exc).__name__}
    return found | {"circuit": services.read_pool.circuit.state}


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses=responses({}, success={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}}),
)
async def prometheus_metrics(services: ServicesDep) -> Response:
    """Counters, gauges and histograms in the Prometheus text format."""
    try:
        async with services.pool.connection() as conn:
            cur = await conn.execute(Q["backlog"])
            row = await cur.fetchone()
        if row is not None:
            metrics.EVENTS_PENDING.set(row[0])
            metrics.MARTS_PENDING.set(row[2])
    except psycopg.Error as exc:  # metrics must be served even while the database is away
        logger.warning("❌ Could not read the backlog for /metrics: %s", type(exc).__name__)
    return Response(generate_latest(metrics.registry()), media_type=CONTENT_TYPE_LATEST)
