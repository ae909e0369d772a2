"""The service running for real: in a thread of the test process, or as `onevault serve` in its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from onevault.app import create_app
from onevault.config import Settings
from onevault.server import server_config
from tests.helpers.http import free_port


class LiveServer:
    """The real application served over HTTP on loopback, in a background thread, as `serve` configures it."""

    def __init__(self, database_url: str, **settings: Any) -> None:
        self.settings = Settings(**settings)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        app = create_app(self.settings, database_url=database_url)
        config = server_config(app, self.settings, host="127.0.0.1", port=self.port, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


class ServeProcess:
    """`onevault serve` in its own process, started as a user or a service manager does."""

    def __init__(self, log: Path, *args: str, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        environment = {
            k: v for k, v in os.environ.items() if k not in ("SYSTEM_DATABASE_URL", "ONEVAULT_DATABASE_URL")
        }
        with log.open("w") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "onevault", "serve", "--port", str(self.port), *args],
                env=environment | env,
                stdout=subprocess.DEVNULL,
                stderr=sink,
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"onevault serve did not start: {log.read_text()}")
            time.sleep(0.1)

    def stop(self) -> int:
        """SIGTERM; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode
