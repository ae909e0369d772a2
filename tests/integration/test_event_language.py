"""The browser's language of an event: read from the event, normalised in staging, kept in the vault."""

from __future__ import annotations

import psycopg
import pytest
from tests.helpers.pipeline import CUSTOMER, ingest, track, trigger
from tests.helpers.tenants import make_tenant

STAGED = "SELECT validation_status, language FROM staging.site_tracking_events_s WHERE raw_event_id = %s"
IN_VAULT = "SELECT language FROM business.site_event_details_s WHERE raw_event_id = %s"


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("en-US", "en-US"),
        ("pt_br", "pt-BR"),
        (" DE ", "de"),
        ("zh-hant-tw", "zh-Hant-TW"),
        ("es-419", "es-419"),
        ("not a language", None),
        ("e", None),
        ("en-" + "x" * 40, None),
        (None, None),
    ],
)
def test_language_is_normalised_in_staging_and_kept_in_the_vault(
    conn: psycopg.Connection, sent: str | None, stored: str | None
) -> None:
    """`language` is stored as a BCP 47 tag in staging and the vault; a value that is not a tag is dropped."""
    make_tenant(conn, CUSTOMER)
    raw_id = track(conn, event_data={} if sent is None else {"language": sent})
    trigger(conn)
    assert conn.execute(STAGED, (raw_id,)).fetchall() == [("VALID", stored)]
    assert conn.execute(IN_VAULT, (raw_id,)).fetchall() == [(stored,)]


def test_top_level_language_wins_over_event_data(conn: psycopg.Connection) -> None:
    """Like every known key, `language` is read at the top level first, then inside event_data."""
    make_tenant(conn, CUSTOMER)
    payload = {"page_url": "https://example.com/", "language": "fr-CA", "event_data": {"language": "en"}}
    (raw_id,) = ingest(conn, [payload], ["e1"])
    trigger(conn)
    assert conn.execute(STAGED, (raw_id,)).fetchall() == [("VALID", "fr-CA")]
