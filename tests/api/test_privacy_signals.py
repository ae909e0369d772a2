"""Browsers' privacy signals (`DNT: 1`, `Sec-GPC: 1`): a customer honouring them (the default) has such
requests answered and nothing of them stored, counted in /metrics; with `tenant set-privacy
--respect-dnt off` they are stored like any other."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx
import psycopg
import pytest
from tests.helpers.cli import Cli
from tests.helpers.http import assert_error
from tests.helpers.metrics import delta, scrape
from tests.helpers.tenants import Tenant, make_tenant
from tests.helpers.vault import raw_count

from onevault.auth import store

PAGE = "https://shop.example.com/pricing"
SIGNALS = {"dnt": {"DNT": "1"}, "gpc": {"Sec-GPC": "1"}}


def send(client: httpx.Client, tenant: Tenant, route: str, headers: dict[str, str]) -> httpx.Response:
    """One event (two in a batch; a beacon's body carries the credentials) with `headers`."""
    if route == "beacon":
        body = {"customer_id": tenant.customer_id, "token": tenant.token, "page_url": PAGE}
        return client.post(
            "/api/v1/track/async",
            content=json.dumps(body),
            headers={"Content-Type": "text/plain;charset=UTF-8", **headers},
        )
    if route == "/api/v1/track/batch":
        events = [{"page_url": PAGE}, {"page_url": PAGE, "event_id": "b2"}]
        return client.post(route, json={"events": events}, headers=tenant.headers | headers)
    return client.post(route, json={"page_url": PAGE, "event_id": "e1"}, headers=tenant.headers | headers)


@pytest.mark.parametrize("signal", sorted(SIGNALS))
@pytest.mark.parametrize("route", ["/api/v1/track", "/api/v1/track/async", "/api/v1/track/batch", "beacon"])
def test_signalled_requests_are_answered_and_store_nothing(
    client: httpx.Client, conn: psycopg.Connection, route: str, signal: str
) -> None:
    """Accepted (200, `"stored": false`, the events validated and given ids), nothing in the raw layer,
    counted by endpoint and signal."""
    tenant = make_tenant(conn, "one_spa", ("track",) if route == "beacon" else ("track", "read", "process"))
    before = scrape(client)
    response = send(client, tenant, route, SIGNALS[signal])
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["stored"] is False
    assert answer["success"] is True
    if route == "/api/v1/track/batch":
        assert answer["accepted"] == 2
        assert [r["status"] for r in answer["results"]] == ["accepted", "accepted"]
        assert answer["results"][1]["event_id"] == "b2"
    else:
        assert "not stored" in answer["message"]
        assert answer["duplicate"] is False
        assert "pipeline" not in answer
    assert raw_count(conn) == 0
    endpoint = "/api/v1/track/async" if route == "beacon" else route
    events = 2 if route == "/api/v1/track/batch" else 1
    after = scrape(client)
    assert delta(
        before, after, f'onevault_events_not_stored_total{{endpoint="{endpoint}",signal="{signal}"}}'
    ) == (events)
    assert delta(
        before, after, f'onevault_events_received_total{{endpoint="{endpoint}",outcome="not_stored"}}'
    ) == (events)


def test_unsignalled_requests_are_stored(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant
) -> None:
    """`DNT: 0`, `Sec-GPC: 0` or no header: the event is stored and the answer says so."""
    for n, headers in enumerate(({}, {"DNT": "0"}, {"Sec-GPC": "0"}, {"DNT": "unset"})):
        response = client.post(
            "/api/v1/track/async",
            json={"page_url": PAGE, "event_id": f"e{n}"},
            headers=tenant.headers | headers,
        )
        assert response.status_code == 200 and response.json()["stored"] is True, headers
    assert raw_count(conn) == 4


def test_bad_events_are_refused_whatever_the_signal(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant
) -> None:
    """Validation comes first: a bad event gets its 422 with or without a privacy signal."""
    response = client.post(
        "/api/v1/track/async", json={"event_type": 5}, headers=tenant.headers | {"DNT": "1"}
    )
    assert_error(response, 422)
    assert raw_count(conn) == 0


@pytest.fixture
def server_settings() -> dict[str, object]:
    """Tokens resolved anew on every request: a setting's change shows at once."""
    return {"auth_cache_seconds": 0}


def test_a_customer_that_does_not_honour_them_stores_them(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant
) -> None:
    """With the setting off the signalled events are stored; on again, they are not."""
    store.set_privacy(conn, tenant.customer_id, False)
    stored = send(client, tenant, "/api/v1/track/async", SIGNALS["gpc"])
    assert stored.status_code == 200 and stored.json()["stored"] is True
    assert raw_count(conn) == 1
    store.set_privacy(conn, tenant.customer_id, True)
    again = client.post(
        "/api/v1/track/async",
        json={"page_url": PAGE, "event_id": "e2"},
        headers=tenant.headers | SIGNALS["dnt"],
    )
    assert again.json()["stored"] is False
    assert raw_count(conn) == 1


def test_other_customers_keep_their_own_setting(
    client: httpx.Client, conn: psycopg.Connection, tenant: Tenant
) -> None:
    """One customer turning the setting off changes nothing for another."""
    other = make_tenant(conn, "other_co")
    store.set_privacy(conn, other.customer_id, False)
    deadline = time.monotonic() + 5
    while send(client, other, "/api/v1/track/async", SIGNALS["dnt"]).json()["stored"] is not True:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert send(client, tenant, "/api/v1/track/async", SIGNALS["dnt"]).json()["stored"] is False
    assert raw_count(conn) == 1


def test_cli_set_privacy(cli_for: Callable[[str], Cli], db_url: str, conn: psycopg.Connection) -> None:
    """`tenant set-privacy --respect-dnt on|off` records changes only, `tenant list` shows the setting;
    unknown customers and values are refused."""
    make_tenant(conn, "one_spa")
    cli = cli_for(db_url)
    assert "yes" in _listed(cli)
    off = cli("tenant", "set-privacy", "one_spa", "--respect-dnt", "off")
    assert off.exit_code == 0, off.output
    assert "stores requests with DNT: 1 or Sec-GPC: 1 like any other" in off.output
    assert "no change" in cli("tenant", "set-privacy", "one_spa", "--respect-dnt", "off").output
    assert "no" in _listed(cli)
    on = cli("tenant", "set-privacy", "one_spa", "--respect-dnt", "on")
    assert on.exit_code == 0 and "stores nothing of requests with DNT: 1 or Sec-GPC: 1" in on.output
    rows = conn.execute("SELECT respect_signals FROM auth.tenant_privacy_s ORDER BY load_date").fetchall()
    assert rows == [(False,), (True,)]
    assert cli("tenant", "set-privacy", "nobody", "--respect-dnt", "on").exit_code == 1
    assert cli("tenant", "set-privacy", "one_spa", "--respect-dnt", "maybe").exit_code == 2
    assert cli("tenant", "set-privacy", "one_spa").exit_code == 2


def _listed(cli: Cli) -> str:
    """The respects_dnt cell of one_spa in `tenant list`."""
    output = cli("tenant", "list").output
    header, row = (line for line in output.splitlines() if "CUSTOMER_ID" in line or "one_spa" in line)
    start = header.index("RESPECTS_DNT")
    return row[start : start + len("RESPECTS_DNT")].strip()
