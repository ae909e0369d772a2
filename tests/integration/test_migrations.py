"""Versioned migrations: upgrade, rollback, refusal of a newer database, concurrency and the CLI."""

from __future__ import annotations

import threading
from collections.abc import Callable

import psycopg
import pytest
from tests.helpers.cli import Cli
from tests.helpers.tenants import make_tenant

from onevault import migrations
from onevault.auth import store
from onevault.config import get_settings

PRODUCT_SCHEMAS = ("raw", "staging", "business", "api", "auth", "privacy")
ALL_SCHEMAS = (*PRODUCT_SCHEMAS, "util")
N = len(migrations.available())


def applied_versions(url: str) -> list[int]:
    """Versions recorded in util.schema_migration."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT version FROM util.schema_migration ORDER BY version").fetchall()
    return [r[0] for r in rows]


def leftovers(url: str) -> dict[str, list[str]]:
    """Every schema, relation, function and type left in the product's schemas."""
    with psycopg.connect(url, autocommit=True) as conn:
        schemas = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s) ORDER BY 1", (list(ALL_SCHEMAS),)
        ).fetchall()
        relations = conn.execute(
            "SELECT n.nspname || '.' || c.relname || ' (' || c.relkind::text || ')' FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ANY(%s) ORDER BY 1",
            (list(ALL_SCHEMAS),),
        ).fetchall()
        functions = conn.execute(
            "SELECT p.oid::regprocedure::text FROM pg_proc p "
            "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = ANY(%s) ORDER BY 1",
            (list(ALL_SCHEMAS),),
        ).fetchall()
        types = conn.execute(
            "SELECT t.oid::regtype::text FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
            "WHERE n.nspname = ANY(%s) AND t.typrelid = 0 AND t.typelem = 0 ORDER BY 1",
            (list(ALL_SCHEMAS),),
        ).fetchall()
    return {
        "schemas": [r[0] for r in schemas],
        "relations": [r[0] for r in relations],
        "functions": [r[0] for r in functions],
        "types": [r[0] for r in types],
    }


def assert_fully_migrated(url: str) -> None:
    """Every migration recorded and the product's schemas and landing table present."""
    assert applied_versions(url) == list(range(1, N + 1))
    with psycopg.connect(url, autocommit=True) as conn:
        present = {
            r[0]
            for r in conn.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s)", (list(ALL_SCHEMAS),)
            )
        }
        landing = conn.execute("SELECT to_regclass('raw.site_tracking_events_r')").fetchone()
    assert present == set(ALL_SCHEMAS)
    assert landing is not None and landing[0] is not None


def assert_fully_rolled_back(url: str) -> None:
    """Nothing a migration created is left; util holds only the runner's table."""
    left = leftovers(url)
    assert left["schemas"] == ["util"]
    assert left["functions"] == []
    assert left["types"] == []
    # The runner's own tables (and their primary key indexes) are all that remains.
    assert left["relations"] == [
        "util.schema_code (r)",
        "util.schema_code_pkey (i)",
        "util.schema_layer (r)",
        "util.schema_layer_pkey (i)",
        "util.schema_migration (r)",
        "util.schema_migration_pkey (i)",
    ]
    assert applied_versions(url) == []


def track(conn: psycopg.Connection, customer_id: str, event_id: str) -> dict[str, object]:
    """Store one event through api.track_site_event."""
    row = conn.execute(
        "SELECT api.track_site_event(%s, 'https://x.test/p', 'page_view', '{}'::jsonb, "
        "'10.0.0.1'::inet, 'UA/1.0', %s)",
        (customer_id, event_id),
    ).fetchone()
    assert row is not None
    result: dict[str, object] = row[0]
    return result


def test_upgrade_applies_every_migration(empty_db_url: str) -> None:
    """Upgrading an empty database applies 1..N and creates every schema and the landing table."""
    done = migrations.upgrade(empty_db_url)
    assert [m.version for m in done] == list(range(1, N + 1))
    assert_fully_migrated(empty_db_url)
    assert migrations.upgrade(empty_db_url) == []


