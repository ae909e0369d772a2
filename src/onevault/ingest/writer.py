"""The group-commit writer: concurrent requests share transactions; each is answered after its commit."""

from __future__ import annotations

import asyncio
import logging
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
    """Where an event is stored, and whether it was already there."""

    raw_event_id: int
    duplicate: bool


@dataclass
class _Item:
    event: NewEvent
    future: asyncio.Future[Stored] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class EventWriter:
    """Queues events and stores them in shared transactions of up to `batch_size` events."""

    def __init__(
        self, pool: AsyncConnectionPool, *, batch_size: int, concurrency: int, timeout: float
    ) -> None:
        self._pool = pool
        self._batch_size = batch_size
        self._concurrency = concurrency
        self._timeout = timeout
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []

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

    async def write(self, events: Sequence[NewEvent]) -> list[Stored | EventRejected]:
        """Store `events`; returns, in order, after their transactions committed.

        An event PostgreSQL refuses is answered with EventRejected in its place; raises
        DatabaseUnavailable when the events cannot be confirmed within the timeout.
        """
        if not self._workers:
            raise DatabaseUnavailable("the event writer is not running")
        items = [_Item(event) for event in events]
        for item in items:
            self._queue.put_nowait(item)
        futures = [item.future for item in items]
        _, pending = await asyncio.wait(futures, timeout=self._timeout)
        if pending:
            # Cancelled items still queued are skipped by the workers, so a 503 rarely leaves a row.
            for future in pending:
                future.cancel()
            raise DatabaseUnavailable("the database did not confirm the write in time")
        outcomes: list[Stored | EventRejected] = []
        unavailable: BaseException | None = None
        for future in futures:
            exc = future.exception()
            if isinstance(exc, EventRejected):
                outcomes.append(exc)
            elif exc is not None:
                unavailable = exc
            else:
                outcomes.append(future.result())
        if unavailable is not None:
            raise unavailable
        return outcomes

    async def _work(self) -> None:
        while True:
            item = await self._queue.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < self._batch_size:
                try:
                    more = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
                if more is None:
                    self._queue.put_nowait(None)
                    break
                batch.append(more)
            live = [i for i in batch if not i.future.done()]
            if live:
                await self._flush(live)

    async def _flush(self, batch: list[_Item]) -> None:
        events = [item.event for item in batch]
        try:
            try:
                results = await self._insert(events)
            except PoolTimeout:
                raise
            except psycopg.OperationalError:
                # Most often a pooled connection the server closed (a restart): once more on a new one.
                results = await self._insert(events)
        except (psycopg.OperationalError, PoolTimeout) as exc:
            logger.error(
                "❌ Could not store %d event(s): database unavailable (%s)", len(batch), type(exc).__name__
            )
            _fail(batch, DatabaseUnavailable(str(type(exc).__name__)))
            return
        except psycopg.Error as exc:
            if len(batch) > 1:
                # One bad event must not fail its neighbours: store them one by one.
                for item in batch:
                    await self._flush([item])
                return
            logger.warning("❌ Event refused by the database (%s)", type(exc).__name__)
            _fail(batch, EventRejected(type(exc).__name__))
            return
        for item, result in zip(batch, results, strict=True):
            if not item.future.done():
                item.future.set_result(result)

    async def _insert(self, events: list[NewEvent]) -> list[Stored]:
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
        by_position = {ord_: Stored(raw_event_id, duplicate) for ord_, raw_event_id, duplicate in rows}
        return [by_position[n] for n in range(1, len(events) + 1)]


def _fail(batch: list[_Item], exc: Exception) -> None:
    for item in batch:
        if not item.future.done():
            item.future.set_exception(exc)
