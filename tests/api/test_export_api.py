"""`GET /api/v1/export` as API clients see it: the caller's events, streamed as they are read.

The answer is the file `onevault export` writes (the same lines), named by Content-Disposition; it
holds the caller's customer only; callers without the `read` scope get 401/403 and bad days,
layers or formats a 422 naming them. The response starts while the server still holds the rest
behind an open cursor, and a server streams a bounded number of exports at once.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import psycopg
import pytest
from tests.helpers.exports import (
    AFTER,
    BEFORE,
    DAY,
    as_csv_cell,
    csv_rows,
    jsonl,
    known_events,
    raw_line,
    store_many,
    two_customers,
)
from tests.helpers.http import assert_error
from tests.helpers.tenants import Tenant, make_tenant

from onevault.export import routes, stream
from onevault.services import EXPORTS_AT_ONCE

EXPORT = "/api/v1/export"


@pytest.fixture
def server_settings() -> dict[str, Any]:
    """No background pipeline: the tests process their events themselves."""
    return {"pipeline_background": False}


def days(first: Any = DAY, last: Any = DAY, layer: str = "raw", fmt: str = "jsonl") -> dict[str, str]:
    """The query of an export."""
    return {"from": str(first), "to": str(last), "layer": layer, "format": fmt}


def test_raw_jsonl_is_streamed_as_a_named_file(conn: psycopg.Connection, client: httpx.Client) -> None:
    """JSON Lines of the day's events as received, `application/x-ndjson`, an attachment named after
    the customer, the layer and the days."""
    customers = two_customers(conn, processed=False)
    tenant = make_tenant(conn, customers.a, ("read",))
    response = client.get(EXPORT, headers=tenant.headers, params=days())
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-ndjson"
    assert response.headers["content-disposition"] == (
        f'attachment; filename="{customers.a}-raw-{DAY}-{DAY}.jsonl"'
    )
    assert "content-length" not in response.headers  # streamed, not buffered
    expected = [raw_line(e) for e in known_events() if e.event_id in ("e-first", "e-last")]
    assert jsonl(response.content) == expected


def test_business_csv_reads_back_as_its_jsonl(conn: psycopg.Connection, client: httpx.Client) -> None:
    """`text/csv`: a header, then each event in force, every cell its JSON Lines value."""
    customers = two_customers(conn, processed=True)
    tenant = make_tenant(conn, customers.a, ("read",))
    response = client.get(EXPORT, headers=tenant.headers, params=days(BEFORE, AFTER, "business", "csv"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"].endswith(f'-business-{BEFORE}-{AFTER}.csv"')
    header, rows = csv_rows(response.content)
    lines = jsonl(client.get(EXPORT, headers=tenant.headers, params=days(BEFORE, AFTER, "business")).content)
    assert [row["event_id"] for row in rows] == ["e-before", "e-first", "e-clock", "e-last", "e-after"]
    assert header == list(lines[0])
    for row, line in zip(rows, lines, strict=True):
        assert jsonl(row.pop("event_properties").encode() + b"\n") == [line.pop("event_properties")]
        assert row == {k: as_csv_cell(v) for k, v in line.items()}


def test_a_caller_gets_its_own_events_only(conn: psycopg.Connection, client: httpx.Client) -> None:
    """B's export holds B's events (one with an event id A also used); A's token cannot ask for B's."""
    customers = two_customers(conn, processed=True)
    a = make_tenant(conn, customers.a, ("read",))
    b = make_tenant(conn, customers.b, ("read",))
    for layer in ("raw", "business"):
        theirs = client.get(EXPORT, headers=b.headers, params=days(BEFORE, AFTER, layer)).content
        assert [line["event_id"] for line in jsonl(theirs)] == ["e-first", "b-only"]
        assert b"example.com" not in theirs and b"anna" not in theirs.lower()
        mine = client.get(EXPORT, headers=a.headers, params=days(BEFORE, AFTER, layer)).content
        assert b"other.example" not in mine and b"b-only" not in mine
    other = {"X-Customer-ID": customers.b, "Authorization": f"Bearer {a.token}"}
    assert_error(client.get(EXPORT, headers=other, params=days()), 403, a.token)


def test_only_read_tokens_export(conn: psycopg.Connection, client: httpx.Client, tenant: Tenant) -> None:
    """No token: 401 with WWW-Authenticate; a track-only token: 403; no X-Customer-ID: 400."""
    response = client.get(EXPORT, headers={"X-Customer-ID": tenant.customer_id}, params=days())
    assert_error(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"
    tracker = make_tenant(conn, tenant.customer_id, ("track",))
    assert_error(client.get(EXPORT, headers=tracker.headers, params=days()), 403, tracker.token)
    bearer = {"Authorization": f"Bearer {tenant.token}"}
    assert_error(client.get(EXPORT, headers=bearer, params=days()), 400, tenant.token)


@pytest.mark.parametrize(
    ("query", "named"),
    [
        (days() | {"from": "2026-02-30"}, "query.from"),
        (days() | {"to": "yesterday"}, "query.to"),
        (days(DAY, BEFORE), f"from ({DAY}) is after to ({BEFORE})"),
        (days() | {"layer": "gold"}, "query.layer"),
        (days() | {"format": "xml"}, "query.format"),
        ({"from": str(DAY), "layer": "raw", "format": "csv"}, "query.to: Field required"),
    ],
)
def test_bad_queries_are_422_naming_what_is_wrong(
    client: httpx.Client, tenant: Tenant, query: dict[str, str], named: str
) -> None:
    """A date that is not one, days in the wrong order, an unknown layer or format, a missing day."""
    detail = assert_error(client.get(EXPORT, headers=tenant.headers, params=query), 422, tenant.token)
    assert named in detail


def _export_backends(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """State and last statement of the server's connections fetching an export."""
    found = conn.execute(
        "SELECT state, query FROM pg_stat_activity WHERE query LIKE %s AND pid <> pg_backend_pid()",
        (f'FETCH FORWARD % FROM "{stream.CURSOR_NAME}"',),
    ).fetchall()
    return [(str(state), str(query)) for state, query in found]