def test_up_down_up_on_empty_database(empty_db_url: str) -> None:
    """Rolling back to 0 removes every object the migrations created, and upgrading again works."""
    migrations.upgrade(empty_db_url)
    done = migrations.rollback(empty_db_url, to=0)
    assert [m.version for m in done] == list(range(N, 0, -1))
    assert_fully_rolled_back(empty_db_url)
    migrations.upgrade(empty_db_url)
    assert_fully_migrated(empty_db_url)
    assert migrations.rollback(empty_db_url, to=0)
    assert_fully_rolled_back(empty_db_url)


def test_up_down_up_on_populated_database(empty_db_url: str) -> None:
    """A database with tenants, tokens and events rolls back to 0 cleanly and works after re-upgrade."""
    migrations.upgrade(empty_db_url)
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        make_tenant(conn, "one_spa")
        make_tenant(conn, "other_co", ("track",))
        for i in range(3):
            track(conn, "one_spa", f"evt-{i}")
        track(conn, "other_co", "evt-0")
    migrations.rollback(empty_db_url, to=0)
    assert_fully_rolled_back(empty_db_url)
    migrations.upgrade(empty_db_url)
    assert_fully_migrated(empty_db_url)
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        assert store.list_tenants(conn) == []
        make_tenant(conn, "one_spa")
        result = track(conn, "one_spa", "evt-0")
        assert result["duplicate"] is False
        count = conn.execute("SELECT count(*) FROM raw.site_tracking_events_r").fetchone()
        assert count == (1,)


def test_rollback_without_target_removes_only_the_latest(empty_db_url: str) -> None:
    """`rollback()` with no target undoes exactly the latest migration; upgrade re-applies it."""
    migrations.upgrade(empty_db_url, target=N - 1)
    before_latest = leftovers(empty_db_url)
    migrations.upgrade(empty_db_url)
    full = leftovers(empty_db_url)
    assert full != before_latest
    done = migrations.rollback(empty_db_url)
    assert [m.version for m in done] == [N]
    assert applied_versions(empty_db_url) == list(range(1, N))
    assert leftovers(empty_db_url) == before_latest
    again = migrations.upgrade(empty_db_url)
    assert [m.version for m in again] == [N]
    assert_fully_migrated(empty_db_url)
    assert leftovers(empty_db_url) == full


def test_upgrade_stops_at_target(empty_db_url: str) -> None:
    """`upgrade(target=N-1)` applies the migrations up to it but no code (written for the latest schema).

    Trigger functions are schema (migrations make them), not code."""
    done = migrations.upgrade(empty_db_url, target=N - 1)
    assert [m.version for m in done] == list(range(1, N))
    assert applied_versions(empty_db_url) == list(range(1, N))
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        code = conn.execute(
            "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = ANY(%s) AND p.prorettype <> 'trigger'::regtype",
            (list(ALL_SCHEMAS),),
        ).fetchall()
    assert code == []
    rest = migrations.upgrade(empty_db_url)
    assert [m.version for m in rest] == [N]
    assert "staging.stage_events(bigint[])" in leftovers(empty_db_url)["functions"]


def test_database_ahead_of_code_is_refused(empty_db_url: str) -> None:
    """A database migrated by a newer release is refused clearly, and status shows the unknown version."""
    migrations.upgrade(empty_db_url)
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO util.schema_migration (version, name, checksum) VALUES (9999, 'future', 'x')"
        )
    with pytest.raises(migrations.MigrationError, match="newer release") as excinfo:
        migrations.upgrade(empty_db_url)
    assert "9999" in str(excinfo.value)
    with pytest.raises(migrations.MigrationError, match="newer release"):
        migrations.rollback(empty_db_url)
    states, _ = migrations.status(empty_db_url)
    unknown = [s for s in states if s.note == "unknown to this release"]
    assert [(s.version, s.name) for s in unknown] == [(9999, "future")]
    assert unknown[0].applied_at is not None
    assert all(s.applied_at is not None for s in states)


def test_status_on_empty_database_lists_everything_pending(empty_db_url: str) -> None:
    """`status()` on an unmigrated database lists every migration as not applied."""
    states, code = migrations.status(empty_db_url)
    assert [s.version for s in states] == list(range(1, N + 1))
    assert all(s.applied_at is None and s.note is None for s in states)
    assert {c.state for c in code} == {"pending"}


