"""The installation's secret key, kept out of the database (docs/privacy.md).

It keys the hash the raw layer stores of a client's IP address — and with it the visitor id derived
from that hash when a client sends none — so that a dump of the database cannot be turned back into
addresses by hashing every IPv4 address. The service hands it to its own database sessions as the
setting `onevault.secret_key`, with the salt rotation as `onevault.salt_rotation`
(util.client_ip_key): nothing of it is written to a table.

Where it comes from: ONEVAULT_SECRET_KEY, else the file `secret.key` in the data directory. A first
start creates the file: with the key an older installation kept in the database (util.ip_hash_key,
dropped by migration 0010), so that the same address is still recognised, else with a random one.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

import psycopg

from onevault.config import Settings

logger = logging.getLogger(__name__)

KEY_FILE = "secret.key"
KEY_SETTING = "onevault.secret_key"
ROTATION_SETTING = "onevault.salt_rotation"


class SecretKeyError(RuntimeError):
    """The secret key cannot be read or is not fit for use."""


def _parse(text: str, where: str) -> bytes:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise SecretKeyError(f"{where}: the secret key must be hex digits") from None
    if len(key) < 32:
        raise SecretKeyError(f"{where}: the secret key must be at least 64 hex digits")
    return key


def _read(path: Path) -> bytes:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretKeyError(f"{path} must be readable by its owner only: chmod 600 {path}")
    return _parse(path.read_text(), str(path))


def _legacy_key(conninfo: str) -> bytes | None:
    """The key an installation before 0.5.0 kept in its database, if it still does."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('util.ip_hash_key')").fetchone() in (None, (None,)):
            return None
        row = conn.execute("SELECT hash_key FROM util.ip_hash_key").fetchone()
    return bytes(row[0]) if row else None


def _create(path: Path, key: bytes) -> None:
    """Write the key file whole, readable by its owner only; a process that won the race keeps its own."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(key.hex() + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.link(draft, path)
    except FileExistsError:
        pass
    finally:
        draft.unlink(missing_ok=True)


def secret_key(settings: Settings, conninfo: str) -> bytes:
    """The installation's key (ONEVAULT_SECRET_KEY or data_dir/secret.key, created if missing)."""
    if settings.secret_key is not None:
        key = _parse(settings.secret_key.get_secret_value(), "ONEVAULT_SECRET_KEY")
        legacy = _legacy_key(conninfo)
        if legacy not in (None, key):
            logger.warning(
                "ONEVAULT_SECRET_KEY is not the key of this database's IP hashes (util.ip_hash_key): "
                "the same addresses make other hashes, and other visitor ids, from now on"
            )
        return key
    path = settings.data_dir / KEY_FILE
    if not path.exists():
        legacy = _legacy_key(conninfo)
        _create(path, legacy or secrets.token_bytes(32))
        logger.info(
            "Created %s with %s: keep it with your backups, it is not in the database",
            path,
            "the key of this database's IP hashes" if legacy else "a new secret key",
        )
    return _read(path)


def session_settings(settings: Settings, key: bytes) -> dict[str, str]:
    """What the service's database sessions are given at their start."""
    return {KEY_SETTING: key.hex(), ROTATION_SETTING: settings.visitor_salt_rotation}
