"""The interactive API docs, served with no internet: Swagger UI from the app itself.

Role: ``mount(app, prefix)`` adds ``GET {prefix}/docs`` (FastAPI's Swagger UI
page, ``get_swagger_ui_html``, pointed at the vendored assets instead of a CDN)
and the assets under ``{prefix}/docs/assets/`` (``swagger_ui/``: the bundle, its
CSS and a favicon from npm's ``swagger-ui-dist``, version and licence recorded in
``swagger_ui/VENDORED.md``). The online validator badge is switched off (it
would call validator.swagger.io); there is no ReDoc page and no OAuth2 redirect
page (the API takes bearer tokens and signed proxy headers, not an OAuth2 flow).
Like the OpenAPI document, the page and its assets need no identity. Input: the
app ``llmops.api.app.create_app`` is building (created with ``docs_url=None``).
Output: the route templates it added (for metrics). Caller: ``create_app``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = Path(__file__).parent / "swagger_ui"


def mount(app: FastAPI, prefix: str) -> list[str]:
    """Serve Swagger UI at ``{prefix}/docs`` from vendored assets; its path templates."""
    page = f"{prefix}/docs"
    assets = f"{page}/assets"
    openapi_url = app.openapi_url or f"{prefix}/openapi.json"
    title = f"{app.title} - API docs"

    @app.get(page, include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url, title=title,
            swagger_js_url=f"{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url=f"{assets}/favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None})

    app.mount(assets, StaticFiles(directory=ASSETS), name="swagger-ui")
    return [page, f"{assets}/{{file:path}}"]
