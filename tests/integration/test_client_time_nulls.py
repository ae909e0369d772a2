"""A JSON null for the client's time fields means "not sent", at the top level and inside event_data."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from tests.helpers.pipeline import CUSTOMER, ingest, trigger
from tests.helpers.tenants import make_tenant


@pytest.mark.parametrize(
    "fields",
    [
        {"timestamp": None},
        {"sent_at": None},
        {"event_data": {"timestamp": None}},
        {"event_data": {"sent_at": None}},
        {"timestamp": None, "event_data": {"timestamp": None, "sent_at": None}},
    ],
)
def test_null_client_times_are_absent(conn: psycopg.Connection, fields: dict[str, Any]) -> None:
    """The event is VALID and occurred when it was received, as if the fields were not there."""
    make_tenant(conn, CUSTOMER)
    (raw_id,) = ingest(conn, [{"page_url": "https://example.com/"} | fields], ["e1"])
    trigger(conn)
    row = conn.execute(
        "SELECT validation_status, validation_reasons, occurred_at = received_at, clock_skew_ms "
        "FROM staging.site_tracking_events_s WHERE raw_event_id = %s",
        (raw_id,),
    ).fetchone()
    assert row == ("VALID", [], True, None)
