"""The serving dashboard and alert rules: real metric names, valid PromQL, alerts that fire.

``promtool test rules`` (Debian's prometheus package, installed by
``.ci/bootstrap``) runs the unit tests in ``tests/data/promtool/`` against
the rules' ``spec``; every dashboard query is parsed by a real Prometheus.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from router_support import prometheus_server

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy/prometheus/llmops-serving-rules.yaml"
DASHBOARD = ROOT / "deploy/grafana/llmops-serving-dashboard.json"
PROMTOOL_TESTS = Path(__file__).parent / "data/promtool"
SOURCES = (
    ROOT / "router/llmops/router/metrics.py",
    ROOT / "engine/llmops/engine/run/metrics.py",
)
EXTERNAL = re.compile(r"^(vllm:[a-z_:]+|DCGM_FI_[A-Z_]+)$")
"""Metrics of the model server (vLLM) and the NVIDIA DCGM exporter the dashboard also shows."""


def _exported() -> set[str]:
    names: set[str] = set()
    for source in SOURCES:
        names |= set(re.findall(r'"(llmops_[a-z_]+)"', source.read_text(encoding="utf-8")))
    return names | {n + s for n in names for s in ("_bucket", "_sum", "_count")}


def _dashboard_exprs() -> list[str]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def _rules() -> list[dict[str, Any]]:
    spec = yaml.safe_load(RULES.read_text(encoding="utf-8"))["spec"]
    return [rule for group in spec["groups"] for rule in group["rules"]]


def test_the_dashboard_and_alerts_use_only_metrics_that_exist() -> None:
    exported = _exported()
    exprs = _dashboard_exprs() + [str(r["expr"]) for r in _rules()]
    for expr in exprs:
        names = set(re.findall(r"\b(?:llmops_[a-z_]+|vllm:[a-z_:]+|DCGM_FI_[A-Z_]+)", expr))
        assert names, f"no known metric in {expr!r}"
        unknown = {n for n in names if n not in exported and not EXTERNAL.match(n)}
        assert not unknown, (expr, unknown)
    alerts = {r["alert"] for r in _rules()}
    assert {
        "LlmopsEndpointLatencyHigh",
        "LlmopsEndpointErrorRate",
        "LlmopsTokenSpendAnomaly",
        "LlmopsGpuSpendAnomaly",
        "LlmopsPolicyViolation",
    } <= alerts
    titles = [p["title"] for p in json.loads(DASHBOARD.read_text())["panels"]]
    assert "Experiment: per variant" in titles
    assert any("GPU" in t for t in titles)


@pytest.mark.slow
def test_promtool_checks_the_rules_and_their_unit_tests_pass(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed: run .ci/bootstrap (Debian package prometheus)"
    spec = yaml.safe_load(RULES.read_text(encoding="utf-8"))["spec"]
    (tmp_path / "serving-rules.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    for test in PROMTOOL_TESTS.glob("*.yaml"):
        shutil.copy(test, tmp_path / test.name)
    checked = subprocess.run(
        [promtool, "check", "rules", "serving-rules.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [promtool, "test", "rules", "serving-rules-test.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


@pytest.mark.slow
def test_every_dashboard_query_parses_in_prometheus(tmp_path: Path) -> None:
    values = {"$environment": "prod", "$endpoint": "chat", "$experiment": "ab", "$__range": "1h"}
    with prometheus_server(tmp_path) as (url, _):
        for expr in _dashboard_exprs():
            for name, value in values.items():
                expr = expr.replace(name, value)
            answer = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=5).json()
            assert answer["status"] == "success", (expr, answer.get("error"))
