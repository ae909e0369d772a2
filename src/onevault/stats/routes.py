"""`POST /api/v1/stats/query`, `POST /api/v1/stats/queries` and `GET /api/v1/stats/realtime`: the
caller's figures from the marts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Response
from psycopg import AsyncConnection

from onevault.auth.caller import OPENAPI_READ_AUTH, Caller, require
from onevault.errors import ApiError, responses
from onevault.services import Services, ServicesDep
from onevault.stats.models import (
    RealtimeResponse,
    StatsBatch,
    StatsBatchResponse,
    StatsQuery,
    StatsResponse,
)
from onevault.stats.query import QueryError, TooSlow, realtime_visitors, run_queries, run_query, time_limited

router = APIRouter(prefix="/api/v1/stats", tags=["stats"])
ReadCaller = Annotated[Caller, Depends(require("read"))]

REALTIME_WINDOW_SECONDS = 300
_AUTH_ERRORS = {
    400: "Missing or invalid X-Customer-ID",
    401: "Missing, malformed, unknown, revoked or expired token",
    403: "Token of another customer, disabled customer, or without the `read` scope",
    429: "Too many failed authentications from this address; see Retry-After",
    503: "The database the stats are read from (the replica, when one is configured) is unavailable",
}
_QUERY_ERRORS = _AUTH_ERRORS | {
    422: "A query that is not one: the detail names the wrong metric, dimension, filter, date range, "
    "order_by field, limit or offset",
    504: "The figures took longer than ONEVAULT_STATS_TIMEOUT_SECONDS to count (default 30 s)",
}


@router.post(
    "/query",
    response_model=StatsResponse,
    responses=responses(_QUERY_ERRORS),
    openapi_extra=OPENAPI_READ_AUTH,
    summary="Visitors, visits, page views and more of the caller's sites",
)
async def stats_query(query: StatsQuery, caller: ReadCaller, services: ServicesDep) -> Response:
    """Metrics by dimensions over a date range in the customer's time zone (Plausible Stats API v2)."""
    sample = services.settings.stats_sample_sessions
    return await _answered(
        services, lambda conn: run_query(conn, caller.customer_id, query, sample_sessions=sample)
    )


@router.post(
    "/queries",
    response_model=StatsBatchResponse,
    responses=responses(_QUERY_ERRORS),
    openapi_extra=OPENAPI_READ_AUTH,
    summary="Several stats queries at once (a dashboard's panels)",
)
async def stats_queries(batch: StatsBatch, caller: ReadCaller, services: ServicesDep) -> Response:
    """Up to 20 queries answered as `/query` answers each, in their order. Queries on the facts that
    differ only in their one visit dimension (a filtered dashboard's panels) are counted in one pass."""

    async def answers(conn: AsyncConnection[Any]) -> dict[str, Any]:
        sample = services.settings.stats_sample_sessions
        return {"answers": await run_queries(conn, caller.customer_id, batch.queries, sample_sessions=sample)}

    return await _answered(services, answers)


async def _answered(
    services: Services, ask: Callable[[AsyncConnection[Any]], Awaitable[dict[str, Any]]]
) -> Response:
    """The answer `ask` gives on a connection of the read pool; a query without one is a 422, one
    that runs longer than the stats timeout a 504."""
    seconds = services.settings.stats_timeout_seconds
    try:
        async with services.read_pool.connection() as conn, time_limited(conn, seconds):
            answer = await ask(conn)
    except QueryError as exc:
        raise ApiError(422, str(exc)) from None
    except TooSlow as exc:
        raise ApiError(
            504, f"{exc} (ONEVAULT_STATS_TIMEOUT_SECONDS): ask for a shorter date range or fewer dimensions"
        ) from None
    # Already in its final shape: serialised as is rather than validated again row by row.
    return Response(orjson.dumps(answer), media_type="application/json")


@router.get(
    "/realtime",
    response_model=RealtimeResponse,
    responses=responses(_AUTH_ERRORS),
    openapi_extra=OPENAPI_READ_AUTH,
    summary="Visitors of the caller's sites in the last five minutes",
)
async def realtime(caller: ReadCaller, services: ServicesDep) -> dict[str, Any]:
    """Distinct visitors whose sessions had an event in the last five minutes."""
    async with services.read_pool.connection() as conn:
        visitors, now = await realtime_visitors(conn, caller.customer_id, REALTIME_WINDOW_SECONDS)
    return {"visitors": visitors, "window_seconds": REALTIME_WINDOW_SECONDS, "timestamp": now}
