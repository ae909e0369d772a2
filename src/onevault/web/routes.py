"""`GET /tracker.js`: the browser tracker, prepared once, then cached, compressed and validated by ETag."""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from importlib import resources

from fastapi import APIRouter, Request, Response

router = APIRouter(tags=["websites"])

MEDIA_TYPE = "application/javascript; charset=utf-8"
CACHE_CONTROL = "public, max-age=3600"


def served_text(source: str) -> str:
    """The script as served: whole-line `//` comments, blank lines and indentation removed.

    Line-based and safe because tracker.js keeps no string or template literal across lines;
    every other line is served as written.
    """
    lines = (line.lstrip() for line in source.splitlines())
    return "".join(f"{line}\n" for line in lines if line and not line.startswith("//"))


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an `Accept-Encoding` header allows gzip (`gzip`, `x-gzip` or `*` with q > 0)."""
    qualities: dict[str, float] = {}
    for item in accept_encoding.split(","):
        name, *params = (part.strip() for part in item.split(";"))
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        qualities[name.lower()] = quality
    for name in ("gzip", "x-gzip", "*"):
        if name in qualities:
            return qualities[name] > 0
    return False


def etag_matches(if_none_match: str, etag: str) -> bool:
    """`If-None-Match` (`*`, one tag or a list, weak or strong) matches `etag` by weak comparison."""
    wanted = etag.removeprefix("W/")
    for tag in if_none_match.split(","):
        tag = tag.strip()
        if tag == "*" or tag.removeprefix("W/") == wanted:
            return True
    return False


@dataclass(frozen=True)
class Representation:
    """One encoding of the script: its bytes and their strong ETag."""

    body: bytes
    etag: str
    encoding: str | None

    @classmethod
    def of(cls, body: bytes, encoding: str | None) -> Representation:
        """The representation of `body`, tagged by its SHA-256."""
        return cls(body, f'"{hashlib.sha256(body).hexdigest()}"', encoding)


def _load() -> tuple[Representation, Representation]:
    source = resources.files(__package__).joinpath("tracker.js").read_text(encoding="utf-8")
    plain = served_text(source).encode()
    # mtime=0: every server process compresses to the same bytes, hence the same ETag.
    return Representation.of(plain, None), Representation.of(gzip.compress(plain, 9, mtime=0), "gzip")


PLAIN, GZIPPED = _load()


def _tracker(request: Request) -> Response:
    chosen = GZIPPED if accepts_gzip(request.headers.get("accept-encoding", "")) else PLAIN
    headers = {
        "Cache-Control": CACHE_CONTROL,
        "ETag": chosen.etag,
        "Vary": "Accept-Encoding",
        # Pages that require CORP (COEP: require-corp) may load it; a public script needs no secret.
        "Cross-Origin-Resource-Policy": "cross-origin",
        # Lets a page pin it with Subresource Integrity (crossorigin="anonymous"); no credentials.
        "Access-Control-Allow-Origin": "*",
        "X-Content-Type-Options": "nosniff",
    }
    if etag_matches(request.headers.get("if-none-match", ""), chosen.etag):
        return Response(status_code=304, headers=headers)
    if chosen.encoding:
        headers["Content-Encoding"] = chosen.encoding
    headers["Content-Type"] = MEDIA_TYPE
    return Response(chosen.body, headers=headers)


@router.get(
    "/tracker.js",
    summary="The browser tracker script",
    response_class=Response,
    responses={
        200: {
            "description": "The script (gzip-encoded when the client accepts it)",
            "content": {"application/javascript": {"schema": {"type": "string"}}},
        },
        304: {"description": "Not Modified: the client's copy (If-None-Match) is current"},
    },
)
async def tracker_script(request: Request) -> Response:
    """The tracker a site includes with `<script defer src=".../tracker.js" data-customer-id data-token>`."""
    return _tracker(request)


@router.head("/tracker.js", include_in_schema=False)
async def tracker_script_head(request: Request) -> Response:
    """The headers `GET /tracker.js` would send."""
    return _tracker(request)
