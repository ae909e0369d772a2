"""§11 `GET /tracker.js`: the script a website includes, its size, caching, compression and validity."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

import onevault.web

SOURCE = Path(onevault.web.__file__).with_name("tracker.js")
BUDGET_GZIPPED = 1500
IDENTITY = {"Accept-Encoding": "identity"}
GZIP = {"Accept-Encoding": "gzip, deflate, br"}


def served(client: httpx.Client, headers: dict[str, str]) -> tuple[httpx.Response, bytes]:
    """The response to GET /tracker.js and its body exactly as sent."""
    with client.stream("GET", "/tracker.js", headers=headers) as response:
        return response, b"".join(response.iter_raw())


def test_serves_the_tracker_within_its_size_budget(client: httpx.Client) -> None:
    """The body is the repository's script (comments stripped) and weighs at most 1,500 bytes gzipped."""
    response, body = served(client, IDENTITY)
    assert response.status_code == 200
    assert "content-encoding" not in response.headers
    text = body.decode("utf-8")
    source_lines = {line.strip() for line in SOURCE.read_text(encoding="utf-8").splitlines()}
    # Only whole-line comments and indentation are taken away: every served line is a source line.
    assert all(line.strip() in source_lines for line in text.splitlines())
    assert not any(line.lstrip().startswith("//") for line in text.splitlines())
    for needle in ("/api/v1/track/", "sendBeacon", "keepalive", "page_view", "outbound_click", "onevault"):
        assert needle in text, needle
    # No cookies and no localStorage, ever.
    assert "cookie" not in text.lower() and "localStorage" not in text
    size = len(gzip.compress(body, 9))
    print(f"\ntracker.js: {len(SOURCE.read_bytes())} bytes in the repository, {len(body)} served, {size} gz")
    assert size <= BUDGET_GZIPPED, f"tracker.js is {size} bytes gzipped; the budget is {BUDGET_GZIPPED}"


def test_gzip_when_accepted_identity_otherwise_same_script(client: httpx.Client) -> None:
    """Clients accepting gzip get the pre-compressed bytes; others (or gzip;q=0) get plain ones."""
    plain_response, plain = served(client, IDENTITY)
    gzip_response, compressed = served(client, GZIP)
    assert gzip_response.status_code == 200
    assert gzip_response.headers["content-encoding"] == "gzip"
    assert gzip.decompress(compressed) == plain
    assert len(compressed) <= BUDGET_GZIPPED
    assert int(gzip_response.headers["content-length"]) == len(compressed)
    for accept, encoded in [
        ("x-gzip", True),
        ("br;q=1.0, *;q=0.5", True),
        ("GZIP;q=0.1", True),
        ("gzip;q=0", False),
        ("gzip;q=0, *", False),
        ("br", False),
        ("", False),
    ]:
        response, body = served(client, {"Accept-Encoding": accept})
        assert response.headers.get("content-encoding") == ("gzip" if encoded else None), accept
        assert (gzip.decompress(body) if encoded else body) == plain, accept
    assert plain_response.headers["etag"] != gzip_response.headers["etag"]


def test_headers_for_caching_and_cross_origin_pages(client: httpx.Client) -> None:
    """Content-Type, Cache-Control, Vary, a strong quoted ETag and CORP on both encodings; HEAD works."""
    for headers in (IDENTITY, GZIP):
        response, body = served(client, headers)
        assert response.headers["content-type"] == "application/javascript; charset=utf-8"
        assert response.headers["cache-control"] == "public, max-age=3600"
        assert response.headers["vary"] == "Accept-Encoding"
        assert response.headers["cross-origin-resource-policy"] == "cross-origin"
        etag = response.headers["etag"]
        assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/")
        head = client.head("/tracker.js", headers=headers)
        assert head.status_code == 200
        assert head.content == b""
        assert head.headers["etag"] == etag
        assert head.headers["content-length"] == str(len(body))


def test_matching_if_none_match_is_answered_304(client: httpx.Client) -> None:
    """A client holding the current copy gets 304 with no body; a stale or foreign tag gets the script."""
    for headers in (IDENTITY, GZIP):
        first, full = served(client, headers)
        etag = first.headers["etag"]
        for condition in (etag, f"W/{etag}", f'"stale", {etag}', "*"):
            response, body = served(client, {**headers, "If-None-Match": condition})
            assert response.status_code == 304, condition
            assert body == b""
            assert response.headers["etag"] == etag
            assert response.headers["cache-control"] == "public, max-age=3600"
            assert response.headers["vary"] == "Accept-Encoding"
        for condition in ('"stale"', etag[:-2] + '"', 'W/"nope", "other"'):
            response, body = served(client, {**headers, "If-None-Match": condition})
            assert response.status_code == 200, condition
            assert body == full, condition


def test_etag_is_the_hash_of_the_bytes_sent(client: httpx.Client) -> None:
    """The ETag is the SHA-256 of the bytes sent (gzip made reproducible), the same in every process."""
    for headers in (IDENTITY, GZIP):
        response, body = served(client, headers)
        assert response.headers["etag"] == f'"{hashlib.sha256(body).hexdigest()}"'
    _, plain = served(client, IDENTITY)
    _, compressed = served(client, GZIP)
    assert compressed == gzip.compress(plain, 9, mtime=0)


def test_the_served_script_is_valid_javascript(client: httpx.Client, tmp_path: Path) -> None:
    """`node --check` accepts the script as served."""
    _, body = served(client, IDENTITY)
    path = tmp_path / "tracker.js"
    path.write_bytes(body)
    node_check(path)


def test_the_repository_script_is_valid_javascript() -> None:
    """`node --check` accepts the readable source kept in the repository (what a CDN would host)."""
    node_check(SOURCE)


def node_check(path: Path) -> None:
    """Fail unless `node --check` accepts `path`; skip when node is not installed."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not on PATH: the syntax check needs it")
    result = subprocess.run([node, "--check", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
