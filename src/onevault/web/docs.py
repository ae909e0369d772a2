"""`/docs` (Swagger UI) and `/redoc`, served with their scripts from this service instead of a CDN.

FastAPI's own pages load Swagger UI and ReDoc from jsDelivr and a favicon from its website, so
they stay blank on a closed network. The bundles come from the `fastapi-offline` package, which
ships current releases of both; only its files are used, through FastAPI's own page builders.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse

from onevault.errors import ApiError
from onevault.web.assets import Asset

router = APIRouter(include_in_schema=False)

ASSETS_URL = "/docs/assets"
ASSETS = {
    asset.name: asset
    for asset in (
        Asset("fastapi_offline", "static/swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
        Asset("fastapi_offline", "static/swagger-ui.css", "text/css; charset=utf-8"),
        Asset("fastapi_offline", "static/redoc.standalone.js", "text/javascript; charset=utf-8"),
        Asset("fastapi_offline", "static/favicon.png", "image/png"),
    )
}
# Swagger UI would otherwise send the document to validator.swagger.io for its badge.
SWAGGER_PARAMETERS = {"validatorUrl": None}


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI over the service's OpenAPI document, every file from this service."""
    root = request.scope.get("root_path", "")
    return get_swagger_ui_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} – API documentation",
        swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
        swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
        swagger_ui_parameters=SWAGGER_PARAMETERS,
    )


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    """ReDoc over the service's OpenAPI document, without Google Fonts."""
    root = request.scope.get("root_path", "")
    return get_redoc_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} – API reference",
        redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
        redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
        with_google_fonts=False,
    )


@router.get(f"{ASSETS_URL}/{{name}}")
async def docs_asset(name: str, request: Request) -> Response:
    """One of the documentation pages' scripts, style sheet or icon."""
    asset = ASSETS.get(name)
    if asset is None:
        raise ApiError(404, "no such documentation file")
    return await asset.response(request)
