"""Per-variant metrics of a prompt experiment, and tokens per endpoint, from Prometheus.

Input: a ``Prometheus`` reader (its HTTP API, ``/api/v1/query``), the
experiment's identity (environment, endpoint, experiment name, variants),
its ``metric`` and a window. Output: ``ExperimentMetrics``: per variant the
requests by status, errors, latency and time-to-first-token quantiles (from
the router's histograms, as ``histogram_quantile`` interpolates), prompt and
completion tokens, and a ``significance.Comparison`` of every variant with
the first (the control) for the chosen metric. ``token_usage`` gives the
token side of ``GET /costs``: prompt and completion tokens per environment
and endpoint over a window.

How a window is counted: every router series is read at both ends of the
window (two instant queries), and each series' increase is its value at the
end minus its value at the start (a series born inside the window starts
from 0; a lower value at the end means its router restarted, and the end
value is the increase). Unlike PromQL's ``increase()`` this never
extrapolates, so the counts are the requests that were served. The series
are those of ``llmops.router.metrics`` (names and labels are the contract).
Caller: the API's ``GET /prompts/experiments/{id}`` and ``GET /costs``.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

import httpx

from llmops.engine import errors, netguard
from llmops.engine.service import significance
from llmops.engine.service.significance import Comparison

WINDOW_PATTERN = (r"^(?:[1-9][0-9]{0,4}m"
                  r"|(?:[1-9][0-9]{0,2}|1[0-9]{3}|20[0-9]{2}|21[0-5][0-9]|2160)h"
                  r"|(?:[1-9]|[1-8][0-9]|90)d)$")
"""Exactly the windows ``parse_window`` takes (1m-99999m, 1h-2160h, 1d-90d; ASCII digits,
no leading zero), for an API to publish as its parameter's ``pattern``."""
WINDOW_RE = re.compile(WINDOW_PATTERN)
MAX_WINDOW = timedelta(days=90)
SERIES = (
    "llmops_router_requests_total|llmops_router_request_duration_seconds_(bucket|sum|count)"
    "|llmops_router_time_to_first_token_seconds_(bucket|sum|count)"
    "|llmops_router_tokens_total|llmops_router_request_tokens_(bucket|sum|count)"
)
QUANTILES = (0.5, 0.9, 0.99)

Labels = dict[str, str]
Sample = tuple[Labels, float]


class Prometheus(Protocol):
    def instant(self, query: str, at: datetime) -> list[Sample]:
        """The instant vector of ``query`` evaluated at ``at``."""


class PrometheusHttp:
    """Prometheus' HTTP API with a timeout on every call; failures are ``Unavailable``."""

    def __init__(self, url: str, timeout: float) -> None:
        self.url, self.timeout = url.rstrip("/"), timeout

    def instant(self, query: str, at: datetime) -> list[Sample]:
        try:
            with httpx.Client(transport=netguard.transport(), timeout=self.timeout) as http:
                answer = http.get(f"{self.url}/api/v1/query",
                                  params={"query": query, "time": f"{at.timestamp():.3f}"})
            doc = answer.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise errors.Unavailable(
                f"Prometheus at {self.url} did not answer: {type(exc).__name__}"
            ) from exc
        if answer.status_code != 200 or doc.get("status") != "success":
            raise errors.Unavailable(
                f"Prometheus at {self.url} refused the query: "
                f"{str(doc.get('error', answer.status_code))[:200]}"
            )
        data = doc.get("data", {})
        if data.get("resultType") != "vector":
            raise errors.Unavailable(
                f"Prometheus at {self.url} answered a {data.get('resultType')}, not a vector"
            )
        return [(dict(item["metric"]), float(item["value"][1])) for item in data["result"]]


def parse_window(window: str) -> timedelta:
    """``30m`` / ``24h`` / ``7d`` as a duration; ``InvalidInput`` otherwise or over 90 days."""
    if WINDOW_RE.fullmatch(window) is None:
        raise errors.InvalidInput(f"window must look like 30m, 24h or 7d (more than 0, at "
                                  f"most 90d), not {window[:32]!r}")
    amount, unit = int(window[:-1]), window[-1]
    return timedelta(**{{"m": "minutes", "h": "hours", "d": "days"}[unit]: amount})


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def increases(
    reader: Prometheus,
    matchers: dict[str, str],
    until: datetime,
    window: timedelta,
    series: str = SERIES,
) -> list[Sample]:
    """Every router series matching ``matchers``, with its increase over the window."""
    selector = ",".join(
        [f'__name__=~"{series}"', *(f"{k}={_quote(v)}" for k, v in sorted(matchers.items()))]
    )
    query = "{" + selector + "}"
    end = reader.instant(query, until)
    start = {_key(labels): value for labels, value in reader.instant(query, until - window)}
    out: list[Sample] = []
    for labels, value in end:
        before = start.get(_key(labels), 0.0)
        out.append((labels, value - before if value >= before else value))
    return out


