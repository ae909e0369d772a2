"""The database code: functions and views kept one per file under `sql/<schema>/`, applied when they change.

Numbered migrations hold the schema; the code written against it lives in `CREATE OR REPLACE`
files that are (re)applied after the migrations whenever their content differs from what the
database recorded in `util.schema_code` (the pattern of Flyway's repeatable migrations). Files
belong to a layer: `core`, or the one named by a `-- layer: NAME` line; a layer can be removed
and installed again on its own (the automation layer of the deployment guide), and a removed
layer stays removed until it is installed. A file that calls objects of another file it must
follow names it in a `-- requires: schema/file.sql` line.
"""

from __future__ import annotations

import graphlib
import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from importlib import resources

import psycopg
from psycopg import sql

CORE = "core"
AUTOMATION = "automation"
# Files of one schema are applied after those of the schemas before it (then by name), unless a
# `-- requires:` line says otherwise.
SCHEMA_ORDER = ("util", "auth", "raw", "staging", "business", "mart", "privacy", "api")
# One lock for everything that changes the database's schema or code, in every process: the
# migration runner holds it for a whole upgrade; removing or installing a layer takes it too.
LOCK_KEY = 0x0E5A_17_01
_LAYER = re.compile(r"^-- layer: ([a-z_]+)\s*$", re.MULTILINE)
_REQUIRES = re.compile(r"^-- requires: (\S+)\s*$", re.MULTILINE)
_CREATES = re.compile(r"^CREATE OR REPLACE (FUNCTION|VIEW) ([a-z_]+)\.([a-z_]+)", re.MULTILINE)

Progress = Callable[[str], None]


class CodeError(RuntimeError):
    """The SQL files are inconsistent (a missing requirement, a file creating nothing)."""


@dataclass(frozen=True)
class DbObject:
    """A function (all its overloads) or a view created by a file."""

    kind: str
    schema: str
    name: str

    @property
    def qualified(self) -> str:
        """`schema.name`."""
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True)
class CodeFile:
    """One file of database code."""

    path: str
    layer: str
    text: str
    requires: tuple[str, ...]
    objects: tuple[DbObject, ...]

    @property
    def checksum(self) -> str:
        """SHA-256 of the file, recorded to know when it changed."""
        return hashlib.sha256(self.text.encode()).hexdigest()


@dataclass(frozen=True)
class CodeState:
    """A file of the code and where the database stands with it."""

    path: str
    layer: str
    applied_at: datetime | None
    # applied, changed (applied from other content), pending, removed (its layer is) or missing
    # (recorded, but an object it creates is gone).
    state: str


def _parse(path: str, text: str) -> CodeFile:
    layers = _LAYER.findall(text)
    objects = tuple(DbObject(kind, schema, name) for kind, schema, name in _CREATES.findall(text))
    if not objects:
        raise CodeError(f"sql/{path} creates no function or view (`CREATE OR REPLACE FUNCTION|VIEW s.name`)")
    return CodeFile(path, layers[0] if layers else CORE, text, tuple(_REQUIRES.findall(text)), objects)


def available() -> list[CodeFile]:
    """Every file of database code, in an order where each follows the files it requires."""
    root = resources.files("onevault").joinpath("sql")
    files: dict[str, CodeFile] = {}
    for schema_dir in root.iterdir():
        if not schema_dir.is_dir() or schema_dir.name.startswith("_"):
            continue
        if schema_dir.name not in SCHEMA_ORDER:
            raise CodeError(f"sql/{schema_dir.name}/ is not a schema of OneVault ({', '.join(SCHEMA_ORDER)})")
        for entry in schema_dir.iterdir():
            if entry.name.endswith(".sql"):
                path = f"{schema_dir.name}/{entry.name}"
                files[path] = _parse(path, entry.read_text(encoding="utf-8"))
    order = sorted(files, key=lambda p: (SCHEMA_ORDER.index(p.split("/")[0]), p))
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for path in order:
        unknown = [r for r in files[path].requires if r not in files]
        if unknown:
            raise CodeError(f"sql/{path} requires {', '.join(unknown)}, which does not exist")
        sorter.add(path, *files[path].requires)
    sorter.prepare()
    ranked: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=order.index)
        ranked.extend(ready)
        sorter.done(*ready)
    return [files[p] for p in ranked]


def layers() -> list[str]:
    """The layers of the code, core first."""
    return sorted({f.layer for f in available()}, key=lambda layer: (layer != CORE, layer))


