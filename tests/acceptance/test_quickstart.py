"""The README quick start, as a user runs it: real `onevault` processes and an embedded PostgreSQL."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.helpers.servers import ServeProcess


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SYSTEM_DATABASE_URL", "ONEVAULT_DATABASE_URL")}
    env["ONEVAULT_DATA_DIR"] = str(data_dir)
    return env


def _onevault(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "onevault", *args],
        env=_env(data_dir),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A fresh ONEVAULT_DATA_DIR (readable by the embedded server's system user when run as root)."""
    path = Path(f"/tmp/onevault-quickstart-{uuid.uuid4().hex[:8]}")
    yield path
    shutil.rmtree(path, ignore_errors=True)
    path.with_suffix(".log").unlink(missing_ok=True)


def _serve(data_dir: Path) -> ServeProcess:
    return ServeProcess(data_dir.with_suffix(".log"), ONEVAULT_DATA_DIR=str(data_dir))


def test_quickstart_serves_tracks_and_keeps_data_across_restarts(data_dir: Path) -> None:
    """serve, tenant, token, the guide's curl → 200; SIGTERM stops PostgreSQL; a restart finds the event."""
    service = _serve(data_dir)
    try:
        _onevault(data_dir, "tenant", "create", "one_spa")
        created = _onevault(data_dir, "token", "create", "one_spa", "--scope", "track", "--scope", "read")
        token = created.stdout.strip().splitlines()[-1]
        assert token.startswith("ovt_prod_") and len(token) == len("ovt_prod_") + 64
        response = httpx.post(
            f"{service.url}/api/v1/track",
            headers={"X-Customer-ID": "one_spa", "Authorization": f"Bearer {token}"},
            json={
                "page_url": "http://localhost/test",
                "event_type": "test_event",
                "event_data": {"test": True},
            },
        )
        assert response.status_code == 200, response.text
        event_id = response.json()["event_id"]
    finally:
        code = service.stop()
    log = service.log.read_text()
    assert code == 0, log
    assert token not in log
    assert not (data_dir / "pgdata" / "postmaster.pid").exists(), "embedded PostgreSQL left running"

    service = _serve(data_dir)
    try:
        url = f"postgresql://postgres@/postgres?host={data_dir / 'pgdata'}"
        with psycopg.connect(url) as conn:
            rows = conn.execute("SELECT event_id FROM raw.site_tracking_events_r").fetchall()
        assert rows == [(event_id,)]
    finally:
        assert service.stop() == 0
