"""A PostgreSQL server older than OneVault supports (Debian's postgresql-15), to test the refusal."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DEBIAN_SERVERS = Path("/usr/lib/postgresql")
OLDEST_SUPPORTED = 16


def old_server_bin() -> Path | None:
    """The bin directory of an installed server older than OLDEST_SUPPORTED, if any."""
    found = sorted(
        (int(d.name), d / "bin")
        for d in DEBIAN_SERVERS.glob("*")
        if d.name.isdigit() and (d / "bin/postgres").exists()
    )
    old = [bin_dir for version, bin_dir in found if version < OLDEST_SUPPORTED]
    return old[-1] if old else None


def _as_server_user(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run it as Debian's `postgres` user then."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@contextmanager
def running_old_server(bin_dir: Path, directory: Path) -> Iterator[str]:
    """Start a server from `bin_dir` with its data and socket in `directory`; its URL."""
    directory.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(directory, user.pw_uid, user.pw_gid)
    data = directory / "data"
    subprocess.run(
        _as_server_user([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"]),
        check=True,
        capture_output=True,
    )
    options = f"-k {directory} -c listen_addresses='' -p 5499"
    subprocess.run(
        _as_server_user(
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data),
                "-o",
                options,
                "-w",
                "-l",
                str(directory / "log"),
                "start",
            ]
        ),
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://postgres@/postgres?host={directory}&port=5499"
    finally:
        subprocess.run(
            _as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(directory, ignore_errors=True)
