"""The Python client (``llmops.client``) against the real API served by uvicorn on loopback.

One server per module, on a port the OS picks, over a SQLite store seeded
with the template's catalog, runs, audit entries and endpoint health; the
client signs in with an HS256 bearer token as a user would. Each test checks
what a script author would rely on: lists, lookups, filters, cursors, the
error a refusal becomes, and waiting for an endpoint to turn healthy.
"""

from __future__ import annotations

import runpy
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import serving_app
from llmops.api import tokens
from llmops.api.app import create_app
from llmops.client import HealthNotObservedError, LlmopsApiError, LlmopsClient, ServingClient
from llmops.engine import settings
from llmops.engine.spec import validate
from llmops.engine.store import Store, audit, catalog, state
from llmops.engine.store.models import RunResult
from llmops.engine.types import Kind, SpecKey

# Slow tier: every test reaches the API over loopback HTTP (uvicorn).
pytestmark = pytest.mark.slow

TEMPLATE = Path(__file__).resolve().parents[1] / "specs_repo_template"
JWT_SECRET = "client-test-jwt-secret-0123456789"
ISSUER = "https://sso.example.com"
AUDIENCE = "llmops-api"
REV = "e" * 40
AUDIT_ENTRIES = 7
DEV_RUNS = 5


def token(roles: list[str], *, sub: str = "ci-bot", ttl: float = 600) -> str:
    return tokens.encode({"sub": sub, "roles": roles, "exp": time.time() + ttl, "iss": ISSUER,
                          "aud": AUDIENCE}, JWT_SECRET)


@dataclass
class Live:
    url: str
    store: Store
    wakes: list[str]

    def client(self, roles: list[str] | None = None, **kwargs: Any) -> LlmopsClient:
        return LlmopsClient(self.url, token=token(roles or ["admin"]), timeout=5, **kwargs)


def _seed(store: Store) -> list[int]:
    catalog.record(store, REV, validate.load_and_validate(TEMPLATE))
    state.put_spec_status(store, state.SpecStatus(
        SpecKey(Kind.SERVING_ENDPOINT, "prod", "support-chat"), REV, "Healthy"))
    state.put_spec_status(store, state.SpecStatus(
        SpecKey(Kind.SERVING_ENDPOINT, "stg", "support-chat"), REV, "Progressing"))
    state.put_spec_status(store, state.SpecStatus(  # as the hydrate actuator records it
        SpecKey(Kind.SERVING_ENDPOINT, "stg", "sql-assistant"), REV, "NotObserved"))
    runs = []
    for i in range(DEV_RUNS):
        run = state.start_run(store, "dev", REV, plan={})
        runs.append(state.finish_run(store, run.id, RunResult.SUCCEEDED if i % 2 == 0
                                     else RunResult.FAILED, error="" if i % 2 == 0 else "boom").id)
    state.put_environment_status(store, state.EnvironmentStatus(
        environment="dev", observed_revision=REV, last_applied_revision=REV))
    log = audit.AuditLog(store)
    for i in range(AUDIT_ENTRIES):
        log.append(audit.AuditEntry(actor="seeder", action="apply", target=f"obj-{i}",
                                    result="succeeded", environment="dev"))
    return runs


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    path = tmp_path_factory.mktemp("client") / "api.db"
    with Store(f"sqlite:///{path}") as store:
        store.migrate()
        _seed(store)
        wakes: list[str] = []
        api = {"jwt_secret": JWT_SECRET, "jwt_issuer": ISSUER, "jwt_audience": AUDIENCE}
        app = create_app(store, trigger=lambda: wakes.append("wake"),
                         settings=settings.load(api=api))
        with serving_app(app) as url:
            yield Live(url, store, wakes)


# --------------------------------------------------------------------------- reading


def test_status_runs_and_one_run(live: Live) -> None:
    with live.client() as api:
        assert api.healthz()
        assert api.readyz()
        [dev] = api.status()
        assert (dev["environment"], dev["lastAppliedRevision"]) == ("dev", REV)
        assert api.status(environment="prod") == []

        page = api.runs(environment="dev", limit=2)
        assert len(page["items"]) == 2
        assert page["nextCursor"] == page["items"][-1]["id"]
        every = list(api.iter_runs(environment="dev", page_size=2))
        assert [r["id"] for r in every] == sorted((r["id"] for r in every), reverse=True)
        assert len(every) == DEV_RUNS
        failed = list(api.iter_runs(result="failed"))
        assert {r["result"] for r in failed} == {"failed"}
        assert len(failed) == DEV_RUNS // 2

        run = api.run(every[0]["id"])
        assert run["id"] == every[0]["id"]
        assert {"plan", "results", "counts"} <= set(run)


