"""§3 authentication of `/api/v1/track*` over real HTTP: 400 / 401 / 403, and nothing stored when refused."""

from __future__ import annotations

import time
from typing import Any

import httpx
import psycopg
import pytest
from tests.helpers.http import assert_error
from tests.helpers.servers import LiveServer
from tests.helpers.tenants import Tenant, make_tenant
from tests.helpers.vault import raw_count

from onevault.auth import store

ASYNC = "/api/v1/track/async"
SYNC = "/api/v1/track"
BATCH = "/api/v1/track/batch"
EVENT = {"page_url": "https://example.com/pricing", "event_type": "page_view"}
BODIES: dict[str, Any] = {ASYNC: EVENT, SYNC: EVENT, BATCH: {"events": [EVENT, EVENT]}}
ENDPOINTS = pytest.mark.parametrize("endpoint", [ASYNC, BATCH])
UNKNOWN_TOKEN = "ovt_prod_" + "ab" * 32


def post(client: httpx.Client, endpoint: str, headers: dict[str, str]) -> httpx.Response:
    """POST a valid body for `endpoint` with exactly `headers` (plus the JSON content type)."""
    return client.post(
        endpoint, headers={"Content-Type": "application/json", **headers}, json=BODIES[endpoint]
    )


def new_token(conn: psycopg.Connection, customer_id: str, **kwargs: Any) -> store.NewToken:
    """A token (with the `track` scope unless `scopes` says otherwise) for an existing tenant."""
    scopes = kwargs.pop("scopes", ["track"])
    return store.create_token(conn, customer_id, list(scopes), "prod", **kwargs)


