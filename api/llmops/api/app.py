"""The application factory: ``create_app(services, trigger=...) -> FastAPI``.

Role: assemble the API from its parts: routers under ``/llm-ops/v1``
(OpenAPI at ``/llm-ops/v1/openapi.json``, Swagger UI at ``/llm-ops/v1/docs`` from
vendored assets: ``llmops.api.docs``), the
exception handlers (``errors.install``), the request guard (415 for forms,
413 over ``settings.api.max_body_bytes``), the metrics middleware and
``GET /metrics`` on a registry the app owns. It builds no store, cache or
use case itself. Input: the composition root's ``Services``
(``llmops.engine.service.compose.services``: store, settings, status cache,
write service), or, for tests and embedding, an opened (migrated) ``Store``
plus optionally the settings (default: read from the environment), which
are composed with ``compose.services`` here; optionally the callable that
wakes the reconciler (a daemon's ``trigger`` or a Redis wake-up publisher).
Output: a ``FastAPI`` app whose state holds ``services``, ``store``,
``settings``, ``writes``, ``trigger``, ``status_cache`` (a
``llmops.engine.store.cache.StatusCache`` when ``settings.redis_url`` is
set, else ``None``; connects lazily, so building it never touches Redis),
``metrics``, ``trusted_peers`` (the parsed ``api.trusted_proxies``; a
malformed entry fails here) and ``route_templates``. Every route but the
probes, ``/metrics``, the OpenAPI documents and the git webhook
(authenticated by its shared secret) requires a permission
(``llmops.api.auth``). The web dashboard (``llmops.api.dashboard``) is
mounted beside the REST API, at the same paths without the prefix.
Callers: ``llmops serve`` (``llmops.cli.serve_cmd``), ``llmops up``
(``llmops.cli.daemon_cmd``) and the tests.

Middleware order, outermost first: Starlette's server-error layer (runs the
catch-all handler), ``peer.PinPeer`` (records the socket peer, then applies
the trusted proxies' ``X-Forwarded-For``), metrics (sees every request,
refused or failed), the guard, then the exception layer and the routes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import Response
from fastapi.routing import APIRoute

from llmops.api import auth, dashboard, denials, docs, errors
from llmops.api.envelope import Failure
from llmops.api.metrics import CONTENT_TYPE, ApiMetrics, MetricsMiddleware, RouteTemplates
from llmops.api.middleware import RequestGuard
from llmops.api.peer import PinPeer
from llmops.api.routes import (
    audit,
    catalog,
    costs,
    creates,
    governance,
    health,
    prompts,
    reconcile,
    serve,
    serving,
    training,
    webhooks,
    writes,
)
from llmops.engine import settings as settings_module
from llmops.engine.service import compose
from llmops.engine.settings import Settings
from llmops.engine.store import audit as audit_log
from llmops.engine.store.db import Store

API_PREFIX = "/llm-ops/v1"
API_VERSION = "v1"
METRICS_PATH = "/metrics"

_COMMON_RESPONSES: dict[int | str, dict[str, object]] = {
    413: {"model": Failure, "description": "The request body is too large."},
    415: {"model": Failure, "description": "Form and multipart bodies are not accepted."},
    422: {"model": Failure, "description": "A request field is invalid (named in data)."},
    500: {"model": Failure, "description": "Unexpected error; data holds only an errorId."},
    503: {"model": Failure, "description": "The store is unavailable."},
}


def _mount(app: FastAPI) -> list[str]:
    """Include every router under ``API_PREFIX``; their route templates."""
    templates: list[str] = []
    for module in (health, reconcile, audit, catalog, serving, prompts, training, governance,
                   costs, webhooks, writes, creates, serve):
        app.include_router(module.router, prefix=API_PREFIX)
        templates += [f"{API_PREFIX}{route.path}" for route in module.router.routes
                      if isinstance(route, APIRoute)]
    return templates


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """At shutdown, the counts of suppressed denials still pending become summary rows."""
    yield
    limiter = getattr(app.state, "denials", None)
    if isinstance(limiter, denials.DenialAudit):
        limiter.flush(audit_log.AuditLog(app.state.store), everything=True)


def create_app(services: compose.Services | Store, *,
               trigger: Callable[[], None] | None = None,
               settings: Settings | None = None,
               dashboard_key: bytes | None = None) -> FastAPI:
    """The llmops REST API over ``services``; ``trigger`` wakes the reconciler (503 without).

    Given a ``Store`` instead, the rest is composed over it from ``settings``
    (``compose.services``); ``settings`` is ignored with ``Services``.
    ``dashboard_key`` signs the dashboard's CSRF tokens (default: a fresh one; the
    workers of one ``llmops serve`` share theirs).
    """
    if isinstance(services, Store):
        cfg = settings if settings is not None else settings_module.load()
        services = compose.services(cfg, store=services)
    cfg = services.settings
    metrics = ApiMetrics()
    app = FastAPI(
        title="llmops",
        summary="Status of the llmops GitOps reconciler for LLM operations.",
        version=API_VERSION,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,  # served by llmops.api.docs from vendored assets, not a CDN
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        responses=_COMMON_RESPONSES,
        lifespan=_lifespan,
    )
    app.state.services = services
    app.state.store = services.store
    app.state.settings = cfg
    app.state.writes = services.writes
    app.state.trigger = trigger
    app.state.status_cache = services.status_cache
    app.state.metrics = metrics
    app.state.trusted_peers = auth.TrustedPeers.parse(cfg.api.trusted_proxies)
    app.state.denials = denials.DenialAudit()  # rate-limited audit of refused requests

    errors.install(app)
    templates = [app.openapi_url or "", *docs.mount(app, API_PREFIX), METRICS_PATH,
                 *_mount(app), *dashboard.mount(app, dashboard_key)]

    @app.get(METRICS_PATH, tags=["metrics"], response_class=Response, summary="Prometheus metrics",
             responses={200: {"content": {CONTENT_TYPE: {}},
                              "description": "Prometheus text exposition format."}})
    def prometheus_metrics() -> Response:
        """Request counts and latencies of this API, by method, route template and status."""
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    # add_middleware wraps what is there: the last added runs first.
    app.add_middleware(RequestGuard, max_body_bytes=cfg.api.max_body_bytes)
    route_templates = RouteTemplates(t for t in templates if t)
    app.state.route_templates = route_templates  # audit targets of denied requests
    app.add_middleware(MetricsMiddleware, metrics=metrics, templates=route_templates)
    # outermost of ours: the socket peer is pinned before a forwarded header is read
    app.add_middleware(PinPeer, trusted_proxies=cfg.api.trusted_proxies)
    return app
