"""Loading a customer's events into the vault: stored as sent, then processed in one batch, in many,
from several connections at once, or rebuilt."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from onevault.auth import store
from tests.helpers.pipeline import CHROME
from tests.helpers.queries import rows, scalar

SITE = "https://example.com"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1"
)
DESKTOP = CHROME
RECORD_SOURCE = "test:vault"
# A run blocked this long is stuck, not waiting for a peer: fail instead of hanging the suite.
LOCK_TIMEOUT = "60s"


def iso(moment: datetime) -> str:
    """ISO 8601 text of a moment in UTC with milliseconds, as browsers send it and derived keys embed it."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Event:
    """One event as a client sends it; None leaves a field out of the payload."""

    event_id: str
    at: datetime
    visitor_id: str | None = None
    session_id: str | None = None
    page: str | None = None  # path and query on SITE
    event_type: str = "page_view"
    user_agent: str = DESKTOP
    client_ip: str = "203.0.113.7"
    user_id: str | None = None
    referrer: str | None = None
    page_title: str | None = None

    @property
    def page_url(self) -> str | None:
        """The absolute URL sent, if any."""
        return None if self.page is None else SITE + self.page

    def payload(self) -> dict[str, Any]:
        """The JSON body of the event."""
        body: dict[str, Any] = {"event_type": self.event_type, "timestamp": iso(self.at)}
        optional = {
            "page_url": self.page_url,
            "visitor_id": self.visitor_id,
            "session_id": self.session_id,
            "user_id": self.user_id,
            "referrer": self.referrer,
            "page_title": self.page_title,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        return body


def new_customer(conn: psycopg.Connection, prefix: str) -> str:
    """A new customer with a unique id starting with `prefix`."""
    customer_id = f"{prefix}-{uuid.uuid4().hex[:12]}"
    assert store.create_tenant(conn, customer_id)
    return customer_id


def ingest_events(
    conn: psycopg.Connection,
    customer_id: str,
    events: Sequence[Event],
    record_source: str = RECORD_SOURCE,
) -> list[int]:
    """Store events with raw.ingest_site_events in one call, each with its own user agent and IP."""
    if not events:
        return []
    n = len(events)
    found = conn.execute(
        "SELECT raw_event_id FROM raw.ingest_site_events("
        " array_fill(util.tenant_hk(%s), ARRAY[%s]), %s::text[], %s::jsonb[], %s::text[], %s::inet[],"
        " array_fill(clock_timestamp(), ARRAY[%s]), array_fill(%s::text, ARRAY[%s])) ORDER BY ord",
        (
            customer_id,
            n,
            [e.event_id for e in events],
            [Jsonb(e.payload()) for e in events],
            [e.user_agent for e in events],
            [e.client_ip for e in events],
            n,
            record_source,
            n,
        ),
    ).fetchall()
    return [r[0] for r in found]


def process_batch(
    conn: psycopg.Connection, customer_id: str, limit: int = 1000, lanes: Sequence[int] | None = None
) -> dict[str, Any]:
    """One staging.process_batch call that waits for whatever it must lock; its result."""
    result: dict[str, Any] = scalar(
        conn,
        "SELECT staging.process_batch(util.tenant_hk(%s), %s, %s::smallint[], true)",
        (customer_id, limit, None if lanes is None else list(lanes)),
    )
    return result


def process_all(
    conn: psycopg.Connection, customer_id: str, limit: int = 1000, lanes: Sequence[int] | None = None
) -> int:
    """process_batch until it finds nothing due; how many events it claimed in all."""
    claimed = 0
    for _ in range(10_000):
        batch = process_batch(conn, customer_id, limit, lanes)
        if batch["claimed"] == 0:
            return claimed
        claimed += int(batch["claimed"])
    raise AssertionError("process_batch keeps finding due events")


def load_one_batch(conn: psycopg.Connection, customer_id: str, events: Sequence[Event]) -> None:
    """Store every event, then process them all in one process_batch call (one transaction)."""
    ingest_events(conn, customer_id, events)
    distinct = len({e.event_id for e in events})
    assert process_batch(conn, customer_id, limit=distinct + 10)["claimed"] == distinct
    assert_all_processed(conn, customer_id)


@dataclass(frozen=True)
class Group:
    """Events stored together and then processed by one run, `limit` at a time, from `lanes`."""

    events: tuple[Event, ...]
    limit: int = 1000
    lanes: tuple[int, ...] | None = None


def run_group(db_url: str, customer_id: str, group: Group) -> None:
    """On a connection of its own: store the group's events, then process until nothing is due."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT)))
        ingest_events(conn, customer_id, group.events)
        process_all(conn, customer_id, group.limit, group.lanes)


def run_concurrently(db_url: str, customer_id: str, groups: Sequence[Group]) -> None:
    """Every group at the same time, each on its own connection and thread."""
    if len(groups) == 1:
        run_group(db_url, customer_id, groups[0])
        return
    with ThreadPoolExecutor(len(groups)) as pool:
        futures = [pool.submit(run_group, db_url, customer_id, g) for g in groups]
        for future in futures:
            future.result(timeout=300)


def assert_all_processed(conn: psycopg.Connection, customer_id: str) -> None:
    """Every stored event of the customer is PROCESSED (a failed run marks its events ERROR)."""
    failed = rows(
        conn,
        "SELECT event_id, processing_status, error_message FROM raw.site_tracking_events_r "
        "WHERE tenant_hk = util.tenant_hk(%s) AND processing_status <> 'PROCESSED'",
        (customer_id,),
    )
    assert failed == [], f"events not processed: {failed}"


def rebuild(conn: psycopg.Connection, customer_id: str, limit: int = 1000) -> list[dict[str, Any]]:
    """staging.rebuild_vault from the first visitor until it reports none left; each call's result."""
    results: list[dict[str, Any]] = []
    after: bytes | None = None
    for _ in range(10_000):
        result: dict[str, Any] = scalar(
            conn,
            "SELECT staging.rebuild_vault(util.tenant_hk(%s), %s::bytea, %s)",
            (customer_id, after, limit),
        )
        results.append(result)
        last = result["last"]
        if last is None:
            return results
        after = bytes.fromhex(str(last).removeprefix("\\x"))
    raise AssertionError("staging.rebuild_vault never reports the last visitor")


def business_counts(conn: psycopg.Connection) -> dict[str, int]:
    """Rows of every table of schema business."""
    tables = [
        r[0]
        for r in conn.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'business' AND table_type = 'BASE TABLE' ORDER BY 1"
        ).fetchall()
    ]
    assert tables, "schema business has no tables"
    counts: dict[str, int] = {}
    for t in tables:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("business", t))
        ).fetchone()
        assert row is not None
        counts[t] = int(row[0])
    return counts
