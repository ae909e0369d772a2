"""Drives the SQL pipeline: shared per-tenant runs for synchronous requests and background processing."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import psycopg
from psycopg_pool import AsyncConnectionPool

from onevault import sqlfile
from onevault.monitoring import metrics
from onevault.pipeline import useragents

logger = logging.getLogger(__name__)
Q = sqlfile.load(__package__, "queries.sql")

Outcome = Literal["complete", "quarantined", "pending"]


class ProcessingFailed(Exception):
    """A pipeline run did not complete (the events stay queued)."""


@dataclass
class _TenantRuns:
    running: bool = False
    # The run every caller arriving now will share; created on demand, started when the
    # current run (if any) ends, so callers never wait for a run that started before them.
    next_run: asyncio.Future[dict[str, Any]] | None = None
    driver: asyncio.Task[None] | None = None


@dataclass
class PipelineRunner:
    """One run at a time per tenant in this process (PostgreSQL serialises across processes)."""

    pool: AsyncConnectionPool
    batch_size: int
    sweep_seconds: float
    coalesce_seconds: float = 0.0
    _tenants: dict[str, _TenantRuns] = field(default_factory=dict)
    _dirty: set[str] = field(default_factory=set)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    _draining: dict[str, asyncio.Task[None]] = field(default_factory=dict)

    def start(self) -> None:
        """Start background processing (it first sweeps for events left from before a restart)."""
        self._task = asyncio.create_task(self._background(), name="pipeline-background")

    async def close(self) -> None:
        """Stop background processing (events not processed yet stay queued in the raw layer)."""
        tasks = [t for t in (self._task, *self._draining.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None

    def notify(self, customer_id: str) -> None:
        """Events of `customer_id` were stored: process them in the background soon."""
        self._dirty.add(customer_id)
        self._wake.set()

    async def process_now(self, customer_id: str) -> dict[str, Any]:
        """Run the pipeline for a tenant, sharing the run with concurrent callers; its result."""
        state = self._tenants.setdefault(customer_id, _TenantRuns())
        if state.next_run is None:
            state.next_run = asyncio.get_running_loop().create_future()
            if not state.running:
                state.driver = asyncio.create_task(self._drive(customer_id, state))
        return await asyncio.shield(state.next_run)

    async def outcome(self, raw_event_id: int) -> tuple[Outcome, list[str]]:
        """Where an event stands: complete, quarantined (with reasons) or pending."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(Q["event_outcome"], {"raw_event_id": raw_event_id})
            row = await cur.fetchone()
        if row is None:
            return "pending", []
        status, reasons, loaded = row
        if status == "INVALID":
            return "quarantined", list(reasons)
        return ("complete" if loaded else "pending"), []

    async def _drive(self, customer_id: str, state: _TenantRuns) -> None:
        state.running = True
        try:
            while state.next_run is not None:
                future, state.next_run = state.next_run, None
                try:
                    future.set_result(await self._run(customer_id))
                except Exception as exc:
                    future.set_exception(exc)
                    future.exception()  # consumed here; awaiting callers still receive it
        finally:
            state.running = False

    async def prepare(self, customer_id: str) -> None:
        """Do the work SQL does badly before a run: parse the user agents of due events."""
        await self._parse_user_agents(customer_id)

    async def _run(self, customer_id: str) -> dict[str, Any]:
        try:
            await self.prepare(customer_id)
            async with self.pool.connection() as conn:
                cur = await conn.execute(
                    Q["auto_process"], {"customer_id": customer_id, "batch_size": self.batch_size}
                )
                row = await cur.fetchone()
        except psycopg.Error as exc:
            metrics.PIPELINE_RUNS.labels("failed").inc()
            raise ProcessingFailed(f"{type(exc).__name__}: {exc.diag.message_primary or exc}") from None
        result: dict[str, Any] = row[0] if row else {}
        metrics.record_pipeline_result(result)
        result.pop("latencies_ms", None)
        return result

    async def _parse_user_agents(self, customer_id: str) -> None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                Q["unparsed_user_agents"], {"customer_id": customer_id, "batch_size": self.batch_size}
            )
            agents = [r[0] for r in await cur.fetchall()]
            if not agents:
                return
            params = await asyncio.to_thread(useragents.save_parameters, agents)
            await conn.execute(Q["save_user_agents"], params)

    async def _background(self) -> None:
        await self._sweep()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.sweep_seconds)
            self._wake.clear()
            if not self._dirty:
                await self._sweep()
            elif self.coalesce_seconds:
                # Let events arriving together be processed together: a run's fixed cost is paid
                # once for many events instead of once or twice per event.
                await asyncio.sleep(self.coalesce_seconds)
            # A tenant being drained picks up its new events itself (see _drain).
            for customer_id in self._dirty - self._draining.keys():
                self._dirty.discard(customer_id)
                task = asyncio.create_task(self._drain(customer_id), name=f"pipeline-drain-{customer_id}")
                self._draining[customer_id] = task
                task.add_done_callback(functools.partial(self._drained, customer_id))

    def _drained(self, customer_id: str, _: asyncio.Task[None]) -> None:
        self._draining.pop(customer_id, None)

    async def due_tenants(self) -> list[str]:
        """Customers with events waiting, or due for a retry."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(Q["tenants_with_due_events"])
            return [r[0] for r in await cur.fetchall()]

    async def requeue_failed(self, customer_id: str | None) -> dict[str, Any]:
        """Put failed and quarantined events of one customer (None: all) back in the queue."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(Q["requeue_failed"], {"customer_id": customer_id})
            row = await cur.fetchone()
        result: dict[str, Any] = row[0] if row else {}
        return result

    async def _sweep(self) -> None:
        try:
            self._dirty.update(await self.due_tenants())
        except psycopg.Error as exc:
            logger.warning(
                "⚠️ Site tracking processing failed (non-critical): %s", {"error": type(exc).__name__}
            )

    async def _drain(self, customer_id: str) -> None:
        """Process a tenant's backlog batch after batch until nothing is due."""
        logger.info(
            "🔄 Background processing: Starting site tracking pipeline...", extra={"customer_id": customer_id}
        )
        while True:
            try:
                result = await self.process_now(customer_id)
            except ProcessingFailed as exc:
                logger.warning("⚠️ Site tracking processing failed (non-critical): %s", {"error": str(exc)})
                return
            except Exception:
                logger.exception("❌ Background processing of %s stopped by an unexpected error", customer_id)
                return
            if result.get("processed"):
                logger.info("✅ Processing result: %s", result)
                if int(result.get("events_processed", 0)) < self.batch_size:
                    # Caught up: let the next events gather rather than run for one or two of them.
                    await asyncio.sleep(self.coalesce_seconds)
            elif customer_id in self._dirty:
                self._dirty.discard(customer_id)
            else:
                return