def _wait_for(condition: Any, seconds: float = 10) -> Any:
    deadline = time.monotonic() + seconds
    while not (found := condition()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return found


def test_the_answer_starts_while_the_rest_waits_behind_a_cursor(
    conn: psycopg.Connection, client: httpx.Client, tenant: Tenant
) -> None:
    """30,000 events (about 30 MB): the first bytes arrive while the server's connection holds the
    cursor between two fetches, waiting for the client to read on; then every event arrives."""
    events = 30 * stream.BATCH_ROWS
    store_many(conn, tenant.customer_id, events, DAY)
    with client.stream("GET", EXPORT, headers=tenant.headers, params=days()) as response:
        assert response.status_code == 200
        received = response.iter_bytes()
        first = next(received)
        assert first.startswith(b'{"event_id":"many-1","received_at":')
        fetched = ("idle in transaction", f'FETCH FORWARD {stream.BATCH_ROWS} FROM "onevault_export"')
        assert _wait_for(lambda: _export_backends(conn) == [fetched])
        rest = b"".join(received)
    assert (first + rest).count(b"\n") == events
    assert len(first + rest) > 25_000_000
    assert _wait_for(lambda: not _export_backends(conn))


def test_a_server_streams_a_bounded_number_of_exports_at_once(
    conn: psycopg.Connection, client: httpx.Client, tenant: Tenant
) -> None:
    """While as many exports as allowed are streaming (their clients reading slowly), another is 503 with
    Retry-After; once their clients go away, exports are answered again."""
    store_many(conn, tenant.customer_id, 30 * stream.BATCH_ROWS, DAY)
    streams = [
        client.stream("GET", EXPORT, headers=tenant.headers, params=days()) for _ in range(EXPORTS_AT_ONCE)
    ]
    responses = [s.__enter__() for s in streams]
    try:
        assert [r.status_code for r in responses] == [200] * EXPORTS_AT_ONCE
        busy = client.get(EXPORT, headers=tenant.headers, params=days())
        assert_error(busy, 503, tenant.token)
        assert busy.headers["retry-after"] == "2"
    finally:
        for s in streams:
            s.__exit__(None, None, None)
    answered = _wait_for(
        lambda: client.get(EXPORT, headers=tenant.headers, params=days(BEFORE, BEFORE)).status_code == 200
    )
    assert answered
    # The server gives up the abandoned exports' cursors as it notices their clients left: soon, not
    # necessarily before it answers the next request.
    assert _wait_for(lambda: not _export_backends(conn))


def test_a_client_that_stops_reading_is_given_up_on(
    conn: psycopg.Connection,
    client: httpx.Client,
    tenant: Tenant,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """After STALL_SECONDS without reading, the server closes the export: its slot, connection and
    cursor are free again, and the client's answer ends cut short, not as if it were whole."""
    monkeypatch.setattr(routes, "STALL_SECONDS", 1.0)
    store_many(conn, tenant.customer_id, 30 * stream.BATCH_ROWS, DAY)
    stalled = [
        client.stream("GET", EXPORT, headers=tenant.headers, params=days()) for _ in range(EXPORTS_AT_ONCE)
    ]
    responses = [s.__enter__() for s in stalled]
    try:
        received = [r.iter_bytes() for r in responses]
        assert all(next(chunks).startswith(b'{"event_id":"many-1"') for chunks in received)
        assert _wait_for(lambda: not _export_backends(conn), 15)
        fresh = client.get(EXPORT, headers=tenant.headers, params=days(BEFORE, BEFORE))
        assert fresh.status_code == 200
        for chunks in received:
            with pytest.raises(httpx.RemoteProtocolError):
                b"".join(chunks)
    finally:
        for s in stalled:
            s.__exit__(None, None, None)
    assert "⚠️ Export stopped: its client read nothing for 1 s" in caplog.text