def auth_headers(customer_id: str, token: str) -> dict[str, str]:
    """Headers authenticating `token` for `customer_id`."""
    return {"X-Customer-ID": customer_id, "Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("endpoint", [ASYNC, BATCH, SYNC])
def test_valid_token_is_admitted(client: httpx.Client, tenant: Tenant, endpoint: str) -> None:
    """A token of the tenant named in X-Customer-ID with the `track` scope is accepted (the control case)."""
    response = post(client, endpoint, tenant.headers)
    assert response.status_code == 200, response.text


@ENDPOINTS
def test_missing_customer_id_is_400(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant, endpoint: str
) -> None:
    """Without X-Customer-ID the request is refused with 400, even with a good token."""
    response = post(client, endpoint, {"Authorization": f"Bearer {tenant.token}"})
    assert_error(response, 400, tenant.token)
    assert raw_count(conn) == 0


def test_invalid_customer_id_format_is_400(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant
) -> None:
    """An X-Customer-ID outside `[a-z0-9_-]{2,64}` is refused with 400."""
    for customer_id in ("ONE_SPA", "a", "one spa", "one_spa;drop", "x" * 65):
        response = post(client, ASYNC, auth_headers(customer_id, tenant.token))
        assert_error(response, 400, tenant.token)
    assert raw_count(conn) == 0


@ENDPOINTS
def test_missing_authorization_is_401_with_bearer_challenge(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant, endpoint: str
) -> None:
    """Without Authorization the answer is 401 with `WWW-Authenticate: Bearer`."""
    response = post(client, endpoint, {"X-Customer-ID": tenant.customer_id})
    assert_error(response, 401)
    assert response.headers["www-authenticate"].lower().startswith("bearer")
    assert raw_count(conn) == 0


MALFORMED = {
    "short": "Bearer ovt_prod_xyz",
    "no-prefix": "Bearer " + "ab" * 32,
    "upper-hex": "Bearer ovt_prod_" + "AB" * 32,
    "62-hex": "Bearer ovt_prod_" + "ab" * 31,
    "empty-env": "Bearer ovt__" + "ab" * 32,
    "no-token": "Bearer",
    "basic": "Basic dXNlcjpwYXNz",
    "token-scheme": "Token ovt_prod_" + "ab" * 32,
}


def test_malformed_authorization_is_401(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant
) -> None:
    """A token not shaped `ovt_<env>_<64 hex>`, or a scheme other than Bearer, is refused with 401."""
    for name, authorization in MALFORMED.items():
        response = post(client, ASYNC, {"X-Customer-ID": tenant.customer_id, "Authorization": authorization})
        assert response.status_code == 401, name
        assert_error(response, 401, authorization)
        assert response.headers["www-authenticate"].lower().startswith("bearer"), name
    # The real token under the Basic scheme is not a bearer token either.
    response = post(
        client, ASYNC, {"X-Customer-ID": tenant.customer_id, "Authorization": f"Basic {tenant.token}"}
    )
    assert_error(response, 401, tenant.token)
    assert raw_count(conn) == 0


@ENDPOINTS
def test_unknown_well_formed_token_is_401(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant, endpoint: str
) -> None:
    """A well-formed token that was never issued is refused with 401."""
    response = post(client, endpoint, auth_headers(tenant.customer_id, UNKNOWN_TOKEN))
    assert_error(response, 401, UNKNOWN_TOKEN)
    assert response.headers["www-authenticate"].lower().startswith("bearer")
    assert raw_count(conn) == 0


@ENDPOINTS
def test_revoked_token_is_401_at_once_without_cache(
    db_url: str, conn: psycopg.Connection, endpoint: str
) -> None:
    """With the auth cache off, a token revoked between two requests is refused (401) on the next one."""
    store.create_tenant(conn, "one_spa")
    new = new_token(conn, "one_spa")
    headers = auth_headers("one_spa", new.token)
    with LiveServer(db_url, auth_cache_seconds=0) as server, httpx.Client(base_url=server.url) as client:
        assert post(client, endpoint, headers).status_code == 200
        stored = raw_count(conn)
        assert store.revoke_token(conn, new.token_id) is True
        response = post(client, endpoint, headers)
        assert_error(response, 401, new.token)
        assert response.headers["www-authenticate"].lower().startswith("bearer")
        assert raw_count(conn) == stored


def test_revoked_token_stops_working_within_seconds_with_default_cache(
    client: httpx.Client, conn: psycopg.Connection
) -> None:
    """With the default auth cache, a revoked (already cached) token is refused within 5 seconds."""
    store.create_tenant(conn, "one_spa")
    new = new_token(conn, "one_spa")
    headers = auth_headers("one_spa", new.token)
    assert post(client, ASYNC, headers).status_code == 200
    assert post(client, ASYNC, headers).status_code == 200  # now served from the cache
    store.revoke_token(conn, new.token_id)
    revoked_at = time.monotonic()
    while True:
        response = post(client, ASYNC, headers)
        elapsed = time.monotonic() - revoked_at
        if response.status_code != 200:
            break
        assert elapsed < 5, "the revoked token still works after 5 seconds"
        time.sleep(0.1)
    assert_error(response, 401, new.token)
    assert elapsed < 5
    stored = raw_count(conn)
    assert post(client, ASYNC, headers).status_code == 401
    assert raw_count(conn) == stored


@ENDPOINTS
def test_expired_token_is_401(client: httpx.Client, conn: psycopg.Connection, endpoint: str) -> None:
    """A token past its expiry date is refused with 401."""
    store.create_tenant(conn, "one_spa")
    new = new_token(conn, "one_spa", expires_in_days=1e-6)  # about 86 ms
    time.sleep(0.3)
    response = post(client, endpoint, auth_headers("one_spa", new.token))
    assert_error(response, 401, new.token)
    assert response.headers["www-authenticate"].lower().startswith("bearer")
    assert raw_count(conn) == 0


def test_token_not_yet_expired_is_admitted(client: httpx.Client, conn: psycopg.Connection) -> None:
    """A token with an expiry date in the future works."""
    store.create_tenant(conn, "one_spa")
    new = new_token(conn, "one_spa", expires_in_days=1)
    assert post(client, ASYNC, auth_headers("one_spa", new.token)).status_code == 200


@ENDPOINTS
def test_token_of_another_tenant_is_403(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant, endpoint: str
) -> None:
    """A valid token presented for another customer id is refused with 403."""
    make_tenant(conn, "other_co")
    response = post(client, endpoint, auth_headers("other_co", tenant.token))
    assert_error(response, 403, tenant.token)
    assert raw_count(conn) == 0


def test_token_for_unknown_customer_id_is_403(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant
) -> None:
    """A valid token presented for a customer id that does not exist is refused with 403."""
    response = post(client, ASYNC, auth_headers("nobody_here", tenant.token))
    assert_error(response, 403, tenant.token)
    assert raw_count(conn) == 0


@ENDPOINTS
def test_token_without_track_scope_is_403(
    client: httpx.Client, conn: psycopg.Connection, endpoint: str
) -> None:
    """A token lacking the `track` scope (e.g. read-only) cannot ingest: 403."""
    store.create_tenant(conn, "one_spa")
    for scopes in (["read"], ["process"], ["read", "process"]):
        new = new_token(conn, "one_spa", scopes=scopes)
        response = post(client, endpoint, auth_headers("one_spa", new.token))
        assert "track" in assert_error(response, 403, new.token)
    assert raw_count(conn) == 0


@ENDPOINTS
def test_disabled_tenant_is_403(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant, endpoint: str
) -> None:
    """The tokens of a disabled customer are refused with 403."""
    store.set_tenant_active(conn, tenant.customer_id, False)
    response = post(client, endpoint, tenant.headers)
    assert_error(response, 403, tenant.token)
    assert raw_count(conn) == 0


def test_reenabled_tenant_is_admitted_again(db_url: str, conn: psycopg.Connection) -> None:
    """Disabling a customer takes effect, and enabling it again restores its tokens."""
    tenant = make_tenant(conn, "one_spa")
    with LiveServer(db_url, auth_cache_seconds=0) as server, httpx.Client(base_url=server.url) as client:
        store.set_tenant_active(conn, "one_spa", False)
        assert_error(post(client, ASYNC, tenant.headers), 403, tenant.token)
        store.set_tenant_active(conn, "one_spa", True)
        assert post(client, ASYNC, tenant.headers).status_code == 200
    assert raw_count(conn) == 1


def test_refusals_follow_the_documented_precedence(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant
) -> None:
    """A request that is wrong in several ways gets the first applicable code: 400, then 401, then 403."""
    make_tenant(conn, "other_co")
    # Missing customer id wins over a missing token.
    assert_error(post(client, ASYNC, {}), 400)
    # A bad token wins over a token of another tenant.
    assert_error(post(client, ASYNC, auth_headers("other_co", UNKNOWN_TOKEN)), 401)
    assert raw_count(conn) == 0
