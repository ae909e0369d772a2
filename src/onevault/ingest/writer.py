"""The group-commit writer: concurrent requests share transactions; each is answered after its commit."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from onevault import sqlfile
from onevault.db import DatabaseUnavailable

logger = logging.getLogger(__name__)
Q = sqlfile.load(__package__, "queries.sql")


class EventRejected(Exception):
    """PostgreSQL refused to store this event (e.g. text it cannot represent)."""


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
    future: asyncio.Future[list[Outcome]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


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

    async def write(self, events: Sequence[NewEvent]) -> list[Outcome]:
        """Store `events`; returns, in order, after their transaction committed.

        An event PostgreSQL refuses is answered with EventRejected in its place; raises
        DatabaseUnavailable when the events cannot be confirmed within the timeout.
        """
        if not self._workers:
            raise DatabaseUnavailable("the event writer is not running")
        write = _Write(events)
        self._queue.put_nowait(write)
        done, _ = await asyncio.wait([write.future], timeout=self._timeout)
        if not done:
            # A cancelled write still queued is skipped by the workers, so a 503 rarely leaves a row.
            write.future.cancel()
            raise DatabaseUnavailable("the database did not confirm the write in time")
        return write.future.result()

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
            live = [w for w in group if not w.future.done()]
            if live:
                await self._flush(live)

    async def _flush(self, group: list[_Write]) -> None:
        try:
            outcomes = await self._store([event for write in group for event in write.events])
        except DatabaseUnavailable as exc:
            for write in group:
                if not write.future.done():
                    write.future.set_exception(exc)
            return
        start = 0
        for write in group:
            end = start + len(write.events)
            if not write.future.done():
                write.future.set_result(outcomes[start:end])
            start = end

    async def _store(self, events: list[NewEvent]) -> list[Outcome]:
        try:
            try:
                return await self._insert(events)
            except PoolTimeout:
                raise
            except psycopg.OperationalError:
                # Most often a pooled connection the server closed (a restart): once more on a new one.
                return await self._insert(events)
        except (psycopg.OperationalError, PoolTimeout) as exc:
            logger.error(
                "❌ Could not store %d event(s): database unavailable (%s)", len(events), type(exc).__name__
            )
            raise DatabaseUnavailable(type(exc).__name__) from None
        except psycopg.Error as exc:
            if len(events) == 1:
                logger.warning("❌ Event refused by the database (%s)", type(exc).__name__)
                return [EventRejected(type(exc).__name__)]
        # One bad event must not fail its neighbours: store them one by one.
        return [outcome for event in events for outcome in await self._store([event])]

    async def _insert(self, events: list[NewEvent]) -> list[Outcome]:
        params = {
            "tenant_hks": [e.tenant_hk for e in events],
            "event_ids": [e.event_id for e in events],
            "payloads": [e.payload for e in events],
            "user_agents": [e.user_agent for e in events],
            "client_ips": [e.client_ip for e in events],
            "received": [e.received_at for e in events],
            "record_sources": [e.record_source for e in events],
        }
        async with self._pool.connection() as conn:  # autocommit: the statement is the transaction
            cur = await conn.execute(Q["ingest_events"], params)
            rows = await cur.fetchall()
        by_position = {
            ord_: Stored(raw_event_id, duplicate, lane) for ord_, raw_event_id, duplicate, lane in rows
        }
        return [by_position[n] for n in range(1, len(events) + 1)]
