"""A write whose commit is not confirmed is never answered "nothing was stored".

The raw table is locked while ~32 requests arrive, so their transactions outlast the timeout.
Every answer must be a 200 (stored exactly once), a 503 saying the outcome is unknown with the
event id to retry with, or a plain 503, after which the event must not be stored. A client
following the README's advice then stores every event exactly once.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import psycopg
import pytest
from tests.helpers.servers import LiveServer
from tests.helpers.tenants import Tenant

CONCURRENCY = 32
LOCK_SECONDS = 3.0
LOCK = "LOCK TABLE raw.site_tracking_events_r IN ACCESS EXCLUSIVE MODE"


@contextmanager
def raw_table_locked(
    db_url: str, during: Callable[[psycopg.Connection], None] | None = None
) -> Iterator[None]:
    """The raw table locked by another session for LOCK_SECONDS (from entering the block)."""
    locked = threading.Event()

    def hold() -> None:
        with psycopg.connect(db_url) as lock, psycopg.connect(db_url, autocommit=True) as admin:
            lock.execute(LOCK)
            locked.set()
            until = time.monotonic() + LOCK_SECONDS
            if during is not None:
                during(admin)
            time.sleep(max(0.0, until - time.monotonic()))
            lock.rollback()

    holder = threading.Thread(target=hold)
    holder.start()
    assert locked.wait(10), "the lock was not taken"
    try:
        yield
    finally:
        holder.join(timeout=30)


def _event(marker: str, event_id: str | None) -> dict[str, Any]:
    event: dict[str, Any] = {"event_type": "page_view", "page_url": "https://shop.test/", "marker": marker}
    if event_id is not None:
        event["event_id"] = event_id
    return event


async def _send_all(url: str, tenant: Tenant, events: list[dict[str, Any]]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as http:
        return await asyncio.gather(
            *(http.post("/api/v1/track/async", headers=tenant.headers, json=event) for event in events)
        )


def _copies(conn: psycopg.Connection, markers: list[str]) -> dict[str, int]:
    rows = conn.execute(
        "SELECT raw_payload->>'marker', count(*) FROM raw.site_tracking_events_r"
        " WHERE raw_payload->>'marker' = ANY(%s) GROUP BY 1",
        (markers,),
    ).fetchall()
    return {marker: 0 for marker in markers} | dict(rows)


def _kind(response: httpx.Response, sent_id: str | None) -> str:
    """200, unknown or not_stored; fails on anything else or a malformed unknown-outcome answer."""
    if response.status_code == 200:
        return "stored"
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) >= 1
    body = response.json()
    if body.get("outcome") != "unknown":
        assert "event_id" not in body, body
        return "not_stored"
    assert "outcome unknown" in body["detail"]
    assert body["retry"] == "retry with the same event_id"
    assert isinstance(body["event_id"], str) and body["event_id"]
    if sent_id is not None:
        assert body["event_id"] == sent_id
    return "unknown"


def _follow_the_advice(
    url: str, tenant: Tenant, events: list[dict[str, Any]], responses: list[httpx.Response]
) -> None:
    """Retry every event not answered 200: with the returned event_id when the outcome is unknown."""
    pending = {n: events[n] for n, r in enumerate(responses) if r.status_code != 200}
    for n, response in enumerate(responses):
        if n in pending and response.json().get("outcome") == "unknown":
            pending[n] = pending[n] | {"event_id": response.json()["event_id"]}
    for _ in range(10):
        if not pending:
            return
        time.sleep(max(int(r.headers.get("retry-after", "1")) for r in responses if r.status_code != 200))
        order = sorted(pending)
        responses = asyncio.run(_send_all(url, tenant, [pending[n] for n in order]))
        for n, response in zip(order, responses, strict=True):
            kind = _kind(response, pending[n].get("event_id"))
            if kind == "stored":
                del pending[n]
            elif kind == "unknown":
                pending[n] = pending[n] | {"event_id": response.json()["event_id"]}
    raise AssertionError(f"{len(pending)} event(s) still not stored after ten retries")


@pytest.mark.parametrize("client_ids", [True, False], ids=["client-event-ids", "service-event-ids"])
def test_writes_outlasting_the_timeout_are_answered_honestly_and_retries_store_once(
    live_server: LiveServer, conn: psycopg.Connection, db_url: str, tenant: Tenant, client_ids: bool
) -> None:
    """Raw table locked 3 s under 32 requests: 200 = stored once, plain 503 = not stored, else unknown."""
    markers = [uuid.uuid4().hex for _ in range(CONCURRENCY)]
    events = [_event(m, str(uuid.uuid4()) if client_ids else None) for m in markers]
    with raw_table_locked(db_url):
        started = time.monotonic()
        responses = asyncio.run(_send_all(live_server.url, tenant, events))
        answered_in = time.monotonic() - started
    kinds = [_kind(r, e.get("event_id")) for r, e in zip(responses, events, strict=True)]
    assert kinds.count("stored") < CONCURRENCY, "the lock did not hold any write up"
    assert answered_in < LOCK_SECONDS, "the writes were not answered within their bound"
    copies = _copies(conn, markers)
    for marker, kind in zip(markers, kinds, strict=True):
        if kind == "stored":
            assert copies[marker] == 1, "an event answered 200 is not stored exactly once"
        elif kind == "not_stored":
            assert copies[marker] == 0, "an event answered 'nothing was stored' is stored"
        else:
            assert copies[marker] <= 1

    _follow_the_advice(live_server.url, tenant, events, responses)
    assert set(_copies(conn, markers).values()) == {1}, "an event is missing or stored twice"


def _terminate_waiting_writes(admin: psycopg.Connection) -> None:
    """Kill the backends of writes waiting for the lock: their clients never get an answer."""
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = 'onevault' AND wait_event_type = 'Lock'"
            " AND query LIKE '%%ingest_site_events%%'"
        ).fetchone()
        if killed and killed[0]:
            return
        time.sleep(0.02)


def test_writes_whose_connection_is_lost_are_answered_outcome_unknown_with_their_ids(
    live_server: LiveServer, conn: psycopg.Connection, db_url: str, tenant: Tenant
) -> None:
    """A connection lost mid-write: 503 outcome unknown with the assigned event_id; its retry stores once."""
    markers = [uuid.uuid4().hex for _ in range(8)]
    events = [_event(m, None) for m in markers]

    async def send() -> list[httpx.Response]:
        await asyncio.sleep(0.1)
        return await _send_all(live_server.url, tenant, events)

    with raw_table_locked(db_url, during=_terminate_waiting_writes):
        responses = asyncio.run(send())
    kinds = [_kind(r, None) for r in responses]
    assert "unknown" in kinds, kinds
    assert "not_stored" not in [k for k, r in zip(kinds, responses, strict=True) if "event_id" in r.json()]
    copies = _copies(conn, markers)
    assert all(
        copies[m] == (1 if k == "stored" else 0)
        for m, k in zip(markers, kinds, strict=True)
        if k != "unknown"
    )

    _follow_the_advice(live_server.url, tenant, events, responses)
    assert set(_copies(conn, markers).values()) == {1}, "an event is missing or stored twice"


def test_a_batch_whose_connection_is_lost_returns_every_event_id_and_its_retry_stores_each_once(
    live_server: LiveServer, conn: psycopg.Connection, db_url: str, tenant: Tenant
) -> None:
    """/batch with an unknown outcome: each event's assigned id in `results`; the retry with them dedups."""
    markers = [uuid.uuid4().hex for _ in range(5)]
    events: list[dict[str, Any]] = [_event(m, None) for m in markers]
    with raw_table_locked(db_url, during=_terminate_waiting_writes), httpx.Client(timeout=30) as http:
        response = http.post(f"{live_server.url}/api/v1/track/batch", headers=tenant.headers, json=events)
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["outcome"] == "unknown" and "retry" in body
    assert [r["index"] for r in body["results"]] == list(range(5))
    assert {r["status"] for r in body["results"]} == {"unknown"}
    ids = [r["event_id"] for r in body["results"]]
    assert len(set(ids)) == 5

    retried = [event | {"event_id": event_id} for event, event_id in zip(events, ids, strict=True)]
    with httpx.Client(timeout=30) as http:
        response = http.post(f"{live_server.url}/api/v1/track/batch", headers=tenant.headers, json=retried)
    assert response.status_code == 200, response.text
    assert set(_copies(conn, markers).values()) == {1}
    stored = {row[0] for row in conn.execute("SELECT event_id FROM raw.site_tracking_events_r")}
    assert set(ids) <= stored
