"""Prometheus samples of a live server, as the tests read them."""

from __future__ import annotations

import re

import httpx

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? ([0-9.eE+-]+|NaN)$")


def scrape(client: httpx.Client) -> dict[str, float]:
    """Every sample of /metrics by its name and labels."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for line in response.text.splitlines():
        match = _SAMPLE.match(line)
        if match:
            samples[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return samples


def delta(before: dict[str, float], after: dict[str, float], key: str) -> float:
    """How much a sample grew between two scrapes."""
    return after.get(key, 0.0) - before.get(key, 0.0)