def test_catalog_serving_prompts_training_and_policies_with_filters(live: Live) -> None:
    with live.client() as api:
        models = api.models()
        assert {m["name"] for m in models} >= {"support-chat", "llama-3-8b"}
        adapters = api.models(type="adapter")
        assert adapters
        assert {m["type"] for m in adapters} == {"adapter"}
        assert all(m["name"].startswith("support") for m in api.models(name="support"))

        versions = api.model("support-chat")
        assert [v["version"] for v in versions["versions"]] == ["1.2.0", "1.3.0"]
        one = api.model("support-chat@1.3.0")
        assert one["version"] == "1.3.0"
        assert api.model(one["id"])["id"] == one["id"]

        prod = api.endpoints(environment="prod")
        assert {e["name"] for e in prod} == {"support-chat", "sql-assistant"}
        healthy = api.endpoints(status="Healthy")
        assert [(e["environment"], e["name"]) for e in healthy] == [("prod", "support-chat")]
        detail = api.endpoint("support-chat", environment="prod")
        assert detail["status"]["health"] == "Healthy"
        assert api.endpoint(detail["id"])["name"] == "support-chat"

        experiments = api.experiments()
        assert experiments
        assert api.experiment(experiments[0]["id"])["name"] == experiments[0]["name"]
        assert api.training_jobs()
        assert {p["name"] for p in api.policies()} >= {"rbac", "governance"}
        assert api.prompts()
        assert api.datasets()
        report = api.costs("7d")
        assert report["window"] == "7d"
        assert report["totalGpuHours"] == 0


def test_audit_logs_iterate_every_page_through_the_cursor(live: Live) -> None:
    with live.client() as api:
        entries = list(api.audit_logs(actor="seeder", page_size=3))
        assert [e["target"] for e in entries] == [f"obj-{i}" for i in
                                                  reversed(range(AUDIT_ENTRIES))]
        assert [e["id"] for e in entries] == sorted((e["id"] for e in entries), reverse=True)
        assert list(api.audit_logs(actor="nobody")) == []
        with pytest.raises(ValueError, match="page_size"):
            next(api.audit_logs(page_size=0))


def test_trigger_wakes_the_reconciler(live: Live) -> None:
    before = len(live.wakes)
    with live.client(["ml-engineer"]) as api:
        assert api.trigger() == {"triggered": True}
    assert len(live.wakes) == before + 1


# --------------------------------------------------------------------------- errors


def test_refusals_become_llmops_api_errors_from_the_envelope(live: Live) -> None:
    with live.client() as api:
        with pytest.raises(LlmopsApiError) as missing:
            api.run(999_999)
        assert missing.value.status == 404
        assert missing.value.data == {"id": 999_999}
        assert "999999" in missing.value.message

        with pytest.raises(LlmopsApiError) as ambiguous:
            api.endpoint("support-chat")
        assert ambiguous.value.status == 409
        assert {c["environment"] for c in ambiguous.value.data["candidates"]} == {
            "dev", "stg", "prod"}

        with pytest.raises(LlmopsApiError) as invalid:
            api.runs(limit=0)
        assert invalid.value.status == 422
        assert invalid.value.data["errors"][0]["field"] == "limit"

        with pytest.raises(LlmopsApiError) as window:
            api.costs("forever")
        assert window.value.status == 422

        with pytest.raises(LlmopsApiError) as escaped:
            api.model("../reconcile/runs")  # escaped: stays a model id, never another route
        assert escaped.value.status == 404

    with LlmopsClient(live.url) as anonymous, pytest.raises(LlmopsApiError) as unauthorized:
        anonymous.status()
    assert unauthorized.value.status == 401

    with live.client(["viewer"]) as viewer, pytest.raises(LlmopsApiError) as forbidden:
        next(viewer.audit_logs())
    assert forbidden.value.status == 403
    assert forbidden.value.data["permission"] == "audit:read"

    past_leeway = -tokens.LEEWAY_SECONDS - 10  # expired beyond the clock-skew allowance
    with LlmopsClient(live.url, token=token(["admin"], ttl=past_leeway)) as expired, \
            pytest.raises(LlmopsApiError, match="expired") as old:
        expired.status()
    assert old.value.status == 401


