"""Events from web pages: CORS, credentials carried in the body, and each customer's allowed origins."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest
from tests.helpers.cli import Cli
from tests.helpers.http import assert_error
from tests.helpers.secrets import occurrences
from tests.helpers.tenants import Tenant, make_tenant
from tests.helpers.vault import raw_count

from onevault.auth import store

SHOP = "https://shop.example.com"
PAGE = f"{SHOP}/pricing"
CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36"
)
TRACK_ROUTES = ("/api/v1/track", "/api/v1/track/async", "/api/v1/track/batch")


@pytest.fixture
def browser_tenant(conn: psycopg.Connection) -> Tenant:
    """Customer `one_spa` with a token whose only scope is `track`, as pasted into a web page."""
    return make_tenant(conn, "one_spa", ("track",))


def beacon(
    client: httpx.Client, body: dict[str, Any], path: str = "/api/v1/track/async", **headers: str
) -> httpx.Response:
    """What navigator.sendBeacon sends: a text/plain JSON body, no credentials in headers."""
    return client.post(
        path,
        content=json.dumps(body),
        headers={"Content-Type": "text/plain;charset=UTF-8", "User-Agent": CHROME, **headers},
    )


def credentials(tenant: Tenant) -> dict[str, str]:
    """The body fields that authenticate a beacon."""
    return {"customer_id": tenant.customer_id, "token": tenant.token}


@pytest.mark.parametrize("path", TRACK_ROUTES)
def test_preflight_of_tracking_routes(client: httpx.Client, path: str) -> None:
    """OPTIONS with an Origin is answered 204 with what a page needs to POST with headers."""
    response = client.options(
        path,
        headers={
            "Origin": SHOP,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,x-customer-id",
        },
    )
    assert response.status_code == 204, response.text
    assert response.headers["access-control-allow-origin"] == SHOP
    assert response.headers["access-control-allow-methods"] == "POST"
    allowed = {h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type", "x-customer-id", "x-request-id"} <= allowed
    assert response.headers["access-control-max-age"] == "86400"
    assert "Origin" in response.headers["vary"]
    assert "access-control-allow-credentials" not in response.headers


@pytest.mark.parametrize("path", ["/api/v1/track/status", "/api/v1/track/dashboard", "/api/v1/track/process"])
def test_read_routes_are_not_opened_to_browsers(client: httpx.Client, tenant: Tenant, path: str) -> None:
    """Status, dashboard and manual processing answer no preflight and carry no CORS header."""
    preflight = client.options(path, headers={"Origin": SHOP, "Access-Control-Request-Method": "GET"})
    assert preflight.status_code != 204
    assert "access-control-allow-origin" not in preflight.headers
    response = client.get(path, headers=tenant.headers | {"Origin": SHOP})
    assert "access-control-allow-origin" not in response.headers


def test_post_from_a_page_carries_the_allow_origin_header(client: httpx.Client, tenant: Tenant) -> None:
    """A fetch() with headers from a page: the answer (also an error) is readable by that page."""
    ok = client.post(
        "/api/v1/track/async", json={"page_url": PAGE}, headers=tenant.headers | {"Origin": SHOP}
    )
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == SHOP
    assert "Origin" in ok.headers["vary"]
    assert "access-control-allow-credentials" not in ok.headers
    refused = client.post("/api/v1/track/async", json={}, headers={"Origin": SHOP})
    assert refused.status_code == 400
    assert refused.headers["access-control-allow-origin"] == SHOP


def test_beacon_with_body_credentials_is_stored_without_them(
    client: httpx.Client, conn: psycopg.Connection, browser_tenant: Tenant
) -> None:
    """A text/plain body with customer_id and a track token is stored; neither is in raw_payload."""
    response = beacon(
        client, credentials(browser_tenant) | {"page_url": PAGE, "event_id": "b-1"}, Origin=SHOP
    )
    assert response.status_code == 200, response.text
    assert response.json()["processing"] == "background"
    assert response.headers["access-control-allow-origin"] == SHOP
    (payload,) = (
        conn.execute("SELECT raw_payload FROM raw.site_tracking_events_r WHERE event_id = 'b-1'").fetchone()
        or ()
    )
    assert payload == {"page_url": PAGE, "event_id": "b-1"}


def test_batch_and_sync_routes_take_body_credentials(
    client: httpx.Client, conn: psycopg.Connection, browser_tenant: Tenant
) -> None:
    """The queue a page flushes goes to /batch with the credentials next to `events`; /track too."""
    events = [{"page_url": PAGE, "event_id": f"q-{i}"} for i in range(3)]
    batch = beacon(client, credentials(browser_tenant) | {"events": events}, "/api/v1/track/batch")
    assert batch.status_code == 200, batch.text
    assert batch.json()["accepted"] == 3
    sync = beacon(
        client, credentials(browser_tenant) | {"page_url": PAGE, "event_id": "s-1"}, "/api/v1/track"
    )
    assert sync.status_code == 200, sync.text
    assert sync.json()["pipeline"]["status"] == "complete"
    assert raw_count(conn) == 4


def test_no_token_is_ever_stored(
    client: httpx.Client, conn: psycopg.Connection, browser_tenant: Tenant
) -> None:
    """Tokens sent in bodies (beacons, batches, a `token` field beside header credentials) land nowhere."""
    beacon(client, credentials(browser_tenant) | {"page_url": PAGE})
    beacon(
        client,
        credentials(browser_tenant) | {"events": [{"page_url": PAGE, "token": browser_tenant.token}]},
        "/api/v1/track/batch",
    )
    full = make_tenant(conn, "one_spa")
    client.post("/api/v1/track/async", json={"page_url": PAGE, "token": full.token}, headers=full.headers)
    assert raw_count(conn) == 3
    for token in (browser_tenant.token, full.token):
        assert occurrences(conn, token) == []
        assert occurrences(conn, token.rsplit("_", 1)[1]) == []


def test_body_token_with_more_than_track_is_refused_and_logged(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    """A token that can read or process, pasted into a page, is refused (403) and logged; nothing stored."""
    with caplog.at_level(logging.WARNING):
        response = beacon(client, credentials(tenant) | {"page_url": PAGE})
    detail = assert_error(response, 403, tenant.token)
    assert "'track' scope only" in detail
    assert raw_count(conn) == 0
    (message,) = [r.getMessage() for r in caplog.records if "request body" in r.getMessage()]
    assert "process,read,track" in message and "--scope track" in message
    assert tenant.token not in caplog.text


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"page_url": PAGE}, 400),
        ({"customer_id": "one_spa", "page_url": PAGE}, 401),
        ({"customer_id": "Not Valid", "token": "x", "page_url": PAGE}, 400),
        ({"customer_id": "one_spa", "token": "ovt_test_" + "0" * 64, "page_url": PAGE}, 401),
        ({"customer_id": "one_spa", "token": 42, "page_url": PAGE}, 401),
        ({"customer_id": "other_co", "token": None, "page_url": PAGE}, 401),
    ],
)
def test_bad_body_credentials_are_refused(
    client: httpx.Client, conn: psycopg.Connection, browser_tenant: Tenant, body: dict[str, Any], status: int
) -> None:
    """Missing, malformed or unknown body credentials get the same answers as headers would."""
    assert_error(beacon(client, body), status)
    assert raw_count(conn) == 0


def test_body_token_of_another_customer_is_refused(
    client: httpx.Client, conn: psycopg.Connection, browser_tenant: Tenant
) -> None:
    """A track token of one customer cannot send events as another."""
    make_tenant(conn, "other_co", ("track",))
    response = beacon(client, {"customer_id": "other_co", "token": browser_tenant.token, "page_url": PAGE})
    assert_error(response, 403, browser_tenant.token)
    assert raw_count(conn) == 0


@pytest.fixture
def server_settings() -> dict[str, Any]:
    """Origins change within the token cache's lifetime: a short one keeps the tests quick."""
    return {"auth_cache_seconds": 0.2}


