"""A size limit on the request bodies that routes read whole (the stats query, the dashboard's chart).

The tracking routes read their bodies within limits of their own (ONEVAULT_MAX_EVENT_BYTES,
ONEVAULT_BATCH_MAX_BYTES) and are left alone. A body declared larger is refused before it is read;
one sent in chunks without a length is refused as soon as it grows past the limit.
"""

from __future__ import annotations

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Far above the largest legitimate body (a chart of 4 series of 1,000 points with 1,000 labels of
# 64 characters, each escaped as \uXXXX, is about 0.5 MB).
MAX_BODY_BYTES = 1024 * 1024
OWN_LIMITS = "/api/v1/track"


class BodyLimitMiddleware:
    """413 for a request body over `limit` bytes, outside the routes with limits of their own."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(OWN_LIMITS):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        received = 0
        refused = False

        async def limited() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request" and not refused:
                received += len(message.get("body", b""))
                if received > self.limit:
                    # Answered here; the route reads an empty end of body and its answer is dropped.
                    refused = True
                    await self._refuse(send)
                    return {"type": "http.request", "body": b"", "more_body": False}
            return message

        async def unless_refused(message: Message) -> None:
            if not refused:
                await send(message)

        await self.app(scope, limited, unless_refused)

    async def _refuse(self, send: Send) -> None:
        body = orjson.dumps({"detail": f"request body exceeds the limit of {self.limit} bytes"})
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
