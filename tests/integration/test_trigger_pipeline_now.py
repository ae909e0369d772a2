"""`staging.trigger_pipeline_now` from psql processes everything due, even lanes another run holds."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from tests.helpers.tenants import Tenant

# The lane locks staging.process_batch takes, held here as a running batch holds them.
HOLD_LANES = (
    "SELECT pg_advisory_xact_lock(7071, hashtext(encode(util.tenant_hk(%s), 'hex') || '/' || lane))"
    " FROM generate_series(0, 7) AS lane"
)


def _trigger(db_url: str, customer_id: str) -> dict[str, Any]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute("SELECT staging.trigger_pipeline_now(%s)", (customer_id,)).fetchone()
    assert row is not None
    result: dict[str, Any] = row[0]["results"]
    return result


def test_trigger_waits_for_lanes_another_run_holds(
    db_url: str, conn: psycopg.Connection, tenant: Tenant
) -> None:
    """Called while a background batch holds the lanes, it waits and processes the events once it ends."""
    for n in range(4):
        conn.execute("SELECT api.track_site_event(%s, %s)", (tenant.customer_id, f"https://a.test/{n}"))
    with psycopg.connect(db_url) as holder, ThreadPoolExecutor(1) as executor:
        holder.execute(HOLD_LANES, (tenant.customer_id,))
        answer = executor.submit(_trigger, db_url, tenant.customer_id)
        time.sleep(0.5)
        assert not answer.done(), answer.result()
        holder.commit()
        result = answer.result(timeout=30)
    assert (result["total_processed"], result["staging_to_business_count"]) == (4, 4)
    pending = conn.execute(
        "SELECT count(*) FROM raw.site_tracking_events_r WHERE processing_status <> 'PROCESSED'"
    ).fetchone()
    assert pending == (0,)
