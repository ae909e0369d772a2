"""The HTTP server: uvicorn with the httptools parser, bounded against slow, silent and oversized clients.

uvicorn limits idle keep-alive time (`timeout_keep_alive`) and trusts proxies by address
(`forwarded_allow_ips`), but with httptools it has no limit on the size of the request headers, no
deadline for receiving them or the body, and its `limit_concurrency` accepts every connection and
only refuses requests once their headers are parsed. `BoundedHttpToolsProtocol` adds those limits
where the bytes arrive, so a refused client costs neither memory nor time on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState
from uvicorn.supervisors import Multiprocess

from onevault.config import Settings

logger = logging.getLogger(__name__)

# Descriptors kept for everything that is not a client connection (database pool, logs, files).
RESERVED_DESCRIPTORS = 256


@dataclass(frozen=True)
class ConnectionLimits:
    """What one client connection may cost the process."""

    max_header_bytes: int
    header_timeout: float
    body_timeout: float
    max_connections: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        """The limits the settings configure."""
        return cls(
            max_header_bytes=settings.max_header_bytes,
            header_timeout=settings.header_timeout_seconds,
            body_timeout=settings.body_timeout_seconds,
            max_connections=settings.max_connections,
        )


class ServerConfig(uvicorn.Config):
    """uvicorn's configuration carrying our connection limits (pickled to each worker process)."""

    def __init__(self, app: Any, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.limits = limits


def _plain_response(status: bytes, message: bytes) -> bytes:
    return b"".join(
        [
            b"HTTP/1.1 ",
            status,
            b"\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ",
            str(len(message)).encode(),
            b"\r\nconnection: close\r\n\r\n",
            message,
        ]
    )


HEADERS_TOO_LARGE = _plain_response(
    b"431 Request Header Fields Too Large", b"Request header fields too large"
)
SERVER_BUSY = _plain_response(b"503 Service Unavailable", b"Too many connections")


class _HeadersTooLarge(Exception):
    pass


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with limits on header size, header and body time, and connections.

    * headers (request line included) over `max_header_bytes` → 431 and the connection closed;
      at most one read (≤ 256 KiB) past the limit is ever buffered;
    * the headers of a request must arrive within `header_timeout` of its first byte (of the
      connection, for the first request: a silent connection is closed too), and its body within
      `body_timeout` of the headers; otherwise the connection is closed;
    * past `max_connections` open connections a new one is answered 503 and closed at once.
    """

    def __init__(
        self,
        config: ServerConfig,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = config.limits
        self._header_bytes = 0
        self._chunk_bytes = 0
        self._reading_headers = True
        self._too_large = False
        # The current deadline (loop time; None: none) and one timer that checks it. Moving the
        # deadline only moves a number; the timer is re-armed when it fires early, so a request
        # costs no timer of its own.
        self._due: float | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            # Refused before reading a byte: the connections already open keep being served.
            self.connections.discard(self)
            transport.write(SERVER_BUSY)
            transport.close()
            return
        self._deadline(self.limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._due = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._chunk_bytes = len(data)
        super().data_received(data)
        if self._reading_headers and not self.transport.is_closing():
            self._header_bytes += len(data)
            if self._header_bytes > self.limits.max_header_bytes:
                self._refuse_headers()

    def send_400_response(self, msg: str) -> None:
        if self._too_large:
            self._refuse_headers()
        else:
            super().send_400_response(msg)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_headers = True
        self._header_bytes = 0
        if self._due is None:
            self._deadline(self.limits.header_timeout)

    def on_headers_complete(self) -> None:
        # Counted exactly only when the bytes read so far could hold headers over the limit.
        if self._header_bytes + self._chunk_bytes > self.limits.max_header_bytes:
            size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
            if size > self.limits.max_header_bytes:
                self._too_large = True
                raise _HeadersTooLarge  # the parser stops; send_400_response answers 431
        self._reading_headers = False
        self._deadline(self.limits.body_timeout)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._due = None
        super().on_message_complete()

    def _refuse_headers(self) -> None:
        self._due = None
        self.logger.warning("Request headers over %d bytes refused", self.limits.max_header_bytes)
        self.transport.write(HEADERS_TOO_LARGE)
        self.transport.close()

    def _deadline(self, seconds: float) -> None:
        due = self.loop.time() + seconds
        self._due = due
        if self._timer is not None and self._timer.when() > due:
            self._timer.cancel()
            self._timer = None
        if self._timer is None:
            self._timer = self.loop.call_at(due, self._check_deadline)

    def _check_deadline(self) -> None:
        self._timer = None
        if self._due is None or self.transport.is_closing():
            return
        if self.loop.time() < self._due:
            self._timer = self.loop.call_at(self._due, self._check_deadline)
        else:
            # A client this slow is not waited for: the app sees a disconnect if it was reading.
            self.transport.close()


def server_config(app: Any, settings: Settings, *, host: str, port: int, **kwargs: Any) -> ServerConfig:
    """The one server configuration, for `onevault serve` and the tests' live servers alike."""
    trusted = ",".join(settings.forwarded_allow_ips)
    return ServerConfig(
        app,
        ConnectionLimits.from_settings(settings),
        host=host,
        port=port,
        http=BoundedHttpToolsProtocol,
        timeout_keep_alive=settings.keepalive_seconds,
        # No trusted proxy: X-Forwarded-For and X-Forwarded-Proto are ignored from every address.
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted or "",
        server_header=False,
        log_config=None,
        **kwargs,
    )


def raise_descriptor_limit(settings: Settings) -> None:
    """Raise the soft limit on open files so that `max_connections` connections fit under it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = settings.max_connections + RESERVED_DESCRIPTORS
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        if new < wanted:
            logger.warning(
                "Open-file limit %d is below ONEVAULT_MAX_CONNECTIONS + %d", new, RESERVED_DESCRIPTORS
            )


def run(config: ServerConfig) -> None:
    """Serve until stopped, in this process or in `config.workers` worker processes."""
    server = uvicorn.Server(config)
    if config.workers > 1:
        Multiprocess(config, sockets=[config.bind_socket()]).run()
    else:
        server.run()
        if not server.started:
            raise SystemExit(3)  # uvicorn's start-up failure status
