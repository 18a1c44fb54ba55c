"""The prompt router's ASGI app: OpenAI-compatible routes in front of one model server.

Input: a ``RouterConfig`` (upstream URL, mounted file paths, limits). Output:
a Starlette app serving ``POST /v1/chat/completions`` and ``/v1/completions``
(streaming or not), ``GET /v1/models``, ``/healthz`` and ``/metrics``. A
completion request is read (bounded), parsed, given a variant
(``choose.pick``, sticky by the table's header or cookie), rewritten by the
variant's template (``prompt.apply``), forwarded once (no retry) over a
bounded connection pool, and answered with the upstream's answer, streamed
chunk by chunk when it streams, tagged ``X-LLMOps-Variant``. Upstream
timeouts answer 504, other upstream failures and 5xx 502, each counted as an
error of the variant; a client that leaves cancels the upstream call. The
table is reloaded from the mounted files every ``reload_interval`` seconds.
Caller: ``llmops.cli.router_cmd`` (under uvicorn) and the tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from llmops.router import choose, exchange, prompt, upstream
from llmops.router.exchange import Disconnected, HttpError, Receive, Send
from llmops.router.metrics import RouterMetrics
from llmops.router.table import NO_VARIANT, RoutingTable, TablePaths, TableSource, Variant
from llmops.router.usage import UsageScanner, usage_of

log = logging.getLogger("llmops.router")

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"te",
        b"trailer",
        b"proxy-authorization",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"content-length",
        b"accept-encoding",
        b"cookie",
        b"content-type",
    }
)
PASS_BACK = ("content-type", "x-request-id", "openai-processing-ms")


@dataclass(frozen=True)
class RouterConfig:
    endpoint: str
    upstream: str
    environment: str = ""
    paths: TablePaths = field(default_factory=TablePaths)
    connect_timeout: float = 5.0
    read_timeout: float = 300.0
    max_body_bytes: int = 8 << 20
    max_concurrency: int = 512
    max_connections: int = 256
    reload_interval: float = 2.0
    merge_upstream_metrics: bool = False
    """Append the model server's ``/metrics`` to the router's (a sidecar: one scrape target
    per pod, as annotation-based discovery has, carries both)."""


UPSTREAM_METRICS_TIMEOUT = 2.0


@dataclass
class Routed:
    """One request's routing: the table it started with, its variant and metric labels."""

    table: RoutingTable
    variant: Variant | None
    labels: tuple[str, str, str, str]
    headers: dict[str, str]
    started: float


class Router:
    def __init__(self, config: RouterConfig) -> None:
        self.config = config
        self.source = TableSource(config.paths)
        self.metrics = RouterMetrics(config.endpoint, config.environment)
        self.active = 0
        self.client = upstream.Client(
            config.upstream,
            connect_timeout=config.connect_timeout,
            read_timeout=config.read_timeout,
            max_connections=config.max_connections,
        )
        self._publish()

    def _publish(self) -> None:
        table = self.source.current
        self.metrics.table(table.label, table.state or "")
        log.info(
            "routing table: experiment=%s state=%s variants=%s",
            table.label or "-",
            table.state or "-",
            {v.name: v.weight for v in table.variants},
        )

    def reload(self) -> None:
        outcome = self.source.refresh()
        if outcome is False:
            return
        if outcome is True:
            self.metrics.reloads.labels(self.config.environment, self.config.endpoint, "ok").inc()
            self._publish()
        else:
            self.metrics.reloads.labels(
                self.config.environment, self.config.endpoint, "error"
            ).inc()
            log.error("kept the previous routing table: %s", outcome)

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(self.config.reload_interval)
            self.reload()

    # ------------------------------------------------------------------ routing

    def route(self, scope: dict[str, Any]) -> Routed:
        table = self.source.current
        headers: dict[str, str] = {}
        key: str | None = None
        sticky = table.stickiness
        if sticky is not None and sticky.header:
            key = exchange.header(scope, sticky.header.lower().encode("latin-1"))
        elif sticky is not None and sticky.cookie:
            key = cookie(scope, sticky.cookie)
            if not key:
                key = secrets.token_urlsafe(16)
                headers["set-cookie"] = f"{sticky.cookie}={key}; Path=/; HttpOnly; SameSite=Lax"
        variant = choose.pick(table, key)
        name = variant.name if variant else NO_VARIANT
        headers["x-llmops-variant"] = name
        if table.experiment:
            headers["x-llmops-experiment"] = table.experiment
        return Routed(
            table, variant, self.metrics.labels(table.label, name), headers, time.perf_counter()
        )

    def upstream_headers(self, scope: dict[str, Any]) -> list[tuple[str, str]]:
        out = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in scope["headers"]
            if k not in HOP_BY_HOP
        ]
        return [*out, ("accept-encoding", "identity"), ("content-type", "application/json")]


