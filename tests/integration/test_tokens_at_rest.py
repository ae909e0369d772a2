"""Tenants and tokens: tokens never stored in clear, administration rules, and the CLI around them."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable

import psycopg
import pytest
from tests.helpers.cli import Cli
from tests.helpers.secrets import occurrences

from onevault.auth import store

TOKEN_RE = re.compile(r"^ovt_test_[0-9a-f]{64}$")


def test_tokens_are_never_stored_in_clear(conn: psycopg.Connection) -> None:
    """After creating tokens, no column of any table holds a token or its secret; only its SHA-256."""
    assert store.create_tenant(conn, "one_spa") is True
    assert store.create_tenant(conn, "other_co", "Other Co") is True
    created = [
        store.create_token(conn, "one_spa", ["track"], "test"),
        store.create_token(conn, "one_spa", ["read", "process"], "test", 30, "dashboard"),
        store.create_token(conn, "other_co", ["track", "read", "process"], "test"),
    ]
    store.revoke_token(conn, created[0].token_id)
    conn.execute(
        "SELECT api.track_site_event('one_spa', 'https://x.test/p', 'page_view', '{}', "
        "'10.0.0.1', 'UA', 'e1')"
    )
    tokens = [t.token for t in created]
    # Positive controls: the scan does find text and hex-encoded bytea values.
    assert "auth.tenant_h.tenant_bk" in occurrences(conn, "other_co")
    assert "auth.api_token_h.api_token_hk" in occurrences(
        conn, hashlib.sha256(tokens[0].encode()).hexdigest()
    )
    assert all(TOKEN_RE.fullmatch(t) for t in tokens)
    assert len(set(tokens)) == len(tokens)
    for new in created:
        secret = new.token.rsplit("_", 1)[1]
        assert occurrences(conn, new.token) == []
        assert occurrences(conn, secret) == []
        hashes = conn.execute(
            "SELECT api_token_hk FROM auth.api_token_h WHERE api_token_hk = %s",
            (hashlib.sha256(new.token.encode()).digest(),),
        ).fetchall()
        assert len(hashes) == 1
        assert new.token_id == hashlib.sha256(new.token.encode()).hexdigest()[:12]
    stored = {bytes(r[0]) for r in conn.execute("SELECT api_token_hk FROM auth.api_token_h").fetchall()}
    assert stored == {hashlib.sha256(t.encode()).digest() for t in tokens}


def test_revoke_token(conn: psycopg.Connection) -> None:
    """Revoking returns True, then False when already revoked; the listing shows revoked_at."""
    store.create_tenant(conn, "one_spa")
    new = store.create_token(conn, "one_spa", ["track"], "test")
    keep = store.create_token(conn, "one_spa", ["read"], "test")
    assert store.revoke_token(conn, new.token_id) is True
    assert store.revoke_token(conn, new.token_id) is False
    listed = {row["token_id"]: row for row in store.list_tokens(conn, "one_spa")}
    assert set(listed) == {new.token_id, keep.token_id}
    assert listed[new.token_id]["revoked_at"] is not None
    assert listed[keep.token_id]["revoked_at"] is None
    assert listed[new.token_id]["scopes"] == ["track"]
    assert listed[new.token_id]["customer_id"] == "one_spa"


def test_revoke_unknown_token_is_an_error(conn: psycopg.Connection) -> None:
    """Revoking a token id that does not exist raises AdminError."""
    with pytest.raises(store.AdminError, match="no token"):
        store.revoke_token(conn, "0123456789ab")


def test_create_token_for_unknown_tenant_is_an_error(conn: psycopg.Connection) -> None:
    """Creating a token for an unknown tenant raises AdminError and stores nothing."""
    with pytest.raises(store.AdminError, match="no tenant"):
        store.create_token(conn, "nobody", ["track"], "test")
    assert conn.execute("SELECT count(*) FROM auth.api_token_h").fetchone() == (0,)


@pytest.mark.parametrize("scopes", [["admin"], [], ["track", "write"]])
def test_invalid_scopes_are_an_error(conn: psycopg.Connection, scopes: list[str]) -> None:
    """Unknown or missing scopes raise AdminError."""
    store.create_tenant(conn, "one_spa")
    with pytest.raises(store.AdminError, match="scopes"):
        store.create_token(conn, "one_spa", scopes, "test")


def test_non_positive_expiry_is_an_error(conn: psycopg.Connection) -> None:
    """A token lifetime of zero or less days raises AdminError."""
    store.create_tenant(conn, "one_spa")
    with pytest.raises(store.AdminError, match="expires"):
        store.create_token(conn, "one_spa", ["track"], "test", expires_in_days=0)


def test_create_tenant_twice(conn: psycopg.Connection) -> None:
    """Creating an existing tenant returns False and leaves one tenant."""
    assert store.create_tenant(conn, "one_spa") is True
    assert store.create_tenant(conn, "one_spa") is False
    assert [t["customer_id"] for t in store.list_tenants(conn)] == ["one_spa"]


@pytest.mark.parametrize("customer_id", ["A B", "x", "Acme", "a" * 65, "acme!", ""])
def test_invalid_customer_id_is_an_error(conn: psycopg.Connection, customer_id: str) -> None:
    """A customer id outside [a-z0-9_-]{2,64} raises AdminError."""
    with pytest.raises(store.AdminError, match="invalid customer id"):
        store.create_tenant(conn, customer_id)
    assert store.list_tenants(conn) == []


def test_set_tenant_active(conn: psycopg.Connection) -> None:
    """Disabling and enabling a tenant shows in the listing; an unknown tenant raises AdminError."""
    store.create_tenant(conn, "one_spa")
    store.set_tenant_active(conn, "one_spa", False)
    store.set_tenant_active(conn, "one_spa", False)
    assert [t["is_active"] for t in store.list_tenants(conn)] == [False]
    store.set_tenant_active(conn, "one_spa", True)
    assert [t["is_active"] for t in store.list_tenants(conn)] == [True]
    with pytest.raises(store.AdminError, match="no tenant"):
        store.set_tenant_active(conn, "nobody", False)


def test_live_tokens_exclude_revoked_and_expired(conn: psycopg.Connection) -> None:
    """list_tenants counts only tokens neither revoked nor expired."""
    store.create_tenant(conn, "one_spa")
    store.create_tenant(conn, "other_co")
    a = store.create_token(conn, "one_spa", ["track"], "test")
    store.create_token(conn, "one_spa", ["read"], "test")
    store.create_token(conn, "one_spa", ["read"], "test", expires_in_days=1e-7)
    store.create_token(conn, "other_co", ["track"], "test")
    time.sleep(0.05)
    store.revoke_token(conn, a.token_id)
    live = {t["customer_id"]: t["live_tokens"] for t in store.list_tenants(conn)}
    assert live == {"one_spa": 1, "other_co": 1}


@pytest.fixture
def cli(cli_for: Callable[[str], Cli], monkeypatch: pytest.MonkeyPatch, db_url: str) -> Cli:
    """`onevault` commands on this test's database."""
    monkeypatch.setenv("ONEVAULT_TOKEN_ENV", "test")
    return cli_for(db_url)


