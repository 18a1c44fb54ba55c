"""The spec catalog in the store and the resource routes over it, via HTTP on a real store.

The catalog is seeded the way the reconciler seeds it: ``catalog.record`` on
the bundled template's validated spec set; status, inventory and GPU samples
with the store's own writers. Requests come through the trusted proxy.
"""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import TypeAdapter

from conftest import failed, ok
from llmops.api.app import create_app
from llmops.api.auth import proxy_signature
from llmops.api.envelope import AuditPageOut, Envelope
from llmops.api.resources import EndpointDetail, EndpointOut, Items
from llmops.engine import settings
from llmops.engine.actuate.hydrate import HydrateActuator
from llmops.engine.run import reconciler
from llmops.engine.source import snapshots
from llmops.engine.spec import validate
from llmops.engine.store import Store, audit, catalog, state
from llmops.engine.types import Kind, ResourceKey, SpecKey

BASE = "/llm-ops/v1"
TEMPLATE = Path(__file__).resolve().parents[1] / "specs_repo_template"
REV = "c" * 40
SECRET = "catalog-test-proxy-secret"
T0 = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)


def client_for(store: Store, roles: str = "viewer") -> TestClient:
    api = {"trusted_proxies": ["127.0.0.1"], "proxy_secret": SECRET}
    app = create_app(store, settings=settings.load(api=api))
    headers = {"X-User-Id": "vera", "X-User-Roles": roles,
               "X-Proxy-Signature": proxy_signature("vera", roles, SECRET)}
    return TestClient(app, client=("127.0.0.1", 40000), headers=headers)


@pytest.fixture
def spec_set() -> validate.SpecSet:
    return validate.load_and_validate(TEMPLATE)


@pytest.fixture
def client(store: Store, spec_set: validate.SpecSet) -> TestClient:
    assert catalog.record(store, REV, spec_set, now=T0)
    return client_for(store)


def key_id(kind: str, env: str, name: str) -> str:
    return str(SpecKey(kind, env, name).id)


# --------------------------------------------------------------------------- the table


def test_record_replaces_the_whole_catalog_once_per_revision(
        store: Store, spec_set: validate.SpecSet) -> None:
    assert catalog.revision(store) is None
    assert catalog.record(store, REV, spec_set) is True
    entries = catalog.list_entries(store)
    assert len(entries) == len(spec_set.items)
    assert {e.revision for e in entries} == {REV}
    model = catalog.get_key(store, SpecKey(Kind.MODEL, "", "support-chat@1.3.0"))
    assert model is not None
    assert model.file == "models/support-chat-1.3.0.yaml"
    assert model.spec["spec"]["stage"] == "draft"
    assert model.id == key_id("Model", "", "support-chat@1.3.0")

    stamp = model.updated_at
    assert catalog.record(store, REV, spec_set) is False  # same revision: nothing written
    again = catalog.get(store, model.id)
    assert again is not None
    assert again.updated_at == stamp

    smaller = validate.SpecSet(root=spec_set.root, config=spec_set.config,
                               items=tuple(i for i in spec_set.items if i.key.kind == "Model"))
    assert catalog.record(store, "d" * 40, smaller) is True
    assert {e.kind for e in catalog.list_entries(store)} == {"Model"}
    assert catalog.revision(store) == "d" * 40


def test_name_filters_take_like_wildcards_literally(
        store: Store, spec_set: validate.SpecSet) -> None:
    """``?name=s_`` on the catalog routes is a prefix, not a LIKE pattern: ``_`` and ``%``
    match only themselves (no spec name holds them), on SQLite and PostgreSQL alike."""
    catalog.record(store, REV, spec_set)

    def names(**query: str) -> list[str]:
        return [e.name for e in catalog.list_entries(store, kind=Kind.MODEL, **query)]

    assert names(name_prefix="sql") == ["sql-adapter@1.0.0"]
    for pattern in ("s_l", "sql%", "%", "_", "sql-adapter@1.0.0/"):
        assert names(name_prefix=pattern) == [], pattern
    assert names(name="sql-adapter") == ["sql-adapter@1.0.0"]
    for pattern in ("sql_adapter", "sql%", "%"):
        assert names(name=pattern) == [], pattern


