"""Versioned plain-SQL migrations (NNNN_name.up.sql / NNNN_name.down.sql) and their runner.

Migrations are the schema's history: once released they never change (a test holds their
checksums, and the runner refuses a database whose applied migration differs from the file).
After them, the runner applies the database code (`onevault.dbcode`), written for the latest schema.
"""

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

from onevault import dbcode
from onevault.db import require_supported_server

logger = logging.getLogger(__name__)
_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.(up|down)\.sql$")
# The migrations of the first release (0.1.0), before functions and views moved to their own files:
# a database that recorded exactly these (all eight, or without 0008 when its automation layer was
# rolled back) is adopted: 0001_baseline holds the same schema.
RELEASE_0_1_0 = {
    1: ("schemas", "d1d027c45fc643066376d3c6cacf2867d9e1ea774811bf226d245ada3e869614"),
    2: ("auth", "de0735be90390bba776a82fa30dc1c5dcc4c4853b42ce95b0a4ce163a6ea219f"),
    3: ("raw_landing", "97139259d404d16cba435b4553cd08d9b5d6ed136c2145ace29ea7e8bb52d33f"),
    4: ("track_site_event", "08570f659e99c8e8cc50343b41961fd8950d989aa4783fd544ec652c74224cc3"),
    5: ("staging", "6185d449932b286fb3ab271dbcc24f5ec5d9eaeadfe7704625b5f3b0548eb72c"),
    6: ("business_vault", "f29738534c35666db49c2d4e4cd7c504971e6a7dddf79dfd49d026e1f5aa17a4"),
    7: ("pipeline", "34964bf2912e8b6982a0068a6cc9c835ac7582b7eed9d300b62e7fb7533d5a65"),
    8: ("automation_layer", "eae01c0806fd164e38c877cf0d9aa4c1a6c4741c20db57dcda350c388f8c09d1"),
}

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
    # None when all is well; else why this migration needs attention.
    note: str | None = None


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
    require_supported_server(conn)
    # Concurrent starts apply each migration once: they take turns.
    conn.execute("SELECT pg_advisory_lock(%s)", (dbcode.LOCK_KEY,))
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
    dbcode.bootstrap(conn)


def _release(conn: psycopg.Connection) -> None:
    conn.execute("SELECT pg_advisory_unlock(%s)", (dbcode.LOCK_KEY,))


@dataclass(frozen=True)
class _Applied:
    name: str
    applied_at: datetime
    checksum: str


def _applied(conn: psycopg.Connection) -> dict[int, _Applied]:
    rows = conn.execute("SELECT version, name, applied_at, checksum FROM util.schema_migration").fetchall()
    return {version: _Applied(name, applied_at, checksum) for version, name, applied_at, checksum in rows}


def _check(applied: dict[int, _Applied], code: list[Migration]) -> None:
    """Refuse a database migrated by a newer release, or whose applied migration differs from the file."""
    unknown = sorted(set(applied) - {m.version for m in code})
    if unknown:
        raise MigrationError(
            f"the database has migrations this version of OneVault does not know ({unknown}); "
            "it was migrated by a newer release. Run that release, or roll the database back with it."
        )
    for m in code:
        if m.version in applied and applied[m.version].checksum != m.checksum:
            raise MigrationError(
                f"migration {m.label}.up.sql differs from the one this database applied on "
                f"{applied[m.version].applied_at:%Y-%m-%d}: released migrations never change. "
                "Restore the file as released and put the change in a new migration."
            )


def _is_release_0_1_0(applied: dict[int, _Applied]) -> bool:
    """Whether the database recorded the migrations of the first release's layout."""
    return 1 in applied and applied[1].name == RELEASE_0_1_0[1][0]