def test_cli_tenant_and_token_lifecycle(cli: Cli, conn: psycopg.Connection) -> None:
    """The CLI creates a tenant and a token (printed alone on the last line), lists, revokes, disables."""
    result = cli("tenant", "create", "acme")
    assert result.exit_code == 0, result.output
    assert "acme" in result.stdout

    result = cli("token", "create", "acme", "--scope", "track", "--scope", "read")
    assert result.exit_code == 0, result.output
    token = result.stdout.strip().splitlines()[-1]
    assert TOKEN_RE.fullmatch(token), result.stdout
    assert "cannot be shown again" in result.stderr
    token_id = hashlib.sha256(token.encode()).hexdigest()[:12]
    assert token_id in result.stderr
    [row] = store.list_tokens(conn, "acme")
    assert row["token_id"] == token_id
    assert row["scopes"] == ["read", "track"]

    result = cli("token", "list")
    assert result.exit_code == 0, result.output
    assert token_id in result.stdout
    assert token not in result.output
    assert token.rsplit("_", 1)[1] not in result.output

    result = cli("tenant", "list")
    assert result.exit_code == 0, result.output
    assert re.search(r"^acme\s+yes\s+1\s", result.stdout, re.MULTILINE), result.stdout

    result = cli("token", "revoke", token_id)
    assert result.exit_code == 0, result.output
    assert "revoked" in result.stdout
    assert store.list_tokens(conn, "acme")[0]["revoked_at"] is not None
    result = cli("token", "revoke", token_id)
    assert result.exit_code == 0, result.output
    assert "already revoked" in result.stdout

    result = cli("tenant", "disable", "acme")
    assert result.exit_code == 0, result.output
    assert [t["is_active"] for t in store.list_tenants(conn)] == [False]

    result = cli("tenant", "create", "acme")
    assert result.exit_code != 0
    assert "already exists" in result.output


def test_cli_errors_are_clear(cli: Cli) -> None:
    """CLI mistakes (unknown tenant or token, bad id, bad scope) exit non-zero with a message."""
    result = cli("token", "create", "nobody", "--scope", "track")
    assert result.exit_code != 0
    assert "no tenant 'nobody'" in result.output
    assert result.stdout.strip() == ""

    result = cli("token", "revoke", "0123456789ab")
    assert result.exit_code != 0
    assert "no token" in result.output

    result = cli("tenant", "create", "A B")
    assert result.exit_code != 0
    assert "invalid customer id" in result.output

    result = cli("tenant", "disable", "nobody")
    assert result.exit_code != 0
    assert "no tenant" in result.output

    result = cli("token", "create", "acme", "--scope", "admin")
    assert result.exit_code == 2
    assert "admin" in result.output
