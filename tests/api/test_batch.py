"""§4 `POST /api/v1/track/batch`: many events per request, each answered in request order."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from tests.helpers.http import assert_error
from tests.helpers.servers import LiveServer
from tests.helpers.tenants import Tenant, make_tenant

BATCH = "/api/v1/track/batch"
ASYNC = "/api/v1/track/async"


def stored(conn: psycopg.Connection) -> dict[str, Any]:
    """event_id → raw_payload of every raw event."""
    return dict(conn.execute("SELECT event_id, raw_payload FROM raw.site_tracking_events_r").fetchall())


def post_batch(client: httpx.Client, tenant: Tenant, body: object) -> httpx.Response:
    """POST `body` (JSON-encoded unless bytes) to the batch endpoint as `tenant`."""
    content = body if isinstance(body, bytes) else json.dumps(body)
    headers = {**tenant.headers, "Content-Type": "application/json"}
    return client.post(BATCH, headers=headers, content=content)


def page(n: int, **extra: Any) -> dict[str, Any]:
    """A small valid event."""
    return {"page_url": f"https://example.com/p{n}", "event_type": "page_view", **extra}


@pytest.mark.parametrize("wrapped", [True, False], ids=["events-object", "bare-array"])
def test_mixed_batch_is_answered_per_event_in_order(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant, wrapped: bool
) -> None:
    """Good, already-stored, repeated and invalid events each get their own status, in request order."""
    earlier = client.post(ASYNC, headers=tenant.headers, json=page(0, event_id="seen-before"))
    assert earlier.status_code == 200, earlier.text
    events: list[Any] = [
        page(1, event_id="b-1"),
        page(2, event_id="seen-before"),
        page(3, event_id="twice"),
        page(4, event_id="twice"),
        page(5, event_type=5),
        "x",
        page(6),
        page(7, event_id="e" * 129),
    ]
    response = post_batch(client, tenant, {"events": events} if wrapped else events)
    assert response.status_code == 200, response.text
    body = response.json()
    results = body["results"]
    assert [r["index"] for r in results] == list(range(len(events)))
    assert [r["status"] for r in results] == [
        "accepted",
        "duplicate",
        "accepted",
        "duplicate",
        "rejected",
        "rejected",
        "accepted",
        "rejected",
    ]
    assert [r.get("event_id") for r in results[:4]] == ["b-1", "seen-before", "twice", "twice"]
    generated = results[6]["event_id"]
    assert isinstance(generated, str) and generated
    for r in results:
        if r["status"] == "rejected":
            assert isinstance(r["reason"], str) and r["reason"].strip()
    assert "event_type" in results[4]["reason"]
    assert "event_id" in results[7]["reason"]
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (3, 2, 3)
    assert body["success"] is False
    assert isinstance(body["timestamp"], str)
    # The raw layer holds the earlier event unchanged plus exactly the accepted ones (first copy wins).
    assert stored(conn) == {
        "seen-before": page(0, event_id="seen-before"),
        "b-1": events[0],
        "twice": events[2],
        generated: events[6],
    }


def test_batch_without_rejections_is_a_success(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant
) -> None:
    """A batch whose events are all accepted or duplicates answers success: true."""
    events = [page(1, event_id="a"), page(2, event_id="a"), page(3, event_id="b")]
    body = post_batch(client, tenant, events).json()
    assert body["success"] is True
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (2, 1, 0)
    assert sorted(stored(conn)) == ["a", "b"]


def test_resent_batch_is_all_duplicates(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant
) -> None:
    """Re-sending a whole batch (e.g. after a timeout) stores nothing twice."""
    events = [page(n, event_id=f"r-{n}") for n in range(5)]
    assert post_batch(client, tenant, {"events": events}).json()["accepted"] == 5
    again = post_batch(client, tenant, {"events": events}).json()
    assert (again["accepted"], again["duplicates"], again["rejected"]) == (0, 5, 0)
    assert [r["event_id"] for r in again["results"]] == [f"r-{n}" for n in range(5)]
    assert len(stored(conn)) == 5


def test_batch_event_ids_are_scoped_to_the_tenant(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant
) -> None:
    """An event_id another tenant already used is accepted, not a duplicate."""
    other = make_tenant(conn, "other_co")
    assert client.post(ASYNC, headers=other.headers, json=page(0, event_id="shared")).status_code == 200
    body = post_batch(client, tenant, [page(1, event_id="shared")]).json()
    assert body["results"][0]["status"] == "accepted"
    query = "SELECT tenant_hk FROM raw.site_tracking_events_r WHERE event_id = 'shared'"
    owners = conn.execute(query).fetchall()
    assert len(owners) == 2 and owners[0] != owners[1]


def test_batch_of_500_events_is_stored(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant
) -> None:
    """A batch of 500 events is accepted entirely and stores 500 rows."""
    events = [page(n, event_id=f"evt-{n:04d}") for n in range(500)]
    response = post_batch(client, tenant, {"events": events})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (500, 0, 0)
    assert body["success"] is True
    assert [r["event_id"] for r in body["results"]] == [e["event_id"] for e in events]
    assert stored(conn) == {e["event_id"]: e for e in events}


@pytest.fixture
def limited(db_url: str) -> Iterator[httpx.Client]:
    """A client for a server with small batch limits: 10 events, 1024 bytes per event, 8 KiB per batch."""
    settings = {"batch_max_events": 10, "max_event_bytes": 1024, "batch_max_bytes": 8192}
    with LiveServer(db_url, **settings) as server, httpx.Client(base_url=server.url) as http:
        yield http


def test_too_many_events_is_413(limited: httpx.Client, conn: psycopg.Connection, tenant: Tenant) -> None:
    """A batch with more events than batch_max_events is refused whole with 413."""
    assert_error(post_batch(limited, tenant, [page(n) for n in range(11)]), 413)
    assert stored(conn) == {}
    assert post_batch(limited, tenant, [page(n) for n in range(10)]).json()["accepted"] == 10


def test_batch_over_the_byte_limit_is_413(
    limited: httpx.Client, conn: psycopg.Connection, tenant: Tenant
) -> None:
    """A batch body larger than batch_max_bytes is refused whole with 413."""
    events = [page(n, pad="x" * 900) for n in range(9)]
    assert len(json.dumps(events)) > 8192
    assert_error(post_batch(limited, tenant, events), 413)
    assert stored(conn) == {}


def test_oversized_event_is_rejected_alone(
    limited: httpx.Client, conn: psycopg.Connection, tenant: Tenant
) -> None:
    """An event larger than max_event_bytes is rejected with a reason while its neighbours are stored."""
    events = [
        page(1, event_id="small-1"),
        page(2, event_id="big", pad="x" * 2000),
        page(3, event_id="small-2"),
    ]
    response = post_batch(limited, tenant, events)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [r["status"] for r in body["results"]] == ["accepted", "rejected", "accepted"]
    assert "byte" in body["results"][1]["reason"] or "limit" in body["results"][1]["reason"]
    assert body["success"] is False
    assert sorted(stored(conn)) == ["small-1", "small-2"]


@pytest.mark.parametrize("bad_url", ["a\\u0000b", "\\ud800"], ids=["nul-character", "lone-surrogate"])
def test_unstorable_text_in_one_event_rejects_only_that_event(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant, bad_url: str
) -> None:
    """An event holding U+0000 or an unpaired surrogate is rejected with a reason; the rest is stored."""
    body = f'[{{"event_id": "ok-1"}}, {{"event_id": "bad", "page_url": "{bad_url}"}}, {{"event_id": "ok-2"}}]'
    response = post_batch(client, tenant, body.encode())
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["accepted", "rejected", "accepted"]
    assert results[1]["reason"]
    assert sorted(stored(conn)) == ["ok-1", "ok-2"]


@pytest.mark.parametrize("body", [{"events": []}, []], ids=["events-object", "bare-array"])
def test_empty_batch_is_422(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant, body: object
) -> None:
    """A batch without events is refused with 422."""
    assert_error(post_batch(client, tenant, body), 422)
    assert stored(conn) == {}


def test_batch_of_wrong_shape_is_refused(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant
) -> None:
    """A body neither {"events": [...]} nor an array is 422; malformed JSON is 400; a form post is 415."""
    for shape in ({"events": "x"}, {"event": [page(1)]}, page(1), "x", 5, None):
        response = post_batch(client, tenant, shape)
        assert response.status_code == 422, (shape, response.text)
        assert_error(response, 422)
    assert_error(post_batch(client, tenant, b'{"events": ['), 400)
    response = client.post(BATCH, headers=tenant.headers, data={"events": "x"})
    assert_error(response, 415)
    assert stored(conn) == {}


def test_batch_accepts_text_plain(client: httpx.Client, conn: psycopg.Connection, tenant: Tenant) -> None:
    """A batch sent as text/plain (navigator.sendBeacon) is accepted."""
    headers = {**tenant.headers, "Content-Type": "text/plain;charset=UTF-8"}
    response = client.post(BATCH, headers=headers, content=json.dumps([page(1, event_id="beacon")]))
    assert response.status_code == 200, response.text
    assert sorted(stored(conn)) == ["beacon"]


def test_client_gone_before_the_whole_body_arrived_is_no_server_error(
    live_server: LiveServer, client: httpx.Client, tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that disconnects mid-upload stores nothing and leaves no error traceback in the log."""
    head = (
        "POST /api/v1/track/batch HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{live_server.port}\r\n"
        f"X-Customer-ID: {tenant.customer_id}\r\nAuthorization: Bearer {tenant.token}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    )
    with caplog.at_level(logging.INFO), socket.create_connection(("127.0.0.1", live_server.port)) as sock:
        sock.sendall(head.encode() + b'{"events": [{"event_type": "page_view", "page_url": "https://')
        time.sleep(0.3)
        sock.close()
        time.sleep(0.5)
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert client.get("/health").status_code == 200
