"""Prometheus metrics: what is counted and the HTTP timing middleware (monitoring/health.py serves them).

With several server processes (`serve --workers N`) the CLI sets `PROMETHEUS_MULTIPROC_DIR`
before the workers start, and every scrape aggregates all of them.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY as DEFAULT_REGISTRY
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    multiprocess,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from onevault.pipeline.result import PipelineResult

EVENTS_RECEIVED = Counter(
    "onevault_events_received",
    "Events received by ingestion endpoint and outcome (accepted, duplicate, rejected, not_stored)",
    ["endpoint", "outcome"],
)
EVENTS_NOT_STORED = Counter(
    "onevault_events_not_stored",
    "Events answered and not stored: the request carried a privacy signal (dnt, gpc) its customer honours",
    ["endpoint", "signal"],
)
EVENTS_PROCESSED = Counter(
    "onevault_events_processed", "Events processed into a pipeline layer (staging, business)", ["layer"]
)
EVENTS_QUARANTINED = Counter("onevault_events_quarantined", "Events quarantined by validation")
PIPELINE_ERRORS = Counter(
    "onevault_pipeline_errors", "Events whose processing failed with an error (retried)"
)
PIPELINE_RUNS = Counter("onevault_pipeline_runs", "Pipeline runs by outcome (ok, failed)", ["outcome"])
PIPELINE_REST = Counter(
    "onevault_pipeline_rest_seconds",
    "Rest this server gave background processing because its ingestion was saturated",
)
EVENTS_PENDING = Gauge(
    "onevault_events_pending",
    "Raw events waiting for processing (all tenants)",
    multiprocess_mode="mostrecent",
)
MARTS_PENDING = Gauge(
    "onevault_marts_pending",
    "Sessions loaded into the business layer whose information marts are not refreshed yet (all tenants)",
    multiprocess_mode="mostrecent",
)
PROCESSING_LATENCY = Histogram(
    "onevault_processing_latency_seconds",
    "Time from receipt (raw) to the business layer",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)
HTTP_LATENCY = Histogram(
    "onevault_http_request_duration_seconds",
    "HTTP request duration by method, route and status",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)


def record_pipeline_run(result: PipelineResult, latencies_ms: Iterable[float]) -> None:
    """Count what one pipeline batch did; `latencies_ms`: receipt to business layer of its events."""
    PIPELINE_RUNS.labels("ok").inc()
    EVENTS_PROCESSED.labels("staging").inc(result.staged)
    EVENTS_PROCESSED.labels("business").inc(result.loaded)
    EVENTS_QUARANTINED.inc(result.quarantined)
    PIPELINE_ERRORS.inc(result.errors)
    for latency_ms in latencies_ms:
        PROCESSING_LATENCY.observe(float(latency_ms) / 1000)


def process_stopped() -> None:
    """Let the multi-process collector drop this process's live gauges."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def registry() -> CollectorRegistry:
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return DEFAULT_REGISTRY


class HttpMetricsMiddleware:
    """Times every HTTP request by its route template (not its raw path, to bound cardinality)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            _latency(scope["method"], getattr(route, "path", "unmatched"), status).observe(
                time.perf_counter() - started
            )


@functools.lru_cache(maxsize=1024)
def _latency(method: str, path: str, status: int) -> Any:
    """The request-duration histogram of one method, route and status (bounded: routes are templates)."""
    return HTTP_LATENCY.labels(method, path, str(status))
