"""HTTP metrics of the API: request counts and latencies on a registry the app owns.

Role: ``ApiMetrics`` holds a ``CollectorRegistry`` of its own (never the
process-global one, so two apps in one process, or the daemon's metrics,
never collide) with ``llmops_api_requests_total`` and
``llmops_api_request_duration_seconds``, both labelled by method, route
template and status. ``MetricsMiddleware`` (pure ASGI, outermost user middleware) observes
every request, including those the guard refuses and those that end in an
unexpected error (counted as 500). Labels come from the route template
(``/llm-ops/v1/reconcile/runs/{run_id}``, matched by ``RouteTemplates``
from the templates the app registered), never the raw path, and unknown
methods and paths fold into ``OTHER`` and ``<unmatched>``, so a scanner
cannot blow up the label space. ``render`` produces the Prometheus text for
``GET /metrics`` (with several ``llmops serve`` workers, prometheus_client's
multiprocess mode: the samples of every worker, summed). Input: ASGI requests. Output:
the registry's samples.
Caller: ``llmops.api.app.create_app``.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "<unmatched>"
CONTENT_TYPE = CONTENT_TYPE_LATEST
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""prometheus_client's multiprocess mode: each process writes its samples under this
folder (it must be set before prometheus_client is imported) and a scrape sums them."""


class ApiMetrics:
    """The API's collectors, on a registry of their own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        labels = ["method", "route", "status"]
        self.requests = Counter("llmops_api_requests_total",
                                "HTTP requests served, by method, route template and status.",
                                labels, registry=self.registry)
        self.latency = Histogram("llmops_api_request_duration_seconds",
                                 "Time to serve an HTTP request, by method, route template "
                                 "and status.", labels, buckets=LATENCY_BUCKETS,
                                 registry=self.registry)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        method = method.upper()
        labels = (method if method in KNOWN_METHODS else "OTHER", route, str(status))
        self.requests.labels(*labels).inc()
        self.latency.labels(*labels).observe(seconds)

    def render(self) -> bytes:
        """The Prometheus text exposition of every collector; in prometheus_client's
        multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set, as ``llmops serve`` does with
        several workers) the sum over every worker of the server, whichever one answers."""
        if os.environ.get(MULTIPROC_ENV):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)


class RouteTemplates:
    """Map a request path to the template of the route it addresses.

    Built once from the app's path templates, matched against the request's
    path (ignoring the method, so a 405 keeps its route), before or after
    routing: requests the guard refuses are labelled like the others.
    """

    def __init__(self, templates: Iterable[str]) -> None:
        self._patterns: list[tuple[re.Pattern[str], str]] = []
        for template in dict.fromkeys(templates):
            regex, path_format, _convertors = compile_path(template)
            self._patterns.append((regex, path_format))

    def match(self, scope: Scope) -> str:
        path = str(scope.get("path", ""))
        root = str(scope.get("root_path", ""))
        if root and path.startswith(root):
            path = path[len(root):] or "/"
        for regex, template in self._patterns:
            if regex.match(path):
                return template
        return UNMATCHED


class MetricsMiddleware:
    """Count and time every HTTP request by method, route template and status."""

    def __init__(self, app: ASGIApp, *, metrics: ApiMetrics,
                 templates: RouteTemplates) -> None:
        self.app = app
        self.metrics = metrics
        self.templates = templates

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except BaseException:
            status = 500
            raise
        finally:
            self.metrics.observe(scope.get("method", ""), self.templates.match(scope), status,
                                 time.perf_counter() - start)
