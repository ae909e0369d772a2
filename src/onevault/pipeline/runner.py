"""Drives the SQL pipeline: one entry point for requests, the manual trigger, the CLI and the background."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import psycopg
from psycopg_pool import AsyncConnectionPool

from onevault import metrics, sqlfile
from onevault.config import Settings
from onevault.pipeline import useragents
from onevault.pipeline.result import PipelineResult

logger = logging.getLogger(__name__)
Q = sqlfile.load(__package__, "queries.sql")

Outcome = Literal["complete", "quarantined", "pending"]
# raw.processing_lane puts every event in one of 8 lanes; runs of different lanes go in parallel.
LANES = 8
ALL_LANES = tuple(range(LANES))
# While ingestion is saturated, background runs rest this many times as long as each batch took:
# processing then takes at most a fifth of a database core per group of lanes.
REST_FACTOR = 4


def lane_groups(parallelism: int) -> list[tuple[int, ...]]:
    """The lanes split into `parallelism` groups, each drained by its own background run."""
    return [tuple(lane for lane in ALL_LANES if lane % parallelism == k) for k in range(parallelism)]


class ProcessingFailed(Exception):
    """A pipeline run did not complete (the events stay queued)."""


class AutomationMissing(ProcessingFailed):
    """The automation layer (the pipeline's named functions) is not installed."""


@dataclass
class _TenantRuns:
    running: bool = False
    # The run every caller arriving now will share; created on demand, started when the
    # current run (if any) ends, so callers never wait for a run that started before them.
    next_run: asyncio.Future[PipelineResult] | None = None
    driver: asyncio.Task[None] | None = None


# (customer, lanes, wait, refresh_marts)
_RunKey = tuple[str, tuple[int, ...], bool, bool]


@dataclass
class PipelineRunner:
    """Runs shared per tenant and lanes in this process (PostgreSQL's lane locks act across processes).

    Background processing drains each tenant with `parallelism` concurrent runs, one per group
    of lanes; a run whose lanes another process holds finds nothing and ends. While `busy()` says
    this process's ingestion is saturated, each background batch is followed by a rest of its
    lanes that every process's background runs keep (stored in PostgreSQL), until the oldest
    due event has waited `yield_seconds`.
    """

    pool: AsyncConnectionPool
    batch_size: int
    sweep_seconds: float
    coalesce_seconds: float = 0.0
    parallelism: int = 1
    busy: Callable[[], bool] = lambda: False
    yield_seconds: float = 0.0
    marts_refresh_seconds: float = 0.0
    _tenants: dict[_RunKey, _TenantRuns] = field(default_factory=dict)
    _dirty: set[str] = field(default_factory=set)
    # Lanes with new events whose drain was running: it goes on instead of ending (see _drain).
    _more: set[tuple[str, tuple[int, ...]]] = field(default_factory=set)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    _draining: dict[tuple[str, tuple[int, ...]], asyncio.Task[None]] = field(default_factory=dict)
    # Customers whose marts background runs asked to refresh (True: a run had caught up), and the
    # task refreshing each (see _refresh_soon).
    _marts_asked: dict[str, bool] = field(default_factory=dict)
    _refreshing: dict[str, asyncio.Task[None]] = field(default_factory=dict)

    @classmethod
    def from_settings(
        cls, pool: AsyncConnectionPool, settings: Settings, busy: Callable[[], bool] = lambda: False
    ) -> PipelineRunner:
        """The runner a server or a processing worker uses; `busy`: whether its ingestion is saturated."""
        return cls(
            pool,
            batch_size=settings.pipeline_batch_size,
            sweep_seconds=settings.pipeline_sweep_seconds,
            coalesce_seconds=settings.pipeline_coalesce_seconds,
            parallelism=settings.pipeline_parallelism,
            busy=busy,
            yield_seconds=settings.pipeline_yield_seconds,
            marts_refresh_seconds=settings.marts_refresh_seconds,
        )

    def start(self) -> None:
        """Start background processing (it first sweeps for events left from before a restart)."""
        self._task = asyncio.create_task(self._background(), name="pipeline-background")

    async def close(self) -> None:
        """Stop background processing (events not processed yet stay queued in the raw layer)."""
        running = [self._task, *self._draining.values(), *self._refreshing.values()]
        tasks = [t for t in running if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None

    def lanes_of(self, lane: int) -> tuple[int, ...]:
        """The group of lanes `lane` belongs to: what a run for one event processes (and shares)."""
        return lane_groups(self.parallelism)[lane % self.parallelism]

    def notify(self, customer_id: str) -> None:
        """Events of `customer_id` were stored: process them in the background soon."""
        self._dirty.add(customer_id)
        self._wake.set()

    async def process(
        self,
        customer_id: str,
        lanes: tuple[int, ...] = ALL_LANES,
        *,
        wait: bool = True,
        refresh_marts: bool = True,
        until_done: bool = False,
        progress: Callable[[PipelineResult], None] | None = None,
    ) -> PipelineResult:
        """Process a tenant's due events of `lanes`; what was done.

        One batch of at most `batch_size` events, shared with the callers arriving while it has not
        started; with `until_done`, batch after batch until one finds less than a full batch due.
        With `wait`, a batch waits for the lanes other runs (of any process) hold; without, it skips
        them. Without `refresh_marts`, the information marts of what it loads are left to the next
        run that refreshes them (background processing, once notified). `progress` is given the
        running total after each batch that found events.
        """
        total = PipelineResult()
        while True:
            batch = await self._shared_run((customer_id, lanes, wait, refresh_marts))
            total += batch
            if progress is not None and not batch.nothing_due:
                progress(total)
            if not until_done or batch.processed < self.batch_size:
                return total

    async def _shared_run(self, key: _RunKey) -> PipelineResult:
        state = self._tenants.setdefault(key, _TenantRuns())
        if state.next_run is None:
            state.next_run = asyncio.get_running_loop().create_future()
            if not state.running:
                state.driver = asyncio.create_task(self._drive(key, state))
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

    async def _drive(self, key: _RunKey, state: _TenantRuns) -> None:
        state.running = True
        try:
            while state.next_run is not None:
                future, state.next_run = state.next_run, None
                try:
                    future.set_result(await self._run(*key))
                except Exception as exc:
                    future.set_exception(exc)
                    future.exception()  # consumed here; awaiting callers still receive it
        finally:
            state.running = False

    async def prepare(self, customer_id: str, lanes: tuple[int, ...] = ALL_LANES) -> None:
        """Do the work SQL does badly before a run: parse the user agents of due events."""
        await self._parse_user_agents(customer_id, lanes)

    async def _run(
        self, customer_id: str, lanes: tuple[int, ...], wait: bool, refresh_marts: bool
    ) -> PipelineResult:
        started_at, started = datetime.now(UTC), time.perf_counter()
        try:
            await self.prepare(customer_id, lanes)
            async with self.pool.connection() as conn:
                cur = await conn.execute(
                    Q["auto_process"],
                    {
                        "customer_id": customer_id,
                        "batch_size": self.batch_size,
                        "lanes": list(lanes),
                        "wait": wait,
                        "refresh_marts": False,
                    },
                )
                row = await cur.fetchone()
                await conn.commit()
                answer: dict[str, Any] = row[0] if row else {}
            if refresh_marts:
                caught_up = int(answer.get("events_processed", 0)) < self.batch_size
                await self._refresh_marts(customer_id, caught_up)
        except psycopg.Error as exc:
            metrics.PIPELINE_RUNS.labels("failed").inc()
            missing = isinstance(exc, psycopg.errors.UndefinedFunction | psycopg.errors.UndefinedTable)
            failure = AutomationMissing if missing else ProcessingFailed
            raise failure(f"{type(exc).__name__}: {exc.diag.message_primary or exc}") from None
        result = PipelineResult.of_batch(answer, started_at, (time.perf_counter() - started) * 1000)
        metrics.record_pipeline_run(result, answer.get("latencies_ms", []))
        return result

    async def _refresh_marts(self, customer_id: str, caught_up: bool) -> int:
        """The information marts of what runs loaded, when due (staging.refresh_marts_if_due), in a
        transaction of their own after the runs' commits: the batches' rows (pages, which runs of
        other lanes share) are not held while they are refreshed. Its failure leaves the sessions
        queued. How many sessions it refreshed."""
        try:
            async with self.pool.connection() as conn, conn.transaction():
                cur = await conn.execute(
                    Q["refresh_marts"], {"customer_id": customer_id, "caught_up": caught_up}
                )
                row = await cur.fetchone()
        except psycopg.Error as exc:
            logger.warning("⚠️ Information marts not refreshed (non-critical): %s", {"error": str(exc)})
            return 0
        return int(row[0]) if row else 0

    def _refresh_soon(self, customer_id: str, caught_up: bool) -> None:
        """Have the customer's marts refreshed (when due) by a task of their own, so that the background
        run that asks goes on with its lanes' next batch meanwhile: a refresh — seconds in a backlog —
        no longer holds back the vault's loading of those lanes. Asks arriving while a refresh runs
        make one more at its end; under live traffic (a run had caught up) not before
        `marts_refresh_seconds` after the start of a refresh that found sessions. A backlog's asks
        are spaced by its threshold (staging.refresh_marts_if_due) instead: waiting there would
        leave more of the backlog's refresh after its last batch."""
        self._marts_asked[customer_id] = self._marts_asked.get(customer_id, False) or caught_up
        if customer_id not in self._refreshing:
            self._refreshing[customer_id] = asyncio.create_task(
                self._refresh_asked(customer_id), name=f"marts-refresh-{customer_id}"
            )

    async def _refresh_asked(self, customer_id: str) -> None:
        try:
            while customer_id in self._marts_asked:
                started, caught_up = time.monotonic(), self._marts_asked.pop(customer_id)
                if await self._refresh_marts(customer_id, caught_up) and caught_up:
                    await asyncio.sleep(self.marts_refresh_seconds - (time.monotonic() - started))
        finally:
            # In the step that found no ask left: an ask after it starts a new task.
            self._refreshing.pop(customer_id, None)

    async def _parse_user_agents(self, customer_id: str, lanes: tuple[int, ...]) -> None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                Q["unparsed_user_agents"],
                {"customer_id": customer_id, "batch_size": self.batch_size, "lanes": list(lanes)},
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
            # Lanes being drained pick up their new events themselves (see _drain).
            for customer_id in list(self._dirty):
                self._dirty.discard(customer_id)
                for lanes in lane_groups(self.parallelism):
                    key = (customer_id, lanes)
                    if key in self._draining:
                        self._more.add(key)
                        continue
                    task = asyncio.create_task(self._drain(customer_id, lanes), name=f"pipeline-drain-{key}")
                    self._draining[key] = task
                    task.add_done_callback(functools.partial(self._drained, key))

    def _drained(self, key: tuple[str, tuple[int, ...]], _: asyncio.Task[None]) -> None:
        self._draining.pop(key, None)

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

    async def _drain(self, customer_id: str, lanes: tuple[int, ...]) -> None:
        """Process the backlog of a tenant's `lanes` batch after batch until nothing is due (or free)."""
        logger.info(
            "🔄 Background processing: Starting site tracking pipeline...", extra={"customer_id": customer_id}
        )
        while True:
            try:
                await asyncio.sleep(await self._resting(customer_id, lanes))
                started = time.monotonic()
                result = await self.process(customer_id, lanes, wait=False, refresh_marts=False)
                self._refresh_soon(customer_id, result.processed < self.batch_size)
                if not result.nothing_due and self.yield_seconds and self.busy():
                    await self._rest(customer_id, lanes, (time.monotonic() - started) * REST_FACTOR)
            except (ProcessingFailed, psycopg.Error) as exc:
                logger.warning("⚠️ Site tracking processing failed (non-critical): %s", {"error": str(exc)})
                return
            except Exception:
                logger.exception("❌ Background processing of %s stopped by an unexpected error", customer_id)
                return
            if not result.nothing_due:
                logger.info("✅ Processing result: %s", result.counts())
                if result.processed < self.batch_size:
                    # Caught up: let the next events gather rather than run for one or two of them.
                    await asyncio.sleep(self.coalesce_seconds)
            elif (customer_id, lanes) in self._more:
                self._more.discard((customer_id, lanes))
            else:
                return

    async def _resting(self, customer_id: str, lanes: tuple[int, ...]) -> float:
        """Seconds the background processing of `lanes` still rests (0: none)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(Q["resting"], {"customer_id": customer_id, "lanes": list(lanes)})
            row = await cur.fetchone()
        return float(row[0]) if row and row[0] is not None else 0.0

    async def _rest(self, customer_id: str, lanes: tuple[int, ...], seconds: float) -> None:
        """Have the background processing of `lanes` rest for `seconds` (see `yield_seconds`)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                Q["rest"],
                {
                    "customer_id": customer_id,
                    "lanes": list(lanes),
                    "seconds": seconds,
                    "max_delay": self.yield_seconds,
                },
            )
        if cur.rowcount > 0:
            metrics.PIPELINE_REST.inc(seconds)
