"""The dashboard's page, files and chart, and the self-hosted API docs, over HTTP from a live server.

Nothing the service sends a browser for these pages points outside the service: no CDN script or
style sheet, no web font, no validator badge.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from tests.helpers.http import assert_error
from tests.helpers.tenants import Tenant

SVG = "{http://www.w3.org/2000/svg}"
# Any absolute or protocol-relative URL in the text of a page or file.
EXTERNAL_URL = re.compile(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", re.IGNORECASE)


class Page(HTMLParser):
    """The URLs an HTML page loads (src, href) and its form controls with their labels."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.controls: list[dict[str, str | None]] = []
        self.labels: set[str] = set()
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Collect URLs, controls and labels."""
        found = dict(attrs)
        for name in ("src", "href"):
            if found.get(name):
                self.urls.append(str(found[name]))
        if tag in ("input", "select", "textarea"):
            self.controls.append(found)
        if tag == "label" and found.get("for"):
            self.labels.add(str(found["for"]))


def chart_body(points: int = 3, series: int = 2, **changes: Any) -> dict[str, Any]:
    """A valid chart request with `points` labels and `series` series."""
    body: dict[str, Any] = {
        "labels": [f"1 May + {i}" for i in range(points)],
        "series": [
            {"name": f"Series {s}", "values": [i * (s + 1) for i in range(points)]} for s in range(series)
        ],
    }
    body.update(changes)
    return body


def assert_self_contained_svg(svg: str) -> ET.Element:
    """The SVG is well-formed, titled, without script and without any reference to another resource."""
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    assert root.get("role") == "img"
    assert root.find(f"{SVG}title") is not None
    assert not list(root.iter(f"{SVG}script"))
    for element in root.iter():
        for name, value in element.attrib.items():
            assert not name.endswith("href"), f"{element.tag} has {name}={value}"
            assert not name.startswith("on"), f"{element.tag} has an event handler {name}"
            assert "url(" not in value or "url(#" in value
    styles = " ".join(e.text or "" for e in root.iter(f"{SVG}style"))
    assert "@import" not in styles
    assert not re.search(r"url\((?!#)", styles)
    # Only the SVG namespace and pygal's credits in comments name a site; nothing is fetched.
    without_comments = re.sub(r"<!--.*?-->", "", svg, flags=re.DOTALL)
    assert EXTERNAL_URL.findall(without_comments.replace('xmlns="http://www.w3.org/2000/svg"', "")) == []
    return root


def test_dashboard_page_is_one_self_contained_accessible_page(client: httpx.Client) -> None:
    """200 HTML with a strict same-origin CSP; every file it loads is the service's and is served."""
    response = client.get("/dashboard")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "connect-src 'self'" in csp
    assert "default-src 'none'" in csp
    assert response.headers["referrer-policy"] == "no-referrer"
    html = response.text
    assert EXTERNAL_URL.findall(html) == []
    page = Page(html)
    loaded = [url for url in page.urls if not url.startswith(("#", "data:"))]
    assert "/dashboard/static/dashboard.js" in loaded
    assert "/dashboard/static/dashboard.css" in loaded
    for url in loaded:
        assert url.startswith("/"), url
        assert client.get(url).status_code == 200, url
    # Every control has a label pointing at it.
    assert page.controls
    unlabelled = [c for c in page.controls if c.get("id") not in page.labels]
    assert unlabelled == []
    assert 'aria-live="polite"' in html and 'role="alert"' in html
    # The token is never put in a cookie by the page or its script.
    script = client.get("/dashboard/static/dashboard.js").text
    assert "document.cookie" not in script
    assert "sessionStorage" in script
    assert "set-cookie" not in response.headers


