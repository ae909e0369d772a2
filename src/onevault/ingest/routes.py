"""`POST /api/v1/track`, `/api/v1/track/async` and `/api/v1/track/batch`."""

from __future__ import annotations

import functools
import ipaddress
import logging
import math
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
from fastapi import APIRouter, Request, Response

from onevault import metrics
from onevault.auth.caller import OPENAPI_AUTH, Caller, authenticate, authenticate_body, has_header_credentials
from onevault.errors import ApiError, outcome_unknown, responses
from onevault.ingest.body import read_json, serialise
from onevault.ingest.models import (
    BatchResponse,
    InvalidEvent,
    PipelineState,
    TrackEvent,
    TrackResponse,
    check_storable,
    validate_event,
)
from onevault.ingest.writer import EventRejected, NewEvent, OutcomeUnknown, Stored
from onevault.pipeline.result import NOTHING_DUE
from onevault.pipeline.runner import ProcessingFailed
from onevault.services import Services, get_services

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1/track", tags=["tracking"])

MAX_USER_AGENT = 1024
NOT_STORED = "Event not stored: the request asks not to be tracked (DNT or Global Privacy Control)"
# A beacon cannot set headers: it may carry its credentials in the body (see _caller_and_body).
# Any value is accepted when the headers authenticate, hence no type.
_BODY_CREDENTIALS: dict[str, Any] = {
    "customer_id": {
        "description": "The customer, for a request without X-Customer-ID and Authorization (a browser's "
        "beacon); taken out of the event. With those headers it is an ordinary field of the event"
    },
    "token": {"description": "With `customer_id`: a token whose only scope is `track`; never stored"},
}
_EVENT_SCHEMA = TrackEvent.model_json_schema()
_ONE_EVENT = _EVENT_SCHEMA | {"properties": _EVENT_SCHEMA["properties"] | _BODY_CREDENTIALS}
# Each event of a batch is validated on its own: one that is not a valid event is answered
# "rejected" in `results` and the others are stored, so the request itself admits any value.
_BATCH_EVENTS = {
    "type": "array",
    "minItems": 1,
    "description": "At most ONEVAULT_BATCH_MAX_EVENTS (default 1000) events; more is refused 413",
    "items": {"anyOf": [_EVENT_SCHEMA, {"description": "Not an event: rejected in `results`"}]},
}
_BATCH = {
    "anyOf": [
        {
            "type": "object",
            "required": ["events"],
            "properties": {"events": _BATCH_EVENTS} | _BODY_CREDENTIALS,
        },
        _BATCH_EVENTS | {"description": "A bare array of events (credentials in the headers only)"},
    ]
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {
        "description": "Missing X-Customer-ID (and customer_id in the body), malformed JSON, "
        "or a body without headers that is not an object"
    },
    401: {"description": "Missing, malformed, unknown, revoked or expired token"},
    403: {
        "description": "Token of another customer, disabled customer, missing the `track` scope, "
        "an origin the customer does not allow, or a token in the body with more than the `track` scope"
    },
    413: {"description": "Body (or batch) larger than the configured limit"},
    415: {"description": "Content type other than application/json or text/plain"},
    422: {
        "description": "Fields of the wrong type or format, JSON nested deeper than 254 levels, "
        "text PostgreSQL cannot store (U+0000, lone surrogates), an event over the size limit"
    },
    429: {
        "description": "Rate limit of the customer, or of failed authentications from this address, "
        "exceeded; see Retry-After"
    },
    503: {
        "description": 'Database unavailable; see Retry-After. With `"outcome": "unknown"` the events '
        "may be stored: retry with the `event_id`(s) of the answer; otherwise nothing was stored"
    },
}


_RESPONSES = responses({int(status): doc["description"] for status, doc in _ERRORS.items()})


def _body_doc(schema: dict[str, Any]) -> dict[str, Any]:
    content = {"schema": schema}
    body = {"required": True, "content": {"application/json": content, "text/plain": content}}
    return {"requestBody": body} | OPENAPI_AUTH


def _now() -> datetime:
    return datetime.now(UTC)


def _client_ip(request: Request) -> str | None:
    client = request.scope.get("client")
    return _canonical_ip(client[0]) if client and client[0] else None


