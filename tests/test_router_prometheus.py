"""A real Prometheus scrapes ``llmops router``; the API reports what the test sent, per variant.

Prometheus is Debian's package (``.ci/bootstrap`` installs it), run on
loopback with a 1 s scrape interval against the router, which fronts the
fake model server. The test sends a known number of requests to each
variant of the template's prod experiment (sticky keys chosen with the
router's own hash), slow ones to one variant, then reads
``GET /prompts/experiments/{id}`` with ``LLMOPS_PROMETHEUS__URL`` set and
``token_usage`` (the token side of ``GET /costs``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from router_support import ConfigMapDir, experiment, prometheus_server, router, upstream

from conftest import ok
from llmops.api.app import create_app
from llmops.api.auth import proxy_signature
from llmops.engine import settings
from llmops.engine.service import experiments
from llmops.engine.spec import validate
from llmops.engine.store import Store, catalog
from llmops.router import choose, table

pytestmark = pytest.mark.slow

BASE = "/llm-ops/v1"
TEMPLATE = Path(__file__).resolve().parents[1] / "specs_repo_template"
SECRET = "router-prometheus-test-secret"
NAME = "support-greeting-v2-vs-v3"
CONTROL, CANDIDATE = "support-greeting-v2", "support-greeting-v3"
PER_VARIANT = 30


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    with prometheus_server(tmp_path) as running:
        yield running


def _keys_by_variant(weights: dict[str, int]) -> dict[str, list[str]]:
    """Session keys the router sends to each variant (its own stable hash)."""
    variants = tuple(table.Variant(table.Template(n, "1", "t", ()), w) for n, w in weights.items())
    routing = table.RoutingTable(experiment=NAME, state="running", variants=variants)
    out: dict[str, list[str]] = {n: [] for n in weights}
    i = 0
    while min(len(keys) for keys in out.values()) < PER_VARIANT:
        chosen = choose.pick(routing, f"s{i}")
        assert chosen is not None
        if len(out[chosen.name]) < PER_VARIANT:
            out[chosen.name].append(f"s{i}")
        i += 1
    return out


def _scraped(prom: str, query: str, want: float) -> None:
    deadline = time.monotonic() + 30
    while True:
        result = httpx.get(f"{prom}/api/v1/query", params={"query": query}).json()["data"]
        got = float(result["result"][0]["value"][1]) if result["result"] else -1.0
        if got == want:
            return
        assert time.monotonic() < deadline, f"{query} = {got}, want {want}"
        time.sleep(0.2)


def _api(store: Store, prom: str) -> TestClient:
    assert catalog.record(store, "c" * 40, validate.load_and_validate(TEMPLATE))
    api = {"trusted_proxies": ["127.0.0.1"], "proxy_secret": SECRET}
    cfg = settings.load(api=api, prometheus={"url": prom, "timeout": 5})
    headers = {
        "X-User-Id": "vera",
        "X-User-Roles": "viewer",
        "X-Proxy-Signature": proxy_signature("vera", "viewer", SECRET),
    }
    return TestClient(create_app(store, settings=cfg), client=("127.0.0.1", 40000), headers=headers)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_experiment_read_reports_what_each_variant_served(
    store: Store, prometheus: tuple[str, Path], tmp_path: Path
) -> None:
    prom, targets = prometheus
    weights = {CONTROL: 50, CANDIDATE: 50}
    table_json = experiment(weights, stickiness={"header": "X-Session-Id"}).replace(
        '"greeting-test"', f'"{NAME}"'
    )
    folder = ConfigMapDir(tmp_path / "experiment", {"experiment.json": table_json})
    keys = _keys_by_variant(weights)
    with (
        upstream() as fake,
        router(
            fake, "--experiment-file", folder.root / "experiment.json", "--environment", "prod"
        ) as base,
    ):
        targets.write_text(f'[{{"targets": ["{base.removeprefix("http://")}"]}}]', encoding="utf-8")
        _scraped(prom, 'up{job="llmops-router"}', 1.0)
        with httpx.Client(timeout=10) as client:
            for name, latency in ((CONTROL, "0"), (CANDIDATE, "0.3")):
                for key in keys[name]:
                    answer = client.post(
                        f"{base}/v1/chat/completions",
                        json={
                            "model": "fake",
                            "messages": [{"role": "user", "content": "hi there"}],
                            "variables": {"product": "Acme"},
                        },
                        headers={"X-Session-Id": key, "x-fake-latency": latency},
                    )
                    assert answer.headers["x-llmops-variant"] == name
        _scraped(prom, "sum(llmops_router_requests_total)", 2.0 * PER_VARIANT)
        client_api = _api(store, prom)
        data: dict[str, Any] = ok(
            client_api.get(
                f"{BASE}/prompts/experiments/{NAME}",
                params={"environment": "prod", "window": "10m"},
            )
        )
        costs: dict[str, Any] = ok(client_api.get(f"{BASE}/costs", params={"window": "1h"}))
        usage = experiments.token_usage(
            experiments.PrometheusHttp(prom, 5),
            until=datetime.now(UTC),
            window=timedelta(minutes=10),
        )
    metrics = data["metrics"]
    assert data["metricsError"] is None
    by_name = {v["variant"]: v for v in metrics["variants"]}
    assert list(by_name) == [CONTROL, CANDIDATE]
    for name in (CONTROL, CANDIDATE):
        row = by_name[name]
        assert row["requests"] == PER_VARIANT
        assert row["byCode"] == {"200": PER_VARIANT}
        assert row["errors"] == 0
        # "You are <variant> for Acme." (5 words) + "hi there" (2); four canned words back.
        assert row["promptTokens"] == 7 * PER_VARIANT
        assert row["completionTokens"] == 4 * PER_VARIANT
        assert row["latencyMs"]["count"] == PER_VARIANT
    assert by_name[CONTROL]["latencyMs"]["p50"] < 100
    assert 250 <= by_name[CANDIDATE]["latencyMs"]["p50"] <= 500
    assert by_name[CANDIDATE]["latencyMs"]["mean"] >= 300
    [comparison] = metrics["comparisons"]
    assert comparison["test"] == "welch-t"
    assert comparison["control"] == CONTROL
    assert comparison["significant"] is True
    assert comparison["difference"] > 250
    assert comparison["additionalSamples"] == 0
    assert [(u.environment, u.endpoint, u.prompt_tokens, u.completion_tokens) for u in usage] == [
        ("prod", "support-chat", 14 * PER_VARIANT, 8 * PER_VARIANT)
    ]
    [endpoint] = [e for e in costs["byEndpoint"] if e["endpoint"] == "support-chat"]
    assert (endpoint["environment"], endpoint["promptTokens"], endpoint["completionTokens"]) == (
        "prod", 14 * PER_VARIANT, 8 * PER_VARIANT)
    assert (costs["promptTokens"], costs["completionTokens"]) == (14 * PER_VARIANT,
                                                                   8 * PER_VARIANT)
    assert costs["tokensError"] is None
