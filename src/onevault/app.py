"""create_app(): the FastAPI application with its lifespan, middleware and routers."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from onevault import __version__, errors, keys, logs, maintenance, metrics, migrations
from onevault.auth.caller import FailureLimiter, TokenResolver
from onevault.bodylimit import BodyLimitMiddleware
from onevault.config import Settings, get_settings
from onevault.db import describe, open_pool, resolve_database_url, tuned_conninfo
from onevault.export import routes as export_routes
from onevault.ingest import routes as ingest_routes
from onevault.ingest.cors import CorsMiddleware
from onevault.ingest.fastpath import TrackingFastPath
from onevault.ingest.ratelimit import RateLimiter
from onevault.ingest.writer import EventWriter
from onevault.monitoring import health
from onevault.monitoring import pipeline as pipeline_routes
from onevault.pipeline import useragents
from onevault.pipeline.runner import PipelineRunner
from onevault.privacy import routes as privacy_routes
from onevault.services import Services
from onevault.stats import routes as stats_routes
from onevault.stats import source as stats_source
from onevault.web import dashboard, docs
from onevault.web import routes as web_routes

logger = logging.getLogger(__name__)
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestIdMiddleware:
    """Give every request an id (the client's `X-Request-ID` if sane), log with it, echo it back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"").decode("latin-1")
        rid = sent if _CLIENT_REQUEST_ID.fullmatch(sent) else os.urandom(16).hex()
        token = logs.request_id.set(rid)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            logs.request_id.reset(token)


def create_app(settings: Settings | None = None, database_url: str | None = None) -> FastAPI:
    """The service; `database_url` overrides the settings (used when the CLI started the database)."""
    settings = settings or get_settings()
    logs.configure(settings.log_level, settings.log_format)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = database_url
        if url is None:
            url = await asyncio.to_thread(resolve_database_url, settings)
        logger.info("Using PostgreSQL at %s", describe(url))
        key = await asyncio.to_thread(keys.secret_key, settings, tuned_conninfo(url, settings))
        session = keys.session_settings(settings, key)
        conninfo = tuned_conninfo(url, settings, session)
        applied = await asyncio.to_thread(migrations.upgrade, conninfo, None, logger.info)
        if applied:
            logger.info("Applied %d migration(s)", len(applied))
        await asyncio.to_thread(maintenance.make_partitions, conninfo)
        pool = open_pool(url, settings, session=session)
        await pool.open(wait=True, timeout=max(10.0, settings.db_timeout_seconds))
        read_pool = pool
        if settings.read_database_url:
            logger.info("Reading stats from the replica at %s", describe(settings.read_database_url))
            read_pool = open_pool(settings.read_database_url, settings, name="onevault-read")
            # Not waited for: ingestion starts whether or not the replica answers; while it does not,
            # the reads it serves are answered 503 by its own circuit breaker.
            await read_pool.open(wait=False)
        writer = EventWriter(
            pool,
            batch_size=settings.writer_batch_size,
            concurrency=settings.writer_concurrency,
            timeout=settings.db_timeout_seconds,
        )
        writer.start()
        pipeline = PipelineRunner.from_settings(pool, settings, busy=writer.saturated)
        if settings.pipeline_background:
            pipeline.start()
        else:
            logger.info("Background processing is off in this process (ONEVAULT_PIPELINE_BACKGROUND=false)")
        retention = maintenance.Retention.of(settings)
        scheduler = maintenance.Scheduler(conninfo, retention, settings.maintenance_seconds)
        scheduler.start()
        # Compiling the user-agent rules takes a moment; do it now rather than in a request.
        await asyncio.to_thread(useragents.parse, "Mozilla/5.0")
        app.state.services = Services(
            settings=settings,
            pool=pool,
            tokens=TokenResolver(
                pool,
                settings.auth_cache_seconds,
                FailureLimiter(settings.auth_failures_per_second, settings.auth_failure_burst),
            ),
            writer=writer,
            limiter=RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst),
            pipeline=pipeline,
            read_pool=read_pool,
        )
        # Long-lived start-up objects leave the collector's generations, and young collections run
        # less often: fewer pauses in the middle of requests.
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
        logger.info("OneVault Site Tracking %s ready", __version__)
        try:
            yield
        finally:
            await scheduler.close()
            await writer.close()
            await pipeline.close()
            if read_pool is not pool:
                await read_pool.close()
            await pool.close()
            metrics.process_stopped()
            logger.info("OneVault Site Tracking stopped")

    app = FastAPI(
        title="OneVault Site Tracking",
        version=__version__,
        description=(
            "Multi-tenant site event tracking. Every `/api/v1/track*` request carries `X-Customer-ID` "
            "and `Authorization: Bearer <token>`; web pages may instead send `customer_id` and a "
            "`track`-only `token` in the JSON body of the tracking routes (no headers, no preflight)."
        ),
        lifespan=lifespan,
        # /docs is served by onevault.web.docs with its files from this service, not from a CDN.
        docs_url=None,
        redoc_url=None,
        # Metrics are Prometheus's (onevault.metrics); no OpenTelemetry check on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    errors.install(app, settings)
    app.add_middleware(TrackingFastPath, routes=ingest_routes.router.routes)
    app.add_middleware(metrics.HttpMetricsMiddleware)
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(CorsMiddleware, read_origins=frozenset(settings.cors_read_origins))
    app.add_middleware(RequestIdMiddleware)
    app.include_router(health.router)
    app.include_router(ingest_routes.router)
    app.include_router(pipeline_routes.router)
    app.include_router(stats_routes.router)
    app.include_router(web_routes.router)
    app.include_router(dashboard.router)
    app.include_router(docs.router)
    app.include_router(stats_source.router)
    app.include_router(export_routes.router)
    app.include_router(privacy_routes.router)
    return app
