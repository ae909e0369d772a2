"""Tenants with a token, as the tests authenticate."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from onevault.auth import store


@dataclass(frozen=True)
class Tenant:
    """A tenant with a token (by default with the track, read and process scopes: all but erase)."""

    customer_id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        """Headers authenticating as this tenant."""
        return {"X-Customer-ID": self.customer_id, "Authorization": f"Bearer {self.token}"}


def make_tenant(
    conn: psycopg.Connection, customer_id: str, scopes: tuple[str, ...] = ("track", "read", "process")
) -> Tenant:
    """Create `customer_id` (if needed) and a token for it."""
    store.create_tenant(conn, customer_id)
    new = store.create_token(conn, customer_id, list(scopes), "test")
    return Tenant(customer_id, new.token)
