"""`/docs`: Swagger UI, served with its script and style from this service instead of a CDN.

FastAPI's own page loads Swagger UI from jsDelivr and a favicon from its website, so it stays
blank on a closed network. The bundle comes from the `fastapi-offline` package, which ships a
current release; only its files are used, through FastAPI's own page builder. There is no `/redoc`:
ReDoc fetches its logo from its CDN whatever it is told, and one documentation page is enough.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
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


@router.get(f"{ASSETS_URL}/{{name}}")
async def docs_asset(name: str, request: Request) -> Response:
    """The documentation page's script, style sheet or icon."""
    asset = ASSETS.get(name)
    if asset is None:
        raise ApiError(404, "no such documentation file")
    return await asset.response(request)
