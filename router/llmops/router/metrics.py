"""The router's Prometheus series, per endpoint, experiment and variant.

Input: what ``llmops.router.proxy`` observes about each request. Output: the
text exposition served on ``/metrics`` (its own registry, so two routers in
one process never share counters). Series (labels ``environment``, ``endpoint``,
``experiment`` ("" without one), ``variant`` (the template, or ``none``)):

- ``llmops_router_requests_total{code}``: finished requests by HTTP status
  (``499`` when the client went away first);
- ``llmops_router_upstream_errors_total{reason}``: ``timeout``, ``connect``,
  ``5xx``, ``protocol`` (each also answered 502/504);
- ``llmops_router_request_duration_seconds``: histogram, request in to last
  byte out; ``llmops_router_time_to_first_token_seconds``: histogram, streaming
  only, request in to the first chunk with a choice;
- ``llmops_router_tokens_total{type}`` (``prompt``/``completion``), from the
  upstream's ``usage``, and ``llmops_router_request_tokens{type}``, the same
  per request as a histogram (for per-variant means and tests);
- ``llmops_router_in_flight``, ``llmops_router_config_reloads_total{result}``,
  ``llmops_router_table_info{state}`` (the experiment in force).

These names are a contract: ``llmops.engine.service.experiments`` queries
them, and ``deploy/monitoring`` (dashboards and alert rules) uses them.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
)
TOKEN_BUCKETS = (1, 4, 16, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)
LABELS = ("environment", "endpoint", "experiment", "variant")


class RouterMetrics:
    """Every series of one router, in its own registry."""

    def __init__(self, endpoint: str, environment: str = "") -> None:
        self.endpoint, self.environment = endpoint, environment
        self.registry = CollectorRegistry(auto_describe=True)
        self._request_series()
        self._token_series()
        self._state_series()

    def _request_series(self) -> None:
        """Per request: its status, upstream failures, its duration and time to first token."""
        reg = self.registry
        self.requests = Counter(
            "llmops_router_requests_total",
            "Finished requests by HTTP status.",
            [*LABELS, "code"],
            registry=reg,
        )
        self.upstream_errors = Counter(
            "llmops_router_upstream_errors_total",
            "Upstream failures answered 502/504, by reason.",
            [*LABELS, "reason"],
            registry=reg,
        )
        self.duration = Histogram(
            "llmops_router_request_duration_seconds",
            "Request in to last byte out.",
            LABELS,
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.ttft = Histogram(
            "llmops_router_time_to_first_token_seconds",
            "Streaming: request in to the first chunk with a choice.",
            LABELS,
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )

    def _token_series(self) -> None:
        """Tokens from the upstream's usage: totals, and per request."""
        self.tokens = Counter(
            "llmops_router_tokens_total",
            "Tokens from the upstream's usage.",
            [*LABELS, "type"],
            registry=self.registry,
        )
        self.request_tokens = Histogram(
            "llmops_router_request_tokens",
            "Tokens per request from the upstream's usage.",
            [*LABELS, "type"],
            buckets=TOKEN_BUCKETS,
            registry=self.registry,
        )

    def _state_series(self) -> None:
        """The router's own state: requests in flight, reloads, the table in force."""
        reg = self.registry
        self.in_flight = Gauge(
            "llmops_router_in_flight",
            "Requests being served.",
            ["environment", "endpoint"],
            registry=reg,
        )
        self.reloads = Counter(
            "llmops_router_config_reloads_total",
            "Reloads of the mounted prompt and experiment files.",
            ["environment", "endpoint", "result"],
            registry=reg,
        )
        self.table_info = Gauge(
            "llmops_router_table_info",
            "1 for the experiment (and state) in force.",
            ["environment", "endpoint", "experiment", "state"],
            registry=reg,
        )

    def labels(self, experiment: str, variant: str) -> tuple[str, str, str, str]:
        return (self.environment, self.endpoint, experiment, variant)

    def finished(self, labels: tuple[str, str, str, str], code: int, seconds: float) -> None:
        self.requests.labels(*labels, str(code)).inc()
        self.duration.labels(*labels).observe(seconds)

    def usage(self, labels: tuple[str, str, str, str], prompt: int, completion: int) -> None:
        for kind, count in (("prompt", prompt), ("completion", completion)):
            self.tokens.labels(*labels, kind).inc(count)
            self.request_tokens.labels(*labels, kind).observe(count)

    def table(self, experiment: str, state: str) -> None:
        self.table_info.clear()
        self.table_info.labels(self.environment, self.endpoint, experiment, state).set(1)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
