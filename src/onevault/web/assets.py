"""Static files from package data (the dashboard's script and style, the API docs' bundles).

Each is read and gzip-compressed once, on its first request and off the event loop, then answered
with a strong ETag, so a browser revalidates it with a 304 instead of downloading it again.
"""

from __future__ import annotations

import asyncio
import gzip
from dataclasses import dataclass, field
from importlib import resources

from fastapi import Request, Response

from onevault.web.routes import Representation, accepts_gzip, etag_matches

# Revalidated on every use: a deployment that changes a file is seen at once, and the ETag makes the
# check a 304 of a few bytes.
REVALIDATE = "no-cache"
_COMPRESSIBLE = ("text/", "application/javascript", "image/svg+xml")


@dataclass
class Asset:
    """One file of a package (`path` inside it, `/`-separated), served as is or gzip-compressed."""

    package: str
    path: str
    media_type: str
    _loaded: tuple[Representation, Representation | None] | None = field(default=None, repr=False)

    def load(self) -> tuple[Representation, Representation | None]:
        """The file's bytes, and their gzip encoding for text (None for formats compressed already)."""
        if self._loaded is None:
            body = resources.files(self.package).joinpath(*self.path.split("/")).read_bytes()
            compressed = None
            if self.media_type.startswith(_COMPRESSIBLE):
                # mtime=0: every server process compresses to the same bytes, hence the same ETag.
                compressed = Representation.of(gzip.compress(body, 6, mtime=0), "gzip")
            self._loaded = (Representation.of(body, None), compressed)
        return self._loaded

    @property
    def name(self) -> str:
        """The file's name, without its folder."""
        return self.path.rsplit("/", 1)[-1]

    async def response(self, request: Request, cache_control: str = REVALIDATE) -> Response:
        """The file as the request accepts it, or 304 when the client's copy is current."""
        plain, gzipped = self._loaded if self._loaded is not None else await asyncio.to_thread(self.load)
        chosen = plain
        if gzipped is not None and accepts_gzip(request.headers.get("accept-encoding", "")):
            chosen = gzipped
        headers = {
            "Cache-Control": cache_control,
            "ETag": chosen.etag,
            "Vary": "Accept-Encoding",
            "X-Content-Type-Options": "nosniff",
        }
        if etag_matches(request.headers.get("if-none-match", ""), chosen.etag):
            return Response(status_code=304, headers=headers)
        if chosen.encoding:
            headers["Content-Encoding"] = chosen.encoding
        return Response(chosen.body, media_type=self.media_type, headers=headers)
