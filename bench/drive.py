"""The service's pipeline run, done synchronously: parse new user agents, then one automation batch."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import psycopg

from onevault import sqlfile
from onevault.pipeline import useragents
from onevault.pipeline.runner import ALL_LANES

PIPELINE = sqlfile.load("onevault.pipeline", "queries.sql")


@dataclass(frozen=True)
class Run:
    """One run: what auto_process_if_needed answered, and how long each step took."""

    result: dict[str, Any]
    prepare_ms: float
    process_ms: float

    @property
    def processed(self) -> bool:
        """Whether the run found events to process."""
        return bool(self.result.get("processed"))

    @property
    def events(self) -> int:
        """How many events the run claimed."""
        return int(self.result.get("events_processed", 0))


def parse_user_agents(
    conn: psycopg.Connection[Any],
    customer_id: str,
    batch_size: int = 2**31 - 1,
    lanes: tuple[int, ...] = ALL_LANES,
) -> int:
    """What PipelineRunner.prepare does: parse the due events' unknown user agents; how many."""
    with conn.transaction():
        agents = [
            r[0]
            for r in conn.execute(
                PIPELINE["unparsed_user_agents"],
                {"customer_id": customer_id, "batch_size": batch_size, "lanes": list(lanes)},
            )
        ]
        if agents:
            conn.execute(PIPELINE["save_user_agents"], useragents.save_parameters(agents))
    return len(agents)


def refresh_marts(conn: psycopg.Connection[Any], customer_id: str, caught_up: bool) -> int:
    """What PipelineRunner._refresh_marts does: the customer's marts, when due; the sessions refreshed."""
    with conn.transaction():
        row = conn.execute(
            PIPELINE["refresh_marts"], {"customer_id": customer_id, "caught_up": caught_up}
        ).fetchone()
    return int(row[0]) if row else 0


def auto_process_params(
    customer_id: str, batch_size: int, lanes: tuple[int, ...] = ALL_LANES
) -> dict[str, Any]:
    """The parameters of PIPELINE["auto_process"] as a background run gives them: lanes other runs hold
    skipped, the marts left to the refresh after the batch's commit (run_once)."""
    return {
        "customer_id": customer_id,
        "batch_size": batch_size,
        "lanes": list(lanes),
        "wait": False,
        "refresh_marts": False,
    }


def run_once(
    conn: psycopg.Connection[Any],
    customer_id: str,
    batch_size: int,
    prepare: bool = True,
    lanes: tuple[int, ...] = ALL_LANES,
    refresh: bool = True,
) -> Run:
    """One pipeline run of `lanes` as PipelineRunner._run does it, each step in its own transaction;
    without `refresh`, the marts are left to the caller (as background runs leave them to the
    runner's refresh task: refresh_marts)."""
    started = time.perf_counter()
    if prepare:
        parse_user_agents(conn, customer_id, batch_size, lanes)
    prepared = time.perf_counter()
    with conn.transaction():
        row = conn.execute(
            PIPELINE["auto_process"], auto_process_params(customer_id, batch_size, lanes)
        ).fetchone()
    result: dict[str, Any] = row[0] if row else {}
    if refresh:
        refresh_marts(conn, customer_id, int(result.get("events_processed", 0)) < batch_size)
    done = time.perf_counter()
    result.pop("latencies_ms", None)
    return Run(result, (prepared - started) * 1000, (done - prepared) * 1000)
