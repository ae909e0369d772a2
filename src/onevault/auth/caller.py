"""Resolve the caller of a `/api/v1/track*` request from `X-Customer-ID` and its bearer token.

Browsers, which cannot set headers on a beacon, may instead carry the customer id and a token
whose only scope is `track` in the body (see `authenticate_body`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from cachetools import TTLCache
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg_pool import AsyncConnectionPool

from onevault import sqlfile
from onevault.auth import origins, tokens
from onevault.errors import ApiError

logger = logging.getLogger(__name__)
Q = sqlfile.load(__package__, "queries.sql")
# How long a request refused for its address's failed authentications waits for its answer.
REFUSAL_DELAY_SECONDS = 1.0
# How long a token that resolved to a grant passes the failure limit of its address.
KNOWN_TOKEN_SECONDS = 600
# The only scopes a token sent in a request body may have: such a token is in a web page.
BROWSER_SCOPES = frozenset({"track"})
_bearer = HTTPBearer(auto_error=False, description="A OneVault API token: `ovt_<env>_<64 hex>`")


@dataclass(frozen=True)
class Caller:
    """The tenant a request acts for, and what its token allows."""

    customer_id: str
    tenant_hk: bytes
    scopes: frozenset[str]
    # Whether the tenant stores nothing of requests with DNT: 1 or Sec-GPC: 1 (tenant set-privacy).
    respects_privacy: bool = True
    # The token's public id (`token list`): a short prefix of its hash, which audit records name.
    token_id: str = ""


@dataclass(frozen=True)
class _Grant:
    customer_id: str
    tenant_hk: bytes
    tenant_active: bool
    scopes: frozenset[str]
    expires_at: float | None
    revoked: bool
    # The origins the tenant allows browser events from (none: any).
    origins: tuple[str, ...]
    respects_privacy: bool


class FailureLimiter:
    """Failed authentications per client address: `rate` a second with bursts up to `burst`.

    An address over its allowance is refused (429) before its token is looked up, so a flood of
    made-up tokens costs no database query per request; addresses are forgotten when idle.
    """

    def __init__(self, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = float(burst)
        # address -> (allowance left, when it was counted); bounded, so a flood from many
        # addresses cannot grow it without end.
        self._allowance: TTLCache[str, tuple[float, float]] = TTLCache(
            maxsize=100_000, ttl=burst / rate if rate > 0 else 1
        )

    def _left(self, address: str, now: float) -> float:
        left, counted = self._allowance.get(address, (self._burst, now))
        return min(self._burst, left + (now - counted) * self._rate)

    def wait(self, address: str) -> float:
        """0 when `address` may try to authenticate, else the seconds until it may."""
        if self._rate <= 0:
            return 0.0
        left = self._left(address, time.monotonic())
        return 0.0 if left >= 1 else (1 - left) / self._rate

    def failed(self, address: str) -> None:
        """Count one failed authentication of `address`."""
        if self._rate > 0:
            now = time.monotonic()
            self._allowance[address] = (max(0.0, self._left(address, now) - 1), now)


class TokenResolver:
    """Looks tokens up by hash, caching answers (also "unknown") for a few seconds.

    The short TTL is what bounds how long a revoked token keeps working on any process.
    """

    def __init__(
        self, pool: AsyncConnectionPool, ttl_seconds: float, failures: FailureLimiter | None = None
    ) -> None:
        self._pool = pool
        self._cache: TTLCache[bytes, _Grant | None] | None = (
            TTLCache(maxsize=100_000, ttl=ttl_seconds) if ttl_seconds > 0 else None
        )
        self.failures = failures or FailureLimiter(0, 1)
        # Tokens that resolved to a grant lately: looked up again when their cache entry expires
        # (revocation), but never held back by the failure limit of an address they share.
        self._recently_valid: TTLCache[bytes, bool] = TTLCache(maxsize=100_000, ttl=KNOWN_TOKEN_SECONDS)

    def may_query(self, token_hash: bytes, address: str) -> float:
        """0 when a lookup of this token from `address` may proceed, else seconds until it may.

        Cached answers cost nothing, and tokens that were valid lately always go through.
        """
        if (self._cache is not None and token_hash in self._cache) or token_hash in self._recently_valid:
            return 0.0
        return self.failures.wait(address)

    async def lookup(self, token_hash: bytes) -> _Grant | None:
        """What the token with this hash grants, or None if no such token exists."""
        if self._cache is not None:
            # One read, no `in` first: an entry can expire between the two.
            with contextlib.suppress(KeyError):
                return self._cache[token_hash]
        async with self._pool.connection() as conn:
            cur = await conn.execute(Q["resolve_token"], {"token_hash": token_hash})
            row = await cur.fetchone()
        grant = None
        if row is not None:
            customer_id, tenant_hk, active, scopes, expires_at, revoked_at, allowed, respects_privacy = row
            grant = _Grant(
                customer_id=customer_id,
                tenant_hk=bytes(tenant_hk),
                tenant_active=active,
                scopes=frozenset(scopes),
                expires_at=expires_at.timestamp() if isinstance(expires_at, datetime) else None,
                revoked=revoked_at is not None,
                origins=tuple(allowed),
                respects_privacy=bool(respects_privacy),
            )
        if self._cache is not None:
            self._cache[token_hash] = grant
        if grant is not None and not grant.revoked:
            self._recently_valid[token_hash] = True
        return grant


def _unauthorized(detail: str) -> ApiError:
    return ApiError(401, detail, headers={"WWW-Authenticate": "Bearer"})


def _bearer_token(authorization: str | None) -> str | None:
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def has_header_credentials(request: Request) -> bool:
    """Whether the request authenticates with headers (else its body may carry the credentials)."""
    return "authorization" in request.headers or "x-customer-id" in request.headers


async def authenticate(request: Request, scope: str) -> Caller:
    """The caller of `request` if its token belongs to `X-Customer-ID` and has `scope` (else 400/401/403)."""
    customer_id = request.headers.get("x-customer-id")
    if not customer_id:
        raise ApiError(400, "missing X-Customer-ID header")
    if not tokens.CUSTOMER_ID_RE.fullmatch(customer_id):
        raise ApiError(400, "invalid X-Customer-ID header")
    token = _bearer_token(request.headers.get("authorization"))
    if token is None:
        raise _unauthorized("missing bearer token")
    return await _resolve(request, customer_id, token, scope, from_body=False)


async def authenticate_body(request: Request, customer_id: object, token: object) -> Caller:
    """The caller of a request carrying `customer_id` and a `track`-only `token` in its body."""
    if not customer_id:
        raise ApiError(400, "missing X-Customer-ID header (or customer_id in the body)")
    if not isinstance(customer_id, str) or not tokens.CUSTOMER_ID_RE.fullmatch(customer_id):
        raise ApiError(400, "invalid customer_id in the body")
    if not token:
        raise _unauthorized("missing bearer token (or token in the body)")
    if not isinstance(token, str):
        raise _unauthorized("malformed token")
    return await _resolve(request, customer_id, token, "track", from_body=True)


async def _resolve(request: Request, customer_id: str, token: str, scope: str, *, from_body: bool) -> Caller:
    resolver: TokenResolver = request.app.state.services.tokens
    address = request.client.host if request.client else ""
    try:
        return await _check(request, resolver, address, customer_id, token, scope, from_body)
    except ApiError as exc:
        if exc.status in (401, 403):
            resolver.failures.failed(address)
        raise


async def _check(
    request: Request,
    resolver: TokenResolver,
    address: str,
    customer_id: str,
    token: str,
    scope: str,
    from_body: bool,
) -> Caller:
    if not tokens.is_well_formed(token):
        raise _unauthorized("malformed token")
    token_hash = tokens.token_hash(token)
    if (wait := resolver.may_query(token_hash, address)) > 0:
        # Answered late, and the connection closed: a flood's connections then cost the server
        # a sleeping coroutine each instead of a request's work, whatever their rate.
        await asyncio.sleep(REFUSAL_DELAY_SECONDS)
        raise ApiError(
            429,
            "too many failed authentications from this address",
            headers={"Retry-After": str(max(1, math.ceil(wait))), "Connection": "close"},
        )
    grant = await resolver.lookup(token_hash)
    if grant is None:
        raise _unauthorized("invalid token")
    if grant.revoked:
        raise _unauthorized("token revoked")
    if grant.expires_at is not None and grant.expires_at <= time.time():
        raise _unauthorized("token expired")
    if grant.customer_id != customer_id:
        raise ApiError(403, "token does not belong to this customer")
    if not grant.tenant_active:
        raise ApiError(403, "customer is disabled")
    if scope not in grant.scopes:
        raise ApiError(403, f"token lacks the '{scope}' scope")
    if from_body and grant.scopes != BROWSER_SCOPES:
        # The token is in a web page for anyone to read: it must not be able to read or process.
        logger.warning(
            "❌ Refused a token sent in a request body: its scopes are %s; a token in browser code "
            "must have the track scope only (create one with `onevault token create %s --scope track`)",
            ",".join(sorted(grant.scopes)),
            grant.customer_id,
            extra={"customer_id": grant.customer_id},
        )
        raise ApiError(403, "a token sent in the body must have the 'track' scope only")
    if scope == "track" and grant.origins:
        _check_origin(request, grant.origins)
    return Caller(
        grant.customer_id, grant.tenant_hk, grant.scopes, grant.respects_privacy, tokens.token_id(token_hash)
    )


def _check_origin(request: Request, allowed: tuple[str, ...]) -> None:
    """403 unless the request's Origin (or, without one, its Referer) is allowed; none: a server."""
    sent = request.headers.get("origin") or request.headers.get("referer")
    if sent is None:
        return
    origin = origins.origin_of(sent)
    if origin is None or not origins.is_allowed(origin, allowed):
        raise ApiError(403, "this origin is not allowed to send events for this customer")