def test_concurrent_upgrades_apply_each_migration_once(empty_db_url: str) -> None:
    """Four processes upgrading the same empty database at once apply each migration exactly once."""
    barrier = threading.Barrier(4)
    results: list[list[int]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run() -> None:
        try:
            barrier.wait()
            done = migrations.upgrade(empty_db_url)
            with lock:
                results.append([m.version for m in done])
        except BaseException as exc:
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert len(results) == 4
    assert sorted(v for r in results for v in r) == list(range(1, N + 1))
    assert_fully_migrated(empty_db_url)


@pytest.fixture
def cli(cli_for: Callable[[str], Cli], empty_db_url: str) -> Cli:
    """`onevault` commands on this test's database."""
    return cli_for(empty_db_url)


def test_cli_upgrade_status_rollback(cli: Cli, empty_db_url: str) -> None:
    """`onevault db upgrade|status|rollback --to 0` succeed and report what they did."""
    result = cli("db", "status")
    assert result.exit_code == 0, result.output
    assert "pending" in result.stdout

    result = cli("db", "upgrade")
    assert result.exit_code == 0, result.output
    assert f"{N} migration(s) applied" in result.stdout
    assert applied_versions(empty_db_url) == list(range(1, N + 1))

    result = cli("db", "upgrade")
    assert result.exit_code == 0, result.output
    assert "up to date" in result.stdout

    result = cli("db", "status")
    assert result.exit_code == 0, result.output
    for m in migrations.available():
        assert f"{m.version:04d}" in result.stdout
        assert m.name in result.stdout
    assert "pending" not in result.stdout

    result = cli("db", "rollback", "--to", "0")
    assert result.exit_code == 0, result.output
    assert f"{N} migration(s) rolled back" in result.stdout
    assert_fully_rolled_back(empty_db_url)

    result = cli("db", "rollback")
    assert result.exit_code == 0, result.output
    assert "Nothing to roll back" in result.stdout


def test_cli_refuses_database_ahead(cli: Cli, empty_db_url: str) -> None:
    """`onevault db upgrade` on a database ahead of the code exits non-zero with a clear message."""
    migrations.upgrade(empty_db_url)
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO util.schema_migration (version, name, checksum) VALUES (9999, 'future', 'x')"
        )
    result = cli("db", "upgrade")
    assert result.exit_code != 0
    assert "newer release" in result.output
    result = cli("db", "status")
    assert result.exit_code == 0, result.output
    assert "9999" in result.stdout
    assert "unknown to this release" in result.stdout


@pytest.mark.parametrize("command", [("db", "status"), ("db", "upgrade"), ("db", "rollback")])
def test_cli_db_commands_report_unreachable_database(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, command: tuple[str, ...]
) -> None:
    """`onevault db ...` against an unreachable PostgreSQL exits non-zero with a message, not a traceback."""
    monkeypatch.setenv("SYSTEM_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/nowhere?connect_timeout=2")
    get_settings.cache_clear()
    result = cli(*command)
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "cannot reach PostgreSQL" in result.output
    assert "Traceback" not in result.output


def test_migration_edited_after_it_was_applied_is_marked_by_status(empty_db_url: str, cli: Cli) -> None:
    """`db status` marks an applied migration whose file changed since (upgrade refuses it: test_upgrade)."""
    migrations.upgrade(empty_db_url)
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute("UPDATE util.schema_migration SET checksum = 'edited' WHERE version = 1")
    states, _ = migrations.status(empty_db_url)
    assert [s.version for s in states if s.note] == [1]
    result = cli("db", "status")
    assert result.exit_code == 0
    (line,) = [line for line in result.output.splitlines() if line.startswith("0001")]
    assert "file changed since applied" in line
    assert sum("changed since applied" in line for line in result.output.splitlines()) == 1


def test_cli_status_lists_every_file_of_database_code(cli: Cli) -> None:
    """`db status` lists the SQL files with their layer and state, pending before the upgrade."""
    before = cli("db", "status")
    assert before.exit_code == 0, before.output
    assert "sql/staging/stage_events.sql" in before.output
    cli("db", "upgrade")
    after = cli("db", "status")
    (line,) = [line for line in after.output.splitlines() if "sql/staging/trigger_pipeline_now.sql" in line]
    assert line.split()[1:3] == ["automation", "applied"]
