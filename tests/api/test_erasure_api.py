"""`DELETE /api/v1/visitors/{visitor_id}` and `DELETE /api/v1/users/{user_id}` as API clients see them: a
token with the `erase` scope of the customer erases that customer's person only, and the audit names the
token by its public id; other tokens get 401/403 and nothing is erased."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from tests.helpers.erasure import Person, audit_records, raw_rows
from tests.helpers.http import assert_error
from tests.helpers.tenants import Tenant, make_tenant
from tests.helpers.vault_load import Event, ingest_events, process_all

from onevault.auth import tokens

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)


@pytest.fixture
def server_settings() -> dict[str, Any]:
    """No background pipeline: the tests process their events themselves."""
    return {"pipeline_background": False}


# Every person of a test sends from an address of their own: another person's events keep the hash
# of an address they share with the one erased, which the no-trace checks would find.
_ADDRESSES = itertools.count()


def person(visitor_id: str, user_id: str | None = None) -> list[Event]:
    """Three events of a visitor, the last one carrying a user id."""
    ip = f"198.51.100.{next(_ADDRESSES) % 254 + 1}"
    return [
        Event(
            f"{visitor_id[:20]}-{n}-{uuid.uuid4().hex}",
            T0 + timedelta(minutes=n),
            visitor_id=visitor_id,
            page=f"/p{n}",
            client_ip=ip,
            user_id=user_id if n == 2 else None,
        )
        for n in range(3)
    ]


def stored(conn: psycopg.Connection, customer_id: str, *people: list[Event]) -> None:
    """The events stored and processed for the customer."""
    ingest_events(conn, customer_id, [e for p in people for e in p])
    process_all(conn, customer_id)


def eraser(conn: psycopg.Connection, customer_id: str) -> Tenant:
    """A token of the customer with the `erase` scope only."""
    return make_tenant(conn, customer_id, ("erase",))


def test_a_visitor_is_erased_and_the_token_audited(conn: psycopg.Connection, client: httpx.Client) -> None:
    """200 with what was erased; no trace of the visitor left; the audit names the token's public id."""
    tenant = eraser(conn, "shop_a")
    gone, kept = person("Visitor-A"), person("visitor-b")
    stored(conn, "shop_a", gone, kept)
    traced = Person.of(conn, "shop_a", [e.event_id for e in gone], ids=("visitor-a",))
    response = client.delete("/api/v1/visitors/VISITOR-a", headers=tenant.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["visitors"], body["sessions"], body["events"]) == ("success", 1, 1, 3)
    assert body["rows"]["raw.site_tracking_events_r"] == 3
    assert traced.traces(conn) == {}
    assert raw_rows(conn, "shop_a").keys() == {e.event_id for e in kept}
    [record] = audit_records(conn, "shop_a")
    assert record["erasure_id"] == body["erasure_id"]
    assert record["erased_by"] == f"token:{tokens.token_id(tokens.token_hash(tenant.token))}"
    assert record["record_source"] == "api:/api/v1"
    # The same request again: nothing left to erase, still answered 200 (and audited).
    again = client.delete("/api/v1/visitors/visitor-a", headers=tenant.headers)
    assert again.status_code == 200
    assert (again.json()["events"], again.json()["visitors"]) == (0, 0)
    assert len(audit_records(conn, "shop_a")) == 2


def test_a_user_id_is_erased_with_its_visitors(conn: psycopg.Connection, client: httpx.Client) -> None:
    """`DELETE /api/v1/users/{user_id}`: every visitor seen with the user id, an id with a slash included."""
    tenant = eraser(conn, "shop_a")
    phone, laptop, other = person("phone", "Ann/42"), person("laptop", "Ann/42"), person("other", "Bob")
    stored(conn, "shop_a", phone, laptop, other)
    traced = Person.of(
        conn, "shop_a", [e.event_id for e in [*phone, *laptop]], ids=("Ann/42", "phone", "laptop")
    )
    response = client.delete("/api/v1/users/Ann%2F42", headers=tenant.headers)
    assert response.status_code == 200, response.text
    assert (response.json()["visitors"], response.json()["events"]) == (2, 6)
    assert traced.traces(conn) == {}
    assert raw_rows(conn, "shop_a").keys() == {e.event_id for e in other}
    assert audit_records(conn, "shop_a")[0]["identified_by"] == "user_id"