def test_no_server_is_an_error_with_status_0() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    with LlmopsClient(f"http://127.0.0.1:{port}/llm-ops/v1", timeout=2) as api, \
            pytest.raises(LlmopsApiError) as refused:
        api.status()
    assert refused.value.status == 0


# --------------------------------------------------------------------------- waiting


def test_wait_until_healthy_returns_once_the_recorded_health_is_healthy(live: Live) -> None:
    key = SpecKey(Kind.SERVING_ENDPOINT, "stg", "support-chat")

    def recover() -> None:
        time.sleep(0.4)
        state.put_spec_status(live.store, state.SpecStatus(key, REV, "Healthy"))

    with live.client() as api:
        assert api.wait_until_healthy("support-chat", environment="prod", timeout=1,
                                      interval=0.05)["status"]["health"] == "Healthy"
        flip = threading.Thread(target=recover)
        started = time.monotonic()
        flip.start()
        try:
            endpoint = api.wait_until_healthy("support-chat", environment="stg", timeout=10,
                                              interval=0.05)
        finally:
            flip.join()
            state.put_spec_status(live.store, state.SpecStatus(key, REV, "Progressing"))
        assert endpoint["environment"] == "stg"
        assert 0.3 < time.monotonic() - started < 5


def test_wait_until_healthy_times_out_naming_the_last_health_and_raises_refusals(
        live: Live) -> None:
    with live.client() as api:
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="Unknown"):
            api.wait_until_healthy("sql-assistant", environment="dev", timeout=0.3,
                                   interval=0.05)
        assert time.monotonic() - started < 2
        with pytest.raises(LlmopsApiError) as missing:
            api.wait_until_healthy("no-such-endpoint", timeout=5, interval=0.05)
        assert missing.value.status == 404


def test_waiting_on_a_notobserved_endpoint_fails_at_once_saying_why(live: Live) -> None:
    with live.client() as api:
        assert [(e["environment"], e["name"]) for e in api.endpoints(status="notobserved")] \
            == [("stg", "sql-assistant")]
        started = time.monotonic()
        with pytest.raises(HealthNotObservedError, match="cannot observe a cluster") as err:
            api.wait_until_healthy("sql-assistant", environment="stg", timeout=60,
                                   interval=0.05)
        assert time.monotonic() - started < 5  # not polled to the timeout
        assert err.value.endpoint["status"]["health"] == "NotObserved"
        assert "sql-assistant in stg" in str(err.value)
    with ServingClient(live.url, token=token(["viewer"]), timeout=5) as seed:
        started = time.monotonic()
        with pytest.raises(HealthNotObservedError, match="hydrate"):
            seed.wait_for_healthy("sql-assistant", max_wait_seconds=60, poll_interval=0.05,
                                  environment="stg")
        assert time.monotonic() - started < 5


# --------------------------------------------------------------------------- the example


def test_the_status_example_prints_environments_runs_and_endpoints(
        live: Live, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    example = runpy.run_path(str(Path(__file__).resolve().parents[1] / "examples" / "status.py"))
    monkeypatch.setenv("LLMOPS_API_URL", live.url)
    monkeypatch.setenv("LLMOPS_API_TOKEN", token(["viewer"]))
    assert example["main"](["--wait", "support-chat", "--environment", "prod",
                            "--timeout", "2"]) == 0
    out = capsys.readouterr().out
    assert "dev" in out
    assert "support-chat" in out
    assert "support-chat is Healthy" in out
    assert example["main"](["--wait", "sql-assistant", "--environment", "stg",
                            "--timeout", "60"]) == 2
    assert "health is NotObserved" in capsys.readouterr().err
    monkeypatch.setenv("LLMOPS_API_TOKEN", "not-a-token")
    assert example["main"]([]) == 1
    assert "401" in capsys.readouterr().err
