"""Operating a deployment: the README's rollback procedure, CLI processing and several workers."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from onevault import dbcode, migrations
from tests.helpers.cli import Cli
from tests.helpers.servers import ServeProcess
from tests.helpers.smoke import smoke_test
from tests.helpers.tenants import make_tenant


def _completed(conn: psycopg.Connection) -> int:
    row = conn.execute(
        "SELECT count(*) FROM staging.pipeline_dashboard WHERE business_status = '✅ Complete Pipeline'"
    ).fetchone()
    return int(row[0]) if row else 0


def _wait_until(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not reached within {timeout} s"
        time.sleep(0.05)


@pytest.fixture
def service(db_url: str, tmp_path: Path) -> Iterator[ServeProcess]:
    """`onevault serve` on this test's database."""
    started = ServeProcess(
        tmp_path / "serve.log", SYSTEM_DATABASE_URL=db_url, ONEVAULT_DATA_DIR=str(tmp_path)
    )
    try:
        yield started
    finally:
        started.stop()


def test_readme_rollback_procedure(
    service: ServeProcess,
    db_url: str,
    conn: psycopg.Connection,
    cli_for: Callable[[str], Cli],
    tmp_path: Path,
) -> None:
    """`db automation remove` and a restart: ingestion goes on, the smoke test fails; `install` drains it."""
    cli = cli_for(db_url)
    tenant = make_tenant(conn, "one_spa")
    assert cli("db", "check").exit_code == 0

    removed = cli("db", "automation", "remove")
    assert removed.exit_code == 0, removed.output
    assert "staging.trigger_pipeline_now" in removed.output
    service.stop()
    log = tmp_path / "restarted.log"
    restarted = ServeProcess(log, SYSTEM_DATABASE_URL=db_url, ONEVAULT_DATA_DIR=str(tmp_path))
    try:
        check = cli("db", "check")
        assert check.exit_code == 1, "a restart must not put a removed automation layer back"
        assert "staging.trigger_pipeline_now" in check.output and "missing" in check.output
        assert "removed" in cli("db", "automation", "status").output

        response = httpx.post(
            f"{restarted.url}/api/v1/track", headers=tenant.headers, json={"page_url": "https://a.test/"}
        )
        assert response.status_code == 200
        assert response.json()["pipeline"]["status"] == "pending"
        assert smoke_test(restarted.url, tenant.customer_id, tenant.token).returncode == 1

        installed = cli("db", "automation", "install")
        assert installed.exit_code == 0, installed.output
        assert cli("db", "check").exit_code == 0
        # The event above and those the failed smoke test sent: the whole backlog.
        _wait_until(lambda: _completed(conn) == 3, timeout=10)
        passed = smoke_test(restarted.url, tenant.customer_id, tenant.token)
        assert passed.returncode == 0, passed.stdout
    finally:
        restarted.stop()
    assert "⚠️ Site tracking processing failed (non-critical)" in log.read_text()


