"""The embedded PostgreSQL is stopped by the last `onevault serve` using it, even after one was killed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.servers import ServeProcess


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A fresh ONEVAULT_DATA_DIR (readable by the embedded server's system user when run as root)."""
    path = Path(f"/tmp/onevault-embedded-{uuid.uuid4().hex[:8]}")
    yield path
    postmaster = path / "pgdata" / "postmaster.pid"
    if postmaster.exists():
        # Left running by a failure: a fast shutdown of the server this test started.
        os.kill(int(postmaster.read_text().split()[0]), signal.SIGINT)
        deadline = time.monotonic() + 30
        while postmaster.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    shutil.rmtree(path, ignore_errors=True)


def _serve(data_dir: Path, log: str) -> ServeProcess:
    return ServeProcess(data_dir.parent / f"{data_dir.name}-{log}.log", ONEVAULT_DATA_DIR=str(data_dir))


def test_clean_stop_after_a_kill_stops_the_embedded_postgres(data_dir: Path) -> None:
    """kill -9 of serve, then serve again and SIGTERM: the embedded PostgreSQL stops, no handle is left."""
    postmaster = data_dir / "pgdata" / "postmaster.pid"
    handles = data_dir / "pgdata" / ".handle_pids.json"

    killed = _serve(data_dir, "killed")
    killed.process.kill()
    killed.process.wait()
    assert killed.process.pid in json.loads(handles.read_text())
    assert postmaster.exists(), "the embedded PostgreSQL outlives a killed server"

    service = _serve(data_dir, "restarted")
    assert json.loads(handles.read_text()) == [service.process.pid]
    code = service.stop()
    log = service.log.read_text()
    assert code == 0, log

    assert not postmaster.exists(), f"embedded PostgreSQL left running:\n{log}"
    assert json.loads(handles.read_text()) == []
