"""`onevault token revoke` with an id several tokens share revokes none of them."""

from __future__ import annotations

import os
from collections.abc import Callable

import psycopg
import pytest
from tests.helpers.cli import Cli
from tests.helpers.tenants import Tenant

from onevault.auth import store

SHARED_ID = "0a1b2c3d4e5f"


def _store_token(conn: psycopg.Connection, customer_id: str, token_hk: bytes) -> None:
    """A live token with this hash key (the id is the first 6 bytes of the key, in hex)."""
    conn.execute(
        "INSERT INTO auth.api_token_h (api_token_hk, tenant_hk, record_source)"
        " VALUES (%s, util.tenant_hk(%s), 'test')",
        (token_hk, customer_id),
    )
    conn.execute(
        "INSERT INTO auth.api_token_s (api_token_hk, hash_diff, tenant_hk, scopes, record_source)"
        " VALUES (%s, %s, util.tenant_hk(%s), '{track}', 'test')",
        (token_hk, token_hk, customer_id),
    )


@pytest.fixture
def twins(conn: psycopg.Connection, tenant: Tenant) -> list[bytes]:
    """Two live tokens of `tenant` whose ids are both SHARED_ID."""
    keys = [bytes.fromhex(SHARED_ID) + os.urandom(26) for _ in range(2)]
    for key in keys:
        _store_token(conn, tenant.customer_id, key)
    return keys


def _revoked(conn: psycopg.Connection) -> list[bool]:
    rows = conn.execute(
        "SELECT revoked_at IS NOT NULL FROM auth.api_token_current WHERE token_id = %s", (SHARED_ID,)
    ).fetchall()
    return [row[0] for row in rows]


def test_revoking_an_ambiguous_id_revokes_nothing(conn: psycopg.Connection, twins: list[bytes]) -> None:
    """The store refuses an id that matches two tokens, and both stay live."""
    with pytest.raises(store.AdminError, match="ambiguous"):
        store.revoke_token(conn, SHARED_ID)
    assert _revoked(conn) == [False, False]


def test_cli_revoke_of_an_ambiguous_id_fails_and_revokes_nothing(
    conn: psycopg.Connection, db_url: str, cli_for: Callable[[str], Cli], twins: list[bytes]
) -> None:
    """Exit status 1, a message saying the id is ambiguous, no hash key printed, both tokens live."""
    result = cli_for(db_url)("token", "revoke", SHARED_ID)
    assert result.exit_code == 1, result.output
    assert "ambiguous" in result.output and "nothing was revoked" in result.output
    for key in twins:
        assert key.hex() not in result.output
    assert _revoked(conn) == [False, False]