@functools.lru_cache(maxsize=4096)
def _canonical_ip(host: str) -> str | None:
    """The address in its canonical spelling; None when the server gave something else (a socket path)."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def _user_agent(request: Request) -> str | None:
    agent = request.headers.get("user-agent")
    return agent[:MAX_USER_AGENT] if agent else None


def _rate_limit(services: Services, caller: Caller, cost: int) -> None:
    wait = services.limiter.acquire(caller.tenant_hk, cost)
    if wait > 0:
        raise ApiError(
            429,
            "rate limit exceeded for this customer",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )


@dataclass(frozen=True)
class _Origin:
    """What a request tells about all of its events."""

    tenant_hk: bytes
    user_agent: str | None
    client_ip: str | None
    received_at: datetime
    record_source: str


def _origin(request: Request, caller: Caller, endpoint: str) -> _Origin:
    return _Origin(caller.tenant_hk, _user_agent(request), _client_ip(request), _now(), f"api:{endpoint}")


async def _caller_and_body(request: Request, limit: int) -> tuple[Caller, object]:
    """Who sends, and the decoded body: credentials in the headers or, from browsers, in the body.

    A beacon cannot set headers: its body may carry `customer_id` and a `track`-only `token`, which
    are taken out of it (a token is never stored).
    """
    if has_header_credentials(request):
        caller = await authenticate(request, "track")
        return caller, await read_json(request, limit)
    obj = await read_json(request, limit)
    if not isinstance(obj, dict):
        raise ApiError(400, "missing X-Customer-ID header (or customer_id in the body)")
    return await authenticate_body(request, obj.pop("customer_id", None), obj.pop("token", None)), obj


def _prepare(obj: object, origin: _Origin, limit: int) -> NewEvent:
    """Validate one decoded event and turn it into a row for the raw layer."""
    if isinstance(obj, dict):
        # `token` is a credential wherever it is sent: never stored (see _caller_and_body).
        obj.pop("token", None)
    event = validate_event(obj)
    payload = serialise(obj)
    check_storable(payload)
    # A character takes at most 4 bytes in UTF-8: only long payloads need encoding to be measured.
    if len(payload) * 4 > limit and len(payload.encode()) > limit:
        raise InvalidEvent(f"event exceeds the limit of {limit} bytes", [])
    return NewEvent(
        tenant_hk=origin.tenant_hk,
        event_id=event.event_id or str(uuid.uuid4()),
        payload=payload,
        user_agent=origin.user_agent,
        client_ip=origin.client_ip,
        received_at=origin.received_at,
        record_source=origin.record_source,
    )


def _privacy_signal(request: Request, caller: Caller) -> str | None:
    """The privacy signal a request carries and its customer honours (`gpc`, `dnt`), if any."""
    if not caller.respects_privacy:
        return None
    if request.headers.get("sec-gpc", "").strip() == "1":
        return "gpc"
    if request.headers.get("dnt", "").strip() == "1":
        return "dnt"
    return None


def _not_stored(endpoint: str, signal: str, events: int) -> None:
    metrics.EVENTS_RECEIVED.labels(endpoint, "not_stored").inc(events)
    metrics.EVENTS_NOT_STORED.labels(endpoint, signal).inc(events)


async def _store_one(
    request: Request, services: Services, endpoint: str
) -> tuple[Caller, NewEvent, Stored | None]:
    """Validate and store one event; None instead of its row when a privacy signal says not to store it."""
    limit = services.settings.max_event_bytes
    caller, obj = await _caller_and_body(request, limit)
    origin = _origin(request, caller, endpoint)
    _rate_limit(services, caller, 1)
    try:
        event = _prepare(obj, origin, limit)
    except InvalidEvent as exc:
        metrics.EVENTS_RECEIVED.labels(endpoint, "rejected").inc()
        raise ApiError(422, exc.summary, errors=exc.errors) from None
    if signal := _privacy_signal(request, caller):
        _not_stored(endpoint, signal, 1)
        return caller, event, None
    try:
        (outcome,) = await services.writer.write([event])
    except OutcomeUnknown:
        raise outcome_unknown(services.settings.retry_after_seconds, event_id=event.event_id) from None
    if isinstance(outcome, EventRejected):
        metrics.EVENTS_RECEIVED.labels(endpoint, "rejected").inc()
        raise ApiError(422, "the event could not be stored: it holds text PostgreSQL cannot represent")
    metrics.EVENTS_RECEIVED.labels(endpoint, "duplicate" if outcome.duplicate else "accepted").inc()
    return caller, event, outcome


def _answer(
    event: NewEvent,
    processing: str,
    stored: Stored | None,
    pipeline: PipelineState | None = None,
) -> Response:
    """The TrackResponse of one event, built as a dict (hot path); `stored` None: not stored."""
    if stored is None:
        message = NOT_STORED
    elif stored.duplicate:
        message = "Event already recorded (duplicate event_id)"
    else:
        message = "Event tracked successfully"
    body: dict[str, Any] = {
        "success": True,
        "message": message,
        "event_id": event.event_id,
        "timestamp": event.received_at.isoformat(),
        "processing": processing,
        "duplicate": stored is not None and stored.duplicate,
        "stored": stored is not None,
    }
    if pipeline is not None:
        body["pipeline"] = pipeline.model_dump(exclude_none=True)
    return Response(orjson.dumps(body), media_type="application/json")


@router.post(
    "",
    response_model=TrackResponse,
    response_model_exclude_none=True,
    responses=_RESPONSES,
    openapi_extra=_body_doc(_ONE_EVENT),
    summary="Track an event with automatic processing",
)
async def track(request: Request) -> Response:
    """Store one event and process it through the pipeline before answering."""
    services = get_services(request)
    caller, event, stored = await _store_one(request, services, "/api/v1/track")
    if stored is None:
        return _answer(event, "automatic", None)
    logger.info("🔄 Triggering automatic site tracking processing...")
    try:
        lanes = services.pipeline.lanes_of(stored.lane)
        # The answer waits for the vault; the marts follow in the background (notified below).
        result = await services.pipeline.process(caller.customer_id, lanes, refresh_marts=False)
        if result.nothing_due:
            logger.info("ℹ️ %s", NOTHING_DUE)
        else:
            logger.info("✅ Processing result: %s", result.counts())
        outcome, reasons = await services.pipeline.outcome(stored.raw_event_id)
    except (ProcessingFailed, psycopg.Error) as exc:
        logger.warning("⚠️ Site tracking processing failed (non-critical): %s", {"error": str(exc)})
        pipeline = PipelineState(status="pending", detail="processing failed; the event is stored and queued")
    else:
        detail = "; ".join(reasons) if reasons else None
        if outcome == "pending":
            detail = "queued behind other events; processing follows in the background"
        pipeline = PipelineState(status=outcome, detail=detail)
    services.pipeline.notify(caller.customer_id)
    return _answer(event, "automatic", stored, pipeline)


@router.post(
    "/async",
    response_model=TrackResponse,
    response_model_exclude_none=True,
    responses=_RESPONSES,
    openapi_extra=_body_doc(_ONE_EVENT),
    summary="Track an event with background processing",
)
async def track_async(request: Request) -> Response:
    """Store one event durably and answer at once; processing follows in the background."""
    services = get_services(request)
    caller, event, stored = await _store_one(request, services, "/api/v1/track/async")
    if stored is not None and not stored.duplicate:
        services.pipeline.notify(caller.customer_id)
    return _answer(event, "background", stored)


@router.post(
    "/batch",
    response_model=BatchResponse,
    response_model_exclude_none=True,
    responses=_RESPONSES,
    openapi_extra=_body_doc(_BATCH),
    summary="Track many events in one request",
)
async def track_batch(request: Request) -> Response:
    """Store many events; each is answered as accepted, duplicate or rejected, in request order."""
    services = get_services(request)
    settings = services.settings
    caller, obj = await _caller_and_body(request, settings.batch_max_bytes)
    origin = _origin(request, caller, "/api/v1/track/batch")
    events = obj.get("events") if isinstance(obj, dict) else obj
    if not isinstance(events, list):
        raise ApiError(422, 'body must be {"events": [...]} or a JSON array of events')
    if not events:
        raise ApiError(422, "the batch holds no events")
    if len(events) > settings.batch_max_events:
        raise ApiError(413, f"the batch holds {len(events)} events; the limit is {settings.batch_max_events}")
    _rate_limit(services, caller, len(events))

    # One result per event in request order, shaped as BatchItemResult (built as dicts: hot path).
    results: list[dict[str, Any]] = []
    ready: list[tuple[dict[str, Any], NewEvent]] = []
    for index, obj_event in enumerate(events):
        try:
            event = _prepare(obj_event, origin, settings.max_event_bytes)
        except InvalidEvent as exc:
            results.append({"index": index, "status": "rejected", "reason": exc.summary})
        else:
            result = {"index": index, "status": "accepted", "event_id": event.event_id}
            results.append(result)
            ready.append((result, event))
    if ready and (signal := _privacy_signal(request, caller)):
        _not_stored("/api/v1/track/batch", signal, len(ready))
        metrics.EVENTS_RECEIVED.labels("/api/v1/track/batch", "rejected").inc(len(results) - len(ready))
        return _batch_answer(results, origin, stored=False)
    try:
        outcomes = await services.writer.write([event for _, event in ready]) if ready else []
    except OutcomeUnknown:
        for result, _ in ready:
            result["status"] = "unknown"
        raise outcome_unknown(settings.retry_after_seconds, results=results) from None
    for (result, _), outcome in zip(ready, outcomes, strict=True):
        if isinstance(outcome, EventRejected):
            result |= {"status": "rejected", "reason": "text PostgreSQL cannot represent"}
        elif outcome.duplicate:
            result["status"] = "duplicate"
    counts = Counter(result["status"] for result in results)
    for status, count in counts.items():
        metrics.EVENTS_RECEIVED.labels("/api/v1/track/batch", status).inc(count)
    if counts["accepted"]:
        services.pipeline.notify(caller.customer_id)
    return _batch_answer(results, origin, stored=True)


def _batch_answer(results: list[dict[str, Any]], origin: _Origin, *, stored: bool) -> Response:
    counts = Counter(result["status"] for result in results)
    body = {
        "success": counts["rejected"] == 0,
        "accepted": counts["accepted"],
        "duplicates": counts["duplicate"],
        "rejected": counts["rejected"],
        "stored": stored,
        "timestamp": origin.received_at.isoformat(),
        "results": results,
    }
    return Response(orjson.dumps(body), media_type="application/json")