def _key(labels: Labels) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


@dataclass(frozen=True)
class Distribution:
    """A histogram over the window: count, mean and quantiles (in the metric's unit)."""

    count: int
    mean: float | None
    p50: float | None
    p90: float | None
    p99: float | None
    variance: float | None = field(default=None, repr=False)


@dataclass
class _Histogram:
    buckets: dict[float, float] = field(default_factory=dict)
    total: float = 0.0
    count: float = 0.0

    def add(self, name: str, labels: Labels, value: float) -> None:
        if name.endswith("_bucket"):
            le = float(labels.get("le", "+Inf"))
            self.buckets[le] = self.buckets.get(le, 0.0) + value
        elif name.endswith("_sum"):
            self.total += value
        elif name.endswith("_count"):
            self.count += value

    def quantile(self, q: float) -> float | None:
        """As PromQL's ``histogram_quantile``: linear within the bucket holding the rank."""
        bounds = sorted(self.buckets)
        if not bounds or self.buckets[bounds[-1]] <= 0:
            return None
        rank, lower, below = q * self.buckets[bounds[-1]], 0.0, 0.0
        for upper in bounds:
            cumulative = self.buckets[upper]
            if cumulative >= rank:
                if math.isinf(upper):
                    return lower
                inside = cumulative - below
                return lower + (upper - lower) * ((rank - below) / inside if inside else 1.0)
            lower, below = upper, cumulative
        return lower

    def variance(self, mean: float) -> float | None:
        """Estimated from bucket midpoints (the +Inf bucket at its lower bound)."""
        n = self.buckets.get(math.inf, self.count)
        if n < 2:
            return None
        lower, below, squares = 0.0, 0.0, 0.0
        for upper in sorted(self.buckets):
            inside = self.buckets[upper] - below
            middle = lower if math.isinf(upper) else (lower + upper) / 2
            squares += inside * (middle - mean) ** 2
            lower, below = (lower if math.isinf(upper) else upper), self.buckets[upper]
        return squares / (n - 1)

    def summary(self, scale: float) -> Distribution:
        count = round(self.count)
        if count <= 0:
            return Distribution(0, None, None, None, None)
        mean = self.total / self.count
        p50, p90, p99 = (self.quantile(q) for q in QUANTILES)
        variance = self.variance(mean)
        return Distribution(
            count,
            mean * scale,
            _scaled(p50, scale),
            _scaled(p90, scale),
            _scaled(p99, scale),
            variance=None if variance is None else variance * scale * scale,
        )


def _scaled(value: float | None, scale: float) -> float | None:
    return None if value is None else value * scale


@dataclass(frozen=True)
class VariantMetrics:
    variant: str
    requests: int
    by_code: dict[str, int]
    errors: int
    """Answers 5xx (upstream failures 502/504 included)."""
    error_rate: float | None
    latency_ms: Distribution
    time_to_first_token_ms: Distribution
    prompt_tokens: int
    completion_tokens: int
    prompt_tokens_per_request: Distribution
    completion_tokens_per_request: Distribution


@dataclass(frozen=True)
class ExperimentMetrics:
    window: str
    since: datetime
    until: datetime
    metric: str
    control: str | None
    variants: list[VariantMetrics]
    comparisons: list[Comparison]
    note: str | None = None


