"""A server older than PostgreSQL 16 is refused in one line by `serve` and every command."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

REFUSAL = "PostgreSQL 16 or newer is required; this server is 15."


@pytest.mark.parametrize(
    "command",
    [
        ("serve",),
        ("db", "upgrade"),
        ("db", "status"),
        ("db", "automation", "install"),
        ("tenant", "list"),
        ("process",),
        ("status",),
    ],
)
def test_an_older_server_is_refused_in_one_line(old_postgres_url: str, command: tuple[str, ...]) -> None:
    """`onevault <command>` against PostgreSQL 15 exits non-zero printing one line that says why."""
    result = subprocess.run(
        [sys.executable, "-m", "onevault", *command],
        env=os.environ | {"SYSTEM_DATABASE_URL": old_postgres_url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert REFUSAL in lines[0]
    assert "Traceback" not in result.stderr
