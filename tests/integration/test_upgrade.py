"""Upgrades from every earlier database: OneVault 0.1.0's layout, development builds, edited migrations."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from tests.helpers.catalog import differences, snapshot
from tests.helpers.cli import Cli
from tests.helpers.postgres import create_database, drop_database
from tests.helpers.release import DEV_0007, RELEASE_DIR, migrate_like_release_0_1_0
from tests.helpers.tenants import make_tenant

from onevault import dbcode, keys, migrations
from onevault.config import Settings

RELEASED_LIST = Path(__file__).resolve().parent.parent / "data" / "released_migrations.txt"
MIGRATIONS_DIR = Path(migrations.__file__).parent
RELEASE_0008_DOWN = RELEASE_DIR / "0008_automation_layer.down.sql"
# Every table holding users' data, counted before and after an upgrade.
DATA_TABLES = (
    "auth.tenant_h",
    "auth.tenant_s",
    "auth.api_token_h",
    "auth.api_token_s",
    "raw.site_tracking_events_r",
    "staging.site_tracking_events_s",
    "staging.user_agent_parse",
    "staging.pipeline_stats",
    "business.site_visitor_h",
    "business.site_session_h",
    "business.site_page_h",
    "business.site_event_h",
    "business.site_event_session_l",
    "business.site_event_page_l",
    "business.site_session_visitor_l",
    "business.site_event_details_s",
    "business.site_page_details_s",
    "business.site_visitor_details_s",
    "business.site_session_summary_s",
)


@pytest.fixture
def second_empty_db_url(pg_url: str) -> Iterator[str]:
    """Another empty database, to compare with `empty_db_url`."""
    url = create_database(pg_url, None)
    yield url
    drop_database(pg_url, url)


def track(conn: psycopg.Connection, customer_id: str, event_id: str, visitor: str = "v1") -> None:
    """Store one event from psql, as operators do."""
    conn.execute(
        "SELECT api.track_site_event(%s, 'https://shop.example/p?utm_source=news', 'page_view', "
        "jsonb_build_object('visitor_id', %s::text), '203.0.113.9'::inet, 'Mozilla/5.0 (X11; Linux)', %s)",
        (customer_id, visitor, event_id),
    )


def counts(conn: psycopg.Connection) -> dict[str, int]:
    """Rows of every data table; in the business layer, those of customers (not the ghost page's zero key)."""
    found = {}
    for table in DATA_TABLES:
        query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(*table.split(".")))
        if table.startswith("business."):
            query += sql.SQL(" WHERE tenant_hk <> {}").format(sql.Literal(bytes(32)))
        row = conn.execute(query).fetchone()
        assert row is not None
        found[table] = int(row[0])
    return found


def populate_release_0_1_0(url: str) -> dict[str, str]:
    """Tenants, tokens, processed and pending events, written by 0.1.0's SQL; the tokens by customer."""
    with psycopg.connect(url, autocommit=True) as conn:
        tokens = {c: make_tenant(conn, c).token for c in ("one_spa", "other_co")}
        for i in range(5):
            track(conn, "one_spa", f"old-{i}", visitor=f"v{i % 2}")
        track(conn, "other_co", "old-0")
        result = conn.execute("SELECT staging.trigger_pipeline_now(NULL)").fetchone()
        assert result is not None and result[0]["results"]["total_processed"] == 6
        for i in range(3):
            track(conn, "one_spa", f"pending-{i}")
    return tokens


def test_fresh_and_upgraded_from_release_0_1_0_have_identical_catalogs(
    empty_db_url: str, second_empty_db_url: str
) -> None:
    """A database created by 0.1.0 and upgraded has exactly the catalog of a fresh install."""
    migrations.upgrade(empty_db_url)
    migrate_like_release_0_1_0(second_empty_db_url)
    populate_release_0_1_0(second_empty_db_url)
    migrations.upgrade(second_empty_db_url)
    assert differences(snapshot(empty_db_url), snapshot(second_empty_db_url)) == {}