def test_dashboard_files_are_compressed_and_revalidated(client: httpx.Client) -> None:
    """The script is gzip-encoded for clients that accept it, 304 when the client's copy is current."""
    plain = client.get("/dashboard/static/dashboard.js", headers={"Accept-Encoding": "identity"})
    assert plain.status_code == 200
    assert plain.headers["content-type"].startswith("text/javascript")
    assert "content-encoding" not in plain.headers
    zipped = client.get("/dashboard/static/dashboard.js", headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.content == plain.content  # httpx decodes
    again = client.get(
        "/dashboard/static/dashboard.js",
        headers={"Accept-Encoding": "gzip", "If-None-Match": zipped.headers["etag"]},
    )
    assert again.status_code == 304
    assert_error(client.get("/dashboard/static/../app.py"), 404)
    assert_error(client.get("/dashboard/static/secret.txt"), 404)


def test_chart_is_svg_without_script_or_external_reference(client: httpx.Client) -> None:
    """The chart needs no credentials and is a titled SVG image that fetches nothing."""
    body = chart_body(points=30, series=2, title="Visitors and page views")
    response = client.post("/dashboard/chart", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/svg+xml"
    svg = response.text
    assert not svg.startswith("<?xml")
    assert "<script" not in svg.lower()
    assert "pygal.org/js" not in svg and "kozea.github.io" not in svg
    root = assert_self_contained_svg(svg)
    title = root.find(f"{SVG}title")
    assert title is not None and title.text == "Visitors and page views"
    assert root.get("aria-label") == "Visitors and page views"
    # The series' names are in the legend, in the accessible colours.
    text = " ".join(t.text or "" for t in root.iter(f"{SVG}text"))
    assert "Series 0" in text and "Series 1" in text
    assert "#1d4ed8" in svg and "#b45309" in svg


def test_chart_escapes_what_it_is_sent(client: httpx.Client) -> None:
    """Labels and names that look like markup stay text: the SVG still parses and runs nothing."""
    body = chart_body(points=2, series=1)
    body["labels"] = ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>']
    body["series"][0]["name"] = "</svg><script>"
    response = client.post("/dashboard/chart", json=body)
    assert response.status_code == 200, response.text
    root = assert_self_contained_svg(response.text)
    assert not [e for e in root.iter() if e.tag.endswith(("script", "img"))]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (chart_body(series=5), "series"),
        (chart_body(series=0), "series"),
        (chart_body(points=1001, series=1), "labels"),
        ({"labels": [], "series": [{"name": "Visitors", "values": [1] * 1001}]}, "values"),
        ({"labels": ["a"], "series": [{"name": "Visitors", "values": [-1]}]}, "values"),
        ({"labels": ["a"], "series": [{"name": "Visitors", "values": ["3"]}]}, "values"),
        ({"labels": ["a"], "series": [{"name": "Visitors", "values": [True]}]}, "values"),
        ({"labels": ["a"], "series": [{"name": "Visitors", "values": [None]}]}, "values"),
        ({"labels": ["x" * 65], "series": [{"name": "Visitors", "values": [1]}]}, "labels"),
        ({"labels": ["a\u0001b"], "series": [{"name": "Visitors", "values": [1]}]}, "labels"),
        ({"labels": ["a"], "series": [{"name": "", "values": [1]}]}, "name"),
        ({"labels": ["a"], "series": [{"name": "V", "values": [1]}], "script": "x"}, "script"),
        ({"series": [{"name": "V", "values": [1]}]}, "labels"),
        ({"labels": ["a"], "series": [{"name": "V", "values": [1e300]}]}, "values"),
    ],
)
def test_chart_refuses_what_is_not_a_chart(client: httpx.Client, body: dict[str, Any], where: str) -> None:
    """422 naming the field: too many series or points, values that are not numbers ≥ 0, long labels."""
    response = client.post("/dashboard/chart", json=body)
    detail = assert_error(response, 422)
    assert where in detail


@pytest.mark.parametrize("values", [[5e-324], [0, 1e-310], [1e-7, 2e-7], [1e15, 1e-300]])
def test_chart_draws_values_too_small_to_see_as_zero(client: httpx.Client, values: list[float]) -> None:
    """Values no chart tells from 0 (down to the smallest float) are drawn, as 0."""
    body = {"labels": [str(i) for i in range(len(values))], "series": [{"name": "V", "values": values}]}
    response = client.post("/dashboard/chart", json=body)
    assert response.status_code == 200, response.text
    assert response.text.startswith("<svg")


def test_chart_refuses_nan_infinity_and_lone_surrogates(client: httpx.Client) -> None:
    """JSON's non-standard NaN and Infinity are not values to draw, nor half a character a label."""
    lone = '{"labels": ["a\\udbd2"], "series": [{"name": "V", "values": [1]}]}'
    response = client.post("/dashboard/chart", content=lone, headers={"Content-Type": "application/json"})
    assert_error(response, 422)
    for number in ("NaN", "Infinity"):
        content = '{"labels": ["a"], "series": [{"name": "V", "values": [' + number + "]}]}"
        headers = {"Content-Type": "application/json"}
        response = client.post("/dashboard/chart", content=content, headers=headers)
        assert_error(response, 422)


