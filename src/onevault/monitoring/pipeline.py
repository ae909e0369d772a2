"""`/api/v1/track/status`, `/api/v1/track/dashboard`, `/api/v1/track/process` and `/health/db`."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from psycopg.rows import dict_row

from onevault import sqlfile
from onevault.auth.caller import OPENAPI_READ_AUTH, Caller, require
from onevault.errors import ApiError, ErrorResponse, responses
from onevault.monitoring.models import (
    DashboardResponse,
    DatabaseObjects,
    ProcessResponse,
    StatusResponse,
    TriggerResult,
)
from onevault.pipeline.runner import AutomationMissing, ProcessingFailed
from onevault.services import Services, ServicesDep

logger = logging.getLogger(__name__)
Q = sqlfile.load(__package__, "queries.sql")
router = APIRouter(tags=["monitoring"])
ReadCaller = Annotated[Caller, Depends(require("read"))]
ProcessCaller = Annotated[Caller, Depends(require("process"))]

AUTOMATION_OBJECTS = (
    "api.track_site_event",
    "staging.auto_process_if_needed",
    "staging.trigger_pipeline_now",
    "staging.get_pipeline_status",
    "staging.pipeline_dashboard",
)
_AUTH_ERRORS = {
    400: "Missing or invalid X-Customer-ID",
    401: "Missing, malformed, unknown, revoked or expired token",
    403: "Token of another customer, disabled customer, or without the required scope",
    429: "Too many failed authentications from this address; see Retry-After",
    503: "Database unavailable, automation layer not installed, or processing failed",
}
_READ_ANSWERS = responses(_AUTH_ERRORS)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _missing_layer() -> ApiError:
    return ApiError(503, "the pipeline automation layer is not installed: run `onevault db upgrade`")


async def _rows(services: Services, name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    try:
        async with services.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(Q[name], params)
            return await cur.fetchall()
    except (psycopg.errors.UndefinedFunction, psycopg.errors.UndefinedTable):
        raise _missing_layer() from None


@router.get(
    "/api/v1/track/status",
    response_model=StatusResponse,
    responses=_READ_ANSWERS,
    openapi_extra=OPENAPI_READ_AUTH,
    summary="Pipeline status of the caller's events",
)
async def status(caller: ReadCaller, services: ServicesDep) -> dict[str, Any]:
    """Pending work per layer, quarantine, errors, totals and latency, and the last 10 events."""
    params = {"customer_id": caller.customer_id, "limit": 10}
    pipeline_status = (await _rows(services, "pipeline_status", params))[0]["get_pipeline_status"]
    recent = await _rows(services, "recent_events", params)
    return {
        "status": "success",
        "pipeline_status": pipeline_status,
        "recent_events": recent,
        "timestamp": _now(),
    }


@router.get(
    "/api/v1/track/dashboard",
    response_model=DashboardResponse,
    responses=responses(_AUTH_ERRORS | {422: "`limit` out of range or not an integer"}),
    openapi_extra=OPENAPI_READ_AUTH,
    summary="Dashboard data of the caller's events",
)
async def dashboard(
    caller: ReadCaller,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="How many recent events to list")] = 20,
) -> dict[str, Any]:
    """Summary statistics and the most recent events with their pipeline status."""
    params = {"customer_id": caller.customer_id, "limit": limit}
    state = (await _rows(services, "pipeline_status", params))[0]["get_pipeline_status"]
    total = state["raw_events_total"]
    summary = {
        "total_events": total,
        "processed_to_staging": total - state["raw_pending"] - state["raw_errors"] - state["quarantined"],
        "processed_to_business": state["business_events_total"],
        "quarantined": state["quarantined"],
        "errors": state["raw_errors"],
        "pending": state["raw_pending"],
        "latest_event": state["last_received_at"],
        "processing_rate": round(state["business_events_total"] / total, 4) if total else None,
        "avg_latency_ms": state["latency_ms_avg"],
        "p95_latency_ms": state["latency_ms_p95"],
        "error_rate": round(state["raw_errors"] / total, 4) if total else None,
    }
    events = await _rows(services, "recent_events", params)
    return {"status": "success", "summary": summary, "events": events, "timestamp": _now()}


@router.post(
    "/api/v1/track/process",
    response_model=ProcessResponse,
    responses=_READ_ANSWERS,
    openapi_extra=OPENAPI_READ_AUTH,
    summary="Process the caller's pending events now",
)
async def process(caller: ProcessCaller, services: ServicesDep) -> ProcessResponse:
    """Process every due event of the caller, batch after batch, and report what was done."""
    logger.info("🔄 Triggering automatic site tracking processing...")
    try:
        result = await services.pipeline.process(caller.customer_id, until_done=True)
    except AutomationMissing:
        raise _missing_layer() from None
    except ProcessingFailed as exc:
        logger.warning("⚠️ Site tracking processing failed (non-critical): %s", {"error": str(exc)})
        raise ApiError(
            503,
            "processing failed; the events stay queued: retry later",
            headers={"Retry-After": str(services.settings.retry_after_seconds)},
        ) from None
    logger.info("✅ Processing result: %s", result.counts())
    return ProcessResponse(
        status="success",
        message=result.summary(),
        result=TriggerResult.of(result),
        timestamp=datetime.now(UTC),
    )


@router.get(
    "/health/db",
    tags=["health"],
    summary="Availability of the pipeline's named functions and view",
    response_model=DatabaseObjects,
    responses=responses(
        {503: "Named objects missing (their list), or the database down"},
        bodies={503: DatabaseObjects | ErrorResponse},
    ),
)
async def health_db(services: ServicesDep) -> JSONResponse:
    """Each named function and the dashboard view: available or missing (503 if any is missing)."""
    async with services.pool.connection() as conn:
        cur = await conn.execute(Q["automation_objects"])
        present = {row[0] for row in await cur.fetchall()}
    objects = {name: "available" if name in present else "missing" for name in AUTOMATION_OBJECTS}
    missing = [name for name, state in objects.items() if state == "missing"]
    body = {
        "status": "unhealthy" if missing else "healthy",
        "database": "connected",
        "objects": objects,
        "timestamp": _now(),
    }
    if missing:
        body["detail"] = f"missing: {', '.join(missing)}; run `onevault db upgrade`"
        return JSONResponse(body, status_code=503)
    return JSONResponse(body)