def cookie(scope: dict[str, Any], name: str) -> str | None:
    raw = exchange.header(scope, b"cookie")
    if not raw:
        return None
    for part in raw.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name and value:
            return value
    return None


def parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise HttpError(400, f"request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise HttpError(400, "request body must be a JSON object")
    return body


class Completions:
    """``POST /v1/chat/completions`` or ``/v1/completions``: one proxied request."""

    def __init__(self, router: Router, path: str, *, chat: bool) -> None:
        self.router, self.path, self.chat = router, path, chat

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        router = self.router
        if scope["method"] != "POST":
            await exchange.send_error(send, HttpError(405, "use POST"), {"allow": "POST"})
            return
        if router.active >= router.config.max_concurrency:
            error = HttpError(503, "the router is at its concurrency limit", "server_error")
            await exchange.send_error(send, error, {})
            return
        router.active += 1
        router.metrics.in_flight.labels(router.config.environment, router.config.endpoint).inc()
        try:
            await self.handle(scope, receive, send)
        finally:
            router.active -= 1
            router.metrics.in_flight.labels(router.config.environment, router.config.endpoint).dec()

    async def handle(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        routed = self.router.route(scope)
        status = exchange.CLIENT_CLOSED
        watch: exchange.ClientWatch | None = None
        try:
            raw = await exchange.read_body(receive, scope, self.router.config.max_body_bytes)
            body = self.prepare(parse_body(raw), routed)
            watch = exchange.ClientWatch(receive)
            status = await self.forward(scope, watch, send, body, routed)
        except HttpError as error:
            status = error.status
            if error.reason:
                self.router.metrics.upstream_errors.labels(*routed.labels, error.reason).inc()
            with contextlib.suppress(OSError):
                await exchange.send_error(send, error, routed.headers)
        except Disconnected:
            status = exchange.CLIENT_CLOSED
        finally:
            if watch is not None:
                watch.stop()
            self.router.metrics.finished(
                routed.labels, status, time.perf_counter() - routed.started
            )

    def prepare(self, body: dict[str, Any], routed: Routed) -> dict[str, Any]:
        template = routed.variant.template if routed.variant else None
        try:
            return prompt.apply(body, template, chat=self.chat)
        except prompt.PromptError as exc:
            raise HttpError(400, str(exc), param=exc.field) from exc

    async def forward(
        self,
        scope: dict[str, Any],
        watch: exchange.ClientWatch,
        send: Send,
        body: dict[str, Any],
        routed: Routed,
    ) -> int:
        headers = self.router.upstream_headers(scope)
        answer = await watch.race(
            self.router.client.request("POST", self.path, headers, orjson.dumps(body))
        )
        if answer.status >= 500:
            answer.close()
            raise HttpError(
                502, f"the model server answered {answer.status}", "upstream_error", reason="5xx"
            )
        back = {**routed.headers, **{k: v for k in PASS_BACK if (v := answer.header(k))}}
        if body.get("stream") is True and answer.status == 200:
            return await self.stream(watch, send, answer, back, routed)
        return await self.whole(watch, send, answer, back, routed)

    async def whole(
        self,
        watch: exchange.ClientWatch,
        send: Send,
        answer: upstream.Answer,
        headers: dict[str, str],
        routed: Routed,
    ) -> int:
        try:
            content = await watch.race(answer.read())
        finally:
            answer.close()
        if answer.status == 200:
            counted = usage_of(content)
            if counted is not None:
                self.router.metrics.usage(routed.labels, *counted)
        await exchange.send_body(send, answer.status, content, headers)
        return answer.status

    async def stream(
        self,
        watch: exchange.ClientWatch,
        send: Send,
        answer: upstream.Answer,
        headers: dict[str, str],
        routed: Routed,
    ) -> int:
        metrics = self.router.metrics

        def first_token() -> None:
            metrics.ttft.labels(*routed.labels).observe(time.perf_counter() - routed.started)

        scanner = UsageScanner(first_token)
        headers["cache-control"] = "no-cache"
        finished = await exchange.relay_stream(watch, send, answer, headers, scanner.feed)
        if scanner.usage is not None:
            metrics.usage(routed.labels, *scanner.usage)
        return answer.status if finished else exchange.CLIENT_CLOSED



async def _upstream_metrics(router: Router) -> bytes:
    """The model server's ``/metrics`` text (vLLM's queue for the autoscaler), or nothing
    when it does not answer 200 within ``UPSTREAM_METRICS_TIMEOUT``."""
    try:
        answer = await asyncio.wait_for(router.client.request("GET", "/metrics", []),
                                        UPSTREAM_METRICS_TIMEOUT)
        try:
            text = await asyncio.wait_for(answer.read(), UPSTREAM_METRICS_TIMEOUT)
        finally:
            answer.close()
    except (HttpError, TimeoutError):
        return b""
    if answer.status != 200:
        return b""
    return text if text.endswith(b"\n") or not text else text + b"\n"


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    """Open the upstream client and the reload loop for the app's life."""
    router = _router(app)
    router.client.open()
    watcher = asyncio.create_task(router.watch())
    try:
        yield
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await router.client.close()


def _router(app: Any) -> Router:
    found: Router = app.state.router
    return found


async def _healthz(request: Request) -> Response:
    router = _router(request.app)
    table = router.source.current
    return JSONResponse(
        {
            "status": "ok",
            "endpoint": router.config.endpoint,
            "experiment": table.experiment,
            "state": table.state,
            "variants": {v.name: v.weight for v in table.variants},
        }
    )


async def _metrics(request: Request) -> Response:
    router = _router(request.app)
    body = router.metrics.exposition()
    if router.config.merge_upstream_metrics:
        body += await _upstream_metrics(router)
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")


async def _models(request: Request) -> Response:
    """The model server's ``/v1/models``, passed through (a 5xx is a 502)."""
    router = _router(request.app)
    headers = [(k, v) for k, v in request.headers.items() if k.encode() not in HOP_BY_HOP]
    try:
        answer = await router.client.request("GET", "/v1/models", headers)
        try:
            content = await answer.read()
        finally:
            answer.close()
    except HttpError as error:
        return Response(error.body(), status_code=error.status, media_type="application/json")
    return Response(
        content,
        status_code=502 if answer.status >= 500 else answer.status,
        media_type=answer.header("content-type") or "application/json",
    )


def create_app(config: RouterConfig) -> Starlette:
    """The router app; its lifespan opens the upstream client and the reload loop."""
    router = Router(config)
    routes = [
        Route("/v1/chat/completions", Completions(router, "/v1/chat/completions", chat=True)),
        Route("/v1/completions", Completions(router, "/v1/completions", chat=False)),
        Route("/v1/models", _models, methods=["GET"]),
        Route("/healthz", _healthz, methods=["GET"]),
        Route("/metrics", _metrics, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=_lifespan)
    app.state.router = router
    return app
