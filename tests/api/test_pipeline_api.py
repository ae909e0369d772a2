"""Automatic, background and manual processing as API clients and operators see them."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx
import psycopg
import pytest
from tests.helpers.pipeline import CHROME
from tests.helpers.servers import LiveServer
from tests.helpers.tenants import Tenant, make_tenant

from onevault import dbcode, migrations

BUSINESS_TABLES = (
    "site_event_h",
    "site_session_h",
    "site_visitor_h",
    "site_page_h",
    "site_event_session_l",
    "site_event_page_l",
    "site_session_visitor_l",
    "site_event_details_s",
    "site_page_details_s",
    "site_visitor_details_s",
    "site_session_summary_s",
)


def _business_counts(conn: psycopg.Connection) -> dict[str, int]:
    return {
        # The ghost page's rows (the zero key, docs/vault.md) belong to no customer.
        t: conn.execute(f"SELECT count(*) FROM business.{t} WHERE tenant_hk <> %s", (bytes(32),)).fetchone()[
            0
        ]  # type: ignore[index]
        for t in BUSINESS_TABLES
    }


def _wait_for(predicate: Any, timeout: float) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.02)
    return time.monotonic() - started


def _completed(conn: psycopg.Connection) -> int:
    row = conn.execute(
        "SELECT count(*) FROM staging.pipeline_dashboard WHERE business_status = '✅ Complete Pipeline'"
    ).fetchone()
    return int(row[0]) if row else 0


def test_sync_track_answers_after_the_event_reached_the_business_layer(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant
) -> None:
    """`/api/v1/track` returns once hubs, links and satellites hold the event."""
    response = client.post(
        "/api/v1/track",
        headers=tenant.headers,
        json={
            "page_url": "https://shop.test/products?utm_source=news",
            "event_data": {"session_id": "s-1", "visitor_id": "v-1", "page_title": "Products"},
        },
    )
    counts = _business_counts(conn)
    body = response.json()
    assert response.status_code == 200, body
    assert body["processing"] == "automatic"
    assert body["pipeline"] == {"status": "complete"}
    assert all(count == 1 for count in counts.values()), counts
    row = conn.execute(
        "SELECT h.site_event_bk, d.page_url, d.utm_source FROM business.site_event_h h "
        "JOIN business.site_event_details_s d USING (site_event_hk)"
    ).fetchone()
    assert row == (body["event_id"], "https://shop.test/products?utm_source=news", "news")


def _queued_sessions(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT count(*) FROM mart.session_queue").fetchone()
    return int(row[0]) if row else 0


def _counted_sessions(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT count(*) FROM mart.session_f").fetchone()
    return int(row[0]) if row else 0


def test_sync_track_answers_without_waiting_for_the_marts_which_background_processing_refreshes(
    db_url: str, conn: psycopg.Connection
) -> None:
    """The answer waits for the vault, not for the information marts: the session is still queued
    for them when no background processing runs; with it, the marts count the session soon after."""
    tenant = make_tenant(conn, "one_spa")
    # A browser's (python-httpx's own User-Agent is a bot's, which the marts leave out).
    headers = tenant.headers | {"User-Agent": CHROME}
    event = {"page_url": "https://shop.test/", "event_data": {"session_id": "s-1", "visitor_id": "v-1"}}
    with LiveServer(db_url, pipeline_background=False) as server:
        response = httpx.post(f"{server.url}/api/v1/track", headers=headers, json=event)
        assert response.json()["pipeline"] == {"status": "complete"}
        assert (_queued_sessions(conn), _counted_sessions(conn)) == (1, 0)
    with LiveServer(db_url) as server:
        response = httpx.post(
            f"{server.url}/api/v1/track", headers=headers, json=event | {"page_url": "https://shop.test/b"}
        )
        assert response.json()["pipeline"] == {"status": "complete"}
        _wait_for(lambda: (_queued_sessions(conn), _counted_sessions(conn)) == (0, 1), timeout=5.0)


def test_background_processing_commits_the_vault_before_it_refreshes_the_marts(
    db_url: str, conn: psycopg.Connection
) -> None:
    """A background run commits its batch, then refreshes the marts in a transaction of its own: a
    slow refresh (here: one waiting for the customer's mart lock) holds back neither the events'
    place in the vault nor the rows it wrote (pages, which runs of other lanes share)."""
    tenant = make_tenant(conn, "one_spa")
    headers = tenant.headers | {"User-Agent": CHROME}
    events = [
        {"page_url": f"https://shop.test/{n}", "event_data": {"visitor_id": f"v-{n}"}} for n in range(3)
    ]
    with psycopg.connect(db_url, autocommit=True) as holder, LiveServer(db_url) as server:
        holder.execute("SELECT pg_advisory_lock(7072, hashtext(encode(util.tenant_hk('one_spa'), 'hex')))")
        response = httpx.post(f"{server.url}/api/v1/track/batch", headers=headers, json={"events": events})
        assert response.status_code == 200, response.text
        _wait_for(lambda: _completed(conn) == 3, timeout=5.0)
        # The refresh waits for the lock, and the batch's page rows are free meanwhile.
        with psycopg.connect(db_url) as other:
            other.execute("SET lock_timeout = '1s'")
            other.execute(
                "SELECT 1 FROM business.site_page_h WHERE tenant_hk = util.tenant_hk('one_spa') FOR UPDATE"
            )
        assert (_queued_sessions(conn), _counted_sessions(conn)) == (3, 0)
        holder.execute("SELECT pg_advisory_unlock_all()")
        _wait_for(lambda: (_queued_sessions(conn), _counted_sessions(conn)) == (0, 3), timeout=5.0)


def test_background_processing_goes_on_loading_while_the_marts_are_refreshed(
    db_url: str, conn: psycopg.Connection
) -> None:
    """The marts are refreshed beside the background runs, not in their way: while a refresh waits
    (here: for the customer's mart lock), the next events of the same lanes still reach the vault;
    the marts count them all once it is done."""
    tenant = make_tenant(conn, "one_spa")
    headers = tenant.headers | {"User-Agent": CHROME}

    def send(n: int) -> None:
        events = [
            {"page_url": f"https://shop.test/{n}", "event_data": {"visitor_id": f"v-{v}"}} for v in range(3)
        ]
        response = httpx.post(f"{server.url}/api/v1/track/batch", headers=headers, json={"events": events})
        assert response.status_code == 200, response.text

    with psycopg.connect(db_url, autocommit=True) as holder, LiveServer(db_url) as server:
        holder.execute("SELECT pg_advisory_lock(7072, hashtext(encode(util.tenant_hk('one_spa'), 'hex')))")
        send(0)
        _wait_for(lambda: _completed(conn) == 3, timeout=5.0)
        # The same visitors, so the same lanes, whose run has asked for the marts' refresh.
        send(1)
        _wait_for(lambda: _completed(conn) == 6, timeout=5.0)
        assert _counted_sessions(conn) == 0
        holder.execute("SELECT pg_advisory_unlock_all()")
        _wait_for(lambda: (_queued_sessions(conn), _counted_sessions(conn)) == (0, 3), timeout=5.0)


def test_live_traffic_refreshes_the_marts_at_most_once_per_interval(
    db_url: str, conn: psycopg.Connection
) -> None:
    """The first events after a quiet spell are counted in the marts at once; events loaded within
    `marts_refresh_seconds` of that refresh wait for its end and are counted together then, so live
    traffic pays a refresh's fixed cost once per interval, not once per small batch."""
    tenant = make_tenant(conn, "one_spa")
    headers = tenant.headers | {"User-Agent": CHROME}

    def send(visitor: str) -> None:
        event = {"page_url": "https://shop.test/", "event_data": {"visitor_id": visitor}}
        response = httpx.post(f"{server.url}/api/v1/track/async", headers=headers, json=event)
        assert response.status_code == 200, response.text

    # Long enough for a loaded machine: the check below comes at most ~3 s after the first refresh.
    with LiveServer(db_url, marts_refresh_seconds=6.0) as server:
        send("first")
        _wait_for(lambda: _counted_sessions(conn) == 1, timeout=3.0)
        started = time.monotonic()
        send("second")
        send("third")
        _wait_for(lambda: _completed(conn) == 3, timeout=3.0)
        time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
        assert (_counted_sessions(conn), _queued_sessions(conn)) == (1, 2)
        _wait_for(lambda: (_counted_sessions(conn), _queued_sessions(conn)) == (3, 0), timeout=10.0)


def test_sync_track_reports_a_quarantined_event_with_its_reason(client: httpx.Client, tenant: Tenant) -> None:
    """A well-formed but unusable event is stored, then quarantined; the answer says why."""
    response = client.post("/api/v1/track", headers=tenant.headers, json={"page_url": "not a url"})
    assert response.status_code == 200
    pipeline = response.json()["pipeline"]
    assert pipeline["status"] == "quarantined"
    assert "page_url" in pipeline["detail"]


def test_async_event_reaches_the_business_layer_within_a_second(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant
) -> None:
    """Background processing is woken by the event itself, not by the next sweep."""
    response = client.post(
        "/api/v1/track/async", headers=tenant.headers, json={"page_url": "https://a.test/"}
    )
    assert response.status_code == 200
    assert response.json()["processing"] == "background"
    assert _wait_for(lambda: _completed(conn) == 1, timeout=1.0) < 1.0


def test_concurrent_sync_requests_all_complete(
    live_server: LiveServer, conn: psycopg.Connection, tenant: Tenant
) -> None:
    """Many simultaneous `/api/v1/track` calls share pipeline runs and each sees its event complete."""

    async def send() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as http:
            return await asyncio.gather(
                *(
                    http.post(
                        "/api/v1/track", headers=tenant.headers, json={"page_url": f"https://a.test/{n}"}
                    )
                    for n in range(40)
                )
            )

    responses = asyncio.run(send())
    assert [r.json()["pipeline"]["status"] for r in responses] == ["complete"] * 40
    assert _completed(conn) == 40


# Without background processing: the run that /track wakes would otherwise race the manual trigger
# for the events stored from psql (on a loaded machine it took them first).
@pytest.mark.parametrize("server_settings", [{"pipeline_background": False}])
def test_status_dashboard_and_process_are_scoped_to_the_caller(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant
) -> None:
    """Tenant A's status, dashboard and manual trigger never see or touch tenant B's events."""
    other = make_tenant(conn, "other_co")
    for n in range(3):
        conn.execute("SELECT api.track_site_event('other_co', %s)", (f"https://b.test/{n}",))
    client.post("/api/v1/track", headers=tenant.headers, json={"page_url": "https://a.test/"})
    conn.execute("SELECT api.track_site_event('one_spa', 'https://a.test/pending')")

    status = client.get("/api/v1/track/status", headers=tenant.headers).json()
    assert status["status"] == "success"
    assert status["pipeline_status"]["business_events_total"] == 1
    assert {e["page_url"] for e in status["recent_events"]} == {"https://a.test/", "https://a.test/pending"}

    dashboard = client.get("/api/v1/track/dashboard", headers=tenant.headers, params={"limit": 5}).json()
    assert dashboard["summary"]["total_events"] == 2
    assert all(e["page_url"].startswith("https://a.test/") for e in dashboard["events"])

    processed = client.post("/api/v1/track/process", headers=tenant.headers).json()
    assert processed["result"]["results"]["total_processed"] == 1
    other_pending = conn.execute(
        "SELECT count(*) FROM staging.pipeline_dashboard "
        "WHERE customer_id = 'other_co' AND staging_status = 'PENDING'"
    ).fetchone()
    assert other_pending == (3,)
    other_status = client.get("/api/v1/track/status", headers=other.headers).json()
    assert other_status["pipeline_status"]["raw_pending"] == 3


def test_monitoring_endpoints_require_their_scopes(client: httpx.Client, conn: psycopg.Connection) -> None:
    """A `track` token cannot read status; a `read` token cannot trigger processing."""
    tracker = make_tenant(conn, "one_spa", ("track",))
    reader = make_tenant(conn, "one_spa", ("read",))
    assert client.get("/api/v1/track/status", headers=tracker.headers).status_code == 403
    assert client.get("/api/v1/track/dashboard", headers=tracker.headers).status_code == 403
    assert client.get("/api/v1/track/status", headers=reader.headers).status_code == 200
    assert client.post("/api/v1/track/process", headers=reader.headers).status_code == 403
    assert client.get("/api/v1/track/status").status_code == 400


@pytest.mark.parametrize("limit", [0, 1001, "many"])
def test_dashboard_limit_out_of_range_is_422(client: httpx.Client, tenant: Tenant, limit: object) -> None:
    """`limit` must be 1..1000."""
    response = client.get("/api/v1/track/dashboard", headers=tenant.headers, params={"limit": limit})
    assert response.status_code == 422
    assert isinstance(response.json()["detail"], str)


def test_automation_layer_rollback_keeps_ingestion_and_reapplying_processes_the_backlog(
    client: httpx.Client,
    conn: psycopg.Connection,
    db_url: str,
    tenant: Tenant,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Without the automation layer: 200 + pending and a warning; with it back, the backlog drains."""
    removed = dbcode.remove(conn, dbcode.AUTOMATION)
    assert {f.path for f in removed} >= {"staging/trigger_pipeline_now.sql", "staging/pipeline_dashboard.sql"}

    with caplog.at_level(logging.INFO):
        response = client.post("/api/v1/track", headers=tenant.headers, json={"page_url": "https://a.test/"})
    assert response.status_code == 200
    assert response.json()["pipeline"]["status"] == "pending"
    assert any("⚠️ Site tracking processing failed (non-critical)" in r.getMessage() for r in caplog.records)
    assert tenant.token not in caplog.text

    health = client.get("/health/db")
    assert health.status_code == 503
    assert "staging.trigger_pipeline_now" in health.json()["detail"]
    assert client.get("/api/v1/track/status", headers=tenant.headers).status_code == 503

    migrations.upgrade(db_url)  # a restart or an upgrade leaves a removed layer removed
    assert client.get("/health/db").status_code == 503
    dbcode.install(conn, dbcode.AUTOMATION)
    assert client.get("/health/db").status_code == 200
    _wait_for(lambda: _completed(conn) == 1, timeout=5.0)


def test_events_pending_at_start_up_are_processed(db_url: str, conn: psycopg.Connection) -> None:
    """The raw table is the queue: events stored while no server ran are processed after a start."""
    make_tenant(conn, "one_spa")
    for n in range(5):
        conn.execute("SELECT api.track_site_event('one_spa', %s)", (f"https://a.test/{n}",))
    with LiveServer(db_url):
        _wait_for(lambda: _completed(conn) == 5, timeout=5.0)


def test_sync_processing_logs_the_operator_messages(
    client: httpx.Client, tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    """The grep-able messages of the deployment guide appear, without token, IP or payload."""
    with caplog.at_level(logging.INFO):
        client.post(
            "/api/v1/track", headers=tenant.headers, json={"page_url": "https://a.test/secret-page-xyz"}
        )
        client.post("/api/v1/track/process", headers=tenant.headers)
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("onevault")]
    assert "🔄 Triggering automatic site tracking processing..." in messages
    assert any(m.startswith("✅ Processing result: {") for m in messages)
    assert tenant.token not in caplog.text
    assert "127.0.0.1" not in "\n".join(messages)
    assert "secret-page-xyz" not in "\n".join(messages)
