"""API token format: `ovt_<env>_<64 hex>`, generated from a CSPRNG, known to the database only by hash."""

from __future__ import annotations

import hashlib
import re
import secrets

SCOPES = ("track", "read", "process", "erase")
CUSTOMER_ID_RE = re.compile(r"^[a-z0-9_-]{2,64}$")
_TOKEN_RE = re.compile(r"^ovt_[a-z0-9]{1,16}_[0-9a-f]{64}$")


def generate(env: str) -> str:
    """A new token for environment label `env` (e.g. `prod`)."""
    return f"ovt_{env}_{secrets.token_hex(32)}"


def is_well_formed(token: str) -> bool:
    """Whether `token` has the shape of a OneVault token."""
    return _TOKEN_RE.fullmatch(token) is not None


def token_hash(token: str) -> bytes:
    """SHA-256 of the token: the only form in which it is stored."""
    return hashlib.sha256(token.encode("ascii")).digest()


def token_id(token_hash: bytes) -> str:
    """The public id of a token (`onevault token list`): the first 6 bytes of its hash, in hex."""
    return token_hash[:6].hex()
