"""`GET /dashboard`: the site owner's page over the stats API, its script and style, and its chart.

The page itself holds no data and needs no credentials: the visitor signs in with a customer id
and a `read` token, which the script keeps in the tab's `sessionStorage` (never a cookie) and sends
as headers to `/api/v1/stats/*` and `/api/v1/track/status`. Every file comes from this service.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from onevault.errors import ApiError, responses
from onevault.web import chart
from onevault.web.assets import Asset

router = APIRouter(tags=["dashboard"])

_TEMPLATES = Environment(
    loader=PackageLoader("onevault.web", "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
STATIC = {
    asset.name: asset
    for asset in (
        Asset("onevault.web", "static/dashboard.js", "text/javascript; charset=utf-8"),
        Asset("onevault.web", "static/dashboard.css", "text/css; charset=utf-8"),
    )
}
# Everything from this origin; inline styles only because the chart's SVG carries its own style sheet.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True)
class Metric:
    """A headline figure: its stats API name and its label."""

    key: str
    label: str


@dataclass(frozen=True)
class Panel:
    """A breakdown: the top values of one dimension by visitors, with a second figure."""

    key: str
    title: str
    dimension: str
    column: str
    second: str
    second_label: str
    missing: str


METRICS = (
    Metric("visitors", "Unique visitors"),
    Metric("visits", "Total visits"),
    Metric("pageviews", "Total page views"),
    Metric("views_per_visit", "Views per visit"),
    Metric("bounce_rate", "Bounce rate"),
    Metric("visit_duration", "Visit duration"),
)
PANELS = (
    Panel("pages", "Top pages", "event:page", "Page", "pageviews", "Page views", "(none)"),
    Panel("entry-pages", "Entry pages", "visit:entry_page", "Entry page", "visits", "Entrances", "(none)"),
    Panel("exit-pages", "Exit pages", "visit:exit_page", "Exit page", "visits", "Exits", "(none)"),
    Panel("referrers", "Referrers", "visit:referrer", "Referrer", "visits", "Visits", "Direct / none"),
    Panel("channels", "Channels", "visit:channel", "Channel", "visits", "Visits", "(none)"),
    Panel("utm-sources", "UTM sources", "visit:utm_source", "Source", "visits", "Visits", "(none)"),
    Panel("utm-campaigns", "UTM campaigns", "visit:utm_campaign", "Campaign", "visits", "Visits", "(none)"),
    Panel("browsers", "Browsers", "visit:browser", "Browser", "visits", "Visits", "(unknown)"),
    Panel("os", "Operating systems", "visit:os", "Operating system", "visits", "Visits", "(unknown)"),
    Panel("devices", "Devices", "visit:device", "Device", "visits", "Visits", "(unknown)"),
    Panel("events", "Events", "event:type", "Event", "events", "Events", "(none)"),
)
RANGES = (
    ("today", "Today"),
    ("7d", "Last 7 days"),
    ("30d", "Last 30 days"),
    ("month", "This month"),
    ("12mo", "Last 12 months"),
    ("custom", "Custom range…"),
)
DEFAULT_RANGE = "30d"


@router.get("/dashboard", include_in_schema=False, response_class=HTMLResponse)
async def dashboard_page(request: Request) -> HTMLResponse:
    """The dashboard: a sign-in form, then figures, chart and breakdowns filled by its script."""
    html = _TEMPLATES.get_template("dashboard.html").render(
        root=request.scope.get("root_path", ""),
        metrics=METRICS,
        panels=PANELS,
        ranges=RANGES,
        default_range=DEFAULT_RANGE,
    )
    return HTMLResponse(html, headers=PAGE_HEADERS)


@router.get("/dashboard/static/{name}", include_in_schema=False)
async def dashboard_static(name: str, request: Request) -> Response:
    """The dashboard's script or style sheet."""
    asset = STATIC.get(name)
    if asset is None:
        raise ApiError(404, "no such dashboard file")
    return await asset.response(request)


@router.post(
    "/dashboard/chart",
    summary="Draw a line chart as SVG",
    response_class=Response,
    responses=responses(
        {
            400: "A body that is not UTF-8 text",
            422: "Not a chart: over 4 series or 1,000 points, a negative value, a label over 64 characters",
        },
        success={
            200: {
                "description": "The chart: SVG with no script and no reference to another file",
                "content": {"image/svg+xml": {"schema": {"type": "string"}}},
            }
        },
    ),
)
async def draw_chart(body: chart.ChartRequest) -> Response:
    """Draw the given labels and series as an accessible SVG line chart.

    No authentication: it reads no data and only draws the numbers it is sent, which the dashboard
    fetched from the stats API with its own credentials.
    """
    svg = await asyncio.to_thread(chart.render, body)
    return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": "no-store"})
