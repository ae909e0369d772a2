"""A customer's web site: static HTML pages served on another origin than the service, with the snippet."""

from __future__ import annotations

import threading
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

# The service listens on 127.0.0.1; the site on 127.0.0.2 (all of 127.0.0.0/8 is loopback on
# Linux), so the browser treats them as different origins and the tracker's requests are cross-origin.
SITE_HOST = "127.0.0.2"
OUTBOUND_URL = "http://example.invalid/x"

HOME_BODY = f"""<h1>Test shop</h1>
<p><a id="outbound" href="{OUTBOUND_URL}">Our partner</a></p>
<p><a id="spa" href="/pricing" onclick="event.preventDefault(); document.title = 'Pricing – Test shop';
  history.pushState({{}}, '', '/pricing?plan=pro');">Pricing</a></p>
<p><button id="signup" onclick="window.onevault.track('signup', {{plan: 'pro'}})">Sign up</button></p>
<p><a id="leave" href="/second" onclick="window.onevault.track('leaving', {{to: 'second'}})">Next page</a></p>
"""


def snippet(service_url: str, customer_id: str, token: str) -> str:
    """The one line a site owner pastes, with `data-allow-local` (the test site is on loopback)."""
    return (
        f'<script defer src="{escape(service_url)}/tracker.js" data-customer-id="{escape(customer_id)}"'
        f' data-token="{escape(token)}" data-allow-local></script>'
    )


def page(title: str, head: str, body: str) -> str:
    """An HTML page with `head` (the snippet) in its head; no favicon request, so no 404 in the console."""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<title>{escape(title)}</title><link rel="icon" href="data:,">{head}</head>'
        f"<body>{body}</body></html>"
    )


def shop_pages(head: str) -> dict[str, str]:
    """The test shop: a home page (outbound link, SPA link, custom event, link onwards) and a second page."""
    return {
        "/": page("Home – Test shop", head, HOME_BODY),
        "/second": page("Second – Test shop", head, "<h1>Second page</h1>"),
    }


class StaticSite:
    """HTML pages by path, served on 127.0.0.2 by a threaded http.server in a background thread."""

    def __init__(self, pages: dict[str, str], host: str = SITE_HOST) -> None:
        self.pages = pages
        site = self

        class Handler(BaseHTTPRequestHandler):
            """Answers GET with the page at the request's path, 404 otherwise."""

            def do_GET(self) -> None:
                """The page at this path."""
                body = site.pages.get(urlsplit(self.path).path)
                data = (body or "not found").encode()
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: the tests read the database, not this log."""

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.origin = f"http://{host}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str = "/") -> str:
        """The absolute URL of `path` on this site."""
        return f"{self.origin}{path}"

    def __enter__(self) -> StaticSite:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
