"""The deployment guide's first request, end to end over HTTP."""

from __future__ import annotations

import httpx
import psycopg
from tests.helpers.tenants import Tenant, make_tenant


def test_guide_example_request_is_stored_for_its_tenant_only(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant
) -> None:
    make_tenant(conn, "other_co")
    response = client.post(
        "/api/v1/track",
        headers={**tenant.headers, "Content-Type": "application/json"},
        json={"page_url": "http://localhost/test", "event_type": "test_event", "event_data": {"test": True}},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    assert body["processing"] == "automatic"
    rows = conn.execute(
        "SELECT t.tenant_bk, r.event_id, r.raw_payload FROM raw.site_tracking_events_r r "
        "JOIN auth.tenant_h t USING (tenant_hk)"
    ).fetchall()
    assert rows == [
        (
            "one_spa",
            body["event_id"],
            {"page_url": "http://localhost/test", "event_type": "test_event", "event_data": {"test": True}},
        )
    ]
