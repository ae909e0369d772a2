"""Databases as OneVault 0.1.0 left them: its eight migrations, applied and recorded as its runner did."""

from __future__ import annotations

import hashlib
from pathlib import Path

import psycopg

# The migration files of release 0.1.0, kept verbatim: the layout users' databases were created with.
RELEASE_DIR = Path(__file__).resolve().parent.parent / "data" / "release_0_1_0_migrations"
# 0007 as a development build had it before staging.pipeline_rest existed (never released).
DEV_0007 = Path(__file__).resolve().parent.parent / "data" / "0007_pipeline.before_pipeline_rest.up.sql"


def migrate_like_release_0_1_0(url: str, through: int = 8, replace: dict[int, Path] | None = None) -> None:
    """Apply 0.1.0's migrations 1..`through` to an empty database (`replace`: other up scripts)."""
    replace = replace or {}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA util")
        conn.execute(
            "CREATE TABLE util.schema_migration (version integer PRIMARY KEY, name text NOT NULL, "
            "checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for up in sorted(RELEASE_DIR.glob("*.up.sql"))[:through]:
            version, name = int(up.name[:4]), up.name[5 : -len(".up.sql")]
            text = replace.get(version, up).read_text(encoding="utf-8")
            with conn.transaction():
                conn.execute(text.encode())
                conn.execute(
                    "INSERT INTO util.schema_migration (version, name, checksum) VALUES (%s, %s, %s)",
                    (version, name, hashlib.sha256(text.encode()).hexdigest()),
                )
