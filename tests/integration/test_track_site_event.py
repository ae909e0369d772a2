"""`api.track_site_event` and `raw.ingest_site_events`: the SQL entry points of ingestion."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import psycopg
import pytest
from psycopg import errors
from tests.helpers.tenants import Tenant, make_tenant

from onevault.auth import store

FULL_CALL = (
    "SELECT api.track_site_event('one_spa', 'https://x.test/p', 'page_view', '{\"a\":1}', "
    "'10.0.0.1', 'UA/1.0', 'evt-1')"
)


def call(conn: psycopg.Connection, query: str, params: tuple[Any, ...] = ()) -> dict[str, Any]:
    """Run a `SELECT api.track_site_event(...)` and return its jsonb result."""
    row = conn.execute(query, params).fetchone()
    assert row is not None
    result: dict[str, Any] = row[0]
    return result


def track(
    conn: psycopg.Connection,
    customer_id: str = "one_spa",
    page_url: str | None = "https://x.test/p",
    event_type: str | None = "page_view",
    event_data: str | None = "{}",
    client_ip: str | None = None,
    user_agent: str | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """Call api.track_site_event with every argument given explicitly."""
    return call(
        conn,
        "SELECT api.track_site_event(%s::text, %s::text, %s::text, %s::jsonb, %s::inet, %s::text, %s::text)",
        (customer_id, page_url, event_type, event_data, client_ip, user_agent, event_id),
    )


def raw_rows(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
    """(raw_event_id, event_id, raw_payload) of every landed event."""
    return conn.execute(
        "SELECT raw_event_id, event_id, raw_payload FROM raw.site_tracking_events_r ORDER BY raw_event_id"
    ).fetchall()


def test_first_call_stores_the_event(conn: psycopg.Connection, tenant: Tenant) -> None:
    """The documented call returns success with the event id, a raw id and duplicate false."""
    result = call(conn, FULL_CALL)
    assert set(result) == {"success", "event_id", "raw_event_id", "duplicate"}
    assert result["success"] is True
    assert result["event_id"] == "evt-1"
    assert isinstance(result["raw_event_id"], int)
    assert result["duplicate"] is False
    row = conn.execute(
        "SELECT r.raw_event_id, r.event_id, t.tenant_bk, r.user_agent, r.processing_status, r.retry_count, "
        "r.received_timestamp IS NOT NULL "
        "FROM raw.site_tracking_events_r r JOIN auth.tenant_h t USING (tenant_hk)"
    ).fetchall()
    assert row == [(result["raw_event_id"], "evt-1", "one_spa", "UA/1.0", "PENDING", 0, True)]


def test_repeated_call_is_a_duplicate(conn: psycopg.Connection, tenant: Tenant) -> None:
    """Re-sending the same event_id answers duplicate true with the same raw id and stores once."""
    first = call(conn, FULL_CALL)
    second = call(conn, FULL_CALL)
    assert second["success"] is True
    assert second["duplicate"] is True
    assert second["event_id"] == "evt-1"
    assert second["raw_event_id"] == first["raw_event_id"]
    assert len(raw_rows(conn)) == 1


def test_default_arguments(conn: psycopg.Connection, tenant: Tenant) -> None:
    """With only customer and URL, a UUID event id is generated and the type defaults to page_view."""
    result = call(conn, "SELECT api.track_site_event('one_spa', 'https://x.test/')")
    assert result["success"] is True
    assert result["duplicate"] is False
    uuid.UUID(result["event_id"])
    [(raw_id, event_id, payload)] = raw_rows(conn)
    assert raw_id == result["raw_event_id"]
    assert event_id == result["event_id"]
    assert payload == {"page_url": "https://x.test/", "event_type": "page_view", "event_data": {}}
    other = call(conn, "SELECT api.track_site_event('one_spa', 'https://x.test/')")
    assert other["event_id"] != result["event_id"]
    assert other["duplicate"] is False


def test_raw_payload_is_what_was_given(conn: psycopg.Connection, tenant: Tenant) -> None:
    """raw_payload holds page_url, event_type and event_data verbatim (nulls inside kept)."""
    data = '{"a": null, "b": [1, null, {"c": null}], "d": "x"}'
    track(conn, page_url="https://x.test/p?q=1", event_type="click", event_data=data, event_id="e-1")
    [(_, _, payload)] = raw_rows(conn)
    assert payload == {
        "page_url": "https://x.test/p?q=1",
        "event_type": "click",
        "event_data": {"a": None, "b": [1, None, {"c": None}], "d": "x"},
        "event_id": "e-1",
    }


def test_absent_arguments_leave_no_null_keys(conn: psycopg.Connection, tenant: Tenant) -> None:
    """Arguments passed as NULL do not appear as null keys in raw_payload."""
    result = track(conn, page_url=None, event_type=None, event_data=None)
    [(_, event_id, payload)] = raw_rows(conn)
    assert event_id == result["event_id"]
    assert payload == {"event_type": "page_view", "event_data": {}}
    assert None not in payload.values()


def test_client_ip_is_stored_only_as_keyed_hash(conn: psycopg.Connection, tenant: Tenant) -> None:
    """The IP is kept only as a 32-byte hash: equal for the same IP, different for another, never clear."""
    track(conn, client_ip="10.0.0.1", event_id="a")
    track(conn, client_ip="10.0.0.1", event_id="b")
    track(conn, client_ip="10.0.0.2", event_id="c")
    track(conn, client_ip=None, event_id="d")
    hashes = dict(conn.execute("SELECT event_id, client_ip_hash FROM raw.site_tracking_events_r").fetchall())
    assert len(hashes["a"]) == 32
    assert hashes["a"] == hashes["b"]
    assert hashes["a"] != hashes["c"]
    assert hashes["d"] is None
    columns = conn.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = 'raw' AND table_name = 'site_tracking_events_r'"
    ).fetchall()
    for (column,) in columns:
        found = conn.execute(
            f'SELECT count(*) FROM raw.site_tracking_events_r WHERE "{column}"::text LIKE %s',
            ("%10.0.0.%",),
        ).fetchone()
        assert found == (0,), column


def test_unknown_customer_is_refused(conn: psycopg.Connection, tenant: Tenant) -> None:
    """An unknown customer id raises invalid_parameter_value and stores nothing."""
    with pytest.raises(errors.InvalidParameterValue, match="unknown customer"):
        track(conn, customer_id="nobody")
    assert raw_rows(conn) == []


def test_disabled_tenant_is_refused(conn: psycopg.Connection, tenant: Tenant) -> None:
    """A disabled tenant raises insufficient_privilege; re-enabled it is accepted again."""
    store.set_tenant_active(conn, "one_spa", False)
    with pytest.raises(errors.InsufficientPrivilege, match="disabled"):
        track(conn)
    assert raw_rows(conn) == []
    store.set_tenant_active(conn, "one_spa", True)
    assert track(conn)["success"] is True


@pytest.mark.parametrize("event_type", ["bad type", "", "x" * 65, "évènement", "a/b"])
def test_bad_event_type_is_refused(conn: psycopg.Connection, tenant: Tenant, event_type: str) -> None:
    """An event_type outside [A-Za-z0-9_.:-]{1,64} raises and stores nothing."""
    with pytest.raises(errors.InvalidParameterValue, match="event_type"):
        track(conn, event_type=event_type)
    assert raw_rows(conn) == []


@pytest.mark.parametrize("event_data", ["[1, 2]", '"text"', "3", "null"])
def test_event_data_must_be_an_object(conn: psycopg.Connection, tenant: Tenant, event_data: str) -> None:
    """event_data that is not a JSON object raises and stores nothing."""
    with pytest.raises(errors.InvalidParameterValue, match="event_data"):
        track(conn, event_data=event_data)
    assert raw_rows(conn) == []


def test_event_id_length_is_limited(conn: psycopg.Connection, tenant: Tenant) -> None:
    """An event_id of 129 characters (or empty) raises; 128 characters is accepted."""
    with pytest.raises(errors.InvalidParameterValue, match="event_id"):
        track(conn, event_id="x" * 129)
    with pytest.raises(errors.InvalidParameterValue, match="event_id"):
        track(conn, event_id="")
    assert raw_rows(conn) == []
    assert track(conn, event_id="x" * 128)["event_id"] == "x" * 128


def test_same_event_id_for_two_tenants_is_two_events(conn: psycopg.Connection, tenant: Tenant) -> None:
    """The idempotency key is per tenant: the same event_id for two tenants stores two rows."""
    make_tenant(conn, "other_co")
    first = track(conn, customer_id="one_spa", event_id="shared")
    second = track(conn, customer_id="other_co", event_id="shared")
    assert first["duplicate"] is False
    assert second["duplicate"] is False
    assert first["raw_event_id"] != second["raw_event_id"]
    owners = conn.execute(
        "SELECT t.tenant_bk FROM raw.site_tracking_events_r r JOIN auth.tenant_h t USING (tenant_hk) "
        "WHERE r.event_id = 'shared' ORDER BY 1"
    ).fetchall()
    assert owners == [("one_spa",), ("other_co",)]


def test_racing_copies_are_stored_once(db_url: str, conn: psycopg.Connection, tenant: Tenant) -> None:
    """8 connections sending the same event_id 25 times each store it once, with one non-duplicate."""
    barrier = threading.Barrier(8)
    results: list[dict[str, Any]] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def worker() -> None:
        try:
            with psycopg.connect(db_url, autocommit=True) as own:
                barrier.wait()
                mine = [track(own, event_id="race-1", event_data='{"n": 1}') for _ in range(25)]
            with lock:
                results.extend(mine)
        except BaseException as exc:
            with lock:
                failures.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert failures == []
    assert len(results) == 200
    assert all(r["success"] is True and r["event_id"] == "race-1" for r in results)
    assert len({r["raw_event_id"] for r in results}) == 1
    assert results[0]["raw_event_id"] is not None
    assert sum(1 for r in results if r["duplicate"] is False) == 1
    assert len(raw_rows(conn)) == 1


def ingest(conn: psycopg.Connection, tenant_hks: list[bytes], event_ids: list[str]) -> list[tuple[Any, ...]]:
    """Call raw.ingest_site_events directly; rows (ord, raw_event_id, duplicate) in input order."""
    n = len(event_ids)
    payloads = [f'{{"event_type": "page_view", "n": {i}}}' for i in range(n)]
    return conn.execute(
        "SELECT ord, raw_event_id, duplicate FROM raw.ingest_site_events("
        "%s::bytea[], %s::text[], %s::jsonb[], %s::text[], %s::inet[], "
        "array_fill(now(), ARRAY[%s]), array_fill('test'::text, ARRAY[%s])) ORDER BY ord",
        (tenant_hks, event_ids, payloads, ["UA"] * n, ["10.0.0.1"] * n, n, n),
    ).fetchall()


def test_ingest_same_event_id_twice_in_one_call(conn: psycopg.Connection, tenant: Tenant) -> None:
    """A batch holding one event_id twice stores it once: first position new, second duplicate."""
    (hk,) = conn.execute("SELECT util.tenant_hk('one_spa')").fetchone() or (None,)
    rows = ingest(conn, [hk, hk, hk], ["dup", "dup", "other"])
    assert [r[0] for r in rows] == [1, 2, 3]
    assert [r[2] for r in rows] == [False, True, False]
    assert rows[0][1] == rows[1][1]
    assert rows[2][1] != rows[0][1]
    stored = raw_rows(conn)
    assert [(r[1], r[2]["n"]) for r in stored] == [("dup", 0), ("other", 2)]
    again = ingest(conn, [hk, hk], ["dup", "new"])
    assert [(r[0], r[1], r[2]) for r in again] == [(1, rows[0][1], True), (2, again[1][1], False)]