def test_release_0_1_0_database_keeps_every_row_and_processes_new_events(
    empty_db_url: str, cli_for: Callable[[str], Cli], tmp_path: Path
) -> None:
    """A 0.1.0 database keeps its tenants, tokens and events; old and new events are processed. Its IP
    hash key leaves it for the key file, so that addresses still hash as before (salts: never)."""
    migrate_like_release_0_1_0(empty_db_url)
    tokens = populate_release_0_1_0(empty_db_url)
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        before = counts(conn)
        row = conn.execute("SELECT hash_key FROM util.ip_hash_key").fetchone()
        assert row is not None
    key = keys.secret_key(Settings(secret_key=None, data_dir=tmp_path), empty_db_url)
    assert key == bytes(row[0])
    assert (tmp_path / keys.KEY_FILE).stat().st_mode & 0o777 == 0o600
    migrations.upgrade(empty_db_url)
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        assert counts(conn) == before
        assert conn.execute("SELECT to_regclass('util.ip_hash_key')").fetchone() == (None,)
        conn.execute("SELECT set_config('onevault.secret_key', %s, false)", (key.hex(),))
        conn.execute("SELECT set_config('onevault.salt_rotation', 'never', false)")
        rehashed = conn.execute(
            "SELECT util.hash_client_ip('203.0.113.7', util.client_ip_key(now()))"
        ).fetchone()
        assert rehashed == (hashlib.sha256(key + b"203.0.113.7").digest(),)
        for customer_id, token in tokens.items():
            owner = conn.execute(
                "SELECT t.customer_id FROM auth.api_token_current k "
                "JOIN auth.tenant_current t USING (tenant_hk) "
                "WHERE k.api_token_hk = sha256(convert_to(%s, 'UTF8')) AND k.revoked_at IS NULL",
                (token,),
            ).fetchone()
            assert owner == (customer_id,)
        track(conn, "one_spa", "new-0")
        track(conn, "one_spa", "old-0")  # a copy of an event stored before the upgrade
        result = conn.execute("SELECT staging.trigger_pipeline_now('one_spa')").fetchone()
        assert result is not None and result[0]["results"]["total_processed"] == 4
        statuses = conn.execute(
            "SELECT processing_status, count(*) FROM raw.site_tracking_events_r GROUP BY 1"
        ).fetchall()
        assert statuses == [("PROCESSED", 10)]
        loaded = conn.execute("SELECT count(*) FROM business.site_event_h").fetchone()
        assert loaded == (10,)
    status = cli_for(empty_db_url)("db", "status")
    assert status.exit_code == 0, status.output
    assert "pending" not in status.output and "changed" not in status.output
    assert "0001" in status.output and "baseline" in status.output
    assert "0.1.0" not in status.output


def test_release_0_1_0_database_with_its_automation_layer_rolled_back(empty_db_url: str) -> None:
    """0.1.0's rollback of 0008 becomes a removed automation layer; installing it processes the backlog."""
    migrate_like_release_0_1_0(empty_db_url)
    populate_release_0_1_0(empty_db_url)
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute(RELEASE_0008_DOWN.read_bytes())
        conn.execute("DELETE FROM util.schema_migration WHERE version = 8")
    migrations.upgrade(empty_db_url)
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        assert conn.execute("SELECT to_regproc('staging.trigger_pipeline_now')").fetchone() == (None,)
        assert {s.state for s in dbcode.status(conn) if s.layer == dbcode.AUTOMATION} == {"removed"}
        dbcode.install(conn, dbcode.AUTOMATION)
        result = conn.execute("SELECT staging.trigger_pipeline_now('one_spa')").fetchone()
        assert result is not None and result[0]["results"]["total_processed"] == 3


def test_development_build_before_pipeline_rest_is_refused_untouched(
    empty_db_url: str, cli_for: Callable[[str], Cli]
) -> None:
    """A database migrated by a build whose 0007 no release shipped is refused, naming it, left as it was."""
    migrate_like_release_0_1_0(empty_db_url, replace={7: DEV_0007})
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        make_tenant(conn, "one_spa")
        track(conn, "one_spa", "e1")
        before = conn.execute(
            "SELECT version, name, checksum FROM util.schema_migration ORDER BY 1"
        ).fetchall()
    with pytest.raises(migrations.MigrationError, match="0007_pipeline") as refused:
        migrations.upgrade(empty_db_url)
    assert "development build" in str(refused.value)
    result = cli_for(empty_db_url)("db", "upgrade")
    assert result.exit_code != 0
    assert "0007_pipeline" in result.output and "Traceback" not in result.output
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        after = conn.execute(
            "SELECT version, name, checksum FROM util.schema_migration ORDER BY 1"
        ).fetchall()
        assert after == before
        # Still the old build's working database: its functions were not touched.
        assert conn.execute("SELECT count(*) FROM raw.site_tracking_events_r").fetchone() == (1,)
        assert conn.execute("SELECT to_regproc('staging.process_batch')").fetchone() != (None,)


def test_a_partly_migrated_release_0_1_0_database_is_refused(empty_db_url: str) -> None:
    """0.1.0 migrated only up to 0005 cannot be adopted: the message says what to do."""
    migrate_like_release_0_1_0(empty_db_url, through=5)
    with pytest.raises(migrations.MigrationError, match=r"0001-0008.*OneVault 0\.1\.0 first"):
        migrations.upgrade(empty_db_url)


