"""The database circuit breaker: once PostgreSQL is known to be unreachable, refuse at once.

Closed: requests use the pool. A broken connection or a pool timeout makes the breaker *suspect*
an outage and try one connection of its own; if that fails the breaker opens. Open: requests
are refused at once (CircuitOpen) except one every `interval` seconds, which probes with a new
connection (half-open) and closes the breaker when it succeeds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Literal

from psycopg_pool import PoolTimeout

logger = logging.getLogger(__name__)

State = Literal["closed", "open", "half-open"]


class CircuitOpen(PoolTimeout):
    """No connection was tried: PostgreSQL did not answer the last probe (nothing was sent)."""


class Circuit:
    """Decides whether a request may use the database, from the outcome of connection probes."""

    def __init__(self, probe: Callable[[], Awaitable[None]], *, interval: float) -> None:
        self._probe = probe
        self._interval = interval
        self._open = False
        self._probing: asyncio.Task[bool] | None = None
        self._last_probe = -float("inf")
        self.opened_at: float | None = None

    @property
    def state(self) -> State:
        """closed, open, or half-open while a probe of an open breaker runs."""
        if not self._open:
            return "closed"
        return "half-open" if self._probing is not None else "open"

    async def admit(self) -> None:
        """Return when the caller may use the database; raise CircuitOpen when it may not."""
        if not self._open:
            return
        # One caller per interval is let through: it waits for the probe (a connection attempt,
        # refused at once by a server that is down).
        due = self._probing is None and time.monotonic() - self._last_probe >= self._interval
        if due and await self._start_probe():
            return
        raise CircuitOpen("PostgreSQL is unreachable (circuit open); nothing was sent")

    def suspect(self) -> None:
        """A connection broke or none could be had: probe now (at most once per interval)."""
        if self._open or self._probing is not None:
            return
        if time.monotonic() - self._last_probe < self._interval:
            return
        task = self._launch()
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    def _launch(self) -> asyncio.Task[bool]:
        self._last_probe = time.monotonic()
        self._probing = asyncio.get_running_loop().create_task(self._run_probe(), name="db-probe")
        return self._probing

    async def _start_probe(self) -> bool:
        # Shielded: a caller that goes away does not cancel the probe others rely on.
        return await asyncio.shield(self._launch())

    async def _run_probe(self) -> bool:
        try:
            await self._probe()
        except Exception as exc:  # any failure to connect counts
            if not self._open:
                self._open = True
                self.opened_at = time.monotonic()
                logger.error("❌ PostgreSQL unreachable (%s): circuit open", type(exc).__name__)
            return False
        finally:
            self._probing = None
            self._last_probe = time.monotonic()
        if self._open:
            down = time.monotonic() - (self.opened_at or time.monotonic())
            logger.info("✅ PostgreSQL reachable again after %.1f s: circuit closed", down)
            self._open = False
            self.opened_at = None
        return True
