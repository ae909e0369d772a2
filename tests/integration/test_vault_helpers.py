"""The vault assertions the pipeline tests rely on fail when the vault is wrong."""

from __future__ import annotations

import psycopg
import pytest
from tests.helpers.pipeline import track, trigger
from tests.helpers.tenants import Tenant
from tests.helpers.vault import assert_each_event_linked_once

SECOND_LINK = {
    "session": """
        INSERT INTO business.site_event_session_l
            (link_event_session_hk, site_event_hk, site_session_hk, tenant_hk, record_source)
        SELECT sha256(site_event_hk || 'x'::bytea), site_event_hk, sha256('x'::bytea), tenant_hk, 'test'
        FROM business.site_event_h
        """,
    "page": """
        INSERT INTO business.site_event_page_l
            (link_event_page_hk, site_event_hk, site_page_hk, tenant_hk, record_source)
        SELECT sha256(site_event_hk || 'x'::bytea), site_event_hk, sha256('x'::bytea), tenant_hk, 'test'
        FROM business.site_event_h
        """,
}


def processed_event(conn: psycopg.Connection) -> None:
    """One page view, processed into the vault and linked once."""
    track(conn, event_id="linked")
    trigger(conn)
    assert_each_event_linked_once(conn)


@pytest.mark.parametrize("link", sorted(SECOND_LINK))
def test_an_event_in_two_sessions_or_pages_fails_the_assertion(
    conn: psycopg.Connection, tenant: Tenant, link: str
) -> None:
    """A second session or page link for one event is caught, though no key forbids it."""
    processed_event(conn)
    conn.execute(SECOND_LINK[link])
    with pytest.raises(AssertionError, match="linked"):
        assert_each_event_linked_once(conn)


@pytest.mark.parametrize("table", ["site_event_session_l", "site_event_page_l"])
def test_an_event_missing_its_link_fails_the_assertion(
    conn: psycopg.Connection, tenant: Tenant, table: str
) -> None:
    """An event with no session or no page link is caught."""
    processed_event(conn)
    conn.execute(f"DELETE FROM business.{table}")
    with pytest.raises(AssertionError, match="linked"):
        assert_each_event_linked_once(conn)


def test_a_link_to_an_event_the_hub_lacks_fails_the_assertion(
    conn: psycopg.Connection, tenant: Tenant
) -> None:
    """A link row naming an event missing from the hub is caught."""
    processed_event(conn)
    conn.execute(
        "INSERT INTO business.site_event_session_l"
        " (link_event_session_hk, site_event_hk, site_session_hk, tenant_hk, record_source)"
        " SELECT sha256('ghost'::bytea), sha256('ghost-event'::bytea), site_session_hk, tenant_hk, 'test'"
        " FROM business.site_event_session_l"
    )
    with pytest.raises(AssertionError, match="hub lacks"):
        assert_each_event_linked_once(conn)