@pytest.mark.parametrize(
    ("headers", "allowed"),
    [
        ({"Origin": SHOP}, True),
        ({"Origin": "https://SHOP.example.com:443"}, True),
        ({"Origin": "https://blog.example.com"}, True),
        ({"Origin": "https://a.b.example.com"}, True),
        ({"Origin": "https://example.com"}, False),
        ({"Origin": "http://blog.example.com"}, False),
        ({"Origin": "https://evil.test"}, False),
        ({"Origin": "https://shop.example.com.evil.test"}, False),
        ({"Origin": "null"}, False),
        ({"Referer": f"{SHOP}/some/page?x=1"}, True),
        ({"Referer": "https://evil.test/page"}, False),
        ({}, True),
    ],
)
def test_allowed_origins_decide_what_is_stored(
    client: httpx.Client,
    conn: psycopg.Connection,
    browser_tenant: Tenant,
    headers: dict[str, str],
    allowed: bool,
) -> None:
    """Origin (else Referer) must match an allowed origin (wildcards: subdomains); no header: a server."""
    store.set_origin(conn, "one_spa", SHOP, True)
    store.set_origin(conn, "one_spa", "https://*.example.com", True)
    response = beacon(client, credentials(browser_tenant) | {"page_url": PAGE}, **headers)
    if allowed:
        assert response.status_code == 200, response.text
        assert raw_count(conn) == 1
    else:
        assert "origin is not allowed" in assert_error(response, 403, browser_tenant.token)
        assert raw_count(conn) == 0


