"""Serve the naive baseline (bench/naive.py) with uvicorn: `python -m bench.naive_baseline --port N`."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import uvicorn

from bench import harness

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def naive_server(url: str, port: int, workers: int = 2) -> Iterator[harness.Server]:
    """The naive baseline on database `url`, on 127.0.0.1:`port`, stopped afterwards."""
    argv = [sys.executable, "-m", "bench.naive_baseline", "--port", str(port), "--workers", str(workers)]
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    server = harness.Server("naive", argv, port, {"SYSTEM_DATABASE_URL": url, "PYTHONPATH": path})
    try:
        yield server
    finally:
        server.stop()


def main(argv: Sequence[str] | None = None) -> None:
    """Run the baseline until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    uvicorn.run(
        "bench.naive:app",
        factory=True,
        host="127.0.0.1",
        port=args.port,
        workers=args.workers,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