@dataclass
class _Variant:
    by_code: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    tokens: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    histograms: dict[str, _Histogram] = field(default_factory=lambda: defaultdict(_Histogram))

    def add(self, labels: Labels, value: float) -> None:
        name = labels.get("__name__", "")
        if name == "llmops_router_requests_total":
            self.by_code[labels.get("code", "")] += value
        elif name == "llmops_router_tokens_total":
            self.tokens[labels.get("type", "")] += value
        elif name.startswith("llmops_router_request_duration_seconds"):
            self.histograms["latency"].add(name, labels, value)
        elif name.startswith("llmops_router_time_to_first_token_seconds"):
            self.histograms["ttft"].add(name, labels, value)
        elif name.startswith("llmops_router_request_tokens"):
            self.histograms[f"tokens:{labels.get('type', '')}"].add(name, labels, value)

    def summary(self, name: str) -> VariantMetrics:
        codes = {code: round(n) for code, n in sorted(self.by_code.items()) if round(n) > 0}
        total = sum(codes.values())
        failed = sum(n for code, n in codes.items() if code.startswith("5"))
        return VariantMetrics(
            variant=name,
            requests=total,
            by_code=codes,
            errors=failed,
            error_rate=failed / total if total else None,
            latency_ms=self.histograms["latency"].summary(1000.0),
            time_to_first_token_ms=self.histograms["ttft"].summary(1000.0),
            prompt_tokens=round(self.tokens["prompt"]),
            completion_tokens=round(self.tokens["completion"]),
            prompt_tokens_per_request=self.histograms["tokens:prompt"].summary(1.0),
            completion_tokens_per_request=self.histograms["tokens:completion"].summary(1.0),
        )


MEANS = {
    "latency_ms": "latency_ms",
    "latency": "latency_ms",
    "latency_seconds": "latency_ms",
    "ttft_ms": "time_to_first_token_ms",
    "time_to_first_token_ms": "time_to_first_token_ms",
    "prompt_tokens": "prompt_tokens_per_request",
    "completion_tokens": "completion_tokens_per_request",
}
RATES = frozenset({"error_rate", "success_rate"})


def compare(metric: str, variants: list[VariantMetrics]) -> tuple[list[Comparison], str | None]:
    """Every variant against the first one, by the test that fits ``metric``."""
    if len(variants) < 2:
        return [], "fewer than two variants"
    control, rest = variants[0], variants[1:]
    if metric in RATES:
        return [
            significance.two_proportions(
                v.variant,
                control.variant,
                (v.errors, control.errors),
                (v.requests, control.requests),
            )
            for v in rest
        ], None
    attribute = MEANS.get(metric)
    if attribute is None:
        known = ", ".join(sorted([*MEANS, *RATES]))
        return [], f"the router does not measure {metric!r}; it measures {known}"
    out = []
    for v in rest:
        a, b = getattr(v, attribute), getattr(control, attribute)
        out.append(
            significance.welch(
                v.variant,
                control.variant,
                (a.count, b.count),
                (a.mean or 0.0, b.mean or 0.0),
                (a.variance or 0.0, b.variance or 0.0),
            )
        )
    return out, None


def experiment_metrics(
    reader: Prometheus,
    *,
    environment: str,
    endpoint: str,
    experiment: str,
    variants: Iterable[str],
    metric: str,
    window: str,
    until: datetime,
) -> ExperimentMetrics:
    """Per-variant metrics and significance of one experiment over ``window`` up to ``until``."""
    span = parse_window(window)
    matchers = {"environment": environment, "endpoint": endpoint, "experiment": experiment}
    seen: dict[str, _Variant] = defaultdict(_Variant)
    for labels, value in increases(reader, matchers, until, span):
        seen[labels.get("variant", "")].add(labels, value)
    names = list(variants)
    names += sorted(set(seen) - set(names))
    summaries = [seen[name].summary(name) for name in names]
    comparisons, note = compare(metric, summaries)
    return ExperimentMetrics(
        window=window,
        since=until - span,
        until=until,
        metric=metric,
        control=names[0] if names else None,
        variants=summaries,
        comparisons=comparisons,
        note=note,
    )


@dataclass(frozen=True)
class TokenUsage:
    environment: str
    endpoint: str
    prompt_tokens: int
    completion_tokens: int


def token_usage(reader: Prometheus, *, until: datetime, window: timedelta) -> list[TokenUsage]:
    """The token side of costs: prompt and completion tokens per environment and endpoint."""
    totals: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for labels, value in increases(reader, {}, until, window, "llmops_router_tokens_total"):
        if labels.get("__name__") == "llmops_router_tokens_total":
            key = (labels.get("environment", ""), labels.get("endpoint", ""))
            totals[key][labels.get("type", "")] += value
    return [
        TokenUsage(env, name, round(t["prompt"]), round(t["completion"]))
        for (env, name), t in sorted(totals.items())
    ]
