"""The wire format of events and of ingestion answers."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from onevault.errors import format_validation_errors

EVENT_TYPE_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
# jsonb cannot hold U+0000; an escaped NUL in the serialised event is refused at the door.
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


class TrackEvent(BaseModel):
    """One event. Unknown fields are stored verbatim; no text in it (keys too) may hold U+0000."""

    model_config = ConfigDict(extra="allow", strict=True)

    # Never None once validated: null counts as absent, as in the pipeline.
    event_type: str | None = Field(
        default="page_view",
        pattern=EVENT_TYPE_PATTERN,
        examples=["page_view"],
        description="What happened; null or absent: `page_view`",
    )
    page_url: str | None = Field(default=None, examples=["https://example.com/pricing?utm_source=news"])
    event_data: dict[str, Any] | None = Field(default=None, description="Free-form properties")
    event_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="Idempotency key per tenant (UUID recommended)",
    )
    session_id: str | None = Field(default=None, min_length=1, max_length=256)
    visitor_id: str | None = Field(default=None, min_length=1, max_length=256)
    user_id: str | None = Field(default=None, min_length=1, max_length=256)
    timestamp: str | int | float | Decimal | None = Field(
        default=None, description="Client time of the event: ISO 8601 or epoch milliseconds"
    )
    sent_at: str | int | float | Decimal | None = Field(
        default=None, description="Client send time, for clock skew"
    )
    referrer: str | None = None
    page_title: str | None = None

    @field_validator("event_type", mode="before")
    @classmethod
    def _default_type(cls, value: object) -> object:
        return "page_view" if value is None else value


class InvalidEvent(ValueError):
    """An event that fails validation, with a readable summary and the individual errors."""

    def __init__(self, summary: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(summary)
        self.summary = summary
        self.errors = errors


def validate_event(obj: object) -> TrackEvent:
    """Check one decoded event; raise InvalidEvent with the reasons."""
    if not isinstance(obj, dict):
        raise InvalidEvent("event must be a JSON object", [])
    try:
        return TrackEvent.model_validate(obj)
    except ValidationError as exc:
        summary, errors = format_validation_errors(list(exc.errors(include_url=False, include_input=False)))
        raise InvalidEvent(summary, errors) from None


def check_storable(serialised: str) -> None:
    """Raise InvalidEvent if the serialised event holds what PostgreSQL's jsonb cannot store."""
    if "\\u0000" in serialised and _NUL_ESCAPE.search(serialised):
        raise InvalidEvent("strings must not contain the NUL character (\\u0000)", [])


class PipelineState(BaseModel):
    """Where the event stands in the pipeline when the answer is sent."""

    status: Literal["complete", "quarantined", "pending"]
    detail: str | None = None


class TrackResponse(BaseModel):
    """Answer to a single tracked event."""

    success: bool = True
    message: str
    event_id: str
    timestamp: str = Field(description="When the event was received (ISO 8601, UTC)")
    processing: Literal["automatic", "background"]
    duplicate: bool = False
    stored: bool = Field(
        default=True,
        description="false: the request carried `DNT: 1` or `Sec-GPC: 1`, which the customer honours; "
        "nothing of it was stored",
    )
    pipeline: PipelineState | None = None


class BatchItemResult(BaseModel):
    """The outcome of one event of a batch, in request order."""

    index: int
    status: Literal["accepted", "duplicate", "rejected"]
    event_id: str | None = None
    reason: str | None = None


class BatchResponse(BaseModel):
    """Answer to a batch: counts and one result per event."""

    success: bool
    accepted: int
    duplicates: int
    rejected: int
    stored: bool = Field(
        default=True,
        description="false: the request carried `DNT: 1` or `Sec-GPC: 1`, which the customer honours; "
        "its events were validated and none was stored",
    )
    timestamp: str
    results: list[BatchItemResult]
