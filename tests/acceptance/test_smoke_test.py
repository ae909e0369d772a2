"""`onevault smoke-test` against a real `onevault serve`: passes on a good deployment, fails on bad ones."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from onevault import dbcode
from onevault.auth import tokens
from tests.helpers.servers import ServeProcess
from tests.helpers.smoke import failed, report, smoke_test
from tests.helpers.tenants import make_tenant

CHECK_NAMES = (
    "health check",
    "database health",
    "automatic processing",
    "background processing",
    "status monitoring",
    "dashboard data",
    "manual trigger",
    "no token (401)",
    "no customer id (400)",
    "other customer (403)",
)


@pytest.fixture
def service(db_url: str, tmp_path: Path) -> Iterator[ServeProcess]:
    """A freshly started `onevault serve` on this test's database."""
    started = ServeProcess(tmp_path / "serve.log", SYSTEM_DATABASE_URL=db_url)
    try:
        yield started
    finally:
        started.stop()


def test_passes_against_a_freshly_started_service(service: ServeProcess, conn: psycopg.Connection) -> None:
    """Every check passes, the command exits 0, and the token is printed nowhere."""
    tenant = make_tenant(conn, "smoke_co")
    result = smoke_test(service.url, tenant.customer_id, tenant.token)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert [(verdict, number, name) for verdict, number, name, _ in report(result.stdout)] == [
        ("PASS", number, name) for number, name in enumerate(CHECK_NAMES, start=1)
    ], output
    assert result.stdout.splitlines()[-1] == "10 passed, 0 failed"
    assert tenant.token not in output
    service.stop()
    assert tenant.token not in service.log.read_text()
    completed = conn.execute(
        "SELECT count(*) FROM staging.pipeline_dashboard "
        "WHERE raw_event_type = 'smoke_test' AND business_status = '✅ Complete Pipeline'"
    ).fetchone()
    assert completed == (2,)


def test_fails_against_a_service_without_the_automation_layer(
    service: ServeProcess, conn: psycopg.Connection, db_url: str
) -> None:
    """Removing the automation layer under a running service fails the test."""
    tenant = make_tenant(conn, "smoke_co")
    dbcode.remove(conn, dbcode.AUTOMATION)
    result = smoke_test(service.url, tenant.customer_id, tenant.token)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    reasons = failed(result.stdout)
    assert list(reasons) == [
        "database health",
        "automatic processing",
        "background processing",
        "status monitoring",
        "dashboard data",
        "manual trigger",
    ], output
    assert "staging.auto_process_if_needed" in reasons["database health"]
    assert "pipeline status is 'pending'" in reasons["automatic processing"]
    assert result.stdout.splitlines()[-1] == "4 passed, 6 failed"
    assert tenant.token not in output


def test_fails_with_an_unknown_token(service: ServeProcess, conn: psycopg.Connection) -> None:
    """A well-formed token the service does not know fails every authenticated check."""
    make_tenant(conn, "smoke_co")
    unknown = tokens.generate("test")
    result = smoke_test(service.url, "smoke_co", unknown)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    reasons = failed(result.stdout)
    assert list(reasons) == [
        "automatic processing",
        "background processing",
        "status monitoring",
        "dashboard data",
        "manual trigger",
        "other customer (403)",
    ], output
    assert all("HTTP 401" in reason for reason in reasons.values()), output
    assert result.stdout.splitlines()[-1] == "4 passed, 6 failed"
    assert unknown not in output