def _adopt_release_0_1_0(conn: psycopg.Connection, applied: dict[int, _Applied], progress: Progress) -> None:
    """Record a database of the first release as 0001_baseline, which holds the same schema.

    Its functions and views are dropped here and created again from the files by the upgrade.
    A database whose migrations no release shipped (a development build) is refused.
    """
    versions = set(applied)
    if versions not in (set(RELEASE_0_1_0), set(RELEASE_0_1_0) - {8}):
        raise MigrationError(
            f"the database recorded migrations {sorted(versions)} of OneVault 0.1.0's layout; only a "
            "database with all of 0001-0008 (or 0001-0007) can be upgraded in place. Upgrade it with "
            "OneVault 0.1.0 first (`onevault db upgrade`), then with this release."
        )
    for version, (name, checksum) in RELEASE_0_1_0.items():
        if version in applied and (applied[version].name, applied[version].checksum) != (name, checksum):
            raise MigrationError(
                f"the database's migration {version:04d}_{applied[version].name} was applied from a file "
                "that no release of OneVault shipped (a development build); it cannot be upgraded in "
                "place. Start from a new database (`onevault db upgrade` on an empty one), or migrate it "
                "with the development build it came from."
            )
    progress("adopting a database of OneVault 0.1.0: migrations 0001-0008 become 0001_baseline")
    with conn.transaction():
        dbcode.remove(conn)
        if 8 not in applied:
            # Its automation layer was rolled back: it stays removed until `db automation install`.
            dbcode.remove(conn, dbcode.AUTOMATION)
        conn.execute("DELETE FROM util.schema_migration WHERE version = ANY(%s)", (sorted(versions),))
        baseline = available()[0]
        conn.execute(
            "INSERT INTO util.schema_migration (version, name, checksum, applied_at) VALUES (%s, %s, %s, %s)",
            (baseline.version, baseline.name, baseline.checksum, applied[1].applied_at),
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
    """Apply pending migrations up to `target` (default: all), then the changed database code.

    The code is written for the latest schema: it is applied only when every migration is.
    """
    code = available()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        _prepare(conn)
        try:
            applied = _applied(conn)
            if _is_release_0_1_0(applied):
                _adopt_release_0_1_0(conn, applied, progress)
                applied = _applied(conn)
            _check(applied, code)
            done = []
            for migration in code:
                if migration.version in applied or (target is not None and migration.version > target):
                    continue
                _run(conn, migration, "up", progress)
                done.append(migration)
            if target is None or target >= code[-1].version:
                dbcode.apply(conn, progress)
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
            if _is_release_0_1_0(applied):
                raise MigrationError(
                    "the database has OneVault 0.1.0's layout: run `onevault db upgrade` first"
                )
            _check(applied, code)
            if not applied:
                return []
            floor = max(applied) - 1 if to is None else to
            if floor < 0:
                raise MigrationError("--to must be 0 or a migration number")
            done: list[Migration] = []
            for migration in reversed(code):
                if migration.version in applied and migration.version > floor:
                    if not done:
                        # Functions and views are written for the latest schema: they go first.
                        dbcode.remove(conn, progress=progress)
                    _run(conn, migration, "down", progress)
                    done.append(migration)
            return done
        finally:
            _release(conn)


def status(conninfo: str) -> tuple[list[MigrationState], list[dbcode.CodeState]]:
    """Every migration of the code and of the database, and every file of database code."""
    code = {m.version: m for m in available()}
    with psycopg.connect(conninfo, autocommit=True) as conn:
        require_supported_server(conn)
        exists = conn.execute("SELECT to_regclass('util.schema_migration') IS NOT NULL").fetchone()
        applied = _applied(conn) if exists and exists[0] else {}
        code_states = dbcode.status(conn)
    if _is_release_0_1_0(applied):
        note = "OneVault 0.1.0 layout: `onevault db upgrade` adopts it"
        return [
            MigrationState(v, a.name, a.applied_at, note) for v, a in sorted(applied.items())
        ], code_states
    states = []
    for version, migration in code.items():
        if version not in applied:
            states.append(MigrationState(version, migration.name, None))
        elif applied[version].checksum != migration.checksum:
            states.append(
                MigrationState(
                    version, migration.name, applied[version].applied_at, "file changed since applied"
                )
            )
        else:
            states.append(MigrationState(version, migration.name, applied[version].applied_at))
    states += [
        MigrationState(v, a.name, a.applied_at, "unknown to this release")
        for v, a in applied.items()
        if v not in code
    ]
    return sorted(states, key=lambda s: s.version), code_states
