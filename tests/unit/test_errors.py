"""Error answers: a 503 while the database is away carries the configured Retry-After."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from onevault.app import create_app
from onevault.config import Settings
from onevault.db import DatabaseUnavailable


@pytest.mark.parametrize(("overrides", "expected"), [({}, "2"), ({"retry_after_seconds": 7}, "7")])
def test_database_unavailable_is_503_with_the_configured_retry_after(
    overrides: dict[str, int], expected: str
) -> None:
    """Default ONEVAULT_RETRY_AFTER_SECONDS (2) or the configured value, whatever state the app is in."""
    app = create_app(Settings(**overrides), database_url="postgresql:///unused")

    @app.get("/unavailable")
    async def unavailable() -> None:
        raise DatabaseUnavailable

    async def get() -> httpx.Response:
        # The transport does not run the lifespan: no database and no services are needed.
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as http:
            return await http.get("/unavailable")

    response = asyncio.run(get())
    assert response.status_code == 503
    assert response.headers["retry-after"] == expected
    assert response.json() == {"detail": "database unavailable, retry later"}
