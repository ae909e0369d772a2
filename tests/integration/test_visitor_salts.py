"""Cookieless visitor ids (docs/privacy.md): the stored IP hash, and the visitor id derived from it, change
with a random salt of each UTC day (or month); salts before the previous period's are forgotten; the
key of the hashes never enters the database, not even a dump of it."""

from __future__ import annotations

import hashlib
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from tests.helpers.pipeline import CUSTOMER, ingest
from tests.helpers.postgres import TEST_SECRET_KEY
from tests.helpers.queries import rows, scalar
from tests.helpers.tenants import make_tenant
from tests.helpers.vault_load import process_all

IP = "198.51.100.23"
# 12:00 UTC of a day in the past, and the days after it: the received times the salts follow.
NOON = datetime(2026, 3, 10, 12, tzinfo=UTC)


def _rotate(conn: psycopg.Connection, rotation: str) -> None:
    conn.execute("SELECT set_config('onevault.salt_rotation', %s, false)", (rotation,))


def _hash_at(conn: psycopg.Connection, received: datetime, event_id: str) -> bytes:
    """The IP hash stored for an event of IP received at `received`."""
    (raw_event_id,) = ingest(
        conn, [{"page_url": "https://example.com/"}], [event_id], client_ip=IP, received=[received]
    )
    return bytes(
        scalar(
            conn,
            "SELECT client_ip_hash FROM raw.site_tracking_events_r WHERE raw_event_id = %s",
            (raw_event_id,),
        )
    )


def _salt_days(conn: psycopg.Connection, rotation: str) -> list[str]:
    return [
        str(r["period_start"])
        for r in rows(
            conn, "SELECT period_start FROM util.visitor_salt WHERE rotation = %s ORDER BY 1", (rotation,)
        )
    ]


@pytest.fixture
def customer(conn: psycopg.Connection) -> str:
    make_tenant(conn, CUSTOMER)
    return CUSTOMER


def test_daily_salts_change_ids_each_day_and_are_forgotten_after_two(
    conn: psycopg.Connection, customer: str
) -> None:
    """The same address and browser are one visitor within a UTC day and another the next day; the salt
    of a day is gone once the day after next has its own."""
    _rotate(conn, "daily")
    first = _hash_at(conn, NOON, "a")
    assert _hash_at(conn, NOON + timedelta(hours=11, minutes=59), "b") == first
    second = _hash_at(conn, NOON + timedelta(hours=12), "c")
    assert second != first
    assert _salt_days(conn, "daily") == ["2026-03-10", "2026-03-11"]
    third = _hash_at(conn, NOON + timedelta(days=2), "d")
    assert third not in (first, second)
    assert _salt_days(conn, "daily") == ["2026-03-11", "2026-03-12"]
    # Nothing left in the database hashes the address into the first day's id again.
    recomputed = {
        bytes(r["h"])
        for r in rows(
            conn,
            "SELECT util.hash_client_ip(%s::inet, decode(%s, 'hex') || salt) AS h FROM util.visitor_salt",
            (IP, TEST_SECRET_KEY),
        )
    }
    assert first not in recomputed and second in recomputed
    process_all(conn, customer)
    visitors = rows(
        conn,
        "SELECT r.event_id, s.visitor_id FROM staging.site_tracking_events_s s "
        "JOIN raw.site_tracking_events_r r USING (raw_event_id) ORDER BY 1",
    )
    ids = {r["event_id"]: r["visitor_id"] for r in visitors}
    assert ids["a"] == ids["b"] and len({ids["a"], ids["c"], ids["d"]}) == 3
    assert all(v.startswith("anon-") for v in ids.values())


def test_monthly_salts_last_a_month(conn: psycopg.Connection, customer: str) -> None:
    """Monthly: one id for the month, another the next; the month before last is forgotten."""
    _rotate(conn, "monthly")
    march = _hash_at(conn, NOON, "a")
    assert _hash_at(conn, NOON + timedelta(days=20), "b") == march
    april = _hash_at(conn, datetime(2026, 4, 1, tzinfo=UTC), "c")
    assert april != march
    _hash_at(conn, datetime(2026, 5, 31, tzinfo=UTC), "d")
    assert _salt_days(conn, "monthly") == ["2026-04-01", "2026-05-01"]


def test_never_keeps_the_hashes_of_before(conn: psycopg.Connection, customer: str) -> None:
    """Never: no salt, the hash of 0.4.0 (SHA-256 of the key and the address), the same every day."""
    _rotate(conn, "never")
    hashed = _hash_at(conn, NOON, "a")
    assert hashed == hashlib.sha256(bytes.fromhex(TEST_SECRET_KEY) + IP.encode()).digest()
    assert _hash_at(conn, NOON + timedelta(days=40), "b") == hashed
    assert scalar(conn, "SELECT count(*) FROM util.visitor_salt") == 0


def test_sessions_without_the_key_cannot_hash_addresses(db_url: str, customer: str) -> None:
    """A session not given the key (psql without PGOPTIONS) is told how to give it; events without an
    address need no key."""
    plain = (
        db_url.split("?", 1)[0]
        + "?"
        + "&".join(p for p in db_url.split("?", 1)[1].split("&") if not p.startswith("options="))
    )
    with psycopg.connect(plain, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.RaiseException, match="no secret key") as raised:
            ingest(conn, [{}], ["x"], client_ip=IP)
        assert "onevault.secret_key" in (raised.value.diag.message_hint or "")
        assert ingest(conn, [{}], ["y"], client_ip=None)


def test_unknown_rotation_is_refused(conn: psycopg.Connection, customer: str) -> None:
    _rotate(conn, "hourly")
    with pytest.raises(psycopg.errors.RaiseException, match=r"unknown onevault\.salt_rotation hourly"):
        ingest(conn, [{}], ["x"], client_ip=IP)


def test_a_dump_holds_no_key_of_the_ip_hashes(
    db_url: str, conn: psycopg.Connection, customer: str, tmp_path: Path
) -> None:
    """pg_dump of a database holding hashed addresses: neither the key nor any table of it."""
    _rotate(conn, "daily")
    _hash_at(conn, datetime.now(UTC), "a")
    dump = tmp_path / "dump.sql"
    subprocess.run([_pg_dump(conn), "--file", str(dump), "--dbname", db_url], check=True)
    text = dump.read_text()
    assert "visitor_salt" in text and "site_tracking_events_r" in text
    assert TEST_SECRET_KEY.lower() not in text.lower()
    assert "ip_hash_key" not in text


def _pg_dump(conn: psycopg.Connection) -> str:
    """The pg_dump of the server's own installation."""
    directory = scalar(conn, "SELECT setting FROM pg_config() WHERE name = 'BINDIR'")
    return str(Path(directory) / "pg_dump")
