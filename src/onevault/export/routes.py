"""`GET /api/v1/export`: the caller's events of some days as JSON Lines or CSV, streamed as they are read."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from contextlib import aclosing
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from starlette.types import Message, Send

from onevault.auth.caller import OPENAPI_READ_AUTH, Caller, require
from onevault.errors import ApiError, responses
from onevault.export.stream import Export, ExportError, Format, Layer, achunks
from onevault.services import Services, ServicesDep

logger = logging.getLogger(__name__)
router = APIRouter(tags=["export"])
# A client that reads nothing for this long is given up on: its export would otherwise hold a slot, a
# connection and a snapshot (which holds back vacuum) for as long as it stays connected.
STALL_SECONDS = 60.0
ReadCaller = Annotated[Caller, Depends(require("read"))]

_ANSWERS = responses(
    {
        400: "Missing or invalid X-Customer-ID",
        401: "Missing, malformed, unknown, revoked or expired token",
        403: "Token of another customer, disabled customer, or without the `read` scope",
        422: "A date that is not one (YYYY-MM-DD), `from` after `to`, or an unknown layer or format",
        429: "Too many failed authentications from this address; see Retry-After",
        503: "The database the export is read from is unavailable, or this server is already streaming "
        "as many exports as it allows at once; see Retry-After",
    },
    success={
        200: {
            "description": "The events, one JSON object per line or one CSV row each (after a header "
            "row), streamed as they are read; `Content-Disposition` names a file",
            "content": {
                media_type: {"schema": {"type": "string"}}
                for media_type in ("application/x-ndjson", "text/csv")
            },
        }
    },
)


async def _export_chunks(services: Services, export: Export) -> AsyncGenerator[bytes, None]:
    """The export's bytes, holding one of the process's export slots and a read connection meanwhile."""
    if services.exports.locked():
        raise ApiError(
            503,
            "this server is streaming as many exports as it allows at once; retry later",
            headers={"Retry-After": str(services.settings.retry_after_seconds)},
        )
    async with (
        services.exports,
        services.read_pool.connection() as conn,
        # Closed here, before the connection goes back to the pool, whatever ends the stream.
        aclosing(achunks(conn, export)) as chunks,
    ):
        async for chunk in chunks:
            yield chunk


async def _resumed(first: bytes, rest: AsyncGenerator[bytes, None]) -> AsyncGenerator[bytes, None]:
    yield first
    async for chunk in rest:
        yield chunk


class _ExportResponse(StreamingResponse):
    """Streams `first`, then the `rest` of an export, which it closes as soon as the response ends,
    whatever ends it; a client that reads nothing for STALL_SECONDS is given up on."""

    def __init__(self, first: bytes, rest: AsyncGenerator[bytes, None], **kwargs: Any) -> None:
        super().__init__(_resumed(first, rest), **kwargs)
        self.rest = rest

    async def stream_response(self, send: Send) -> None:
        """Send the chunks, each within STALL_SECONDS, else stop (the server then closes the connection)."""
        try:
            await send(
                {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
            )
            async for chunk in self.body_iterator:
                message: Message = {"type": "http.response.body", "body": chunk, "more_body": True}
                try:
                    await asyncio.wait_for(send(message), STALL_SECONDS)
                except TimeoutError:
                    # Returning without the last message: the client's answer ends cut short, never
                    # as if it were whole.
                    logger.warning("⚠️ Export stopped: its client read nothing for %.0f s", STALL_SECONDS)
                    return
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            # Also when the client went away and this task is being cancelled: the export's
            # transaction ends cleanly and its connection goes back to the pool.
            await asyncio.shield(self.rest.aclose())


@router.get(
    "/api/v1/export",
    response_class=StreamingResponse,
    responses=_ANSWERS,
    openapi_extra=OPENAPI_READ_AUTH,
    summary="The caller's events of some days, raw or from the business vault, as JSON Lines or CSV",
)
async def export_events(
    caller: ReadCaller,
    services: ServicesDep,
    first_day: Annotated[date, Query(alias="from", description="First day (UTC), YYYY-MM-DD")],
    last_day: Annotated[date, Query(alias="to", description="Last day (UTC), YYYY-MM-DD, included")],
    layer: Annotated[
        Layer,
        Query(
            description="`raw`: the events as received, by the day they were received; `business`: the "
            "events in force in the vault with their session and visitor, by the day they occurred"
        ),
    ],
    fmt: Annotated[Format, Query(alias="format", description="`jsonl` (JSON Lines) or `csv`")],
) -> StreamingResponse:
    """The caller's events of the UTC days [from, to], streamed from a server-side cursor (flat memory)."""
    try:
        export = Export(caller.tenant_hk, first_day, last_day, layer, fmt)
    except ExportError as exc:
        raise ApiError(422, str(exc)) from None
    chunks = _export_chunks(services, export)
    # Up to the first bytes here, so that a database away or no free slot is an error answer, not
    # a response cut short.
    first = await anext(chunks)
    return _ExportResponse(
        first,
        chunks,
        media_type=export.media_type,
        headers={"Content-Disposition": f'attachment; filename="{export.filename(caller.customer_id)}"'},
    )
