"""`GET /api/v1/stats/source`: which server the stats are read from, and how far behind it is."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from psycopg.rows import dict_row
from pydantic import BaseModel, Field

from onevault import sqlfile
from onevault.auth.caller import OPENAPI_READ_AUTH, Caller, require
from onevault.errors import responses
from onevault.services import Services, ServicesDep

Q = sqlfile.load(__package__, "source.sql")
router = APIRouter(tags=["stats"])
ReadCaller = Annotated[Caller, Depends(require("read"))]

_ANSWERS = responses(
    {
        400: "Missing or invalid X-Customer-ID",
        401: "Missing, malformed, unknown, revoked or expired token",
        403: "Token of another customer, disabled customer, or without the `read` scope",
        429: "Too many failed authentications from this address; see Retry-After",
        503: "The database the stats are read from (the replica, when one is configured) is unavailable",
    }
)


class StatsSource(BaseModel):
    """The server the stats API and the dashboard read from."""

    replica: bool = Field(description="True when the stats are read from a standby (a replica)")
    lag_seconds: float | None = Field(
        description=(
            "How far the standby is behind its primary: 0 while it streams and has replayed all it "
            "received, else the age of the last transaction it replayed; null on the primary, or "
            "before the standby replayed any transaction"
        )
    )
    timestamp: datetime


@router.get(
    "/api/v1/stats/source",
    response_model=StatsSource,
    responses=_ANSWERS,
    openapi_extra=OPENAPI_READ_AUTH,
    summary="The server the stats are read from and its replication lag",
)
async def stats_source(caller: ReadCaller, services: ServicesDep) -> dict[str, Any]:
    """Whether the stats come from a streaming replica, and its lag behind the primary."""
    return await read_source(services) | {"timestamp": datetime.now(UTC).isoformat()}


async def read_source(services: Services) -> dict[str, Any]:
    """`replica` and `lag_seconds` of the read pool's server (see StatsSource)."""
    async with services.read_pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(Q["read_source"])
        row = await cur.fetchone()
    assert row is not None  # a SELECT without FROM returns one row
    return {"replica": row["replica"], "lag_seconds": row["lag_seconds"]}
