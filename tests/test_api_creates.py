"""The seed's create calls over HTTP: each one commit of a new spec, answered in the envelope.

A real specs repo from the template and the catalog recorded at its tip
(``test_writeback.make_world``); the API over TestClient with signed proxy
headers. Each test checks what the seed's user sees (the envelope with the
new spec's id and the commit) and what the repo's reviewer sees (the file
the commit adds, and that it validates).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from test_writeback import BASE, World, client_for, failed, git, make_world, ok, writes

from llmops.engine.store import Store
from llmops.engine.types import Kind, SpecKey

MODEL = {"name": "support-chat", "version": "1.4.0", "type": "fine-tuned",
         "owner_team": "nlp-platform",
         "metadata": {"framework": "transformers", "base_model": "llama-3-8b@1.0.0",
                      "data_classification": "internal", "ticket": "ML-42"}}


@pytest.fixture
def world(store: Store, tmp_path: Path) -> World:
    return make_world(store, tmp_path)


def test_register_a_model_commits_a_draft_spec_and_answers_its_id(world: World) -> None:
    response = world.client().post(f"{BASE}/catalog/models", json=MODEL)
    data = ok(response, 201)
    assert data["id"] == str(SpecKey(Kind.MODEL, "", "support-chat@1.4.0").id)
    assert data["file"] == "models/support-chat-1.4.0.yaml"
    assert data["branch"].startswith("llmops/create/support-chat-")
    spec = yaml.safe_load(world.show(data["commit"], data["file"]))
    assert spec["spec"]["stage"] == "draft"
    assert spec["spec"]["storageUri"].endswith("/models/support-chat/1.4.0/")
    assert spec["spec"]["baseModel"] == {"name": "llama-3-8b", "version": "1.0.0"}
    assert spec["metadata"]["annotations"] == {"llmops.io/ticket": "ML-42"}
    assert data["spec"]["spec"]["version"] == "1.4.0"
    # The model is addressable by its id before any reconcile, and a second
    # registration of the same version is a conflict.
    got = world.client().get(f"{BASE}/catalog/models/{data['id']}")
    assert (ok(got)["revision"], ok(got)["storageUri"], ok(got)["files"]) == (
        data["commit"], spec["spec"]["storageUri"], [])
    assert "not reconciled yet" in got.json()["message"]
    failed(world.client().post(f"{BASE}/catalog/models", json=MODEL), 409)
    assert [r.result for r in writes(world.store)] == ["intent", "succeeded", "intent", "failed"]


def test_a_bad_field_names_the_request_field_or_the_spec_file(world: World) -> None:
    body = failed(world.client().post(f"{BASE}/catalog/models",
                                      json={**MODEL, "name": "Support_Chat"}), 422)
    assert "name" in body["message"]
    body = failed(world.client().post(
        f"{BASE}/catalog/models", json={**MODEL, "metadata": {"framework": "x"}}), 422)
    assert body["data"]["field"] == "metadata.baseModel"
    assert "fine-tuned model needs metadata.baseModel" in body["message"]


def test_deploy_creates_an_endpoint_then_a_second_deploy_moves_it(world: World) -> None:
    request = {"modelId": "support-chat@1.2.0", "environment": "dev", "route": "/v1/helper",
               "minReplicas": 1, "maxReplicas": 3, "name": "helper",
               "autoscalePolicy": {"targetCpuUtilization": 60}}
    data = ok(world.client().post(f"{BASE}/serving/endpoints", json=request), 201)
    assert data["created"] is True
    assert data["file"] == "endpoints/dev/helper.yaml"
    spec = yaml.safe_load(world.show(data["commit"], data["file"]))["spec"]
    assert spec["replicas"] == {"min": 1, "max": 3}
    assert spec["autoscale"] == {"cpuUtilization": 60}
    assert spec["ownerTeam"] == "nlp-platform"
    again = ok(world.client().post(f"{BASE}/serving/endpoints",
                                   json={**request, "modelId": "support-chat@1.3.0"}), 200)
    assert again["created"] is False
    assert (again["branch"], again["parent"]) == (data["branch"], data["commit"])
    spec = yaml.safe_load(world.show(again["commit"], data["file"]))["spec"]
    assert spec["modelRef"] == {"name": "support-chat", "version": "1.3.0"}


def test_an_experiment_from_the_seed_shape_splits_by_allocation(world: World) -> None:
    request = {"templateAId": "support-greeting-v1", "templateBId": "support-greeting-v3",
               "allocation": 0.25, "metric": "latency_ms", "endpointId": "support-chat",
               "environment": "dev"}
    data = ok(world.client().post(f"{BASE}/prompts/experiments", json=request), 201)
    spec = yaml.safe_load(world.show(data["commit"], data["file"]))["spec"]
    assert spec["variants"] == [{"templateRef": "support-greeting-v1", "weight": 75},
                                {"templateRef": "support-greeting-v3", "weight": 25}]
    assert (spec["environment"], spec["endpointRef"], spec["state"]) == (
        "dev", "support-chat", "running")
    body = failed(world.client().post(f"{BASE}/prompts/experiments",
                                      json={**request, "allocation": 0.333}), 422)
    assert body["data"]["field"] == "allocation"


def test_a_training_job_is_submitted_as_a_spec(world: World) -> None:
    request = {"name": "support-chat-dpo", "environment": "stg",
               "baseModelId": "llama-3-8b@1.0.0", "datasetId": "customer-tickets",
               "image": "ghcr.io/acme/llm-trainer:2.4.1", "outputModel": "support-chat@1.5.0",
               "hyperparameters": {"learning_rate": 0.00001, "bf16": True}, "gpu": 2,
               "experimentUrl": "https://mlflow.example.com/#/experiments/18"}
    data = ok(world.client().post(f"{BASE}/training/jobs", json=request), 201)
    assert data["file"] == "training/support-chat-dpo.yaml"
    spec = yaml.safe_load(world.show(data["commit"], data["file"]))["spec"]
    assert spec["resources"] == {"gpu": 2}
    assert spec["experimentUrl"].endswith("/18")
    assert "Llmops-Action: train" in git(world.repo, "log", "-1", "--format=%B",
                                         data["commit"])


def test_a_viewer_cannot_create(world: World) -> None:
    failed(world.client("viewer").post(f"{BASE}/catalog/models", json=MODEL), 403)


@pytest.mark.parametrize(("template", "count"), [("support-greeting-v1", 0),
                                                  ("sql-assistant", 3)])
def test_an_experiment_with_no_single_endpoint_for_template_a_is_a_409(
        world: World, template: str, count: int) -> None:
    """Which endpoint serves template A is the repo's state, not the request's shape: a
    409 listing the candidates (a 422 told schemathesis a schema-valid body was refused)."""
    body = failed(world.client().post(f"{BASE}/prompts/experiments", json={
        "templateAId": template, "templateBId": "support-greeting-v3", "allocation": 20}),
        409)
    assert len(body["data"]["candidates"]) == count
    assert body["data"]["field"] == "endpointId"


def test_an_abn_experiment_takes_variants_with_weights(world: World) -> None:
    request = {"variants": [{"templateId": "support-greeting-v1", "weight": 50},
                            {"templateId": "support-greeting-v2", "weight": 30},
                            {"templateId": "support-greeting-v3", "weight": 20}],
               "endpointId": "support-chat", "environment": "dev", "name": "greeting-abn"}
    data = ok(world.client().post(f"{BASE}/prompts/experiments", json=request), 201)
    spec = yaml.safe_load(world.show(data["commit"], data["file"]))["spec"]
    assert [v["weight"] for v in spec["variants"]] == [50, 30, 20]
    body = failed(world.client().post(f"{BASE}/prompts/experiments", json={
        **request, "name": "bad-sum", "variants": request["variants"][:2]}), 409)
    assert (body["data"], body["message"]) == (
        {"field": "variants"}, "variants: the weights sum to 80, not 100")
    failed(world.client().post(f"{BASE}/prompts/experiments", json={
        **request, "templateAId": "support-greeting-v1"}), 400)


def test_a_registration_whose_review_branch_was_deleted_can_be_made_again(
        world: World) -> None:
    first = ok(world.client().post(f"{BASE}/catalog/models", json=MODEL), 201)
    failed(world.client().post(f"{BASE}/catalog/models", json=MODEL), 409)  # branch open
    git(world.repo, "branch", "-D", first["branch"])  # the reviewer rejected it
    again = ok(world.client().post(f"{BASE}/catalog/models", json=MODEL), 201)
    assert again["branch"] != first["branch"]


def test_a_body_that_is_not_json_names_the_body_with_its_line_and_column(
        world: World) -> None:
    body = failed(world.client().post(
        f"{BASE}/serving/endpoints", content=b'{"modelId": "support-chat@1.2.0",\n'
                                             b' "environment": dev}',
        headers={"Content-Type": "application/json"}), 422)
    assert body["message"] == ("invalid request: body: not valid JSON at line 2, column 17: "
                               "Expecting value")
    assert body["data"]["errors"] == [{
        "location": "body", "field": "body", "type": "json_invalid", "line": 2, "column": 17,
        "message": "not valid JSON at line 2, column 17: Expecting value"}]
    assert [r.result for r in writes(world.store)] == []  # refused before any write began


@pytest.mark.parametrize(("schema_name", "field", "refused", "taken"), [
    ("ModelRequest", "name", "AsyncIterable", "support-chat"),
    ("ModelRequest", "version", "0", "1.4.0-rc.1+build.5"),
    ("TrainingRequest", "name", "ṏÅP", "support-chat-dpo"),
    ("TrainingRequest", "outputModel", "support-chat", "support-chat@1.5.0"),
    ("TrainingRequest", "image", "Ä", "ghcr.io/acme/llm-trainer:2.4.1"),
    ("EndpointRequest", "route", "v1/chat", "/v1/support-chat"),
    ("ExperimentRequest", "metric", "latency ms", "latency_ms"),
    ("TrainingRequest", "experimentUrl", "mlflow/18", "https://mlflow.example.com/18"),
])
def test_the_openapi_publishes_each_format_the_create_calls_check(
        world: World, schema_name: str, field: str, refused: str, taken: str) -> None:
    """A value the use case refuses for its shape is one the published pattern refuses,
    so a schema-valid body is never a 422 for its format (schemathesis: rejected)."""
    schemas = world.client().get(f"{BASE}/openapi.json").json()["components"]["schemas"]
    prop = schemas[schema_name]["properties"][field]
    pattern = next(o for o in prop.get("anyOf", [prop]) if o.get("type") == "string")["pattern"]
    assert re.fullmatch(pattern, refused) is None
    assert re.fullmatch(pattern, taken) is not None


def test_a_base_model_the_catalog_lacks_is_a_404_and_metadata_is_typed(world: World) -> None:
    """Which models exist is the repo's state (404, as deploy's modelId), not the body's
    shape (it was a 422 from the edited specs); the metadata keys the spec has are typed
    in the schema and checked before any commit (a number is not a framework)."""
    before = git(world.repo, "rev-parse", "HEAD")
    for base in ("no-such-model@1.0.0", {"name": "llama-3-8b", "version": "9.9.9"}):
        body = failed(world.client().post(f"{BASE}/catalog/models", json={
            **MODEL, "metadata": {"base_model": base}}), 404)
        assert "no-such-model" in body["message"] or "9.9.9" in body["message"]
    for metadata in ({"framework": 5, "base_model": "llama-3-8b@1.0.0"},
                     {"base_model": "llama-3-8b"}, {"note": {"nested": True}}):
        body = failed(world.client().post(f"{BASE}/catalog/models",
                                          json={**MODEL, "metadata": metadata}), 422)
        assert body["data"]["errors"][0]["field"].startswith("metadata"), body
    assert git(world.repo, "rev-parse", "HEAD") == before
    assert writes(world.store) == []


ENDPOINT = {"modelId": "support-chat@1.2.0", "environment": "dev", "route": "/v1/helper",
            "minReplicas": 1, "maxReplicas": 3, "name": "helper"}


def test_a_create_the_repo_as_it_stands_does_not_take_names_the_request_field(
        world: World) -> None:
    """Schema-valid bodies the edited specs refuse (found by schemathesis's stateful
    phase, which follows the create's OpenAPI links) are a 404 for an environment
    llmops.yaml does not declare and a 409 for a clash with the repo, naming the request
    field, never a 422 (which says the body broke the documented schema)."""
    client = world.client()
    body = failed(client.post(f"{BASE}/serving/endpoints",
                              json={**ENDPOINT, "environment": "qa"}), 404)
    assert (body["data"]["field"], body["message"][:40]) == (
        "environment", "environment: environment 'qa' is not dec")
    body = failed(client.post(f"{BASE}/training/jobs", json={
        "name": "dpo", "environment": "qa", "baseModelId": "llama-3-8b@1.0.0",
        "datasetId": "customer-tickets", "image": "ghcr.io/acme/trainer:1",
        "outputModel": "support-chat@1.5.0"}), 404)
    assert body["data"]["field"] == "environment"
    body = failed(client.post(f"{BASE}/serving/endpoints",
                              json={**ENDPOINT, "minReplicas": 4, "maxReplicas": 2}), 409)
    assert (body["data"], body["message"]) == (
        {"field": "minReplicas"}, "minReplicas (4) is greater than maxReplicas (2)")
    assert git(world.repo, "branch", "--list", "llmops/*") == ""
    assert [r.result for r in writes(world.store)] == ["intent", "failed"] * 2


def test_a_base_model_only_on_another_review_branch_is_a_409_naming_it(world: World) -> None:
    base = ok(world.client().post(f"{BASE}/catalog/models", json={
        "name": "tiny-base", "version": "1.0.0", "type": "base",
        "owner_team": "nlp-platform"}), 201)
    body = failed(world.client().post(f"{BASE}/catalog/models", json={
        **MODEL, "metadata": {"base_model": "tiny-base@1.0.0"}}), 409)
    assert body["data"]["field"] == "metadata.baseModel"
    assert "model tiny-base 1.0.0 is not defined" in body["message"]
    body = failed(world.client().post(f"{BASE}/serving/endpoints", json={
        **ENDPOINT, "modelId": base["id"]}), 409)
    assert body["data"]["field"] == "modelId"
    assert body["data"]["issues"][0]["file"] == "endpoints/dev/helper.yaml"
    assert git(world.repo, "branch", "--list", "llmops/*").split() == [base["branch"]]


def test_an_autoscale_policy_has_a_documented_shape(world: World) -> None:
    """autoscalePolicy was a free object: a schema-valid one could be refused (422)."""
    for i, (policy, autoscale) in enumerate([
            ({"cpuUtilization": 60}, {"cpuUtilization": 60}),
            ({"metric": "queue_depth", "targetAverageValue": "4"},
             {"customMetric": {"name": "queue_depth", "targetAverageValue": "4"}}),
            ({"customMetric": {"name": "queue_depth", "targetAverageValue": 4}},
             {"customMetric": {"name": "queue_depth", "targetAverageValue": 4}})]):
        data = ok(world.client().post(f"{BASE}/serving/endpoints", json={
            **ENDPOINT, "name": f"helper-{i}", "route": f"/v1/helper-{i}",
            "autoscalePolicy": policy}), 201)
        assert yaml.safe_load(world.show(data["commit"], data["file"]))["spec"][
            "autoscale"] == autoscale
    body = failed(world.client().post(f"{BASE}/serving/endpoints", json={
        **ENDPOINT, "autoscalePolicy": {"": {}}}), 422)
    assert body["data"]["errors"][0]["field"].startswith("autoscalePolicy")


def test_a_write_without_a_specs_repo_is_a_409_not_a_503(world: World) -> None:
    """No specs repo is an optional part this server runs without, like Redis or the
    webhook secret (409: asking again cannot help); a 503 said to retry later."""
    client = client_for(world.store, "")
    body = failed(client.post(f"{BASE}/catalog/models", json=MODEL), 409)
    assert body["data"] == {"retryable": False, "setting": "LLMOPS_GIT__REPO"}
    failed(client.post(f"{BASE}/catalog/models/support-chat@1.3.0/promote",
                       json={"stage": "approved"}), 409)


def test_the_openapi_publishes_the_hyperparameter_names_a_training_job_takes(
        world: World) -> None:
    schemas = world.client().get(f"{BASE}/openapi.json").json()["components"]["schemas"]
    pattern = schemas["TrainingRequest"]["properties"]["hyperparameters"]["propertyNames"][
        "pattern"]
    assert re.fullmatch(pattern, "learning_rate") is not None
    assert re.fullmatch(pattern, "1 rate") is None  # the spec refuses it: so does the schema


def test_the_openapi_documents_an_upload_parts_file_name(world: World) -> None:
    """The part's Content-Disposition filename is what the upload names the file by; the
    body schema cannot say it, the part's header (encoding) does, with a file name a
    client may send (schemathesis sent "files.pdf" when none was documented: a 422)."""
    doc = world.client().get(f"{BASE}/openapi.json").json()
    media = doc["paths"]["/llm-ops/v1/catalog/models/{model_id}/upload"]["post"][
        "requestBody"]["content"]["multipart/form-data"]
    header = media["encoding"]["files"]["headers"]["Content-Disposition"]["schema"]
    assert re.fullmatch(header["pattern"], header["example"])
    assert re.fullmatch(header["pattern"], 'form-data; name="files"; filename="files.pdf"') \
        is None
