"""Origins customers allow: canonical forms, wildcards, and what a request's Origin or Referer gives."""

from __future__ import annotations

import pytest

from onevault.auth import origins


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("https://shop.example.com", "https://shop.example.com"),
        ("HTTPS://Shop.Example.COM:443/", "https://shop.example.com"),
        ("http://localhost:8080", "http://localhost:8080"),
        ("http://127.0.0.2:80", "http://127.0.0.2"),
        ("https://*.example.com", "https://*.example.com"),
        ("https://*.example.com:8443", "https://*.example.com:8443"),
        ("http://[::1]:3000", "http://[::1]:3000"),
    ],
)
def test_normalise(given: str, canonical: str) -> None:
    """Scheme and host lower-cased, default port dropped, a trailing slash tolerated."""
    assert origins.normalise(given) == canonical


@pytest.mark.parametrize(
    "given",
    [
        "shop.example.com",
        "ftp://x.test",
        "https://x.test/path",
        "https://x.test?q",
        "https://u@x.test",
        "https://a.*.test",
        "https://*",
        "https://x.test:99999",
        "https://",
        "https://exa mple.com",
    ],
)
def test_normalise_refuses_what_is_not_an_origin(given: str) -> None:
    """Paths, queries, user info, other schemes and inner wildcards are refused with a reason."""
    with pytest.raises(origins.InvalidOrigin):
        origins.normalise(given)


@pytest.mark.parametrize(
    ("sent", "origin"),
    [
        ("https://Shop.example.com", "https://shop.example.com"),
        ("https://shop.example.com/a/b?c#d", "https://shop.example.com"),
        ("http://127.0.0.2:8123/page.html", "http://127.0.0.2:8123"),
        ("null", None),
        ("file:///tmp/x.html", None),
        ("not a url", None),
    ],
)
def test_origin_of_a_request(sent: str, origin: str | None) -> None:
    """Origin and Referer headers both give the page's origin; `null` and non-web pages give none."""
    assert origins.origin_of(sent) == origin


def test_wildcards_match_subdomains_only() -> None:
    """`https://*.example.com` covers every subdomain, at any depth, with that scheme and port only."""
    allowed = ("https://*.example.com", "http://localhost:3000")
    assert origins.is_allowed("https://a.example.com", allowed)
    assert origins.is_allowed("https://a.b.example.com", allowed)
    assert origins.is_allowed("http://localhost:3000", allowed)
    for refused in (
        "https://example.com",
        "http://a.example.com",
        "https://a.example.com:8443",
        "https://aexample.com",
        "https://example.com.evil.test",
        "http://localhost:3001",
    ):
        assert not origins.is_allowed(refused, allowed), refused
