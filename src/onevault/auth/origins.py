"""Web origins a customer allows browser events from: `https://shop.example.com`, `https://*.example.com`."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST = re.compile(r"(\*\.)?([a-z0-9]([a-z0-9-]*[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]*[a-z0-9])?|\[[0-9a-f:.]+\]")


class InvalidOrigin(ValueError):
    """Not an origin (or origin pattern) a customer can allow."""


def _split(value: str) -> tuple[str, str, int | None] | None:
    """(scheme, host, port or None for the default) of an http(s) URL, lower-cased; None if it is not one."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, netloc = parts.scheme.lower(), parts.netloc.lower()
    if scheme not in _DEFAULT_PORTS or not netloc or "@" in netloc:
        return None
    host = netloc.rsplit(":", 1)[0] if port is not None or netloc.endswith(":") else netloc
    return scheme, host, None if port == _DEFAULT_PORTS[scheme] else port


def _join(scheme: str, host: str, port: int | None) -> str:
    return f"{scheme}://{host}" if port is None else f"{scheme}://{host}:{port}"


def normalise(pattern: str) -> str:
    """The canonical form of an origin to allow; InvalidOrigin with the reason if it is not one.

    `https://Shop.Example.com:443` → `https://shop.example.com`; `https://*.example.com` allows every
    subdomain of example.com (not example.com itself); no path, query, user or other scheme.
    """
    parts = _split(pattern)
    if parts is None or urlsplit(pattern.strip()).path not in ("", "/") or "?" in pattern or "#" in pattern:
        raise InvalidOrigin(
            f"{pattern!r} is not an origin: use scheme://host[:port], e.g. https://shop.example.com "
            "or https://*.example.com"
        )
    scheme, host, port = parts
    if not _HOST.fullmatch(host):
        raise InvalidOrigin(
            f"{pattern!r}: {host!r} is not a host name (a wildcard only leads: *.example.com)"
        )
    return _join(scheme, host, port)


def origin_of(url: str) -> str | None:
    """The origin of a request's `Origin` or `Referer` value, canonical; None if it has none (`null`)."""
    parts = _split(url)
    return _join(*parts) if parts else None


def is_allowed(origin: str, patterns: tuple[str, ...]) -> bool:
    """Whether the canonical `origin` is one of `patterns` or under one of their wildcards."""
    if origin in patterns:
        return True
    scheme, _, rest = origin.partition("://")
    for pattern in patterns:
        p_scheme, _, p_rest = pattern.partition("://")
        if p_scheme == scheme and p_rest.startswith("*."):
            suffix = p_rest[1:]  # ".example.com[:port]"
            host_suffix, _, p_port = suffix.partition(":")
            host, _, port = rest.partition(":")
            if port == p_port and host.endswith(host_suffix) and len(host) > len(host_suffix):
                return True
    return False
