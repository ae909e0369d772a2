"""Tenant and token administration (CLI side) over a synchronous connection."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from onevault import sqlfile
from onevault.auth import origins, tokens

Q = sqlfile.load(__package__, "queries.sql")
RECORD_SOURCE = "cli"


class AdminError(ValueError):
    """An administrative request that cannot be carried out (unknown tenant, bad input)."""


@dataclass(frozen=True)
class NewToken:
    """A token just created: the secret is only ever available here."""

    token: str
    token_id: str
    expires_at: datetime | None


def check_customer_id(customer_id: str) -> None:
    """Raise unless `customer_id` is a valid customer id."""
    if not tokens.CUSTOMER_ID_RE.fullmatch(customer_id):
        raise AdminError(f"invalid customer id {customer_id!r}: use 2-64 of a-z, 0-9, _ and -")


def create_tenant(conn: psycopg.Connection, customer_id: str, display_name: str | None = None) -> bool:
    """Create a tenant; False if it already exists."""
    check_customer_id(customer_id)
    row = conn.execute(
        Q["create_tenant"],
        {"customer_id": customer_id, "display_name": display_name, "record_source": RECORD_SOURCE},
    ).fetchone()
    return row is not None


def _set(conn: psycopg.Connection, query: str, customer_id: str, **values: object) -> tuple[Any, ...]:
    """Run one of the statements that record a tenant's setting; its row (AdminError: no such tenant)."""
    row = conn.execute(
        Q[query], {"customer_id": customer_id, "record_source": RECORD_SOURCE, **values}
    ).fetchone()
    if row is None:
        raise AdminError(f"no tenant {customer_id!r}")
    return tuple(row)


def set_tenant_active(conn: psycopg.Connection, customer_id: str, active: bool) -> None:
    """Enable or disable a tenant (its tokens stop or start working)."""
    _set(conn, "set_tenant_active", customer_id, is_active=active)


def set_origin(conn: psycopg.Connection, customer_id: str, origin: str, allowed: bool) -> tuple[str, bool]:
    """Allow (or stop allowing) browser events from `origin`; its canonical form and whether it changed."""
    try:
        canonical = origins.normalise(origin)
    except origins.InvalidOrigin as exc:
        raise AdminError(str(exc)) from None
    row = _set(conn, "set_origin", customer_id, origin=canonical, allowed=allowed)
    return canonical, bool(row[0])


def set_time_zone(conn: psycopg.Connection, customer_id: str, time_zone: str) -> tuple[str, bool]:
    """Set the zone of a tenant's analytics days and hours; its canonical name and whether it changed."""
    row = _set(conn, "set_time_zone", customer_id, time_zone=time_zone)
    if row[0] is None:
        raise AdminError(f"unknown time zone {time_zone!r}: use an IANA name such as Europe/Berlin or UTC")
    return str(row[0]), bool(row[1])


def set_privacy(conn: psycopg.Connection, customer_id: str, respect: bool) -> bool:
    """Set whether a tenant stores nothing of requests with `DNT: 1` or `Sec-GPC: 1`; whether it changed."""
    return bool(_set(conn, "set_privacy", customer_id, respect=respect)[0])


def set_retention(conn: psycopg.Connection, customer_id: str, business_days: int | None) -> bool:
    """Set the days a tenant keeps ended sessions in the business layer (None: always); whether it changed."""
    return bool(_set(conn, "set_retention", customer_id, business_days=business_days)[0])


def list_tenants(conn: psycopg.Connection) -> list[dict[str, object]]:
    """All tenants with their state."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(Q["list_tenants"]).fetchall()


def create_token(
    conn: psycopg.Connection,
    customer_id: str,
    scopes: list[str],
    env: str,
    expires_in_days: float | None = None,
    description: str | None = None,
) -> NewToken:
    """Create a token for a tenant with the given scopes."""
    wanted = sorted(set(scopes))
    unknown = set(wanted) - set(tokens.SCOPES)
    if not wanted or unknown:
        raise AdminError(f"scopes must be some of {', '.join(tokens.SCOPES)}")
    if expires_in_days is not None and expires_in_days <= 0:
        raise AdminError("--expires-in must be a positive number of days")
    expires_at = datetime.now(UTC) + timedelta(days=expires_in_days) if expires_in_days is not None else None
    token = tokens.generate(env)
    row = conn.execute(
        Q["create_token"],
        {
            "customer_id": customer_id,
            "token_hash": tokens.token_hash(token),
            "scopes": wanted,
            "expires_at": expires_at,
            "description": description,
            "record_source": RECORD_SOURCE,
        },
    ).fetchone()
    if row is None:
        raise AdminError(f"no tenant {customer_id!r}; create it with `onevault tenant create {customer_id}`")
    return NewToken(token=token, token_id=row[0], expires_at=expires_at)


def list_tokens(conn: psycopg.Connection, customer_id: str | None = None) -> list[dict[str, object]]:
    """Token metadata (id, scopes, dates), never the tokens."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(Q["list_tokens"], {"customer_id": customer_id}).fetchall()


def revoke_token(conn: psycopg.Connection, token_id: str) -> bool:
    """Revoke a token by id; False if it was already revoked. An id several tokens share revokes none."""
    with conn.transaction():
        rows = conn.execute(
            Q["revoke_token"], {"token_id": token_id, "record_source": RECORD_SOURCE}
        ).fetchall()
        if len(rows) > 1:
            # Raising rolls the revocations back: an id must name one token, never several.
            raise AdminError(
                f"token id {token_id!r} is ambiguous: {len(rows)} tokens have it; nothing was revoked"
            )
    if not rows:
        raise AdminError(f"no token with id {token_id!r} (see `onevault token list`)")
    return not rows[0][1]
