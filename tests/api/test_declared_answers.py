"""The service does what its OpenAPI document declares: nesting depth, `event_type: null`, headers."""

from __future__ import annotations

import httpx
import psycopg
import pytest
from tests.helpers.http import assert_error
from tests.helpers.tenants import Tenant
from tests.helpers.vault import raw_count

from onevault.ingest.body import MAX_DEPTH

SINGLE = pytest.mark.parametrize("endpoint", ["/api/v1/track", "/api/v1/track/async"])
DEPTH_MESSAGE = f"JSON nested deeper than {MAX_DEPTH} levels"


def nested(levels: int) -> str:
    """An event whose `event_data` makes the whole event `levels` containers deep."""
    inner = "[" * (levels - 2) + "1" + "]" * (levels - 2)
    return '{"event_data": {"x": ' + inner + "}}"


def post(client: httpx.Client, tenant: Tenant, endpoint: str, body: str) -> httpx.Response:
    """POST the JSON text `body` as `tenant`."""
    headers = {**tenant.headers, "Content-Type": "application/json"}
    return client.post(endpoint, headers=headers, content=body)


@SINGLE
def test_nesting_at_the_limit_is_stored(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant, endpoint: str
) -> None:
    """An event exactly MAX_DEPTH containers deep is ordinary data."""
    response = post(client, tenant, endpoint, nested(MAX_DEPTH))
    assert response.status_code == 200, response.text
    assert raw_count(conn) == 1


@SINGLE
@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 600, 900, 5_000])
def test_nesting_beyond_the_limit_is_refused_for_what_it_is(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant, endpoint: str, levels: int
) -> None:
    """Deeper events are refused 422 naming the limit, never blamed on a lone surrogate."""
    detail = assert_error(post(client, tenant, endpoint, nested(levels)), 422)
    assert detail == DEPTH_MESSAGE
    assert raw_count(conn) == 0


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 5_000])
def test_batch_nesting_beyond_the_limit(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant, levels: int
) -> None:
    """In a batch the deep event is rejected with the depth reason (the whole batch when unreadable)."""
    body = '{"events": [{"event_type": "ok"}, ' + nested(levels) + "]}"
    response = post(client, tenant, "/api/v1/track/batch", body)
    if response.status_code == 200:
        results = response.json()["results"]
        assert [r["status"] for r in results] == ["accepted", "rejected"]
        assert results[1]["reason"] == DEPTH_MESSAGE
        assert raw_count(conn) == 1
    else:
        assert assert_error(response, 422) == DEPTH_MESSAGE
        assert raw_count(conn) == 0


@SINGLE
def test_null_event_type_is_the_default(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant, endpoint: str
) -> None:
    """`event_type: null` is declared nullable and counts as absent: stored, then a page view."""
    response = post(client, tenant, endpoint, '{"event_type": null, "page_url": "https://example.com/"}')
    assert response.status_code == 200, response.text
    client.post("/api/v1/track/process", headers=tenant.headers).raise_for_status()
    stored = conn.execute("SELECT event_type FROM staging.site_tracking_events_s").fetchall()
    assert stored == [("page_view",)]


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/v1/track/status"), ("GET", "/api/v1/track/dashboard"), ("POST", "/api/v1/track/process")],
)
def test_missing_customer_header_is_400_as_declared(
    client: httpx.Client, tenant: Tenant, method: str, path: str
) -> None:
    """The header the document declares required is refused 400 when missing."""
    response = client.request(method, path, headers={"Authorization": tenant.headers["Authorization"]})
    assert "X-Customer-ID" in assert_error(response, 400)


def test_framework_validation_error_has_the_declared_shape(client: httpx.Client, tenant: Tenant) -> None:
    """A bad query parameter is answered `{"detail": "<text>", "errors": [{loc, msg, type}]}`."""
    response = client.get("/api/v1/track/dashboard", params={"limit": 0}, headers=tenant.headers)
    assert "limit" in assert_error(response, 422)
    (error,) = response.json()["errors"]
    assert error["loc"] == ["query", "limit"]
    assert set(error) == {"loc", "msg", "type"}
