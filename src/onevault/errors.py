"""HTTP error responses: always JSON `{"detail": "..."}`, never a stack trace or a database message."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from onevault.config import Settings
from onevault.db import DatabaseUnavailable
from onevault.ingest.writer import OutcomeUnknown

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """An error answered to the client with `status` and `detail`."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers
        self.extra = extra


OUTCOME_UNKNOWN = (
    "outcome unknown: the database did not confirm the write, which may or may not be stored; "
    "retry with the same event_id"
)


def outcome_unknown(retry_after: int, **ids: Any) -> ApiError:
    """503 for events sent to PostgreSQL whose commit was not confirmed, with the ids to retry with."""
    return ApiError(
        503,
        OUTCOME_UNKNOWN,
        headers={"Retry-After": str(retry_after)},
        outcome="unknown",
        retry="retry with the same event_id",
        **ids,
    )


def format_validation_errors(errors: list[Any]) -> tuple[str, list[dict[str, Any]]]:
    """A one-line summary and a JSON-safe list of pydantic/FastAPI validation errors."""
    clean = [
        {
            "loc": [str(p) for p in e.get("loc", ())],
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in errors
    ]
    summary = "; ".join(f"{'.'.join(e['loc']) or 'body'}: {e['msg']}" for e in clean)
    return summary or "invalid request", clean


def install(app: FastAPI, settings: Settings) -> None:
    """Register the handlers that shape every error answer."""
    # Known before the lifespan has opened the pool: the answer is the same whenever the database is away.
    retry_after = str(settings.retry_after_seconds)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail, **exc.extra}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        summary, errors = format_validation_errors(list(exc.errors()))
        return JSONResponse({"detail": summary, "errors": errors}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    async def _db_down(_: Request, exc: Exception) -> JSONResponse:
        logger.error("❌ Database unavailable: %s", type(exc).__name__)
        return JSONResponse(
            {"detail": "database unavailable, retry later"},
            status_code=503,
            headers={"Retry-After": retry_after},
        )

    for exc_type in (DatabaseUnavailable, PoolTimeout, psycopg.OperationalError):
        app.add_exception_handler(exc_type, _db_down)

    @app.exception_handler(OutcomeUnknown)
    async def _outcome_unknown(_: Request, exc: OutcomeUnknown) -> JSONResponse:
        # The ingestion routes answer with the ids themselves; this covers any other writer.
        error = outcome_unknown(settings.retry_after_seconds, event_ids=exc.event_ids)
        return JSONResponse({"detail": error.detail, **error.extra}, status_code=503, headers=error.headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("❌ Unhandled error: %s", type(exc).__name__)
        return JSONResponse({"detail": "internal server error"}, status_code=500)


class ErrorItem(BaseModel):
    """One problem found in a request."""

    loc: list[str] = Field(description='Where, e.g. `["query", "limit"]` or `["event_type"]`')
    msg: str
    type: str


class ErrorResponse(BaseModel):
    """The body of every 4xx and 5xx answer of the application."""

    # Some answers add fields, e.g. the ids to retry with when a write's outcome is unknown.
    model_config = ConfigDict(extra="allow")

    detail: str = Field(description="What went wrong, in one line")
    errors: list[ErrorItem] = Field(default_factory=list, description="Each problem (validation errors)")


_REQUEST_ID = {
    "description": "The request's id in the service's logs (the client's own `X-Request-ID` if sane)",
    "schema": {"type": "string"},
}
_RETRY_AFTER = {"description": "Seconds to wait before retrying", "schema": {"type": "integer", "minimum": 0}}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"required": True, "description": "`Bearer`", "schema": {"type": "string"}}},
    429: {"Retry-After": {"required": True, **_RETRY_AFTER}},
    503: {"Retry-After": {"required": False, **_RETRY_AFTER}},
}
# What the HTTP server answers itself, before the application sees the request: plain text, no request id.
_SERVER_ERRORS = {
    400: "Malformed HTTP",
    431: "Request headers larger than the server's limit",
    503: "More open connections than the server's limit",
}
_PLAIN_TEXT = {"text/plain": {"schema": {"type": "string"}}}


def responses(
    errors: dict[int, str],
    success: dict[int, dict[str, Any]] | None = None,
    bodies: dict[int, Any] | None = None,
) -> dict[int | str, dict[str, Any]]:
    """A route's documented answers: `success` and `errors` (status: when), plus the server's own refusals.

    The application's error bodies are ErrorResponse unless `bodies` names another model for the
    status; the server's are text/plain. Every answer of the application carries X-Request-ID.
    """
    documented: dict[int | str, dict[str, Any]] = {}
    for status, extra in (success or {200: {}}).items():
        documented[status] = {**extra, "headers": {"X-Request-ID": {"required": True, **_REQUEST_ID}}}
    for status in sorted({*errors, *_SERVER_ERRORS}):
        server = _SERVER_ERRORS.get(status)
        if server is None:
            description = errors[status]
        elif status in errors:
            also = server[0].lower() + server[1:]
            description = f"{errors[status]}. From the server itself, in text/plain: {also}"
        else:
            description = f"{server} (answered by the server itself, in text/plain)"
        answer: dict[str, Any] = {
            "description": description,
            "headers": {"X-Request-ID": {"required": status not in _SERVER_ERRORS, **_REQUEST_ID}}
            | _HEADERS.get(status, {}),
        }
        if status in errors:
            answer["model"] = (bodies or {}).get(status, ErrorResponse)
        if status in _SERVER_ERRORS:
            answer["content"] = _PLAIN_TEXT
        documented[status] = answer
    return documented
