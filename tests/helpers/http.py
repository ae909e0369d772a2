"""What an HTTP error answer must look like, and a free port to serve on."""

from __future__ import annotations

import socket

import httpx

LEAK_WORDS = ("psycopg", "traceback", "sqlstate", "select ", "insert ", 'file "')


def assert_error(response: httpx.Response, status: int, *secrets: str) -> str:
    """The response is a clean JSON error `{"detail": "..."}` with `status`, leaking nothing; its detail."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body, dict)
    assert isinstance(body.get("detail"), str) and body["detail"].strip()
    text = response.text.lower()
    for word in LEAK_WORDS:
        assert word not in text, f"{word!r} leaked in {response.text}"
    for secret in secrets:
        assert secret not in response.text
        assert secret[-64:] not in response.text
    return str(body["detail"])


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