def test_chart_refuses_a_body_that_is_not_json(client: httpx.Client) -> None:
    """Malformed JSON is 422, bytes that are not UTF-8 are 400: JSON errors either way, as documented."""
    headers = {"Content-Type": "application/json"}
    assert_error(client.post("/dashboard/chart", content=b'{"labels": [', headers=headers), 422)
    assert_error(client.post("/dashboard/chart", content=b"c\xff\xfe\x00", headers=headers), 400)
    documented = client.get("/openapi.json").json()["paths"]["/dashboard/chart"]["post"]["responses"]
    assert "application/json" in documented["400"]["content"]


def test_chart_at_the_limits_is_drawn(client: httpx.Client) -> None:
    """Four series of 1,000 points, 64-character labels; a series shorter than the labels ends early."""
    body = chart_body(points=1000, series=4)
    body["labels"] = [f"{i:064d}" for i in range(1000)]
    body["series"][3]["values"] = body["series"][3]["values"][:10]
    response = client.post("/dashboard/chart", json=body)
    assert response.status_code == 200, response.text
    assert_self_contained_svg(response.text)
    empty = client.post("/dashboard/chart", json={"labels": [], "series": [{"name": "V", "values": []}]})
    assert empty.status_code == 200
    assert_self_contained_svg(empty.text)


def test_api_docs_are_served_from_the_service(client: httpx.Client) -> None:
    """The Swagger UI page loads its script, style and icon from the service itself; no ReDoc."""
    response = client.get("/docs")
    assert response.status_code == 200
    html = response.text
    assert EXTERNAL_URL.findall(html) == [], html
    urls = Page(html).urls
    assert sorted(urls) == [
        "/docs/assets/favicon.png",
        "/docs/assets/swagger-ui-bundle.js",
        "/docs/assets/swagger-ui.css",
    ]
    for url in urls:
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 1000
    bundle = client.get("/docs/assets/swagger-ui-bundle.js", headers={"Accept-Encoding": "gzip"})
    assert bundle.headers["content-encoding"] == "gzip"
    assert bundle.headers["content-type"].startswith("text/javascript")
    assert '"validatorUrl": null' in html
    assert "'/openapi.json'" in html
    assert client.get("/redoc").status_code == 404
    assert_error(client.get("/docs/assets/redoc.standalone.js"), 404)


def test_openapi_documents_the_chart_not_the_pages(client: httpx.Client) -> None:
    """The chart is an API operation with its SVG answer; the HTML page and files are not."""
    paths = client.get("/openapi.json").json()["paths"]
    assert "/dashboard" not in paths
    assert not [p for p in paths if p.startswith(("/dashboard/static", "/docs"))]
    answers = paths["/dashboard/chart"]["post"]["responses"]
    assert "image/svg+xml" in answers["200"]["content"]
    assert "422" in answers


def test_bodies_over_a_megabyte_are_refused_before_they_are_read(
    client: httpx.Client, tenant: Tenant
) -> None:
    """413 as JSON, whether the body declares its length or comes in chunks; the tracking routes keep
    their own limits."""
    padded = b'{"labels": ["a"], "series": [{"name": "V", "values": [1]}]}' + b" " * (1024 * 1024)
    headers = {"Content-Type": "application/json"}
    detail = assert_error(client.post("/dashboard/chart", content=padded, headers=headers), 413)
    assert "1048576 bytes" in detail

    def chunks() -> Iterator[bytes]:
        yield padded[: 512 * 1024]
        yield padded[512 * 1024 :]

    assert_error(client.post("/dashboard/chart", content=chunks(), headers=headers), 413)
    query = b'{"metrics": ["visitors"], "date_range": "7d"}' + b" " * (1024 * 1024)
    assert_error(client.post("/api/v1/stats/query", content=query, headers=tenant.headers | headers), 413)
    assert client.post("/dashboard/chart", content=padded[: 64 * 1024], headers=headers).status_code == 200