def test_origin_changes_take_effect_within_seconds(
    client: httpx.Client, conn: psycopg.Connection, browser_tenant: Tenant
) -> None:
    """Allowing one origin refuses the others on a running server; removing the last accepts any again."""

    def status() -> int:
        return beacon(
            client, credentials(browser_tenant) | {"page_url": PAGE}, Origin="https://other.test"
        ).status_code

    assert status() == 200
    store.set_origin(conn, "one_spa", SHOP, True)
    deadline = time.monotonic() + 5
    while status() != 403:
        assert time.monotonic() < deadline, "the new allowed origin was not enforced within 5 s"
        time.sleep(0.1)
    store.set_origin(conn, "one_spa", SHOP, False)
    while status() != 200:
        assert time.monotonic() < deadline, "removing the last origin was not applied within 5 s"
        time.sleep(0.1)


def test_header_requests_are_held_to_allowed_origins_too(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant
) -> None:
    """A page using fetch() with headers from an origin that is not allowed is refused as well."""
    store.set_origin(conn, "one_spa", SHOP, True)
    refused = client.post(
        "/api/v1/track/async",
        json={"page_url": PAGE},
        headers=tenant.headers | {"Origin": "https://evil.test"},
    )
    assert refused.status_code == 403
    served = client.post("/api/v1/track/async", json={"page_url": PAGE}, headers=tenant.headers)
    assert served.status_code == 200
    assert raw_count(conn) == 1


def test_cli_allow_and_disallow_origin(
    cli_for: Callable[[str], Cli], db_url: str, conn: psycopg.Connection
) -> None:
    """`tenant allow-origin` / `disallow-origin` change and `tenant list` shows the allowed origins."""
    make_tenant(conn, "one_spa", ("track",))
    cli = cli_for(db_url)
    added = cli("tenant", "allow-origin", "one_spa", "HTTPS://Shop.Example.com:443/")
    assert added.exit_code == 0, added.output
    assert "https://shop.example.com" in added.output
    assert cli("tenant", "allow-origin", "one_spa", "https://*.example.com").exit_code == 0
    assert "already allowed" in cli("tenant", "allow-origin", "one_spa", SHOP).output
    listed = cli("tenant", "list").output
    assert "https://*.example.com,https://shop.example.com" in listed
    removed = cli("tenant", "disallow-origin", "one_spa", "https://*.example.com")
    assert removed.exit_code == 0 and "no longer accepts https://*.example.com" in removed.output
    last = cli("tenant", "disallow-origin", "one_spa", SHOP)
    assert "from any origin are accepted" in last.output
    for bad in (
        "shop.example.com",
        "ftp://shop.example.com",
        "https://shop.example.com/path",
        "https://a.*.com",
    ):
        result = cli("tenant", "allow-origin", "one_spa", bad)
        assert result.exit_code == 1 and "not" in result.output, (bad, result.output)
    assert cli("tenant", "allow-origin", "nobody", SHOP).exit_code == 1


def test_read_routes_can_be_opened_to_configured_origins(db_url: str, conn: psycopg.Connection) -> None:
    """ONEVAULT_CORS_READ_ORIGINS opens status and dashboard to the pages of the origins it lists."""
    from tests.helpers.servers import LiveServer

    tenant = make_tenant(conn, "one_spa")
    with (
        LiveServer(db_url, cors_read_origins=("https://admin.example.com",)) as server,
        httpx.Client(base_url=server.url) as http,
    ):
        preflight = http.options(
            "/api/v1/track/status",
            headers={"Origin": "https://admin.example.com", "Access-Control-Request-Method": "GET"},
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-methods"] == "GET, POST"
        other = http.get("/api/v1/track/status", headers=tenant.headers | {"Origin": SHOP})
        assert "access-control-allow-origin" not in other.headers
