"""The OpenAPI document declares what the service really answers: statuses, headers and bodies."""

from __future__ import annotations

from typing import Any

import pytest

from onevault.app import create_app
from onevault.config import Settings

TRACK = ("/api/v1/track", "/api/v1/track/async", "/api/v1/track/batch")
READ = (
    ("get", "/api/v1/track/status"),
    ("get", "/api/v1/track/dashboard"),
    ("post", "/api/v1/track/process"),
)
ERROR_REF = "#/components/schemas/ErrorResponse"
# What the HTTP server answers itself (malformed HTTP, headers too large, too many connections).
SERVER_STATUSES = ("400", "431", "503")


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    """The document the service serves at /openapi.json."""
    return create_app(Settings(), database_url="postgresql:///unused").openapi()


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, operation) of every documented operation."""
    return [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in ("get", "post", "put", "patch", "delete", "head", "options")
    ]


def test_one_error_schema_where_the_framework_default_was(document: dict[str, Any]) -> None:
    """Errors are `{"detail": "<text>", "errors": [...]?}`: FastAPI's array `detail` is not declared."""
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    error = schemas["ErrorResponse"]
    assert error["required"] == ["detail"]
    assert error["properties"]["detail"]["type"] == "string"
    errors = error["properties"]["errors"]
    items = next(option for option in errors.get("anyOf", [errors]) if option.get("type") == "array")["items"]
    item = schemas[items["$ref"].rsplit("/", 1)[1]]
    assert set(item["required"]) == {"loc", "msg", "type"}


def test_every_error_answer_uses_the_error_schema(document: dict[str, Any]) -> None:
    """Each JSON 4xx and 5xx of every operation is ErrorResponse; the others are the server's, in text.

    A health check's 503 is its own report, or ErrorResponse when the pool cannot even be asked.
    """
    seen = 0
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            if not (status.isdigit() and int(status) >= 400):
                continue
            content = response["content"]
            if "application/json" not in content:
                assert status in SERVER_STATUSES and set(content) == {"text/plain"}, (method, path, status)
                continue
            schema = content["application/json"]["schema"]
            if path.startswith("/health/") and status == "503":
                assert {"$ref": ERROR_REF} in schema["anyOf"], (method, path)
            else:
                assert schema == {"$ref": ERROR_REF}, (method, path, status)
            seen += 1
    assert seen > 40


def body_schemas(document: dict[str, Any], path: str) -> list[dict[str, Any]]:
    """The request body's schema for each media type of the tracking route at `path`."""
    content = document["paths"][path]["post"]["requestBody"]["content"]
    assert set(content) == {"application/json", "text/plain"}
    return [media["schema"] for media in content.values()]


@pytest.mark.parametrize(("method", "path"), READ)
def test_customer_header_is_required_on_the_read_routes(
    document: dict[str, Any], method: str, path: str
) -> None:
    """Without X-Customer-ID the read routes answer 400: the header is declared required."""
    operation = document["paths"][path][method]
    (header,) = [p for p in operation["parameters"] if p["name"].lower() == "x-customer-id"]
    assert header["in"] == "header"
    assert header["required"] is True
    assert "pattern" in header["schema"]


@pytest.mark.parametrize("path", TRACK)
def test_tracking_routes_take_header_or_body_credentials(document: dict[str, Any], path: str) -> None:
    """A beacon carries `customer_id` and `token` in its body; headers are then not needed."""
    operation = document["paths"][path]["post"]
    assert {"HTTPBearer": []} in operation["security"]
    assert {} in operation["security"]
    (header,) = [p for p in operation["parameters"] if p["name"].lower() == "x-customer-id"]
    assert header["required"] is False
    for schema in body_schemas(document, path):
        objects = [option for option in schema.get("anyOf", [schema]) if option["type"] == "object"]
        assert objects
        for body in objects:
            assert {"customer_id", "token"} <= set(body["properties"])


def test_event_type_may_be_null(document: dict[str, Any]) -> None:
    """`event_type: null` is taken as the default (page_view): the schema allows null."""
    (event, _) = body_schemas(document, "/api/v1/track")
    event_type = event["properties"]["event_type"]
    assert {"type": "null"} in event_type["anyOf"]
    assert event_type["default"] == "page_view"


def _statuses(document: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    return dict(document["paths"][path][method]["responses"])


@pytest.mark.parametrize("path", TRACK)
def test_tracking_statuses(document: dict[str, Any], path: str) -> None:
    """Every status a tracking route can send is declared."""
    declared = _statuses(document, "post", path)
    assert {"200", "400", "401", "403", "413", "415", "422", "429", "431", "503"} <= set(declared)


@pytest.mark.parametrize(("method", "path"), READ)
def test_read_statuses(document: dict[str, Any], method: str, path: str) -> None:
    """Every status a read or process route can send is declared (422: the `limit` query parameter)."""
    declared = _statuses(document, method, path)
    assert {"200", "400", "401", "403", "429", "431", "503"} <= set(declared)
    assert ("422" in declared) == path.endswith("/dashboard")


def test_answer_headers(document: dict[str, Any]) -> None:
    """401 carries WWW-Authenticate, 429 Retry-After, 503 may; every answer of the app X-Request-ID."""
    for method, path, operation in operations(document):
        if path == "/tracker.js":
            continue
        for status, response in operation["responses"].items():
            headers = response.get("headers", {})
            assert "X-Request-ID" in headers, (method, path, status)
            # The server itself refuses some requests before the application adds an id.
            assert headers["X-Request-ID"]["required"] is (status not in SERVER_STATUSES)
            if status == "401":
                assert headers["WWW-Authenticate"]["required"] is True
            if status == "429":
                assert headers["Retry-After"]["required"] is True
                assert headers["Retry-After"]["schema"]["type"] == "integer"
            if status == "503":
                assert headers["Retry-After"]["schema"]["type"] == "integer"


def test_server_refusals_are_declared_as_plain_text(document: dict[str, Any]) -> None:
    """Every operation may get the server's own 400, 431 and 503 in text/plain (431 only from it)."""
    for method, path, operation in operations(document):
        if path == "/tracker.js":
            continue
        for status in SERVER_STATUSES:
            content = operation["responses"][status]["content"]
            assert "text/plain" in content, (method, path, status)
        assert set(operation["responses"]["431"]["content"]) == {"text/plain"}
