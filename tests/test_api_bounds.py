"""Every input is bounded: out-of-range ids, times and stream ids, deeply nested JSON and
oversized bodies answer a 4xx envelope naming the field, never a 500.

The sweep walks the published OpenAPI document, so a new route's integer or time
parameter is covered (and must publish its bounds) without touching this file.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from conftest import failed
from llmops.api import params, tokens
from llmops.api.app import create_app
from llmops.engine import settings
from llmops.engine.spec import validate
from llmops.engine.store import Store, catalog

BASE = "/llm-ops/v1"
TEMPLATE = Path(__file__).resolve().parents[1] / "specs_repo_template"
JWT_SECRET = "bounds-test-secret-0123456789abcdef"
WEBHOOK_SECRET = "bounds-webhook-secret"
HUGE_IDS = ["9223372036854775808", "18446744073709551616", "9" * 40, "-1", "0"]
EXTREME_TIMES = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00",
                 "0001-01-01T00:00:00", "9999-12-31T23:59:59", "1969-12-31T23:59:59Z"]


@pytest.fixture
def client(store: Store) -> TestClient:
    catalog.record(store, "a" * 40, validate.load_and_validate(TEMPLATE))
    cfg = settings.load(api={"jwt_secret": JWT_SECRET, "webhook_secret": WEBHOOK_SECRET})
    token = tokens.encode({"sub": "root", "roles": ["admin"], "exp": int(time.time()) + 600},
                          JWT_SECRET)
    return TestClient(create_app(store, trigger=lambda: None, settings=cfg),
                      headers={"Authorization": f"Bearer {token}"},
                      raise_server_exceptions=False)


def _parameters(app_client: TestClient) -> list[tuple[str, str, dict[str, Any]]]:
    spec = app_client.get(f"{BASE}/openapi.json").json()
    return [(method, path, param) for path, ops in spec["paths"].items()
            for method, op in ops.items() for param in op.get("parameters", [])]


def _kind(param: dict[str, Any]) -> str:
    schema = param.get("schema", {})
    options = schema.get("anyOf", [schema])
    for option in options:
        if option.get("type") == "integer":
            return "integer"
        if option.get("pattern") == params.INSTANT_PATTERN:
            return "date-time"
    return ""


def _call(client: TestClient, method: str, path: str, param: dict[str, Any],
          value: str) -> Any:
    url = path
    for name in ("run_id", "model_id", "endpoint_id", "experiment_id", "job_id", "name"):
        url = url.replace("{" + name + "}", value if param["name"] == name else "1")
    query = {param["name"]: value} if param["in"] == "query" else {}
    return client.request(method.upper(), url, params=query)


def test_out_of_range_numbers_and_times_are_422_on_every_route(client: TestClient) -> None:
    swept = 0
    for method, path, param in _parameters(client):
        kind = _kind(param)
        values = HUGE_IDS if kind == "integer" else EXTREME_TIMES if kind else []
        for value in values:
            response = _call(client, method, path, param, value)
            assert response.status_code < 500, (method, path, param["name"], value,
                                                response.text[:300])
            swept += 1
    assert swept >= 40  # runs, audit, costs, events at least


@pytest.mark.parametrize(("url", "field"), [
    (f"{BASE}/reconcile/runs/9223372036854775808", "run_id"),
    (f"{BASE}/governance/audit/logs?after_id=9223372036854775808", "after_id"),
    (f"{BASE}/governance/audit/logs?since=0001-01-01T00:00:00%2B14:00", "since"),
    (f"{BASE}/governance/audit/logs?until=9999-12-31T23:59:59-14:00", "until"),
    (f"{BASE}/costs?until=0001-01-01T00:00:00", "until"),
    (f"{BASE}/reconcile/events?after=99999999999999999999-0", "after"),
])
def test_each_bound_is_a_422_naming_its_field(client: TestClient, url: str,
                                              field: str) -> None:
    body = failed(client.get(url), 422)
    assert field in str(body["data"]) + body["message"], body


def test_the_openapi_publishes_every_bound(client: TestClient) -> None:
    for method, path, param in _parameters(client):
        kind, schema = _kind(param), param.get("schema", {})
        options = schema.get("anyOf", [schema])
        if kind == "integer":
            option = next(o for o in options if o.get("type") == "integer")
            assert "minimum" in option, (method, path, param)
            assert "maximum" in option, (method, path, param)
            assert option["maximum"] <= params.MAX_ROW_ID
        elif kind == "date-time":
            assert params.EARLIEST.isoformat() in param.get("description", ""), (path, param)
    assert sum(_kind(param) == "date-time" for _, _, param in _parameters(client)) >= 3


@pytest.mark.parametrize("value", ["0.5", "1700000000", "2025-03-01", "2025-03-01 12:00:00",
                                   "2025-02-29T00:00:00Z", "2025-03-01T12:00:00Z\n"])
def test_a_time_is_only_what_its_pattern_says(client: TestClient, value: str) -> None:
    """A number (pydantic's lax mode took 0.5 as a Unix time), a bare date, a space for T,
    a day the calendar lacks: none matches the published pattern, and each is a 422."""
    assert re.fullmatch(params.INSTANT_PATTERN, value) is None
    for url in (f"{BASE}/costs", f"{BASE}/governance/audit/logs"):
        body = failed(client.get(url, params={"until": value}), 422)
        assert body["data"]["errors"][0]["field"] == "until", body


@pytest.mark.parametrize("value", ["1970-01-01T00:00:00+23:59", "9998-12-31T23:59:59.999999-23:59",
                                   "2024-02-29T12:00", "2026-01-31T12:00:00.5Z"])
def test_every_time_its_pattern_admits_is_taken(client: TestClient, value: str) -> None:
    assert re.fullmatch(params.INSTANT_PATTERN, value) is not None
    for url in (f"{BASE}/costs", f"{BASE}/governance/audit/logs"):
        assert client.get(url, params={"until": value}).status_code == 200


def _signed(body: bytes) -> dict[str, str]:
    digest = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "X-GitHub-Event": "push",
            "Content-Type": "application/json"}


@pytest.mark.parametrize("body", [b"[" * 50_000 + b"]" * 50_000,
                                  b'{"a":' * 20_000 + b"1" + b"}" * 20_000])
def test_deep_json_is_a_400_envelope(client: TestClient, body: bytes) -> None:
    answer = failed(client.post(f"{BASE}/webhooks/git", content=body, headers=_signed(body)),
                    400)
    assert "nested" in answer["message"] or "JSON" in answer["message"]
    for path in (f"{BASE}/catalog/models", f"{BASE}/reconcile/trigger"):
        response = client.post(path, content=body, headers={"Content-Type": "application/json"})
        assert 400 <= response.status_code < 500, (path, response.text[:200])
        assert response.json()["status"] == "fail"


def test_an_oversized_webhook_is_413(client: TestClient) -> None:
    body = b'{"ref": "refs/heads/main", "pad": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    failed(client.post(f"{BASE}/webhooks/git", content=body, headers=_signed(body)), 413)


def test_the_dashboard_run_page_bounds_its_id(client: TestClient) -> None:
    response = client.get("/reconcile/runs/9223372036854775808")
    assert 400 <= response.status_code < 500, response.text[:300]
