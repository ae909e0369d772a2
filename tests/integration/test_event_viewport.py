"""The screen and viewport size of browser events: read from the event, kept in staging and the vault."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from tests.helpers.pipeline import CUSTOMER, ingest, trigger
from tests.helpers.tenants import make_tenant

STAGED = (
    "SELECT validation_status, screen_width, screen_height, viewport_width, viewport_height "
    "FROM staging.site_tracking_events_s WHERE raw_event_id = %s"
)
IN_VAULT = (
    "SELECT screen_width, screen_height, viewport_width, viewport_height "
    "FROM business.site_event_details_s WHERE raw_event_id = %s"
)


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        (
            {"screen_width": 1920, "screen_height": 1080, "viewport_width": 1280, "viewport_height": 720},
            (1920, 1080, 1280, 720),
        ),
        ({"event_data": {"viewport_width": 390.4, "viewport_height": 844.6}}, (None, None, 390, 845)),
        (
            {"screen_width": "1920", "screen_height": -1, "viewport_width": 10**9, "viewport_height": None},
            (None, None, None, None),
        ),
        ({"viewport_width": None, "event_data": {"viewport_width": 800}}, (None, None, 800, None)),
        ({}, (None, None, None, None)),
    ],
)
def test_sizes_land_in_staging_and_the_event_details(
    conn: psycopg.Connection, sent: dict[str, Any], stored: tuple[int | None, ...]
) -> None:
    """Numbers in CSS pixels are kept (rounded); anything else is dropped without failing the event."""
    make_tenant(conn, CUSTOMER)
    (raw_id,) = ingest(conn, [{"page_url": "https://example.com/"} | sent], ["e1"])
    trigger(conn)
    staged = conn.execute(STAGED, (raw_id,)).fetchone()
    assert staged == ("VALID", *stored)
    details = conn.execute(IN_VAULT, (raw_id,)).fetchone()
    assert details == stored