def bootstrap(conn: psycopg.Connection) -> None:
    """Create the tables that record applied files and removed layers (the caller holds the lock)."""
    conn.execute(
        """
        CREATE TABLE IF NOT EXISTS util.schema_code (
            path text PRIMARY KEY,
            layer text NOT NULL,
            checksum text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    conn.execute(
        """
        CREATE TABLE IF NOT EXISTS util.schema_layer (
            layer text PRIMARY KEY,
            installed boolean NOT NULL,
            changed_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )


def _recorded(conn: psycopg.Connection) -> dict[str, tuple[str, datetime]]:
    rows = conn.execute("SELECT path, checksum, applied_at FROM util.schema_code").fetchall()
    return {path: (checksum, applied_at) for path, checksum, applied_at in rows}


def _removed_layers(conn: psycopg.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT layer FROM util.schema_layer WHERE NOT installed")}


def _present(conn: psycopg.Connection, objects: Iterable[DbObject]) -> set[DbObject]:
    """Which of `objects` exist in the catalog."""
    wanted = list(objects)
    rows = conn.execute(
        """
        SELECT n.nspname, p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = ANY(%(schemas)s)
        UNION
        SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = ANY(%(schemas)s) AND c.relkind = 'v'
        """,
        {"schemas": sorted({o.schema for o in wanted})},
    ).fetchall()
    found = set(rows)
    return {o for o in wanted if (o.schema, o.name) in found}


def _drop(conn: psycopg.Connection, obj: DbObject) -> None:
    if obj.kind == "VIEW":
        conn.execute(
            sql.SQL("DROP VIEW IF EXISTS {}.{}").format(sql.Identifier(obj.schema), sql.Identifier(obj.name))
        )
        return
    overloads = conn.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = %s AND p.proname = %s",
        (obj.schema, obj.name),
    ).fetchall()
    for (signature,) in overloads:
        # regprocedure's text form is the function's own quoted, schema-qualified signature.
        conn.execute(sql.SQL("DROP FUNCTION {}").format(sql.SQL(signature)))


def apply(conn: psycopg.Connection, progress: Progress = lambda _: None) -> list[CodeFile]:
    """Apply, in one transaction, every file of an installed layer that is new, changed or missing."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        bootstrap(conn)
        recorded = _recorded(conn)
        removed = _removed_layers(conn)
        files = [f for f in available() if f.layer not in removed]
        present = _present(conn, (o for f in files for o in f.objects))
        due = [
            f for f in files if recorded.get(f.path, ("",))[0] != f.checksum or not set(f.objects) <= present
        ]
        for code in due:
            progress(f"apply sql/{code.path}")
            conn.execute(code.text.encode())
            conn.execute(
                """
                INSERT INTO util.schema_code (path, layer, checksum) VALUES (%s, %s, %s)
                ON CONFLICT (path) DO UPDATE
                SET layer = EXCLUDED.layer, checksum = EXCLUDED.checksum, applied_at = now()
                """,
                (code.path, code.layer, code.checksum),
            )
        conn.execute(
            "INSERT INTO util.schema_layer (layer, installed) SELECT unnest(%s::text[]), true "
            "ON CONFLICT (layer) DO NOTHING",
            (sorted({f.layer for f in files}),),
        )
        # Files that no longer exist: their objects were dropped by a migration.
        conn.execute("DELETE FROM util.schema_code WHERE NOT (path = ANY(%s))", ([f.path for f in files],))
    return due


def remove(
    conn: psycopg.Connection, layer: str | None = None, progress: Progress = lambda _: None
) -> list[CodeFile]:
    """Drop the objects of `layer` (None: of every layer) in reverse order, in one transaction.

    A layer removed by name is recorded as removed: `apply` leaves it out until `install`.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        bootstrap(conn)
        files = [f for f in reversed(available()) if layer is None or f.layer == layer]
        if layer is not None and not files:
            raise CodeError(f"no layer {layer!r}; the layers are {', '.join(layers())}")
        for code in files:
            progress(f"remove sql/{code.path}")
            for obj in reversed(code.objects):
                _drop(conn, obj)
        conn.execute("DELETE FROM util.schema_code WHERE path = ANY(%s)", ([f.path for f in files],))
        if layer is not None:
            conn.execute(
                "INSERT INTO util.schema_layer (layer, installed) VALUES (%s, false) "
                "ON CONFLICT (layer) DO UPDATE SET installed = false, changed_at = now()",
                (layer,),
            )
    return files


def install(conn: psycopg.Connection, layer: str, progress: Progress = lambda _: None) -> list[CodeFile]:
    """Mark `layer` installed again and apply what it lacks."""
    if layer not in layers():
        raise CodeError(f"no layer {layer!r}; the layers are {', '.join(layers())}")
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        bootstrap(conn)
        conn.execute(
            "INSERT INTO util.schema_layer (layer, installed) VALUES (%s, true) "
            "ON CONFLICT (layer) DO UPDATE SET installed = true, changed_at = now()",
            (layer,),
        )
        return apply(conn, progress)


def status(conn: psycopg.Connection) -> list[CodeState]:
    """Every file of the code and whether the database has it as it is."""
    exists = conn.execute("SELECT to_regclass('util.schema_code') IS NOT NULL").fetchone()
    recorded = _recorded(conn) if exists and exists[0] else {}
    removed = _removed_layers(conn) if exists and exists[0] else set()
    files = available()
    present = _present(conn, (o for f in files for o in f.objects))
    states = []
    for code in files:
        checksum, applied_at = recorded.get(code.path, (None, None))
        if code.layer in removed:
            state = "removed"
        elif checksum is None:
            state = "pending"
        elif checksum != code.checksum:
            state = "changed"
        elif not set(code.objects) <= present:
            state = "missing"
        else:
            state = "applied"
        states.append(CodeState(code.path, code.layer, applied_at, state))
    return states
