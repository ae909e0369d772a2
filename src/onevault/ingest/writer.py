"""The group-commit writer: concurrent requests share transactions; each is answered after its commit."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from onevault import sqlfile
from onevault.db import DatabaseUnavailable

logger = logging.getLogger(__name__)
Q = sqlfile.load(__package__, "queries.sql")


# How long a write whose transaction outlasts its timeout waits, after PostgreSQL was asked to
# cancel it, to learn whether it committed (the cancel may lose the race against the commit).
CANCEL_GRACE_SECONDS = 1.0


class EventRejected(Exception):
    """PostgreSQL refused to store this event (e.g. text it cannot represent)."""


class OutcomeUnknown(Exception):
    """The events were sent to PostgreSQL, but whether their transaction committed is not known.

    A retry with the same event ids stores each event at most once.
    """

    def __init__(self, event_ids: Sequence[str]) -> None:
        super().__init__("the outcome of the write is unknown")
        self.event_ids = list(event_ids)


class _Lost(Exception):
    """A statement was sent but its answer never came (the connection broke, or no answer in time)."""


@dataclass(frozen=True)
class NewEvent:
    """An event ready to be stored in the raw layer."""

    tenant_hk: bytes
    event_id: str
    payload: str
    user_agent: str | None
    client_ip: str | None
    received_at: datetime
    record_source: str


@dataclass(frozen=True)
class Stored:
    """Where an event is stored, whether it was already there, and its processing lane."""

    raw_event_id: int
    duplicate: bool
    lane: int


Outcome = Stored | EventRejected


@dataclass
class _Write:
    """The events of one request, answered together."""

    events: Sequence[NewEvent]
    deadline: float
    future: asyncio.Future[list[Outcome]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    # Set by a writer task when it takes the write (from then on it owes an answer), or by the
    # request when it stops waiting first (then the write is never sent).
    taken: bool = False
    abandoned: bool = False
    timer: asyncio.TimerHandle | None = None

    def fail(self, exc: Exception) -> None:
        if not self.future.done():
            self.future.set_exception(exc)
            self.future.exception()  # retrieved here too: the request may have stopped waiting


class EventWriter:
    """Queues events and stores them in shared transactions of about `batch_size` events."""

    def __init__(
        self, pool: AsyncConnectionPool, *, batch_size: int, concurrency: int, timeout: float
    ) -> None:
        self._pool = pool
        self._batch_size = batch_size
        self._concurrency = concurrency
        self._timeout = timeout
        self._queue: asyncio.Queue[_Write | None] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []
        self._releasing: set[asyncio.Task[None]] = set()
        self._saturated_at = -float("inf")

    def saturated(self, within: float = 1.0) -> bool:
        """Whether, in the last `within` seconds, events arrived faster than full transactions stored them."""
        return time.monotonic() - self._saturated_at < within

    def start(self) -> None:
        """Start the writer tasks."""
        self._workers = [
            asyncio.create_task(self._work(), name=f"event-writer-{n}") for n in range(self._concurrency)
        ]

    async def close(self) -> None:
        """Store what is queued, then stop."""
        for _ in self._workers:
            self._queue.put_nowait(None)
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        await asyncio.gather(*self._releasing, return_exceptions=True)

    async def write(self, events: Sequence[NewEvent]) -> list[Outcome]:
        """Store `events`; returns, in order, after their transaction committed.

        An event PostgreSQL refuses is answered with EventRejected in its place. Raises
        DatabaseUnavailable when nothing was stored for certain (no connection within the
        timeout, or the transaction rolled back), and OutcomeUnknown when the events were sent
        but their commit could not be confirmed.
        """
        if not self._workers:
            raise DatabaseUnavailable("the event writer is not running")
        write = _Write(events, deadline=time.monotonic() + self._timeout)
        self._queue.put_nowait(write)
        # A timer rather than asyncio.wait(): the request awaits its future alone (hot path).
        loop = asyncio.get_running_loop()
        write.timer = loop.call_later(self._timeout, self._overdue, write, loop)
        try:
            return await write.future
        finally:
            if write.timer is not None:
                write.timer.cancel()

    @staticmethod
    def _overdue(write: _Write, loop: asyncio.AbstractEventLoop) -> None:
        """The write's timeout passed: give it up if no task took it, else wait for its task's answer
        (by the deadline plus the grace given to a cancel) before calling its outcome unknown."""
        if write.future.done():
            return
        if not write.taken:
            write.abandoned = True  # the writer tasks skip it: it is never sent
            write.fail(DatabaseUnavailable("no transaction could take the write in time"))
            return
        unknown = OutcomeUnknown([e.event_id for e in write.events])
        write.timer = loop.call_later(2 * CANCEL_GRACE_SECONDS + 0.5, write.fail, unknown)

    async def _work(self) -> None:
        while True:
            write = await self._queue.get()
            if write is None:
                return
            group = [write]
            size = len(write.events)
            while size < self._batch_size:
                try:
                    more = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
                if more is None:
                    self._queue.put_nowait(None)
                    break
                group.append(more)
                size += len(more.events)
            if size >= self._batch_size and not self._queue.empty():
                self._saturated_at = time.monotonic()
            live = [w for w in group if not w.abandoned]
            for w in live:
                w.taken = True
            if live:
                await self._flush(live)

    async def _flush(self, group: list[_Write]) -> None:
        # The transaction is bounded by the earliest deadline of the requests sharing it.
        deadline = min(write.deadline for write in group)
        try:
            outcomes = await self._store([event for write in group for event in write.events], deadline)
        except DatabaseUnavailable as exc:
            for write in group:
                write.fail(exc)
            return
        except OutcomeUnknown:
            for write in group:
                write.fail(OutcomeUnknown([e.event_id for e in write.events]))
            return
        start = 0
        for write in group:
            end = start + len(write.events)
            if not write.future.done():
                write.future.set_result(outcomes[start:end])
            start = end

    async def _store(self, events: list[NewEvent], deadline: float) -> list[Outcome]:
        try:
            try:
                return await self._insert(events, deadline)
            except _Lost:
                # Most often a pooled connection the server closed (a restart): once more on a new
                # one. If the first attempt committed after all, the event ids make this a duplicate.
                try:
                    return await self._insert(events, deadline)
                except DatabaseUnavailable as exc:
                    raise _Lost from exc
        except _Lost as exc:
            logger.error(
                "❌ Could not confirm %d event(s): outcome unknown (%s)",
                len(events),
                type(exc.__cause__ or exc).__name__,
            )
            raise OutcomeUnknown([e.event_id for e in events]) from None
        except DatabaseUnavailable as exc:
            logger.error("❌ Could not store %d event(s): nothing stored (%s)", len(events), exc)
            raise
        except psycopg.Error as exc:
            if len(events) == 1:
                logger.warning("❌ Event refused by the database (%s)", type(exc).__name__)
                return [EventRejected(type(exc).__name__)]
        # One bad event must not fail its neighbours: store them one by one.
        outcomes: list[Outcome] = []
        for event in events:
            try:
                outcomes += await self._store([event], deadline)
            except DatabaseUnavailable:
                if not outcomes:
                    raise
                # Some events of the group are stored, the others not: each is retried by its id.
                raise OutcomeUnknown([e.event_id for e in events]) from None
        return outcomes

    async def _insert(self, events: list[NewEvent], deadline: float) -> list[Outcome]:
        """Run the statement; DatabaseUnavailable when surely nothing was stored, _Lost when unknown."""
        params = {
            "tenant_hks": [e.tenant_hk for e in events],
            "event_ids": [e.event_id for e in events],
            "payloads": [e.payload for e in events],
            "user_agents": [e.user_agent for e in events],
            "client_ips": [e.client_ip for e in events],
            "received": [e.received_at for e in events],
            "record_sources": [e.record_source for e in events],
        }
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DatabaseUnavailable("no time left for the transaction")
        try:
            conn = await self._pool.getconn(timeout=remaining)
        except PoolTimeout as exc:  # nothing was sent
            raise DatabaseUnavailable(type(exc).__name__) from None
        # autocommit: the statement is the transaction
        execution = asyncio.ensure_future(self._fetch(conn, params))
        done, _ = await asyncio.wait([execution], timeout=deadline - time.monotonic())
        if not done:
            rows = await self._cancel(conn, execution)
        else:
            broken = conn.broken  # read first: a closed connection no longer counts as broken
            await self._pool.putconn(conn)
            try:
                rows = execution.result()
            except psycopg.Error as exc:
                if broken:
                    raise _Lost from exc
                if isinstance(exc, psycopg.OperationalError):
                    # PostgreSQL answered with an error (lock or statement timeout, shutdown...):
                    # the statement rolled back.
                    raise DatabaseUnavailable(type(exc).__name__) from None
                raise
        by_position = {
            ord_: Stored(raw_event_id, duplicate, lane) for ord_, raw_event_id, duplicate, lane in rows
        }
        return [by_position[n] for n in range(1, len(events) + 1)]

    @staticmethod
    async def _fetch(conn: psycopg.AsyncConnection[Any], params: dict[str, Any]) -> list[Any]:
        cur = await conn.execute(Q["ingest_events"], params)
        return await cur.fetchall()

    async def _cancel(
        self, conn: psycopg.AsyncConnection[Any], execution: asyncio.Future[list[Any]]
    ) -> list[Any]:
        """The statement outlasted its deadline: cancel it and learn whether it committed first."""
        try:
            await conn.cancel_safe(timeout=CANCEL_GRACE_SECONDS)
        except Exception as exc:  # the answer to the statement tells what happened
            logger.warning("Could not cancel a slow write (%s)", type(exc).__name__)
        done, _ = await asyncio.wait([execution], timeout=CANCEL_GRACE_SECONDS)
        # A late cancel could hit the connection's next statement: it is not reused.
        if not done:
            execution.cancel()
            release = asyncio.create_task(self._release_closed(conn, execution))
            self._releasing.add(release)
            release.add_done_callback(self._releasing.discard)
            raise _Lost
        broken = conn.broken
        await conn.close()
        await self._pool.putconn(conn)
        try:
            return execution.result()
        except psycopg.errors.QueryCanceled:
            raise DatabaseUnavailable("the transaction did not commit in time and was rolled back") from None
        except psycopg.Error as exc:
            if broken:
                raise _Lost from exc
            if isinstance(exc, psycopg.OperationalError):
                raise DatabaseUnavailable(type(exc).__name__) from None
            raise

    async def _release_closed(
        self, conn: psycopg.AsyncConnection[Any], execution: asyncio.Future[list[Any]]
    ) -> None:
        await asyncio.wait([execution])
        if not execution.cancelled():
            execution.exception()
        await conn.close()
        await self._pool.putconn(conn)
