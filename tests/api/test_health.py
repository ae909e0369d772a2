"""§7 health endpoints and the OpenAPI documentation, over HTTP."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import httpx
import psycopg

from onevault import __version__

TRACK_PATHS = ("/api/v1/track", "/api/v1/track/async", "/api/v1/track/batch")


def test_health_reports_liveness(client: httpx.Client) -> None:
    """GET /health answers 200 with status, service, version and an ISO timestamp."""
    response = client.get("/health")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) >= {"status", "service", "version", "timestamp"}
    assert body["status"] == "healthy"
    assert isinstance(body["service"], str) and body["service"]
    assert body["version"] == __version__
    assert datetime.fromisoformat(body["timestamp"]).tzinfo is not None
    assert response.headers.get("x-request-id")


def test_health_needs_no_credentials(client: httpx.Client) -> None:
    """Both health endpoints are open to probes without X-Customer-ID or a token."""
    assert client.get("/health").status_code == 200
    assert client.get("/health/detailed").status_code == 200


def test_detailed_health_reports_database_pool_and_backlog(
    client: httpx.Client, conn: psycopg.Connection
) -> None:
    """GET /health/detailed shows the database connected, the schema version, the pool and the backlog."""
    response = client.get("/health/detailed")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "healthy"
    assert body["version"] == __version__
    database = body["database"]
    assert database["status"] == "connected"
    row = conn.execute("SELECT max(version) FROM util.schema_migration").fetchone()
    assert row is not None
    assert database["schema_version"] == row[0]
    pool = body["pool"]
    assert isinstance(pool, dict)
    assert pool["pool_max"] >= pool["pool_min"] >= 1
    assert all(isinstance(v, int) for v in pool.values())
    backlog = database["backlog"]
    assert isinstance(backlog, dict)
    assert all(isinstance(v, int) and v >= 0 for v in backlog.values())
    # The scheduler keeps partitions three days ahead (docs/retention.md).
    assert date.fromisoformat(database["raw_partitions_through"]) >= datetime.now(UTC).date() + timedelta(
        days=2
    )


def test_openapi_documents_every_endpoint_with_request_bodies(client: httpx.Client) -> None:
    """/openapi.json lists the tracking and health endpoints, the tracking ones with documented bodies."""
    response = client.get("/openapi.json")
    assert response.status_code == 200, response.text
    paths = response.json()["paths"]
    for path in (*TRACK_PATHS, "/health", "/health/detailed"):
        assert path in paths, f"{path} missing from the OpenAPI document"
    assert "get" in paths["/health"] and "get" in paths["/health/detailed"]
    for path in TRACK_PATHS:
        operation = paths[path]["post"]
        content = operation["requestBody"]["content"]
        assert "application/json" in content, path
        assert content["application/json"]["schema"], path
        assert {"200", "400", "401", "403", "413", "415", "422", "429"} <= set(operation["responses"]), path
    event_schema = paths["/api/v1/track"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    text = str(event_schema)
    for field in ("event_type", "page_url", "event_data", "event_id"):
        assert field in text


def test_openapi_documents_the_auth_headers(client: httpx.Client) -> None:
    """The tracking operations declare the X-Customer-ID header and bearer authentication."""
    document = client.get("/openapi.json").json()
    operation = document["paths"]["/api/v1/track/async"]["post"]
    headers = {p["name"].lower() for p in operation.get("parameters", []) if p.get("in") == "header"}
    assert "x-customer-id" in headers
    schemes = document.get("components", {}).get("securitySchemes", {})
    assert any(s.get("scheme", "").lower() == "bearer" for s in schemes.values())
    assert operation.get("security")


def test_docs_page_is_served(client: httpx.Client) -> None:
    """GET /docs returns the interactive HTML documentation."""
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "openapi.json" in response.text
