"""The database's upkeep: the next days' partitions, retention of every layer, expired idempotency keys.

Run by every server process in the background (`Scheduler`: at start, then every
ONEVAULT_MAINTENANCE_SECONDS), one process at a time, and by `onevault maintenance run`.
A raw or staging partition past retention is detached with DETACH … CONCURRENTLY, which lets
reads and writes of the other days go on, then dropped; one that still holds events not processed
(raw) or not loaded (staging) is kept and reported.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from onevault import sqlfile
from onevault.config import Settings

logger = logging.getLogger(__name__)
Q = sqlfile.load(__package__, "queries.sql")

# Partitions are made this many days ahead: events keep a place to go while the scheduler is down.
DAYS_AHEAD = 3
SESSIONS_PER_STATEMENT = 5_000


@dataclass(frozen=True)
class Retention:
    """What to keep, in days (None: keep for ever)."""

    raw_days: int | None = None
    staging_days: int | None = None
    idempotency_days: int = 30

    @classmethod
    def of(cls, settings: Settings) -> Retention:
        """From ONEVAULT_RETENTION_RAW_DAYS, _STAGING_DAYS and ONEVAULT_IDEMPOTENCY_DAYS."""
        return cls(settings.retention_raw_days, settings.retention_staging_days, settings.idempotency_days)


@dataclass
class Report:
    """What one round of maintenance did."""

    days_made: int = 0
    dropped: list[str] = field(default_factory=list)
    # Partitions past retention kept because of events not processed yet: name → how many.
    held: dict[str, int] = field(default_factory=dict)
    keys_expired: int = 0
    sessions_expired: int = 0
    events_expired: int = 0


def run(
    conninfo: str, retention: Retention, today: date | None = None, now: datetime | None = None
) -> Report | None:
    """One round of maintenance; None when another process is doing it."""
    day = today or datetime.now(UTC).date()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        locked = conn.execute(Q["try_lock"]).fetchone()
        if not locked or not locked[0]:
            return None
        try:
            return _run(conn, retention, day, now)
        finally:
            conn.execute(Q["unlock"])


def make_partitions(conninfo: str, today: date | None = None) -> int:
    """Make the partitions of today and of the next days that are missing; how many days it made.

    A server runs this before it takes requests: after a stop of more than DAYS_AHEAD days, the
    events of today would otherwise have no partition to go to until the first round.
    """
    with psycopg.connect(conninfo, autocommit=True) as conn:
        return _make_partitions(conn, today or datetime.now(UTC).date())


def _make_partitions(conn: psycopg.Connection, today: date) -> int:
    days = {"first": today, "last": today + timedelta(DAYS_AHEAD)}
    made = conn.execute(Q["create_partitions"], days).fetchone()
    return int(made[0]) if made else 0


def _run(conn: psycopg.Connection, retention: Retention, today: date, now: datetime | None) -> Report:
    report = Report(days_made=_make_partitions(conn, today))
    if retention.raw_days is not None:
        _drop_expired(conn, "expired_partitions", today - timedelta(retention.raw_days), report)
    if retention.staging_days is not None:
        _drop_expired(conn, "expired_staging_partitions", today - timedelta(retention.staging_days), report)
    keys = conn.execute(
        Q["expire_keys"], {"before": today - timedelta(retention.idempotency_days)}
    ).fetchone()
    report.keys_expired = int(keys[0]) if keys else 0
    while True:
        row = conn.execute(Q["business_retention"], {"now": now, "limit": SESSIONS_PER_STATEMENT}).fetchone()
        result: dict[str, Any] = row[0] if row else {}
        report.sessions_expired += int(result.get("sessions", 0))
        report.events_expired += int(result.get("events", 0))
        if not result.get("more"):
            break
    return report


def _drop_expired(conn: psycopg.Connection, query: str, before: date, report: Report) -> None:
    for name, holding, parent, pending in conn.execute(Q[query], {"before": before}).fetchall():
        if holding:
            report.held[name] = int(holding)
            continue
        part, table = sql.SQL(name), sql.SQL(parent)
        how = sql.SQL("FINALIZE") if pending else sql.SQL("CONCURRENTLY")
        conn.execute(sql.SQL("ALTER TABLE {} DETACH PARTITION {} {}").format(table, part, how))
        conn.execute(sql.SQL("DROP TABLE {}").format(part))
        report.dropped.append(name)


def log(report: Report | None) -> None:
    """Say what a round did (at INFO when it changed something)."""
    if report is None:
        logger.debug("Maintenance: another process is at it")
        return
    for name, holding in report.held.items():
        logger.warning("Kept %s past retention: %d of its events are not processed yet", name, holding)
    if report.days_made or report.dropped or report.keys_expired or report.sessions_expired:
        logger.info(
            "Maintenance: %d day(s) of partitions made, %d partition(s) dropped (%s), %d idempotency key(s) "
            "expired, %d session(s) and %d event(s) past the business layer's retention deleted",
            report.days_made,
            len(report.dropped),
            ", ".join(report.dropped) or "none",
            report.keys_expired,
            report.sessions_expired,
            report.events_expired,
        )


class Scheduler:
    """Runs maintenance in the background of a server process."""

    def __init__(self, conninfo: str, retention: Retention, every_seconds: float) -> None:
        self._conninfo = conninfo
        self._retention = retention
        self._every = every_seconds
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Run a round now, then one every interval."""
        self._task = asyncio.create_task(self._loop(), name="onevault-maintenance")

    async def close(self) -> None:
        """Stop (a round in progress finishes in its thread; its statements are each complete)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            try:
                log(await asyncio.to_thread(run, self._conninfo, self._retention))
            except psycopg.Error as exc:
                logger.warning("Maintenance failed, retried in %.0f s: %s", self._every, exc)
            await asyncio.sleep(self._every)
