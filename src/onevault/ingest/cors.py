"""CORS for web pages: the tracking routes are open to every origin, the read routes only when configured.

Which origins may send a customer's events is decided per customer when the request is
authenticated (auth.caller), not here: a preflight carries no credentials. No cookies are used,
so credentials are never allowed.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

TRACK_PATHS = frozenset({"/api/v1/track", "/api/v1/track/async", "/api/v1/track/batch"})
READ_PATHS = frozenset({"/api/v1/track/status", "/api/v1/track/dashboard", "/api/v1/track/process"})
_ALLOW_HEADERS = b"Authorization, Content-Type, X-Customer-ID, X-Request-ID"
# Answers browsers' scripts may read besides the safelisted ones.
_EXPOSE_HEADERS = b"Retry-After, X-Request-ID"
MAX_AGE_SECONDS = 86_400


class CorsMiddleware:
    """Answer preflights of the tracking routes (and of the read routes for `read_origins`) and add
    `Access-Control-Allow-Origin`, echoing the request's origin, to their answers."""

    def __init__(self, app: ASGIApp, read_origins: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.read_origins = read_origins

    def _methods(self, path: str, origin: str) -> bytes | None:
        """The methods `origin` may use on `path` from a page (None: not opened to browsers)."""
        if path in TRACK_PATHS:
            return b"POST"
        if path in READ_PATHS and ("*" in self.read_origins or origin in self.read_origins):
            return b"GET, POST"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/v1/track"):
            await self.app(scope, receive, send)
            return
        origin = next((v for k, v in scope["headers"] if k == b"origin"), None)
        methods = self._methods(scope["path"], origin.decode("latin-1")) if origin else None
        if origin is None or methods is None:
            await self.app(scope, receive, send)
            return
        cors = [(b"access-control-allow-origin", origin), (b"vary", b"Origin")]
        if scope["method"] == "OPTIONS":
            await send(
                {
                    "type": "http.response.start",
                    "status": 204,
                    "headers": [
                        *cors,
                        (b"access-control-allow-methods", methods),
                        (b"access-control-allow-headers", _ALLOW_HEADERS),
                        (b"access-control-max-age", str(MAX_AGE_SECONDS).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        cors.append((b"access-control-expose-headers", _EXPOSE_HEADERS))

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *cors]
            await send(message)

        await self.app(scope, receive, send_with_cors)
