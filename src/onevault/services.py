"""The long-lived objects a running service shares between requests."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from onevault.auth.caller import TokenResolver
from onevault.config import Settings
from onevault.db import GuardedPool
from onevault.ingest.ratelimit import RateLimiter
from onevault.ingest.writer import EventWriter
from onevault.pipeline.runner import PipelineRunner

# Exports streaming at once from one server process: each holds a connection of the read pool for as
# long as its client reads, so more would starve the requests that share that pool.
EXPORTS_AT_ONCE = 2


@dataclass
class Services:
    """Pools, writer, token cache, limiter and pipeline runner of one server process."""

    settings: Settings
    pool: GuardedPool
    tokens: TokenResolver
    writer: EventWriter
    limiter: RateLimiter
    pipeline: PipelineRunner
    # Where the stats API and the dashboard read: the replica of ONEVAULT_READ_DATABASE_URL, or
    # `pool` itself when none is set. Everything that writes, or must see its own writes, uses `pool`.
    read_pool: GuardedPool
    # Taken by each streaming export (GET /api/v1/export), never waited for: a request finding none
    # free is answered 503.
    exports: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(EXPORTS_AT_ONCE))


def get_services(request: Request) -> Services:
    """The services of the app handling `request`."""
    services: Services = request.app.state.services
    return services


async def _services(request: Request) -> Services:
    # A coroutine, because FastAPI runs a plain-function dependency in a worker thread.
    return get_services(request)


ServicesDep = Annotated[Services, Depends(_services)]