def test_only_a_token_with_the_erase_scope_of_that_customer_erases(
    conn: psycopg.Connection, client: httpx.Client
) -> None:
    """No token 401, a made-up one 401, one without `erase` (every other scope) 403, another customer's
    token 403 — and a token of another customer erases its own visitor of the same id only."""
    everything_else = make_tenant(conn, "shop_a", ("track", "read", "process"))
    theirs = eraser(conn, "shop_b")
    stored(conn, "shop_a", person("same-v"))
    stored(conn, "shop_b", person("same-v"))
    before = raw_rows(conn, "shop_a")
    url = "/api/v1/visitors/same-v"
    assert_error(client.delete(url, headers={"X-Customer-ID": "shop_a"}), 401)
    made_up = "ovt_test_" + "0" * 64
    assert_error(
        client.delete(url, headers={"X-Customer-ID": "shop_a", "Authorization": f"Bearer {made_up}"}), 401
    )
    assert "erase" in assert_error(
        client.delete(url, headers=everything_else.headers), 403, everything_else.token
    )
    assert_error(client.delete("/api/v1/users/u", headers=everything_else.headers), 403)
    foreign = {"X-Customer-ID": "shop_a", "Authorization": f"Bearer {theirs.token}"}
    assert_error(client.delete(url, headers=foreign), 403, theirs.token)
    assert raw_rows(conn, "shop_a") == before
    assert audit_records(conn, "shop_a") == []

    response = client.delete(url, headers=theirs.headers)
    assert response.status_code == 200 and response.json()["events"] == 3
    assert raw_rows(conn, "shop_b") == {}
    assert raw_rows(conn, "shop_a") == before


def test_an_unknown_visitor_is_answered_200_with_nothing_erased(
    conn: psycopg.Connection, client: httpx.Client
) -> None:
    """Erasure is idempotent: a visitor never seen is no error (the audit records the request)."""
    tenant = eraser(conn, "shop_a")
    response = client.delete("/api/v1/visitors/never-seen", headers=tenant.headers)
    assert response.status_code == 200
    assert (response.json()["events"], response.json()["sessions"], response.json()["visitors"]) == (0, 0, 0)
    assert len(audit_records(conn, "shop_a")) == 1


def test_a_blank_id_is_422(conn: psycopg.Connection, client: httpx.Client) -> None:
    """An id of white space names no one."""
    tenant = eraser(conn, "shop_a")
    assert_error(client.delete("/api/v1/visitors/%20%09", headers=tenant.headers), 422)
    assert audit_records(conn, "shop_a") == []


def test_a_browser_token_cannot_carry_the_erase_scope(conn: psycopg.Connection, client: httpx.Client) -> None:
    """A token in a request body (a web page's) must have the `track` scope only: with `erase` too it is
    refused (403), and nothing is stored."""
    tenant = make_tenant(conn, "shop_a", ("track", "erase"))
    response = client.post(
        "/api/v1/track/async",
        content=f'{{"customer_id": "shop_a", "token": "{tenant.token}", "page_url": "https://example.com/"}}',
        headers={"Content-Type": "text/plain"},
    )
    assert_error(response, 403, tenant.token)
    assert raw_rows(conn, "shop_a") == {}


def test_a_long_id_from_event_data_is_erased(conn: psycopg.Connection, client: httpx.Client) -> None:
    """Ids inside `event_data` are not held to the 256 characters of the top level: longer ones (up to
    1,024) are erased over HTTP too."""
    tenant = eraser(conn, "shop_a")
    long_id = "v" * 300
    stored(conn, "shop_a", person(long_id))
    response = client.delete(f"/api/v1/visitors/{long_id.upper()}", headers=tenant.headers)
    assert response.status_code == 200, response.text
    assert response.json()["events"] == 3
    assert raw_rows(conn, "shop_a") == {}
