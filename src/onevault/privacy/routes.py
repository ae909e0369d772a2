"""`DELETE /api/v1/visitors/{visitor_id}` and `DELETE /api/v1/users/{user_id}`: erase one person's data."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field

from onevault.auth.caller import OPENAPI_READ_AUTH, Caller, require
from onevault.errors import responses
from onevault.privacy.erasure import Erasure, aerase
from onevault.services import Services, ServicesDep

logger = logging.getLogger(__name__)
router = APIRouter(tags=["privacy"])
EraseCaller = Annotated[Caller, Depends(require("erase"))]
# What the audit records name as the source of an erasure over HTTP.
RECORD_SOURCE = "api:/api/v1"
# Ids as staging reads them: something besides the white space it trims (util.canon_id), and no
# U+0000 (PostgreSQL cannot store it, so no event carries it).
_ID_PATTERN = r"^[^\x00]*[^ \t\r\n\f\v\x00][^\x00]*$"
# Ids sent at the top level of an event are at most 256 characters; inside `event_data` they are
# not checked: the URL takes longer ones (the command line any).
MAX_ID_LENGTH = 1024

_ANSWERS = responses(
    {
        400: "Missing or invalid X-Customer-ID",
        401: "Missing, malformed, unknown, revoked or expired token",
        403: "Token of another customer, disabled customer, or without the `erase` scope",
        422: "A blank visitor or user id",
        429: "Too many failed authentications from this address; see Retry-After",
        503: "Database unavailable; nothing was erased: retry later",
    }
)


class ErasureResponse(BaseModel):
    """What an erasure removed; zero everywhere when nothing of that person was stored."""

    status: str = Field(description="`success`: everything of the person stored before the request is gone")
    erasure_id: int = Field(description="The audit record of this erasure (privacy.erasure_audit)")
    visitors: int = Field(description="Visitors whose data was erased")
    sessions: int = Field(description="Sessions erased with them (sessions other visitors share are kept)")
    events: int = Field(description="Events erased (raw layer: processed, pending or failed)")
    rows: dict[str, int] = Field(description="Rows erased per `schema.table`")
    timestamp: datetime


def _answer(caller: Caller, erasure: Erasure) -> ErasureResponse:
    logger.info(
        "🗑️ Erased a person's data: %d events, %d sessions, %d visitors (audit record %d)",
        erasure.events,
        erasure.sessions,
        erasure.visitors,
        erasure.erasure_id,
        extra={"customer_id": caller.customer_id},
    )
    return ErasureResponse(
        status="success",
        erasure_id=erasure.erasure_id,
        visitors=erasure.visitors,
        sessions=erasure.sessions,
        events=erasure.events,
        rows=erasure.rows,
        timestamp=datetime.now(UTC),
    )


async def _erase(
    caller: Caller, services: Services, *, visitor_id: str | None = None, user_id: str | None = None
) -> ErasureResponse:
    """The person named by `visitor_id` or `user_id` erased for the caller's customer, by its token."""
    async with services.pool.connection() as conn:
        erasure = await aerase(
            conn,
            caller.tenant_hk,
            visitor_id=visitor_id,
            user_id=user_id,
            erased_by=f"token:{caller.token_id}",
            record_source=RECORD_SOURCE,
        )
    return _answer(caller, erasure)


@router.delete(
    "/api/v1/visitors/{visitor_id:path}",
    response_model=ErasureResponse,
    responses=_ANSWERS,
    openapi_extra=OPENAPI_READ_AUTH,
    summary="Erase a visitor's data from every layer",
)
async def erase_visitor(
    caller: EraseCaller,
    services: ServicesDep,
    visitor_id: Annotated[
        str,
        Path(
            min_length=1,
            max_length=MAX_ID_LENGTH,
            pattern=_ID_PATTERN,
            description="The visitor id the client sent (compared without case), or a derived `anon-…` id",
        ),
    ],
) -> ErasureResponse:
    """Erase every event of the visitor of the caller's customer, and what was derived from them."""
    return await _erase(caller, services, visitor_id=visitor_id)


@router.delete(
    "/api/v1/users/{user_id:path}",
    response_model=ErasureResponse,
    responses=_ANSWERS,
    openapi_extra=OPENAPI_READ_AUTH,
    summary="Erase the data of every visitor seen with a user id, from every layer",
)
async def erase_user(
    caller: EraseCaller,
    services: ServicesDep,
    user_id: Annotated[
        str,
        Path(
            min_length=1,
            max_length=MAX_ID_LENGTH,
            pattern=_ID_PATTERN,
            description="The user id events carried (case kept)",
        ),
    ],
) -> ErasureResponse:
    """Erase every event of every visitor of the caller's customer that was seen with the user id."""
    return await _erase(caller, services, user_id=user_id)
