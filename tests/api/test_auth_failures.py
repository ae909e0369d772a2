"""A flood of made-up tokens is refused without a database query per request; valid tokens go on."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections import Counter
from typing import Any

import httpx
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from tests.helpers.tenants import Tenant

from onevault.auth import caller, store
from onevault.auth.caller import TokenResolver
from onevault.auth.tokens import token_hash

BURST = 20


@pytest.fixture
def server_settings() -> dict[str, Any]:
    """A small allowance of failures, and a token cache short enough to expire during the test."""
    return {"auth_failures_per_second": 2, "auth_failure_burst": BURST, "auth_cache_seconds": 0.2}


@pytest.fixture
def quick_refusals(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refusals answered at once, so a test can send hundreds (the delay has its own test)."""
    monkeypatch.setattr(caller, "REFUSAL_DELAY_SECONDS", 0.0)


@pytest.fixture
def queries(monkeypatch: pytest.MonkeyPatch, quick_refusals: None) -> Counter[str]:
    """How many token lookups reached the database (the live server runs in this process)."""
    counted: Counter[str] = Counter()
    original = TokenResolver.lookup

    async def lookup(self: TokenResolver, token_hash: bytes) -> Any:
        if not (self._cache is not None and token_hash in self._cache):
            counted["queries"] += 1
        return await original(self, token_hash)

    monkeypatch.setattr(TokenResolver, "lookup", lookup)
    return counted


def made_up(customer_id: str) -> dict[str, str]:
    """Headers with a well-formed token nobody created."""
    return {"X-Customer-ID": customer_id, "Authorization": f"Bearer ovt_test_{secrets.token_hex(32)}"}


def test_made_up_tokens_cost_no_query_once_the_allowance_is_spent(
    client: httpx.Client, tenant: Tenant, queries: Counter[str]
) -> None:
    """After a burst of failures an address gets 429 (Retry-After) for unknown tokens, without a lookup."""
    answers = Counter(
        client.post("/api/v1/track/async", json={}, headers=made_up(tenant.customer_id)).status_code
        for _ in range(200)
    )
    assert answers[401] >= BURST and answers[429] >= 150, answers
    assert queries["queries"] <= BURST + 10, queries
    refused = client.post("/api/v1/track/async", json={}, headers=made_up(tenant.customer_id))
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["detail"] == "too many failed authentications from this address"


def test_a_valid_token_is_never_held_back_by_its_addresss_failures(
    client: httpx.Client, tenant: Tenant, queries: Counter[str]
) -> None:
    """A token that worked lately keeps working from an address that spends its failures, cache or not."""
    assert (
        client.post(
            "/api/v1/track/async", json={"page_url": "https://a.test/"}, headers=tenant.headers
        ).status_code
        == 200
    )
    for round_ in range(5):
        for _ in range(60):
            client.post("/api/v1/track/async", json={}, headers=made_up(tenant.customer_id))
        response = client.post(
            "/api/v1/track/async", json={"page_url": "https://a.test/"}, headers=tenant.headers
        )
        assert response.status_code == 200, (round_, response.text)


def test_a_revoked_token_is_refused_although_it_was_valid_lately(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant
) -> None:
    """Passing the failure limit does not outlive a revocation: the token is looked up again and refused."""
    assert (
        client.post(
            "/api/v1/track/async", json={"page_url": "https://a.test/"}, headers=tenant.headers
        ).status_code
        == 200
    )
    store.revoke_token(conn, hashlib.sha256(tenant.token.encode()).hexdigest()[:12])
    time.sleep(0.3)  # the token cache's lifetime in this module
    response = client.post(
        "/api/v1/track/async", json={"page_url": "https://a.test/"}, headers=tenant.headers
    )
    assert response.status_code == 401
    assert response.json()["detail"] == "token revoked"


def test_a_refusal_is_answered_late_on_a_closed_connection(client: httpx.Client, tenant: Tenant) -> None:
    """An address over its allowance waits for its 429, and must connect again: a flood costs it time."""
    for _ in range(BURST):
        client.post("/api/v1/track/async", json={}, headers=made_up(tenant.customer_id))
    started = time.monotonic()
    refused = client.post("/api/v1/track/async", json={}, headers=made_up(tenant.customer_id))
    assert refused.status_code == 429
    assert time.monotonic() - started >= caller.REFUSAL_DELAY_SECONDS * 0.9
    assert refused.headers["connection"] == "close"


class _ExpiresWhenRead(dict[bytes, Any]):
    """A token cache whose entry expires between `in` and the read (a TTLCache entry can)."""

    def __getitem__(self, key: bytes) -> Any:
        raise KeyError(key)

    def get(self, key: bytes, default: Any = None) -> Any:
        return default


def test_a_cached_token_expiring_during_its_lookup_is_looked_up_again(db_url: str, tenant: Tenant) -> None:
    """An entry that expires while it is read is a miss, not a KeyError (a 500 under load)."""

    async def lookup() -> Any:
        async with AsyncConnectionPool(db_url, min_size=1, open=False) as pool:
            resolver = TokenResolver(pool, ttl_seconds=2)
            expiring = _ExpiresWhenRead()
            expiring[token_hash(tenant.token)] = None
            resolver._cache = expiring  # type: ignore[assignment]
            return await resolver.lookup(token_hash(tenant.token))

    grant = asyncio.run(lookup())
    assert grant is not None and grant.customer_id == tenant.customer_id
