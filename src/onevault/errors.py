"""HTTP error responses: always JSON `{"detail": "..."}`, never a stack trace or a database message."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from onevault.config import Settings
from onevault.db import DatabaseUnavailable

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """An error answered to the client with `status` and `detail`."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers
        self.extra = extra


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

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("❌ Unhandled error: %s", type(exc).__name__)
        return JSONResponse({"detail": "internal server error"}, status_code=500)
