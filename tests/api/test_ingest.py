"""§4 single-event ingestion over HTTP: `/api/v1/track` and `/api/v1/track/async`."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import psycopg
import pytest
from tests.helpers.http import assert_error
from tests.helpers.servers import LiveServer
from tests.helpers.tenants import Tenant, make_tenant
from tests.helpers.vault import raw_count

SYNC = "/api/v1/track"
ASYNC = "/api/v1/track/async"
SINGLE = pytest.mark.parametrize("endpoint", [SYNC, ASYNC])
PROCESSING = {SYNC: "automatic", ASYNC: "background"}


def rows(conn: psycopg.Connection) -> list[tuple[str, str, Any]]:
    """(customer id, event_id, raw_payload) of every raw event, oldest first."""
    return conn.execute(
        "SELECT t.tenant_bk, r.event_id, r.raw_payload FROM raw.site_tracking_events_r r "
        "JOIN auth.tenant_h t USING (tenant_hk) ORDER BY r.raw_event_id"
    ).fetchall()


def send(
    client: httpx.Client,
    tenant: Tenant,
    body: object,
    endpoint: str = ASYNC,
    content_type: str = "application/json",
    **headers: str,
) -> httpx.Response:
    """POST `body` (JSON-encoded unless already bytes/str) as `tenant`."""
    content = body if isinstance(body, bytes | str) else json.dumps(body)
    return client.post(
        endpoint, headers={**tenant.headers, "Content-Type": content_type, **headers}, content=content
    )


@SINGLE
def test_success_body_shape(client: httpx.Client, tenant: Tenant, endpoint: str) -> None:
    """A tracked event gets 200 with success, message, event_id, timestamp, processing and duplicate."""
    response = send(client, tenant, {"page_url": "https://example.com/", "event_type": "page_view"}, endpoint)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["success"] is True
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["event_id"], str) and body["event_id"]
    assert datetime.fromisoformat(body["timestamp"]).tzinfo is not None
    assert body["processing"] == PROCESSING[endpoint]
    assert body["duplicate"] is False
    if endpoint == SYNC:
        assert body["pipeline"]["status"] in ("complete", "quarantined", "pending")


@SINGLE
def test_payload_is_stored_verbatim_with_unknown_fields(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant, endpoint: str
) -> None:
    """The raw payload equals the JSON sent, unknown and nested fields included."""
    event = {
        "page_url": "https://example.com/a?b=c",
        "event_type": "click",
        "event_data": {"button": "buy", "price": 9.5, "tags": ["x", "y"], "ok": True, "none": None},
        "custom_field": {"nested": [1, 2]},
        "ünïcødé": "日本語 ✓",
    }
    response = send(client, tenant, event, endpoint)
    assert response.status_code == 200, response.text
    assert rows(conn) == [("one_spa", response.json()["event_id"], event)]


def test_event_type_may_be_omitted(client: httpx.Client, conn: psycopg.Connection, tenant: Tenant) -> None:
    """Every field is optional: without event_type (page_view), with null, or `{}`, it is stored as sent."""
    events: list[dict[str, Any]] = [
        {"page_url": "https://example.com/"},
        {"page_url": "https://example.com/", "event_type": None},
        {},
    ]
    for event in events:
        response = send(client, tenant, event)
        assert response.status_code == 200, (event, response.text)
    assert [r[2] for r in rows(conn)] == events


@SINGLE
def test_client_event_id_is_echoed_and_stored(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant, endpoint: str
) -> None:
    """A client-sent event_id is returned as is and becomes the raw event_id."""
    event_id = str(uuid.uuid4())
    response = send(client, tenant, {"event_id": event_id, "page_url": "https://example.com/"}, endpoint)
    assert response.status_code == 200, response.text
    assert response.json()["event_id"] == event_id
    assert [r[1] for r in rows(conn)] == [event_id]


def test_generated_event_ids_are_unique(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant
) -> None:
    """Events without event_id get distinct ids, each stored once and never flagged duplicate."""
    answers = [send(client, tenant, {"page_url": "https://example.com/"}).json() for _ in range(3)]
    ids = [a["event_id"] for a in answers]
    assert len(set(ids)) == 3
    assert all(a["duplicate"] is False for a in answers)
    assert [r[1] for r in rows(conn)] == ids


@pytest.mark.parametrize(("first", "second"), [(ASYNC, ASYNC), (SYNC, SYNC), (SYNC, ASYNC)])
def test_resent_event_id_is_a_duplicate_stored_once(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant, first: str, second: str
) -> None:
    """Re-sending an event_id answers 200 duplicate:true with the same id, and the row is stored once."""
    event = {"event_id": "evt-42", "page_url": "https://example.com/a"}
    original = send(client, tenant, event, first)
    assert original.status_code == 200, original.text
    assert original.json()["duplicate"] is False
    again = send(client, tenant, {**event, "page_url": "https://example.com/changed"}, second)
    assert again.status_code == 200, again.text
    body = again.json()
    assert body["duplicate"] is True
    assert body["success"] is True
    assert body["event_id"] == "evt-42"
    assert rows(conn) == [("one_spa", "evt-42", event)]


def test_same_event_id_for_two_tenants_is_stored_twice(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant
) -> None:
    """Idempotency is per tenant: the same event_id from another tenant is a new event."""
    other = make_tenant(conn, "other_co")
    event = {"event_id": "shared-id", "page_url": "https://example.com/"}
    for who in (tenant, other):
        response = send(client, who, event)
        assert response.status_code == 200, response.text
        assert response.json()["duplicate"] is False
    assert sorted(rows(conn)) == [("one_spa", "shared-id", event), ("other_co", "shared-id", event)]


def test_accepted_content_types(client: httpx.Client, conn: psycopg.Connection, tenant: Tenant) -> None:
    """JSON sent as application/json or text/plain (as navigator.sendBeacon does) is accepted."""
    event = {"page_url": "https://example.com/beacon", "event_type": "page_view"}
    types = ("text/plain", "text/plain;charset=UTF-8", "application/json; charset=utf-8", "Application/JSON")
    for content_type in types:
        response = send(client, tenant, event, content_type=content_type)
        assert response.status_code == 200, (content_type, response.text)
    assert [r[2] for r in rows(conn)] == [event] * len(types)


@SINGLE
def test_other_content_types_are_415(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant, endpoint: str
) -> None:
    """Form posts, XML or a missing content type are refused with 415 and nothing is stored."""
    form = client.post(endpoint, headers=tenant.headers, data={"page_url": "https://example.com/"})
    assert_error(form, 415)
    assert_error(send(client, tenant, "<event/>", endpoint, content_type="application/xml"), 415)
    bare = client.post(endpoint, headers=tenant.headers, content=b'{"page_url": "https://example.com/"}')
    assert_error(bare, 415)
    assert raw_count(conn) == 0


def test_malformed_json_is_400(client: httpx.Client, conn: psycopg.Connection, tenant: Tenant) -> None:
    """A body that is not JSON (or is empty) is refused with 400."""
    for body in (b'{"page_url": ', b"{'a': 1}", b"not json", b"", b"   ", b"\xff\xfe", b'{"a": 1} {"b": 2}'):
        response = send(client, tenant, body)
        assert response.status_code == 400, (body, response.text)
        assert_error(response, 400)
    assert raw_count(conn) == 0


@SINGLE
def test_non_object_body_is_422(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant, endpoint: str
) -> None:
    """A JSON array, string, number or null is not a single event: 422."""
    for body in ([{"page_url": "https://example.com/"}], [], "page_view", 5, None, True):
        response = send(client, tenant, json.dumps(body), endpoint)
        assert response.status_code == 422, (body, response.text)
        assert_error(response, 422)
    assert raw_count(conn) == 0


WRONG_FIELDS: list[tuple[dict[str, Any], str]] = [
    ({"event_type": 5}, "event_type"),
    ({"event_type": "bad type!"}, "event_type"),
    ({"event_type": ""}, "event_type"),
    ({"event_type": "x" * 65}, "event_type"),
    ({"event_data": "x"}, "event_data"),
    ({"event_data": [1, 2]}, "event_data"),
    ({"event_id": 12}, "event_id"),
    ({"event_id": ""}, "event_id"),
    ({"event_id": "e" * 129}, "event_id"),
    ({"page_url": 7}, "page_url"),
    ({"session_id": {"a": 1}}, "session_id"),
    ({"timestamp": [2024]}, "timestamp"),
]


@SINGLE
def test_wrong_field_types_are_422_with_readable_detail(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant, endpoint: str
) -> None:
    """A known field of the wrong type or format is refused with 422 whose detail names the field."""
    for event, field in WRONG_FIELDS:
        response = send(client, tenant, {"page_url": "https://example.com/", **event}, endpoint)
        assert response.status_code == 422, (event, response.text)
        detail = assert_error(response, 422)
        assert field in detail, (event, detail)
    assert raw_count(conn) == 0


def test_event_id_of_128_characters_is_accepted(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant
) -> None:
    """An event_id of exactly 128 characters and an event_type of 64 allowed characters are fine."""
    event = {"event_id": "e" * 128, "event_type": "Aa0_.:-" + "x" * 57}
    response = send(client, tenant, event)
    assert response.status_code == 200, response.text
    assert [r[1] for r in rows(conn)] == ["e" * 128]


def test_nul_character_is_422(client: httpx.Client, conn: psycopg.Connection, tenant: Tenant) -> None:
    """A string holding U+0000 (which PostgreSQL cannot store) is refused with 422, not a 500."""
    bodies = (
        '{"page_url": "https://example.com/\\u0000"}',
        '{"event_data": {"note": "a\\\\\\u0000b"}}',
        '{"custom\\u0000key": 1}',
    )
    for body in bodies:
        response = send(client, tenant, body)
        assert response.status_code == 422, (body, response.text)
        assert_error(response, 422)
    assert raw_count(conn) == 0


def test_escaped_backslash_before_u0000_text_is_accepted(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant
) -> None:
    """The literal text `\\u0000` (an escaped backslash, not a NUL) is ordinary data and is stored."""
    response = send(client, tenant, '{"event_data": {"note": "C:\\\\u0000"}}')
    assert response.status_code == 200, response.text
    assert [r[2] for r in rows(conn)] == [{"event_data": {"note": "C:\\u0000"}}]


@SINGLE
def test_lone_surrogate_is_a_client_error(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant, endpoint: str
) -> None:
    """A string with an unpaired UTF-16 surrogate escape is bad input: a 4xx JSON error, never a 500."""
    for body in ('{"page_url": "https://example.com/\\ud800"}', '{"event_data": {"x": "\\udc80"}}'):
        response = send(client, tenant, body, endpoint)
        assert 400 <= response.status_code < 500, (body, response.status_code, response.text)
        assert_error(response, response.status_code)
    assert raw_count(conn) == 0


def test_non_standard_json_numbers_are_refused(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant
) -> None:
    """NaN and Infinity (not JSON, not storable in jsonb) get a 4xx; nothing stored."""
    for body in ('{"x": NaN}', '{"x": Infinity}', '{"x": -Infinity}'):
        response = send(client, tenant, body)
        assert response.status_code in (400, 422), (body, response.text)
        assert_error(response, response.status_code)
    assert raw_count(conn) == 0


def test_numbers_are_stored_with_their_full_precision(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant
) -> None:
    """Numbers in the payload are kept as sent, not rounded to a 64-bit float (the raw layer is verbatim)."""
    precise = "0.1000000000000000055511151231257827"
    large = "12345678901234567890.5"
    body = f'{{"event_data": {{"amount": {precise}}}, "order_total": {large}, "count": 12345678901234567890}}'
    response = send(client, tenant, body)
    assert response.status_code == 200, response.text
    stored = conn.execute(
        "SELECT raw_payload->'event_data'->>'amount', raw_payload->>'order_total', raw_payload->>'count' "
        "FROM raw.site_tracking_events_r"
    ).fetchall()
    assert stored == [(precise, large, "12345678901234567890")]


POOR_EVENTS: list[dict[str, Any]] = [
    {"page_url": "not a url"},
    {"timestamp": "3000-01-01T00:00:00Z"},
    {"timestamp": "yesterday-ish"},
    {"timestamp": -1},
    {"sent_at": "1970-01-01T00:00:00Z", "referrer": "::::"},
]


def test_semantically_poor_input_is_stored(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant
) -> None:
    """Well-formed but implausible values (bad URL, absurd time) are not refused: 200 and stored as sent."""
    for event in POOR_EVENTS:
        response = send(client, tenant, event, **{"User-Agent": "Googlebot/2.1"})
        assert response.status_code == 200, (event, response.text)
    assert [r[2] for r in rows(conn)] == POOR_EVENTS


@SINGLE
def test_user_agent_is_stored_and_client_ip_is_not(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant, endpoint: str
) -> None:
    """The User-Agent is kept; the client IP only as a keyed 32-byte hash, never in clear."""
    agent = "Mozilla/5.0 (X11; Linux x86_64) OneVaultTest/1.0"
    response = send(client, tenant, {"page_url": "https://example.com/"}, endpoint, **{"User-Agent": agent})
    assert response.status_code == 200, response.text
    [(user_agent, ip_hash, whole_row)] = conn.execute(
        "SELECT user_agent, client_ip_hash, row_to_json(r)::text FROM raw.site_tracking_events_r r"
    ).fetchall()
    assert user_agent == agent
    assert isinstance(ip_hash, bytes) and len(ip_hash) == 32
    assert "127.0.0.1" not in whole_row
    assert ip_hash != hashlib.sha256(b"127.0.0.1").digest(), "an unkeyed hash of an IPv4 is reversible"


def test_ip_hash_is_stable_and_long_user_agents_are_accepted(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant
) -> None:
    """Events from one address share one IP hash; a 5000-character User-Agent is accepted (maybe cut)."""
    agent = "A" * 5000
    for _ in range(2):
        response = send(client, tenant, {"page_url": "https://example.com/"}, **{"User-Agent": agent})
        assert response.status_code == 200, response.text
    stored = conn.execute("SELECT client_ip_hash, user_agent FROM raw.site_tracking_events_r").fetchall()
    assert len(stored) == 2
    assert stored[0][0] == stored[1][0]
    assert all(ua and agent.startswith(ua) for _, ua in stored)


@pytest.fixture
def small_server(db_url: str) -> Iterator[httpx.Client]:
    """A client for a server whose per-event limit is 2048 bytes."""
    with LiveServer(db_url, max_event_bytes=2048) as server, httpx.Client(base_url=server.url) as http:
        yield http


def event_of_size(size: int) -> bytes:
    """A compact JSON event of exactly `size` bytes."""
    base = json.dumps({"page_url": "https://example.com/", "pad": ""}, separators=(",", ":"))
    body = json.dumps(
        {"page_url": "https://example.com/", "pad": "x" * (size - len(base))}, separators=(",", ":")
    )
    assert len(body) == size
    return body.encode()


@SINGLE
def test_body_over_the_limit_is_413(
    small_server: httpx.Client, conn: psycopg.Connection, tenant: Tenant, endpoint: str
) -> None:
    """A body larger than max_event_bytes is refused with 413 and nothing is stored."""
    assert_error(send(small_server, tenant, event_of_size(3000), endpoint), 413)
    assert_error(send(small_server, tenant, event_of_size(2049), endpoint), 413)
    assert raw_count(conn) == 0


def test_chunked_body_over_the_limit_is_413(
    small_server: httpx.Client, conn: psycopg.Connection, tenant: Tenant
) -> None:
    """A body without Content-Length (chunked) is also cut off at the limit with 413."""
    body = event_of_size(3000)
    chunks = iter([body[:1000], body[1000:2000], body[2000:]])
    response = small_server.post(
        ASYNC, headers={**tenant.headers, "Content-Type": "application/json"}, content=chunks
    )
    assert "content-length" not in response.request.headers
    assert_error(response, 413)
    assert raw_count(conn) == 0


def test_body_up_to_the_limit_is_accepted(
    small_server: httpx.Client, conn: psycopg.Connection, tenant: Tenant
) -> None:
    """A body just under (or exactly at) max_event_bytes is stored."""
    for size in (2000, 2047, 2048):
        response = send(small_server, tenant, event_of_size(size))
        assert response.status_code == 200, (size, response.text)
    assert raw_count(conn) == 3


def test_rate_limit_answers_429_with_retry_after_per_tenant(db_url: str, conn: psycopg.Connection) -> None:
    """Beyond its burst a tenant gets 429 with an integer Retry-After; another tenant is unaffected."""
    first = make_tenant(conn, "one_spa")
    second = make_tenant(conn, "other_co")
    event = {"page_url": "https://example.com/"}
    with (
        LiveServer(db_url, rate_limit_per_second=1, rate_limit_burst=3) as server,
        httpx.Client(base_url=server.url) as client,
    ):
        started = time.monotonic()
        answers = [send(client, first, event) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 200]
        while answers[-1].status_code == 200 and len(answers) < 10:
            answers.append(send(client, first, event))
        refills = int(time.monotonic() - started)  # at 1/s, a slow machine may earn a token back
        limited = answers[-1]
        assert_error(limited, 429)
        assert len(answers) - 1 <= 3 + refills
        retry_after = limited.headers["retry-after"]
        assert retry_after.isdigit() and int(retry_after) >= 1
        assert send(client, second, event).status_code == 200
    assert sorted(r[0] for r in rows(conn)) == ["one_spa"] * (len(answers) - 1) + ["other_co"]


def test_request_id_header_is_returned(client: httpx.Client, tenant: Tenant) -> None:
    """Every answer, errors included, carries X-Request-ID: the client's own when sent, else a fresh one."""
    fresh = send(client, tenant, {"page_url": "https://example.com/"})
    assert fresh.headers.get("x-request-id")
    other = send(client, tenant, {"page_url": "https://example.com/"})
    assert other.headers["x-request-id"] != fresh.headers["x-request-id"]
    echoed = send(client, tenant, {"page_url": "https://example.com/"}, **{"X-Request-ID": "abc-123"})
    assert echoed.status_code == 200
    assert echoed.headers["x-request-id"] == "abc-123"
    response = client.post(ASYNC, headers={"X-Request-ID": "abc-123"}, json={})
    assert response.status_code == 400
    assert response.headers["x-request-id"] == "abc-123"
    bad = send(client, tenant, "{", **{"X-Request-ID": "abc-124"})
    assert bad.status_code == 400
    assert bad.headers["x-request-id"] == "abc-124"
