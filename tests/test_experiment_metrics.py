"""Per-variant experiment metrics from Prometheus samples, and the significance tests.

A recorded reader stands in for Prometheus' HTTP API (the real one is in
``test_router_prometheus``): it answers the two instant queries (window end
and start) with the series the router exports.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from conftest import failed, ok
from llmops.api.app import create_app
from llmops.api.auth import proxy_signature
from llmops.engine import errors, settings
from llmops.engine.service import experiments, significance
from llmops.engine.spec import validate
from llmops.engine.store import Store, catalog

TEMPLATE = Path(__file__).resolve().parents[1] / "specs_repo_template"
SECRET = "experiment-metrics-test-secret"
UNTIL = datetime(2026, 1, 1, 12, tzinfo=UTC)
BASE = {"environment": "prod", "endpoint": "chat", "experiment": "ab"}


def _series(name: str, variant: str, value: float, **extra: str) -> experiments.Sample:
    return ({"__name__": name, **BASE, "variant": variant, "instance": "pod-1", **extra}, value)


def _latency(variant: str, buckets: dict[str, float], total: float) -> list[experiments.Sample]:
    name = "llmops_router_request_duration_seconds"
    out = [_series(f"{name}_bucket", variant, v, le=le) for le, v in buckets.items()]
    count = buckets["+Inf"]
    return [*out, _series(f"{name}_sum", variant, total), _series(f"{name}_count", variant, count)]


class Recorded:
    def __init__(self, end: list[experiments.Sample], start: list[experiments.Sample]) -> None:
        self.end, self.start, self.queries = end, start, []  # type: ignore[var-annotated]

    def instant(self, query: str, at: datetime) -> list[experiments.Sample]:
        self.queries.append((query, at))
        return self.end if at == UNTIL else self.start


def test_counts_are_increases_over_the_window_and_a_restart_counts_from_zero() -> None:
    end = [
        _series("llmops_router_requests_total", "a", 150, code="200"),
        _series("llmops_router_requests_total", "a", 10, code="502"),
        _series("llmops_router_requests_total", "b", 40, code="200"),  # restarted: was 90
        _series("llmops_router_tokens_total", "a", 1000, type="prompt"),
    ]
    start = [
        _series("llmops_router_requests_total", "a", 50, code="200"),
        _series("llmops_router_requests_total", "b", 90, code="200"),
        _series("llmops_router_tokens_total", "a", 400, type="prompt"),
    ]
    reader = Recorded(end, start)
    found = experiments.experiment_metrics(
        reader, **BASE, variants=["a", "b"], metric="error_rate", window="1h", until=UNTIL
    )
    a, b = found.variants
    assert (a.requests, a.by_code, a.errors, a.prompt_tokens) == (
        110,
        {"200": 100, "502": 10},
        10,
        600,
    )
    assert b.requests == 40
    assert a.error_rate == pytest.approx(10 / 110)
    assert [at for _, at in reader.queries] == [UNTIL, UNTIL - timedelta(hours=1)]
    assert 'experiment="ab"' in reader.queries[0][0]
    [comparison] = found.comparisons
    assert comparison.test == "two-proportion-z"
    assert comparison.variant == "b" and comparison.control == "a"  # noqa: PT018


def test_latency_quantiles_interpolate_within_buckets_like_promql() -> None:
    buckets = {"0.1": 50.0, "0.25": 90.0, "0.5": 100.0, "+Inf": 100.0}
    reader = Recorded(_latency("a", buckets, 12.0) + _latency("b", buckets, 12.0), [])
    found = experiments.experiment_metrics(
        reader, **BASE, variants=["a", "b"], metric="latency_ms", window="30m", until=UNTIL
    )
    a = found.variants[0].latency_ms
    assert a.count == 100
    assert a.mean == pytest.approx(120.0)
    assert a.p50 == pytest.approx(100.0)  # rank 50 ends the first bucket
    assert a.p90 == pytest.approx(250.0)
    assert a.p99 == pytest.approx(250 + 250 * 0.9)
    [same] = found.comparisons
    assert same.test == "welch-t"
    assert same.significant is False
    assert same.samples_needed is None  # no difference to detect


def test_an_unmeasured_metric_is_said_so() -> None:
    found = experiments.experiment_metrics(
        Recorded([], []), **BASE, variants=["a", "b"], metric="thumbs_up", window="1d", until=UNTIL
    )
    assert found.comparisons == []
    assert found.note is not None
    assert "does not measure 'thumbs_up'" in found.note
    assert [v.requests for v in found.variants] == [0, 0]


@pytest.mark.parametrize("window", ["0h", "91d", "1w", "h", "10", "000000000000000", "024h",
                                    "\u0661h", "2161h", "100000m"])
def test_a_bad_window_is_refused(window: str) -> None:
    """Refused exactly when the pattern the experiment read publishes refuses it (a
    string of zeros was 1-5 digits of nothing: a 422 for a schema-valid window)."""
    with pytest.raises(errors.InvalidInput, match="window"):
        experiments.parse_window(window)
    assert re.fullmatch(experiments.WINDOW_PATTERN, window) is None


def test_welch_and_z_tests_match_published_values() -> None:
    # Student's t: |t| = 2.228 with 10 degrees of freedom is the two-sided 5% point.
    assert significance.t_two_sided(2.228, 10) == pytest.approx(0.05, abs=1e-4)
    assert significance.t_two_sided(2.0, 10) == pytest.approx(0.0734, abs=1e-4)
    assert significance.t_two_sided(12.706, 1) == pytest.approx(0.05, abs=1e-4)
    z = significance.two_proportions("b", "a", (70, 50), (1000, 1000))
    assert z.statistic == pytest.approx(1.8831, abs=1e-4)
    assert z.p_value == pytest.approx(0.0597, abs=1e-4)
    assert z.significant is False
    # 80% power at 5% for 5% vs 7%: 2,210 per variant, 1,210 more than the 1,000 there.
    assert (z.samples_needed, z.additional_samples) == (2210, 1210)
    t = significance.welch("b", "a", (30, 30), (10.0, 12.0), (4.0, 9.0))
    assert t.statistic == pytest.approx(-3.0382, abs=1e-4)
    assert t.significant is True


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_api_says_why_metrics_are_missing_and_refuses_a_bad_window(store: Store) -> None:
    assert catalog.record(store, "c" * 40, validate.load_and_validate(TEMPLATE))
    cfg = settings.load(
        api={"trusted_proxies": ["127.0.0.1"], "proxy_secret": SECRET},
        prometheus={"url": "http://127.0.0.1:1", "timeout": 1},
    )
    headers = {
        "X-User-Id": "vera",
        "X-User-Roles": "viewer",
        "X-Proxy-Signature": proxy_signature("vera", "viewer", SECRET),
    }
    client = TestClient(
        create_app(store, settings=cfg), client=("127.0.0.1", 40000), headers=headers
    )
    url = "/llm-ops/v1/prompts/experiments/support-greeting-v2-vs-v3"
    data = ok(client.get(url, params={"environment": "prod"}))
    assert data["metrics"] is None
    assert "Prometheus at http://127.0.0.1:1 did not answer" in data["metricsError"]
    assert data["variants"][0]["weight"] == 80  # the spec's side is still there
    bad = failed(client.get(url, params={"environment": "prod", "window": "2w"}), 422)
    assert "window must look like" in bad["message"]
    costs = ok(client.get("/llm-ops/v1/costs", params={"window": "1h"}))
    assert (costs["promptTokens"], costs["completionTokens"]) == (0, 0)
    assert "did not answer" in costs["tokensError"]
