"""The web dashboard: server-rendered pages over the REST API's reads and use cases.

Role: ``mount(app)`` adds the pages (``pages``), the posts (``actions``) and
the vendored assets under ``/static`` (no CDN: the pages work offline) to
the API's app, next to the REST API under ``/llm-ops/v1``, and returns the
pages' route templates (for metrics and the audit trail of denials). The
pages authenticate and authorise exactly as the REST API does
(``session``), read through the REST routes' own functions, and write only
through the write use cases. Input: the ``FastAPI`` app that
``llmops.api.app.create_app`` built. Output: its route templates. Caller:
``llmops.api.app.create_app``.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles

from llmops.api.dashboard import actions, pages

STATIC = Path(__file__).parent / "static"


def mount(app: FastAPI, key: bytes | None = None) -> list[str]:
    """Add the dashboard to ``app``; the route templates of its pages and posts. ``key``
    signs the CSRF tokens (default: a fresh one; processes serving one site must share it,
    or a form one worker drew is refused by another)."""
    app.state.dashboard_key = key or secrets.token_bytes(32)
    templates: list[str] = []
    for module in (actions, pages):
        app.include_router(module.router)
        templates += [route.path for route in module.router.routes
                      if isinstance(route, APIRoute)]
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return templates
