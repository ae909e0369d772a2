"""API token generation, shape and hashing (no database)."""

from __future__ import annotations

import hashlib
import re

import pytest

from onevault.auth import tokens


def test_generated_token_has_documented_format() -> None:
    """A new token is `ovt_<env>_<64 lowercase hex>` and is recognised as well formed."""
    token = tokens.generate("test")
    assert re.fullmatch(r"ovt_test_[0-9a-f]{64}", token)
    assert tokens.is_well_formed(token)
    assert re.fullmatch(r"ovt_prod_[0-9a-f]{64}", tokens.generate("prod"))


def test_generated_tokens_are_unique() -> None:
    """Tokens come from a random source: a thousand of them never repeat."""
    generated = {tokens.generate("test") for _ in range(1000)}
    assert len(generated) == 1000
    assert len({t[-64:] for t in generated}) == 1000


@pytest.mark.parametrize(
    "token",
    [
        "",
        "ovt_test_",
        "ovt_test_" + "a" * 63,
        "ovt_test_" + "a" * 65,
        "ovt_test_" + "A" * 64,
        "ovt_test_" + "g" * 64,
        "ovx_test_" + "a" * 64,
        "ovt__" + "a" * 64,
        "ovt_TEST_" + "a" * 64,
        "ovt_" + "a" * 17 + "_" + "a" * 64,
        " ovt_test_" + "a" * 64,
        "ovt_test_" + "a" * 64 + "\n",
        "Bearer ovt_test_" + "a" * 64,
    ],
)
def test_malformed_tokens_are_recognised(token: str) -> None:
    """Strings that do not have the token shape are not well formed."""
    assert not tokens.is_well_formed(token)


def test_token_hash_is_sha256() -> None:
    """The stored form of a token is its 32-byte SHA-256, different for different tokens."""
    token = tokens.generate("test")
    digest = tokens.token_hash(token)
    assert digest == hashlib.sha256(token.encode()).digest()
    assert len(digest) == 32
    assert tokens.token_hash(tokens.generate("test")) != digest


def test_customer_id_pattern() -> None:
    """Customer ids are 2-64 of a-z, 0-9, `_` and `-`."""
    for good in ("one_spa", "ab", "a-1", "a" * 64):
        assert tokens.CUSTOMER_ID_RE.fullmatch(good)
    for bad in ("x", "A B", "Acme", "a" * 65, "a.b", ""):
        assert not tokens.CUSTOMER_ID_RE.fullmatch(bad)
