"""What operators watch: Prometheus metrics after known traffic, and the log lines."""

from __future__ import annotations

import json
import logging
import sys
import time

import httpx
import psycopg
import pytest
from tests.helpers.metrics import delta, scrape
from tests.helpers.servers import LiveServer
from tests.helpers.tenants import Tenant

from onevault.ingest import routes


def test_metrics_count_known_traffic_exactly(client: httpx.Client, tenant: Tenant) -> None:
    """Received (by endpoint and outcome), processed per layer, quarantined, latency, HTTP timings and
    the queues (raw events pending, sessions pending for the marts)."""
    before = scrape(client)
    for n in range(3):
        client.post(
            "/api/v1/track/async",
            headers=tenant.headers,
            json={"event_id": f"a{n}", "page_url": "https://a.test/"},
        )
    client.post("/api/v1/track/async", headers=tenant.headers, json={"event_id": "a0"})
    client.post("/api/v1/track", headers=tenant.headers, json={"page_url": "https://a.test/sync"})
    client.post("/api/v1/track", headers=tenant.headers, json={"page_url": "not a url"})
    client.post("/api/v1/track", headers=tenant.headers, json={"event_type": 5})
    batch = [{"event_id": "b1"}, {"event_id": "b1"}, {"event_type": "bad type"}]
    client.post("/api/v1/track/batch", headers=tenant.headers, json={"events": batch})
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        after = scrape(client)
        if (
            after.get("onevault_events_pending") == 0
            and after.get("onevault_marts_pending") == 0
            and delta(before, after, 'onevault_events_processed_total{layer="staging"}') >= 6
        ):
            break
        time.sleep(0.1)

    received = "onevault_events_received_total"
    assert delta(before, after, f'{received}{{endpoint="/api/v1/track/async",outcome="accepted"}}') == 3
    assert delta(before, after, f'{received}{{endpoint="/api/v1/track/async",outcome="duplicate"}}') == 1
    assert delta(before, after, f'{received}{{endpoint="/api/v1/track",outcome="accepted"}}') == 2
    assert delta(before, after, f'{received}{{endpoint="/api/v1/track",outcome="rejected"}}') == 1
    assert delta(before, after, f'{received}{{endpoint="/api/v1/track/batch",outcome="accepted"}}') == 1
    assert delta(before, after, f'{received}{{endpoint="/api/v1/track/batch",outcome="duplicate"}}') == 1
    assert delta(before, after, f'{received}{{endpoint="/api/v1/track/batch",outcome="rejected"}}') == 1
    assert delta(before, after, 'onevault_events_processed_total{layer="staging"}') == 6
    assert delta(before, after, 'onevault_events_processed_total{layer="business"}') == 5
    assert delta(before, after, "onevault_events_quarantined_total") == 1
    assert delta(before, after, "onevault_processing_latency_seconds_count") == 5
    assert after["onevault_events_pending"] == 0
    assert after["onevault_marts_pending"] == 0  # background processing refreshed them
    http_count = (
        'onevault_http_request_duration_seconds_count{method="POST",route="/api/v1/track",status="200"}'
    )
    assert delta(before, after, http_count) == 2


def test_a_bug_in_a_tracking_route_is_a_logged_500_counted_by_its_route(
    client: httpx.Client, tenant: Tenant, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The tracking routes, served past FastAPI's routing, answer an unexpected error as every route does."""

    def broken(*_: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(routes, "_prepare", broken)
    before = scrape(client)
    bodies = {"/api/v1/track": {}, "/api/v1/track/async": {}, "/api/v1/track/batch": {"events": [{}]}}
    with caplog.at_level(logging.ERROR, logger="onevault"):
        for path, body in bodies.items():
            response = client.post(path, headers={**tenant.headers, "X-Request-ID": "bug-1"}, json=body)
            assert response.status_code == 500, path
            assert response.json() == {"detail": "internal server error"}
            assert response.headers["x-request-id"] == "bug-1"
    assert caplog.text.count("Unhandled error: RuntimeError") == len(bodies)
    after = scrape(client)
    for path in bodies:
        count = f'onevault_http_request_duration_seconds_count{{method="POST",route="{path}",status="500"}}'
        assert delta(before, after, count) == 1


@pytest.fixture
def server_settings() -> dict[str, object]:
    """One JSON object per log line."""
    return {"log_format": "json"}


def test_json_logs_carry_request_ids_and_no_secrets(
    live_server: LiveServer, tenant: Tenant, conn: psycopg.Connection, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every line is JSON; request lines carry the request id; no token, IP or payload text appears."""
    for handler in logging.getLogger().handlers:
        if getattr(handler, "_onevault", False):
            handler.setStream(sys.stderr)  # type: ignore[attr-defined]
    with httpx.Client(base_url=live_server.url) as http:
        response = http.post(
            "/api/v1/track",
            headers={**tenant.headers, "X-Request-ID": "req-0042"},
            json={
                "page_url": "https://a.test/private-path-qq",
                "event_data": {"email": "someone@example.org"},
            },
        )
        assert response.headers["x-request-id"] == "req-0042"
    err = capsys.readouterr().err
    entries = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert entries, err
    mine = [e for e in entries if e["request_id"] == "req-0042"]
    messages = [e["message"] for e in mine]
    assert "🔄 Triggering automatic site tracking processing..." in messages
    assert any(m.startswith("✅ Processing result: {") for m in messages)
    assert tenant.token not in err
    assert "someone@example.org" not in err
    assert "private-path-qq" not in err
    assert "127.0.0.1" not in "\n".join(e["message"] for e in entries if e["logger"].startswith("onevault"))