def test_rollback_procedure_is_the_same_after_a_new_migration(
    db_url: str, cli_for: Callable[[str], Cli], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a migration on top, the procedure still removes exactly the automation layer, nothing else."""
    released = migrations.available()
    later = migrations.Migration(
        released[-1].version + 1,
        "example_table",
        "CREATE TABLE staging.example_t (x integer);",
        "DROP TABLE staging.example_t;",
    )
    monkeypatch.setattr(migrations, "available", lambda: [*released, later])
    cli = cli_for(db_url)
    assert cli("db", "upgrade").exit_code == 0
    before, _ = migrations.status(db_url)
    assert before[-1].name == "example_table" and before[-1].applied_at is not None

    assert cli("db", "automation", "remove").exit_code == 0
    after, code = migrations.status(db_url)
    assert after == before
    assert {c.path for c in code if c.state == "removed"} == {
        f.path for f in dbcode.available() if f.layer == dbcode.AUTOMATION
    }
    assert {c.state for c in code if c.layer != dbcode.AUTOMATION} == {"applied"}
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass('staging.example_t')").fetchone() == ("staging.example_t",)

    assert cli("db", "automation", "install").exit_code == 0
    _, code = migrations.status(db_url)
    assert {c.state for c in code} == {"applied"}


def test_cli_status_and_process_with_retry_failed(
    conn: psycopg.Connection, cli_for: Callable[[str], Cli], db_url: str
) -> None:
    """`status` shows the backlog; `process` drains it; `--retry-failed` requeues quarantined events."""
    cli = cli_for(db_url)
    make_tenant(conn, "one_spa")
    for url in ("https://a.test/1", "https://a.test/2", "not a url"):
        conn.execute("SELECT api.track_site_event('one_spa', %s)", (url,))

    status = cli("status", "--customer-id", "one_spa")
    assert status.exit_code == 0
    assert re.search(r"raw_pending\s+3", status.output), status.output

    processed = cli("process", "--customer-id", "one_spa")
    assert processed.exit_code == 0, processed.output
    assert re.search(r"one_spa\s+3\s+2\s+1\s+0", processed.output), processed.output
    assert cli("process").output.strip().endswith("No processing needed - all events up to date")

    retried = cli("process", "--retry-failed")
    assert "Requeued 0 failed and 1 quarantined event(s)" in retried.output
    assert re.search(r"one_spa\s+1\s+0\s+1\s+0", retried.output), retried.output
    assert _completed(conn) == 2
    unknown = cli("status", "--customer-id", "nobody")
    assert unknown.exit_code == 1 and "unknown customer id" in unknown.output


@pytest.mark.parametrize("parallelism", ["1", "2"])
def test_two_workers_process_everything_once_and_share_metrics(
    db_url: str, conn: psycopg.Connection, tmp_path: Path, parallelism: str
) -> None:
    """With `--workers 2` (and 1 or 2 runs per customer), processing and /metrics cover every worker."""
    tenant = make_tenant(conn, "one_spa")
    service = ServeProcess(
        tmp_path / "serve.log",
        "--workers",
        "2",
        SYSTEM_DATABASE_URL=db_url,
        ONEVAULT_DATA_DIR=str(tmp_path),
        ONEVAULT_PIPELINE_PARALLELISM=parallelism,
    )
    try:

        async def send() -> None:
            async with httpx.AsyncClient(
                base_url=service.url, limits=httpx.Limits(max_connections=20)
            ) as http:
                responses = await asyncio.gather(
                    *(
                        http.post(
                            "/api/v1/track/async",
                            headers=tenant.headers,
                            json={"page_url": f"https://a.test/{n}"},
                        )
                        for n in range(100)
                    )
                )
            assert {r.status_code for r in responses} == {200}

        asyncio.run(send())
        _wait_until(lambda: _completed(conn) == 100, timeout=10)
        accepted = 'onevault_events_received_total{endpoint="/api/v1/track/async",outcome="accepted"} 100.0'
        for _ in range(4):  # whichever worker answers, the counts are those of all workers
            assert accepted in httpx.get(f"{service.url}/metrics").text
        counts = conn.execute(
            "SELECT count(*), count(DISTINCT raw_event_id) FROM business.site_event_details_s"
        ).fetchone()
        assert counts == (100, 100)
    finally:
        assert service.stop() == 0


def test_ingestion_only_node_with_a_separate_processing_worker(
    db_url: str, conn: psycopg.Connection, tmp_path: Path
) -> None:
    """ONEVAULT_PIPELINE_BACKGROUND=false stores without processing; `process --follow` processes."""
    tenant = make_tenant(conn, "one_spa")
    env = {"SYSTEM_DATABASE_URL": db_url, "ONEVAULT_DATA_DIR": str(tmp_path)}
    service = ServeProcess(tmp_path / "serve.log", ONEVAULT_PIPELINE_BACKGROUND="false", **env)
    try:
        with httpx.Client(base_url=service.url, headers=tenant.headers) as http:
            sync = http.post("/api/v1/track", json={"page_url": "https://a.test/sync"})
            assert sync.json()["pipeline"]["status"] == "complete"  # its own event is processed inline
            for n in range(5):
                assert http.post("/api/v1/track/async", json={"page_url": f"https://a.test/{n}"}).is_success
            time.sleep(2.5)  # longer than a background sweep
            assert _completed(conn) == 1
            pending = conn.execute(
                "SELECT count(*) FROM raw.site_tracking_events_r WHERE processing_status = 'PENDING'"
            ).fetchone()
            assert pending == (5,)
            assert "Background processing is off" in service.log.read_text()

            with (tmp_path / "worker.log").open("w") as sink:
                worker = subprocess.Popen(
                    [sys.executable, "-m", "onevault", "process", "--follow"],
                    env=os.environ | env | {"ONEVAULT_PIPELINE_SWEEP_SECONDS": "0.2"},
                    stdout=subprocess.DEVNULL,
                    stderr=sink,
                )
            try:
                _wait_until(lambda: _completed(conn) == 6, timeout=20)
                assert http.post("/api/v1/track/async", json={"page_url": "https://a.test/later"}).is_success
                _wait_until(lambda: _completed(conn) == 7, timeout=10)
            finally:
                worker.send_signal(signal.SIGTERM)
                assert worker.wait(timeout=30) == 0, (tmp_path / "worker.log").read_text()
    finally:
        assert service.stop() == 0


def test_follow_takes_no_other_option(cli_for: Callable[[str], Cli], db_url: str) -> None:
    """`process --follow` covers every customer; combining it is a usage error."""
    result = cli_for(db_url)("process", "--follow", "--customer-id", "one_spa")
    assert result.exit_code == 2
    assert "--follow processes every customer" in result.output