def test_an_edited_released_migration_is_refused_naming_the_file(
    db_url: str, cli_for: Callable[[str], Cli]
) -> None:
    """When the applied migration differs from the code's file, upgrade refuses (no silent warning)."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE util.schema_migration SET checksum = 'edited' WHERE version = 1")
    with pytest.raises(migrations.MigrationError, match=r"0001_baseline\.up\.sql differs"):
        migrations.upgrade(db_url)
    result = cli_for(db_url)("db", "upgrade")
    assert result.exit_code != 0 and "0001_baseline.up.sql" in result.output
    serve = subprocess.run(
        [sys.executable, "-m", "onevault", "serve", "--port", "1"],
        env=os.environ | {"SYSTEM_DATABASE_URL": db_url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert serve.returncode != 0
    assert "0001_baseline.up.sql differs" in serve.stderr and "Traceback" not in serve.stderr


def test_released_migrations_are_frozen() -> None:
    """Every migration file is in the committed list of released checksums, unchanged."""
    released = dict(line.split() for line in RELEASED_LIST.read_text(encoding="utf-8").splitlines() if line)
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in MIGRATIONS_DIR.glob("*.sql")}
    unlisted = sorted(set(files) - set(released))
    assert not unlisted, f"add the new migration(s) to {RELEASED_LIST.name} when they land: {unlisted}"
    changed = sorted(name for name, digest in files.items() if released[name] != digest)
    assert not changed, f"released migrations never change; put the change in a new migration: {changed}"
    assert sorted(set(released) - set(files)) == [], "a released migration was deleted"


def test_a_changed_function_file_is_applied_again(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Editing a function's file re-applies it on the next upgrade: the new body is in pg_proc."""
    files = dbcode.available()
    target = next(f for f in files if f.path == "staging/referrer_class.sql")
    edited = target.text.replace("WHEN p_referrer_host = p_page_host THEN 'internal'", "WHEN false THEN 'x'")
    assert edited != target.text
    changed = dbcode.CodeFile(target.path, target.layer, edited, target.requires, target.objects)
    monkeypatch.setattr(dbcode, "available", lambda: [changed if f is target else f for f in files])
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert [s.state for s in dbcode.status(conn) if s.path == target.path] == ["changed"]
    migrations.upgrade(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        body = conn.execute("SELECT pg_get_functiondef('staging.referrer_class'::regproc)").fetchone()
        assert body is not None and "WHEN false THEN 'x'" in body[0]
        assert [s.state for s in dbcode.status(conn) if s.path == target.path] == ["applied"]
        recorded = conn.execute(
            "SELECT checksum FROM util.schema_code WHERE path = %s", (target.path,)
        ).fetchone()
        assert recorded == (changed.checksum,)


def test_a_dropped_function_is_created_again_on_upgrade(db_url: str) -> None:
    """A function recorded as applied but gone from the catalog is `missing`; the next upgrade restores it."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("DROP FUNCTION staging.requeue_failed")
        assert [s.state for s in dbcode.status(conn) if s.path == "staging/requeue_failed.sql"] == ["missing"]
    migrations.upgrade(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert conn.execute("SELECT to_regproc('staging.requeue_failed')").fetchone() != (None,)


def test_every_function_and_view_comes_from_exactly_one_file(db_url: str) -> None:
    """No stale overload or object left behind: the catalog's functions and views are those of the files
    (trigger functions are schema: the migrations that make the triggers make them)."""
    declared = [o.qualified for f in dbcode.available() for o in f.objects]
    assert len(declared) == len(set(declared))
    with psycopg.connect(db_url, autocommit=True) as conn:
        present = [
            r[0]
            for r in conn.execute(
                "SELECT n.nspname || '.' || p.proname FROM pg_proc p "
                "JOIN pg_namespace n ON n.oid = p.pronamespace"
                " WHERE n.nspname = ANY(%(s)s) AND p.prorettype <> 'trigger'::regtype UNION ALL "
                "SELECT n.nspname || '.' || c.relname FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind = 'v' AND n.nspname = ANY(%(s)s)",
                {"s": list(dbcode.SCHEMA_ORDER)},
            )
        ]
    assert sorted(present) == sorted(declared)


def test_automation_layer_is_exactly_the_deployment_guides_objects() -> None:
    """The automation layer is the four named functions, the view and their helper."""
    objects = {o.qualified for f in dbcode.available() if f.layer == dbcode.AUTOMATION for o in f.objects}
    assert objects == {
        "api.track_site_event",
        "staging.auto_process_if_needed",
        "staging.trigger_pipeline_now",
        "staging.get_pipeline_status",
        "staging.pipeline_dashboard",
        "staging.resolve_tenants",
    }