def _customer_header(required: bool, when: str) -> dict[str, Any]:
    return {
        "name": "X-Customer-ID",
        "in": "header",
        "required": required,
        "schema": {"type": "string", "pattern": tokens.CUSTOMER_ID_RE.pattern},
        "description": f"The customer (tenant) the request is for, e.g. `one_spa`{when}",
    }


# How routes document the credentials `authenticate` reads itself (not as FastAPI parameters, so a
# missing X-Customer-ID is answered 400 on every route). The tracking routes also take them from the
# body: `{}` among the security requirements says a request may carry no Authorization header.
OPENAPI_AUTH: dict[str, Any] = {
    "parameters": [_customer_header(False, "; required unless the body carries `customer_id` and `token`")],
    "security": [{"HTTPBearer": []}, {}],
}
OPENAPI_READ_AUTH: dict[str, Any] = {"parameters": [_customer_header(True, "")]}


def require(scope: str) -> Callable[..., Awaitable[Caller]]:
    """A dependency admitting callers whose token belongs to `X-Customer-ID` and has `scope`.

    Routes using it declare the header with `openapi_extra=OPENAPI_READ_AUTH`.
    """

    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None,
    ) -> Caller:
        # `credentials` documents the bearer scheme; `authenticate` reads the same headers.
        return await authenticate(request, scope)

    return dependency