def test_the_reconciler_records_each_validated_revision(
        store: Store, template_git_repo: Path, tmp_path: Path) -> None:
    src = snapshots.open_source(str(template_git_repo), "main", tmp_path / "work")
    rec = reconciler.Reconciler(store, src, lambda env, cfg: HydrateActuator(tmp_path / "out"))
    rec.run_once()
    head = subprocess.run(["git", "-C", str(template_git_repo), "rev-parse", "HEAD"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert catalog.revision(store) == head
    assert catalog.roles(store)["viewer"] >= {"catalog:read", "serving:read"}


# --------------------------------------------------------------------------- catalog routes


def test_models_filter_by_type_team_stage_classification_and_name(client: TestClient) -> None:
    url = f"{BASE}/catalog/models"

    def names(**query: str) -> list[str]:
        return [f"{m['name']}@{m['version']}" for m in ok(client.get(url, params=query))["items"]]

    assert names() == ["llama-3-8b@1.0.0", "sql-adapter@1.0.0", "support-chat@1.2.0",
                       "support-chat@1.3.0"]
    assert names(type="adapter") == ["sql-adapter@1.0.0"]
    assert names(ownerTeam="data-science") == ["sql-adapter@1.0.0"]
    assert names(stage="draft") == ["support-chat@1.3.0"]
    assert names(dataClassification="public") == ["llama-3-8b@1.0.0"]
    assert names(name="support") == ["support-chat@1.2.0", "support-chat@1.3.0"]
    assert names(name="support", stage="approved") == ["support-chat@1.2.0"]
    first = ok(client.get(url, params={"type": "adapter"}))["items"][0]
    assert first["id"] == key_id("Model", "", "sql-adapter@1.0.0")
    assert first["ownerTeam"] == "data-science"
    assert first["revision"] == REV
    assert first["spec"]["baseModel"] == {"name": "llama-3-8b", "version": "1.0.0"}
    failed(client.get(url, params={"stage": "retired"}), 422)


@pytest.mark.parametrize("path", ["/catalog/models", "/serving/endpoints",
                                  "/prompts/experiments", "/catalog/prompts"])
def test_lists_are_paged(client: TestClient, path: str) -> None:
    everything = ok(client.get(f"{BASE}{path}"))
    assert everything["total"] == len(everything["items"]) >= 2
    assert everything["nextOffset"] is None
    seen, offset, pages = [], 0, 0
    while offset is not None:
        page = ok(client.get(f"{BASE}{path}", params={"limit": 1, "offset": offset}))
        assert len(page["items"]) == 1
        assert page["total"] == everything["total"]
        seen += page["items"]
        offset, pages = page["nextOffset"], pages + 1
    assert seen == everything["items"]
    assert pages == everything["total"]
    past = ok(client.get(f"{BASE}{path}", params={"offset": everything["total"]}))
    assert (past["items"], past["nextOffset"]) == ([], None)
    for bad in ({"limit": 0}, {"limit": 1001}, {"offset": -1}, {"limit": "x"}):
        failed(client.get(f"{BASE}{path}", params=bad), 422)


def test_a_model_answers_to_its_uuid_its_name_at_version_and_its_name(
        client: TestClient) -> None:
    uid = key_id("Model", "", "support-chat@1.2.0")
    by_id = ok(client.get(f"{BASE}/catalog/models/{uid}"))
    assert (by_id["name"], by_id["version"], by_id["stage"]) == ("support-chat", "1.2.0",
                                                                 "approved")
    assert ok(client.get(f"{BASE}/catalog/models/{uid.upper()}"))["id"] == uid
    assert ok(client.get(f"{BASE}/catalog/models/support-chat@1.2.0"))["id"] == uid
    versions = ok(client.get(f"{BASE}/catalog/models/support-chat"))
    assert versions["name"] == "support-chat"
    assert [v["version"] for v in versions["versions"]] == ["1.2.0", "1.3.0"]

    for missing in ("no-such-model", "support-chat@9.9.9",
                    key_id("Dataset", "", "customer-tickets")):  # a UUID of another kind
        body = failed(client.get(f"{BASE}/catalog/models/{missing}"), 404)
        assert "no Model" in body["message"]


def test_prompts_and_datasets_list_and_look_up(client: TestClient) -> None:
    prompts = ok(client.get(f"{BASE}/catalog/prompts", params={"name": "support-greeting"}))
    assert [p["name"] for p in prompts["items"]] == [
        "support-greeting-v1", "support-greeting-v2", "support-greeting-v3"]
    uid = key_id("PromptTemplate", "", "sql-assistant")
    assert ok(client.get(f"{BASE}/catalog/prompts/{uid}"))["name"] == "sql-assistant"
    assert ok(client.get(f"{BASE}/catalog/prompts/sql-assistant"))["id"] == uid
    failed(client.get(f"{BASE}/catalog/prompts/nope"), 404)

    confidential = ok(client.get(f"{BASE}/catalog/datasets",
                                 params={"dataClassification": "confidential"}))
    assert [d["name"] for d in confidential["items"]] == ["customer-tickets"]
    one = ok(client.get(f"{BASE}/catalog/datasets/customer-tickets"))
    assert one["spec"]["ownerTeam"] == "nlp-platform"
    assert one["id"] == key_id("Dataset", "", "customer-tickets")


# --------------------------------------------------------------------------- serving


def test_endpoints_filter_by_environment_model_and_status(
        store: Store, client: TestClient) -> None:
    state.put_spec_status(store, state.SpecStatus(
        SpecKey("ServingEndpoint", "prod", "support-chat"), REV, "Healthy"))
    state.put_spec_status(store, state.SpecStatus(
        SpecKey("ServingEndpoint", "dev", "support-chat"), REV, "Degraded", last_error="boom"))
    url = f"{BASE}/serving/endpoints"

    def names(**query: str) -> list[str]:
        return [f"{e['environment']}/{e['name']}"
                for e in ok(client.get(url, params=query))["items"]]

    assert len(names()) == 6
    assert names(environment="prod") == ["prod/sql-assistant", "prod/support-chat"]
    assert names(modelId="sql-adapter") == ["dev/sql-assistant", "prod/sql-assistant",
                                            "stg/sql-assistant"]
    assert names(modelId=key_id("Model", "", "support-chat@1.3.0")) == ["dev/support-chat"]
    assert names(modelId="support-chat@1.2.0") == ["prod/support-chat", "stg/support-chat"]
    assert names(modelId="no-such-model") == []
    assert names(status="Healthy") == ["prod/support-chat"]
    assert names(status="Degraded") == ["dev/support-chat"]
    assert len(names(status="Unknown")) == 4
    assert names(status="healthy") == names(status="HEALTHY") == ["prod/support-chat"]
    for refused in ("Fine", "0000", "Mi\u00dfing"):  # casefold would make the last Missing
        body = failed(client.get(url, params={"status": refused}), 422)
        assert body["data"] == {"field": "status"}
    assert names(status=" not_Healthy"[4:]) == names(status="h-e_a l-t-h-y")
    # The filter's published pattern is exactly what it takes: a schema-valid status is
    # never refused, a refused one never schema-valid.
    [param] = [p for p in client.get(f"{BASE}/openapi.json").json()["paths"][url]["get"][
        "parameters"] if p["name"] == "status"]
    pattern = param["schema"]["pattern"]  # beside anyOf: it constrains only the string
    for taken in ("healthy", "NOT-OBSERVED", "not_observed", "Not Observed", " missing "):
        assert re.fullmatch(pattern, taken), taken
    for refused in ("Fine", "0000", "Mi\u00dfing", "heal"):
        assert re.fullmatch(pattern, refused) is None, refused

    dev = ok(client.get(url, params={"environment": "dev", "status": "Degraded"}))["items"][0]
    assert dev["status"]["lastError"] == "boom"
    assert dev["model"] == {"id": key_id("Model", "", "support-chat@1.3.0"),
                            "name": "support-chat", "version": "1.3.0"}
    assert dev["ownerTeam"] == "nlp-platform"


def test_endpoint_list_pages_and_counts_every_filter_in_the_store(
        store: Store, client: TestClient) -> None:
    for env in ("dev", "stg", "prod"):
        state.put_spec_status(store, state.SpecStatus(
            SpecKey("ServingEndpoint", env, "sql-assistant"), REV, "Healthy"))
    url = f"{BASE}/serving/endpoints"
    first = ok(client.get(url, params={"status": "healthy", "limit": 2}))
    assert [e["environment"] for e in first["items"]] == ["dev", "prod"]
    assert (first["total"], first["nextOffset"]) == (3, 2)
    last = ok(client.get(url, params={"status": "healthy", "limit": 2, "offset": 2}))
    assert [e["environment"] for e in last["items"]] == ["stg"]
    assert (last["total"], last["nextOffset"]) == (3, None)
    beyond = ok(client.get(url, params={"modelId": "sql-adapter", "offset": 10}))
    assert (beyond["items"], beyond["total"], beyond["nextOffset"]) == ([], 3, None)
    both = ok(client.get(url, params={"modelId": "support-chat", "status": "unknown",
                                      "environment": "stg"}))
    assert [(e["environment"], e["name"]) for e in both["items"]] == [("stg", "support-chat")]
    page = catalog.status_page(store, kind=Kind.SERVING_ENDPOINT, limit=1, offset=0,
                               models={"sql-adapter@1.0.0"}, health="Healthy")
    assert page.total == 3
    assert [(e.environment, s.health if s else None) for e, s in page.items] == [
        ("dev", "Healthy")]
    assert catalog.status_page(store, kind=Kind.SERVING_ENDPOINT, limit=5, offset=0,
                               models=set()).total == 0


def test_under_the_hydrate_actuator_endpoints_filter_as_notobserved_in_any_case(
        store: Store, template_git_repo: Path, tmp_path: Path) -> None:
    src = snapshots.open_source(str(template_git_repo), "main", tmp_path / "work")
    reconciler.Reconciler(store, src,
                          lambda env, cfg: HydrateActuator(tmp_path / "out")).run_once()
    client = client_for(store)
    url = f"{BASE}/serving/endpoints"

    def names(**query: str) -> list[str]:
        return [f"{e['environment']}/{e['name']}"
                for e in ok(client.get(url, params={"environment": "dev", **query}))["items"]]

    assert names() == ["dev/sql-assistant", "dev/support-chat"]
    assert names(status="healthy") == []  # the hydrate actuator sees no cluster
    for spelling in ("notobserved", "NotObserved", "NOTOBSERVED", "not_observed",
                     "not-observed", "Not Observed"):
        assert names(status=spelling) == ["dev/sql-assistant", "dev/support-chat"], spelling
    body = failed(client.get(url, params={"status": "observed"}), 422)
    assert body["data"] == {"field": "status"}
    assert "NotObserved" in body["message"]
    param = next(p for p in client.get(f"{BASE}/openapi.json").json()["paths"][url]["get"][
        "parameters"] if p["name"] == "status")
    assert "NotObserved" in param["description"]
    assert "notobserved" in param["schema"]["examples"]


def test_endpoint_detail_has_scaling_model_experiment_and_owned_objects(
        store: Store, client: TestClient) -> None:
    deployment = ResourceKey("apps", "Deployment", "nlp-platform-prod", "support-chat")
    service = ResourceKey("", "Service", "nlp-platform-prod", "support-chat")
    other = ResourceKey("apps", "Deployment", "data-science-prod", "sql-assistant")
    state.replace_inventory(store, "prod", [
        state.InventoryItem(deployment, "apps/v1", "h1", "ServingEndpoint", "support-chat", REV),
        state.InventoryItem(service, "v1", "h2", "ServingEndpoint", "support-chat", REV),
        state.InventoryItem(other, "apps/v1", "h3", "ServingEndpoint", "sql-assistant", REV)])
    state.put_object_status(store, state.ObjectStatus("prod", deployment, "Progressing",
                                                      "1/2 replicas ready", drift=True))
    state.put_object_status(store, state.ObjectStatus("prod", other, "Healthy"))
    state.put_spec_status(store, state.SpecStatus(
        SpecKey("ServingEndpoint", "prod", "support-chat"), REV, "Progressing", drift=True))

    uid = key_id("ServingEndpoint", "prod", "support-chat")
    data = ok(client.get(f"{BASE}/serving/endpoints/{uid}"))
    assert data["route"] == "/v1/support-chat"
    assert data["replicas"] == {"min": 2, "max": 4}
    assert data["resources"]["gpu"] == 1
    assert data["autoscale"]
    assert data["status"]["health"] == "Progressing"
    assert data["status"]["appliedRevision"] == REV
    assert data["status"]["drift"] is True
    assert data["modelMetadata"]["version"] == "1.2.0"
    assert data["modelMetadata"]["stage"] == "approved"
    assert data["experiment"]["name"] == "support-greeting-v2-vs-v3"
    assert data["experiment"]["id"] == key_id("PromptExperiment", "prod",
                                              "support-greeting-v2-vs-v3")
    objects = {o["kind"]: o for o in data["objects"]}
    assert set(objects) == {"Deployment", "Service"}  # sql-assistant's are not its own
    assert objects["Deployment"]["health"] == "Progressing"
    assert objects["Deployment"]["message"] == "1/2 replicas ready"
    assert objects["Service"]["health"] == "Unknown"  # in the inventory, never assessed

    by_name = ok(client.get(f"{BASE}/serving/endpoints/support-chat",
                            params={"environment": "prod"}))
    assert by_name["id"] == uid
    ambiguous = failed(client.get(f"{BASE}/serving/endpoints/support-chat"), 409)
    assert {c["environment"] for c in ambiguous["data"]["candidates"]} == {"dev", "stg", "prod"}
    failed(client.get(f"{BASE}/serving/endpoints/nope"), 404)
    failed(client.get(f"{BASE}/serving/endpoints/{key_id('Model', '', 'x@1.0.0')}"), 404)


# --------------------------------------------------------------------------- experiments, jobs


def test_experiments_list_and_detail_with_variants_weights_and_winner(
        client: TestClient) -> None:
    listed = ok(client.get(f"{BASE}/prompts/experiments"))["items"]
    assert [(e["environment"], e["name"]) for e in listed] == [
        ("prod", "support-greeting-v2-vs-v3"), ("stg", "support-greeting-v1-vs-v2")]
    running = ok(client.get(f"{BASE}/prompts/experiments", params={"state": "running"}))
    assert [e["name"] for e in running["items"]] == ["support-greeting-v2-vs-v3"]

    concluded = ok(client.get(f"{BASE}/prompts/experiments/support-greeting-v1-vs-v2"))
    assert concluded["state"] == "concluded"
    assert concluded["winner"] == "support-greeting-v2"
    assert concluded["metric"] == "latency_ms"
    assert concluded["endpoint"]["id"] == key_id("ServingEndpoint", "stg", "support-chat")
    assert [(v["template"]["name"], v["weight"], v["effectiveWeight"])
            for v in concluded["variants"]] == [("support-greeting-v1", 50, 0),
                                                ("support-greeting-v2", 50, 100)]
    uid = key_id("PromptExperiment", "prod", "support-greeting-v2-vs-v3")
    live = ok(client.get(f"{BASE}/prompts/experiments/{uid}"))
    assert [(v["weight"], v["effectiveWeight"]) for v in live["variants"]] == [(80, 80),
                                                                               (20, 20)]
    assert live["stickiness"] == {"header": "X-Session-Id", "cookie": None}
    assert live["winner"] is None
    failed(client.get(f"{BASE}/prompts/experiments/nope"), 404)


def test_training_jobs_and_policies(store: Store, client: TestClient) -> None:
    jobs = ok(client.get(f"{BASE}/training/jobs"))["items"]
    assert [j["name"] for j in jobs] == ["support-chat-sft"]
    job = ok(client.get(f"{BASE}/training/jobs/support-chat-sft"))
    assert job["environment"] == "stg"
    assert job["baseModel"]["id"] == key_id("Model", "", "llama-3-8b@1.0.0")
    assert job["outputModel"] == {"id": key_id("Model", "", "support-chat@1.4.0"),
                                  "name": "support-chat", "version": "1.4.0"}
    assert job["experimentUrl"] == "https://mlflow.example.com/#/experiments/17"
    assert job["status"]["health"] == "Unknown"
    assert (job["phase"], job["experimentUrl"]) == (
        "queued", "https://mlflow.example.com/#/experiments/17")
    for health, phase in (("Progressing", "running"), ("Healthy", "succeeded"),
                          ("Degraded", "failed")):
        state.put_spec_status(store, state.SpecStatus(
            SpecKey("TrainingJob", "stg", "support-chat-sft"), REV, health))
        assert ok(client.get(f"{BASE}/training/jobs/support-chat-sft"))["phase"] == phase
        assert len(ok(client.get(f"{BASE}/training/jobs", params={"phase": phase}))["items"]) == 1
    assert ok(client.get(f"{BASE}/training/jobs", params={"ownerTeam": "data-science"})
              )["items"] == []
    failed(client.get(f"{BASE}/training/jobs/nope"), 404)

    policies = ok(client.get(f"{BASE}/governance/policies"))["items"]
    assert [p["name"] for p in policies] == ["governance", "rbac"]
    rbac = policies[1]["spec"]["rbac"]["roles"]
    assert rbac["admin"] == ["*"]


# --------------------------------------------------------------------------- costs


def test_costs_integrate_samples_as_steps_per_endpoint(store: Store, client: TestClient) -> None:
    end = T0
    since = end - timedelta(hours=24)

    def at(hours: float) -> datetime:
        return since + timedelta(hours=hours)

    state.add_gpu_samples(store, [
        # Before the window: its value carries in from the window start (2 x 1 for 6 h).
        state.GpuSample("prod", "nlp-platform", "support-chat", 1, 2,
                        since - timedelta(minutes=20)),
        state.GpuSample("prod", "nlp-platform", "support-chat", 1, 4, at(6)),   # 4 for 18 h
        state.GpuSample("dev", "data-science", "sql-assistant", 2, 1, at(12)),  # 2 for 12 h
        # Same name in another environment is another endpoint.
        state.GpuSample("dev", "nlp-platform", "support-chat", 1, 1, at(23)),   # 1 for 1 h
        # Too old to carry in, and after the window: ignored.
        state.GpuSample("stg", "nlp-platform", "old", 8, 8, since - timedelta(days=3)),
        state.GpuSample("prod", "nlp-platform", "support-chat", 8, 8, end + timedelta(hours=1)),
    ])
    data = ok(client.get(f"{BASE}/costs", params={"window": "24h",
                                                  "until": end.isoformat()}))
    assert data["totalGpuHours"] == pytest.approx(12 + 72 + 24 + 1)
    assert {r["team"]: r["gpuHours"] for r in data["byTeam"]} == {
        "data-science": pytest.approx(24), "nlp-platform": pytest.approx(85)}
    assert {r["environment"]: r["gpuHours"] for r in data["byEnvironment"]} == {
        "dev": pytest.approx(25), "prod": pytest.approx(84)}
    assert {(r["environment"], r["endpoint"]): r["gpuHours"] for r in data["byEndpoint"]} == {
        ("dev", "sql-assistant"): pytest.approx(24), ("dev", "support-chat"): pytest.approx(1),
        ("prod", "support-chat"): pytest.approx(84)}

    short = ok(client.get(f"{BASE}/costs", params={"window": "1h", "until": end.isoformat()}))
    assert short["totalGpuHours"] == pytest.approx(4 + 2 + 1)

    for bad in ("24", "1w", "0h", "91d", "2161h", "-1d", "1.5h", "024h"):
        body = failed(client.get(f"{BASE}/costs", params={"window": bad}), 422)
        assert body["data"]["errors"][0]["field"] == "window", body


def test_costs_split_serving_and_training_gpu_hours(
        store: Store, client: TestClient) -> None:
    end = T0
    since = end - timedelta(hours=24)
    state.add_gpu_samples(store, [
        state.GpuSample("prod", "nlp-platform", "support-chat", 1, 2, since),  # 48 h serving
        # A training job runs 4 GPUs for 3 hours, then is done (0 replicas).
        state.GpuSample("stg", "nlp-platform", "support-chat-sft", 4, 1,
                        since + timedelta(hours=10), "training"),
        state.GpuSample("stg", "nlp-platform", "support-chat-sft", 4, 0,
                        since + timedelta(hours=13), "training"),
    ])
    data = ok(client.get(f"{BASE}/costs", params={"until": end.isoformat()}))
    assert (data["servingGpuHours"], data["trainingGpuHours"]) == (
        pytest.approx(48), pytest.approx(12))
    assert data["totalGpuHours"] == pytest.approx(60)
    # Tokens come from the prompt routers' metrics (tests/test_router_prometheus.py).
    assert (data["promptTokens"], data["completionTokens"], data["tokensError"]) == (0, 0, None)
    [team] = data["byTeam"]
    assert (team["team"], team["trainingGpuHours"]) == ("nlp-platform", pytest.approx(12))
    [endpoint] = data["byEndpoint"]
    assert (endpoint["endpoint"], endpoint["gpuHours"]) == ("support-chat", pytest.approx(48))
    [job] = data["byTrainingJob"]
    assert (job["trainingJob"], job["environment"], job["gpuHours"]) == (
        "support-chat-sft", "stg", pytest.approx(12))



@pytest.mark.parametrize(("path", "model"), [
    ("/serving/endpoints?limit=2", Envelope[Items[EndpointOut]]),
    ("/serving/endpoints/support-chat?environment=dev", Envelope[EndpointDetail]),
    ("/governance/audit/logs", Envelope[AuditPageOut])])
def test_pre_serialised_reads_answer_exactly_their_documented_envelope(
        store: Store, spec_set: validate.SpecSet, path: str, model: Any) -> None:
    """The routes that answer JSON they serialised themselves (FastAPI no longer validates
    it) send what FastAPI would have: the response model, camelCase, nothing else."""
    assert catalog.record(store, REV, spec_set, now=T0)
    audit.AuditLog(store).append(audit.AuditEntry(
        actor="ann", action=audit.AuditAction.ACCESS, target="t", result="denied",
        details={"why": "test"}))
    response = client_for(store, roles="admin").get(f"{BASE}{path}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["status"] == "success"
    assert body["data"]  # not an empty page: the fields below were really checked
    adapter = TypeAdapter(model)
    assert adapter.dump_python(adapter.validate_json(response.content), mode="json",
                               by_alias=True) == body
