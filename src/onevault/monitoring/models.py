"""The shapes of the monitoring answers (documented in /docs and checked on the way out)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from onevault.circuit import State
from onevault.pipeline.result import PipelineResult


class PipelineStatus(BaseModel):
    """`staging.get_pipeline_status`: pending work per layer, quarantine, errors, totals, latency."""

    customer_id: str | None
    raw_events_total: int
    raw_pending: int
    raw_errors: int
    staging_pending: int
    marts_pending: int = Field(
        description="Sessions loaded whose information marts (the stats API) are not refreshed yet"
    )
    quarantined: int
    business_events_total: int
    business_events_today: int
    last_received_at: datetime | None
    last_processed_at: datetime | None
    latency_ms_avg: float | None
    latency_ms_p95: float | None
    latency_sample_size: int
    pipeline_healthy: bool


class PipelineEvent(BaseModel):
    """One event as `staging.pipeline_dashboard` shows it."""

    raw_event_id: int
    event_id: str
    raw_load_date: datetime
    raw_event_type: str
    page_url: str | None
    staging_status: str
    validation_status: str | None
    validation_reasons: list[str] | None
    business_status: str
    error_message: str | None
    processing_latency_ms: int | None


class StatusResponse(BaseModel):
    """Answer of `GET /api/v1/track/status`."""

    status: str
    pipeline_status: PipelineStatus
    recent_events: list[PipelineEvent]
    timestamp: datetime


class DashboardSummary(BaseModel):
    """Totals per pipeline stage, rates (fractions of all events) and latency (ms)."""

    total_events: int
    processed_to_staging: int
    processed_to_business: int
    quarantined: int
    errors: int
    pending: int
    latest_event: datetime | None
    processing_rate: float | None
    avg_latency_ms: float | None
    p95_latency_ms: float | None
    error_rate: float | None


class DashboardResponse(BaseModel):
    """Answer of `GET /api/v1/track/dashboard`."""

    status: str
    summary: DashboardSummary
    events: list[PipelineEvent]
    timestamp: datetime


class TriggerCounts(BaseModel):
    """What `staging.trigger_pipeline_now` did."""

    total_processed: int
    raw_to_staging_count: int
    staging_to_business_count: int
    total_success_count: int
    total_error_count: int
    quarantined_count: int
    processing_summary: str


class TriggerResult(BaseModel):
    """`staging.trigger_pipeline_now`'s result."""

    triggered_at: datetime
    results: TriggerCounts

    @classmethod
    def of(cls, result: PipelineResult) -> TriggerResult:
        """The runner's result in the shape `staging.trigger_pipeline_now` answers (SPEC §5)."""
        return cls(
            triggered_at=result.started_at,
            results=TriggerCounts(
                total_processed=result.processed,
                raw_to_staging_count=result.staged,
                staging_to_business_count=result.loaded,
                total_success_count=result.succeeded,
                total_error_count=result.errors,
                quarantined_count=result.quarantined,
                processing_summary=result.summary(),
            ),
        )


class ProcessResponse(BaseModel):
    """Answer of `POST /api/v1/track/process`."""

    status: str
    message: str
    result: TriggerResult
    timestamp: datetime


class Health(BaseModel):
    """Answer of `GET /health`."""

    status: Literal["healthy"]
    service: str
    version: str
    timestamp: datetime


class HealthDetailed(BaseModel):
    """Answer of `GET /health/detailed` (200 when healthy, 503 when PostgreSQL does not answer)."""

    status: Literal["healthy", "unhealthy"]
    service: str
    version: str
    timestamp: datetime
    pool: dict[str, int]
    database: dict[str, Any] = Field(
        description="`status`, and latency, versions, backlog and the last day raw has a partition for "
        "(`raw_partitions_through`) when connected"
    )
    circuit: State = Field(description="The breaker in front of the pool: `open` while PostgreSQL is away")
    read_replica: dict[str, Any] | None = Field(
        default=None,
        description="With ONEVAULT_READ_DATABASE_URL: `status` (`connected`, with `replica` and "
        "`lag_seconds` as /api/v1/stats/source, or `unavailable` with `error`) and its `circuit`; "
        "its state does not change `status`",
    )


class DatabaseObjects(BaseModel):
    """Answer of `GET /health/db`: each named function and view, available or missing."""

    status: Literal["healthy", "unhealthy"]
    database: str
    objects: dict[str, Literal["available", "missing"]]
    timestamp: datetime
    detail: str | None = Field(default=None, description="What is missing and how to install it")
