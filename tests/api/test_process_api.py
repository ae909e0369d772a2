"""`POST /api/v1/track/process`: everything due is processed, in batches of the configured size."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import psycopg
import pytest
from tests.helpers.tenants import Tenant

BATCH_SIZE = 5


@pytest.fixture
def server_settings() -> dict[str, Any]:
    """Only the manual trigger processes here (no background runs), in small batches."""
    return {"pipeline_background": False, "pipeline_batch_size": BATCH_SIZE}


def _store(conn: psycopg.Connection, customer_id: str, count: int) -> None:
    for n in range(count):
        conn.execute("SELECT api.track_site_event(%s, %s)", (customer_id, f"https://a.test/{n}"))


def _scalar(conn: psycopg.Connection, query: str) -> int:
    row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0])


def _pending(conn: psycopg.Connection) -> int:
    return _scalar(
        conn, "SELECT count(*) FROM raw.site_tracking_events_r WHERE processing_status <> 'PROCESSED'"
    )


def _counts(body: dict[str, Any]) -> tuple[int, ...]:
    results = body["result"]["results"]
    keys = (
        "total_processed",
        "raw_to_staging_count",
        "staging_to_business_count",
        "total_success_count",
        "total_error_count",
        "quarantined_count",
    )
    return tuple(results[key] for key in keys)


def test_process_runs_batches_of_the_configured_size_until_nothing_is_due(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant
) -> None:
    """12 due events and ONEVAULT_PIPELINE_BATCH_SIZE=5: all processed, in 3 transactions, one answer."""
    _store(conn, tenant.customer_id, 11)
    conn.execute("SELECT api.track_site_event(%s, 'not a url')", (tenant.customer_id,))
    response = client.post("/api/v1/track/process", headers=tenant.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "success"
    assert _counts(body) == (12, 12, 11, 12, 0, 1)
    assert body["message"] == body["result"]["results"]["processing_summary"]
    assert re.fullmatch(
        r"Processed 12 event\(s\) in \d+ ms: 11 to business, 1 quarantined, 0 failed", body["message"]
    )
    assert _pending(conn) == 0
    # Each batch is one transaction: the hubs it inserts share its start time as their load_date.
    assert _scalar(conn, "SELECT count(DISTINCT load_date) FROM business.site_event_h") == 3


def test_process_waits_for_lanes_another_run_holds(
    live_server: Any, db_url: str, conn: psycopg.Connection, tenant: Tenant
) -> None:
    """Events in lanes a background run holds are processed once it lets go, not reported as none due."""
    _store(conn, tenant.customer_id, 4)
    with psycopg.connect(db_url) as holder, ThreadPoolExecutor(1) as executor:
        # The lane locks staging.process_batch takes, held as a running batch holds them.
        holder.execute(
            "SELECT pg_advisory_xact_lock(7071, hashtext(encode(util.tenant_hk(%s), 'hex') || '/' || lane))"
            " FROM generate_series(0, 7) AS lane",
            (tenant.customer_id,),
        )
        answer = executor.submit(
            httpx.post, f"{live_server.url}/api/v1/track/process", headers=tenant.headers, timeout=30
        )
        time.sleep(0.5)
        assert not answer.done(), answer.result().text
        holder.commit()
        response = answer.result()
    assert response.status_code == 200, response.text
    assert _counts(response.json())[:3] == (4, 4, 4)
    assert _pending(conn) == 0


def test_process_with_nothing_due_says_so(client: httpx.Client, tenant: Tenant) -> None:
    """No due events: zero counts and the deployment guide's message."""
    body = client.post("/api/v1/track/process", headers=tenant.headers).json()
    assert _counts(body) == (0, 0, 0, 0, 0, 0)
    assert body["message"] == "No processing needed - all events up to date"


def test_process_without_the_automation_layer_is_503(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant
) -> None:
    """The manual trigger names the missing automation layer instead of failing with a 500."""
    _store(conn, tenant.customer_id, 1)
    conn.execute("DROP FUNCTION staging.auto_process_if_needed, staging.trigger_pipeline_now")
    response = client.post("/api/v1/track/process", headers=tenant.headers)
    assert response.status_code == 503, response.text
    assert "automation layer" in response.json()["detail"]
    assert _pending(conn) == 1
