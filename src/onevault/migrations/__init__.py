"""Versioned plain-SQL migrations (NNNN_name.up.sql / NNNN_name.down.sql) and their runner."""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from importlib import resources

import psycopg

logger = logging.getLogger(__name__)
_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.(up|down)\.sql$")
# One lock for every process that migrates, so concurrent starts apply each migration once.
_LOCK_KEY = 0x0E5A_17_01

Progress = Callable[[str], None]


class MigrationError(RuntimeError):
    """The database and the code's migrations do not fit together."""


@dataclass(frozen=True)
class Migration:
    """One numbered migration with its rollback."""

    version: int
    name: str
    up: str
    down: str

    @property
    def label(self) -> str:
        """`0003_raw_landing`-style name."""
        return f"{self.version:04d}_{self.name}"

    @property
    def checksum(self) -> str:
        """SHA-256 of the up script, recorded to detect edited migrations."""
        return hashlib.sha256(self.up.encode()).hexdigest()


@dataclass(frozen=True)
class MigrationState:
    """A migration known to the code and/or the database."""

    version: int
    name: str
    applied_at: datetime | None
    known_to_code: bool
    # Applied from an up script other than the code's (the migration was edited afterwards).
    changed: bool = False


def available() -> list[Migration]:
    """All migrations shipped with the package, in order."""
    files: dict[tuple[int, str], dict[str, str]] = {}
    for entry in resources.files(__package__).iterdir():
        match = _FILE_RE.match(entry.name)
        if match:
            version, name, direction = match.groups()
            files.setdefault((int(version), name), {})[direction] = entry.read_text(encoding="utf-8")
    migrations = []
    for (version, name), scripts in sorted(files.items()):
        if set(scripts) != {"up", "down"}:
            raise MigrationError(f"migration {version:04d}_{name} lacks its up or down script")
        migrations.append(Migration(version, name, scripts["up"], scripts["down"]))
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise MigrationError(f"migration numbers must be 1..N without gaps, found {versions}")
    return migrations


def _prepare(conn: psycopg.Connection) -> None:
    conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
    conn.execute("CREATE SCHEMA IF NOT EXISTS util")
    conn.execute(
        """
        CREATE TABLE IF NOT EXISTS util.schema_migration (
            version integer PRIMARY KEY,
            name text NOT NULL,
            checksum text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )


def _release(conn: psycopg.Connection) -> None:
    conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))


@dataclass(frozen=True)
class _Applied:
    name: str
    applied_at: datetime
    checksum: str


def _applied(conn: psycopg.Connection) -> dict[int, _Applied]:
    rows = conn.execute("SELECT version, name, applied_at, checksum FROM util.schema_migration").fetchall()
    return {version: _Applied(name, applied_at, checksum) for version, name, applied_at, checksum in rows}


def _check(applied: dict[int, _Applied], code: list[Migration]) -> None:
    """Refuse a database migrated by a newer release; warn of applied migrations edited since."""
    unknown = sorted(set(applied) - {m.version for m in code})
    if unknown:
        raise MigrationError(
            f"the database has migrations this version of OneVault does not know ({unknown}); "
            "it was migrated by a newer release. Run that release, or roll the database back with it."
        )
    changed = [m.label for m in code if m.version in applied and applied[m.version].checksum != m.checksum]
    if changed:
        logger.warning(
            "Migration(s) %s changed since they were applied: the database keeps what was applied then "
            "(`onevault db status` marks them)",
            ", ".join(changed),
        )


def _run(conn: psycopg.Connection, migration: Migration, direction: str, progress: Progress) -> None:
    started = time.monotonic()
    progress(f"{direction} {migration.label} ...")
    with conn.transaction():
        if direction == "up":
            conn.execute(migration.up.encode())
            conn.execute(
                "INSERT INTO util.schema_migration (version, name, checksum) VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.checksum),
            )
        else:
            conn.execute(migration.down.encode())
            conn.execute("DELETE FROM util.schema_migration WHERE version = %s", (migration.version,))
    progress(f"{direction} {migration.label} done in {time.monotonic() - started:.2f}s")


def upgrade(conninfo: str, target: int | None = None, progress: Progress = lambda _: None) -> list[Migration]:
    """Apply pending migrations up to `target` (default: all); refuse a database that is ahead."""
    code = available()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        _prepare(conn)
        try:
            applied = _applied(conn)
            _check(applied, code)
            done = []
            for migration in code:
                if migration.version in applied or (target is not None and migration.version > target):
                    continue
                _run(conn, migration, "up", progress)
                done.append(migration)
            return done
        finally:
            _release(conn)


def rollback(conninfo: str, to: int | None = None, progress: Progress = lambda _: None) -> list[Migration]:
    """Roll back applied migrations above version `to` (default: only the latest one)."""
    code = available()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        _prepare(conn)
        try:
            applied = _applied(conn)
            _check(applied, code)
            if not applied:
                return []
            floor = max(applied) - 1 if to is None else to
            if floor < 0:
                raise MigrationError("--to must be 0 or a migration number")
            done = []
            for migration in reversed(code):
                if migration.version in applied and migration.version > floor:
                    _run(conn, migration, "down", progress)
                    done.append(migration)
            return done
        finally:
            _release(conn)


def status(conninfo: str) -> list[MigrationState]:
    """Every migration of the code and of the database, with when it was applied."""
    code = {m.version: m for m in available()}
    with psycopg.connect(conninfo, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('util.schema_migration') IS NOT NULL").fetchone()
        applied = _applied(conn) if exists and exists[0] else {}
    states = [
        MigrationState(v, m.name, None, True)
        if v not in applied
        else MigrationState(v, m.name, applied[v].applied_at, True, applied[v].checksum != m.checksum)
        for v, m in code.items()
    ]
    states += [MigrationState(v, a.name, a.applied_at, False) for v, a in applied.items() if v not in code]
    return sorted(states, key=lambda s: s.version)
