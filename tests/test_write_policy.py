"""Writes meet the policies before they commit: what ``llmops plan`` would deny is refused.

A real specs repo from the template (``test_writeback.make_world``) and the
API over TestClient. A write whose edited spec set a policy denies (a GPU
budget, promotion) is a 403 naming the rule and its reason, audited as
failed, with no branch and no commit; a compliant write still commits; a
write outside a change window is accepted and says that applying it waits.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from test_writeback import (
    BASE,
    PROD_ENDPOINT,
    Snapshot,
    World,
    commit_all,
    failed,
    make_world,
    ok,
    writes,
)

from llmops.engine.store import Store

# The template's prod window is Mon-Fri 08:00-18:00 Europe/Berlin.
SATURDAY = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
TUESDAY = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


@pytest.fixture
def world(store: Store, tmp_path: Path) -> World:
    return make_world(store, tmp_path)


def at(client: object, moment: datetime) -> None:
    """Check the client's writes at ``moment`` (the change windows' clock)."""
    client.app.state.writes.clock = lambda: moment  # type: ignore[attr-defined]


def assert_refused(world: World, before: Snapshot, body: dict[str, object], rule: str) -> None:
    """Nothing committed (no branch, no commit, the work tree as it was), audited as failed."""
    assert Snapshot.of(world.repo) == before
    rows = writes(world.store)
    assert [r.result for r in rows[-2:]] == ["intent", "failed"]
    assert rule in rows[-1].reason
    assert "nothing was committed" in str(body["message"])


def test_a_deploy_over_the_gpu_budget_is_refused_and_commits_nothing(world: World) -> None:
    before = Snapshot.of(world.repo)
    request = {"modelId": "support-chat@1.2.0", "environment": "stg", "route": "/v1/big",
               "minReplicas": 1, "maxReplicas": 2, "name": "big", "gpu": 4}
    body = failed(world.client().post(f"{BASE}/serving/endpoints", json=request), 403)
    # stg: support-chat 1 x 2 + the training job's 4 + this one's 4 x 2 = 14 of 8.
    assert ("gpu-budget: team nlp-platform uses 14 GPUs in stg (endpoints at replicas.max "
            "plus training jobs), is over its budget of 8") in body["message"]
    assert body["data"]["verdicts"] == [{
        "rule": "gpu-budget", "environment": "stg", "target": "team nlp-platform",
        "reason": "team nlp-platform uses 14 GPUs in stg (endpoints at replicas.max plus "
                  "training jobs), is over its budget of 8"}]
    assert_refused(world, before, body, "gpu-budget")


def test_a_compliant_deploy_still_commits(world: World) -> None:
    request = {"modelId": "support-chat@1.2.0", "environment": "stg", "route": "/v1/small",
               "minReplicas": 1, "maxReplicas": 1, "name": "small", "gpu": 1}
    data = ok(world.client().post(f"{BASE}/serving/endpoints", json=request), 201)
    assert data["branch"].startswith("llmops/deploy/small-")
    assert data["notes"] == []
    assert writes(world.store)[-1].result == "succeeded"


def test_a_redeploy_that_raises_replicas_over_the_budget_is_refused(world: World) -> None:
    # dev's support-chat has 1 GPU per replica and nlp-platform 2 GPUs in dev.
    before = Snapshot.of(world.repo)
    request = {"modelId": "support-chat@1.3.0", "environment": "dev",
               "route": "/v1/support-chat", "minReplicas": 1, "maxReplicas": 3}
    body = failed(world.client().post(f"{BASE}/serving/endpoints", json=request), 403)
    assert "uses 3 GPUs in dev" in body["message"]
    assert_refused(world, before, body, "gpu-budget")
    ok(world.client().post(f"{BASE}/serving/endpoints", json={**request, "maxReplicas": 2}))


def test_a_training_job_over_the_budget_is_refused(world: World) -> None:
    before = Snapshot.of(world.repo)
    request = {"name": "support-chat-dpo", "environment": "stg",
               "baseModelId": "llama-3-8b@1.0.0", "datasetId": "customer-tickets",
               "image": "ghcr.io/acme/llm-trainer:2.4.1", "outputModel": "support-chat@1.5.0",
               "gpu": 4}  # 2 + 4 + 4 = 10 of 8
    body = failed(world.client().post(f"{BASE}/training/jobs", json=request), 403)
    assert "team nlp-platform uses 10 GPUs in stg" in body["message"]
    assert_refused(world, before, body, "gpu-budget")


def test_demoting_a_model_that_prod_serves_is_refused_by_the_promotion_rule(
        world: World) -> None:
    before = Snapshot.of(world.repo)
    body = failed(world.client().post(f"{BASE}/catalog/models/support-chat@1.2.0/promote",
                                      json={"stage": "deprecated"}), 403)
    assert ("promotion: model support-chat 1.2.0 is deprecated, prod requires approved "
            "(for ServingEndpoint prod/support-chat)") in body["message"]
    assert body["data"]["verdicts"][0]["environment"] == "prod"
    assert_refused(world, before, body, "promotion")
    # A version no promoted environment serves changes stage freely.
    ok(world.client().post(f"{BASE}/catalog/models/support-chat@1.3.0/promote",
                           json={"stage": "approved"}))


def test_a_rollback_that_would_exceed_the_budget_is_refused(world: World) -> None:
    # Applied: prod's support-chat shrunk to 2 replicas to make room for a 6-GPU helper;
    # rolling support-chat back to 4 replicas would need 10 of nlp-platform's 8 GPUs.
    path = world.repo / PROD_ENDPOINT
    path.write_text(path.read_text().replace("    max: 4\n", "    max: 2\n", 1))
    helper = path.read_text().replace("name: support-chat\n", "name: helper\n", 1)
    helper = helper.replace("    gpu: 1\n", "    gpu: 3\n", 1).replace(
        "route: /v1/support-chat", "route: /v1/helper")
    (world.repo / "endpoints/prod/helper.yaml").write_text(helper)
    commit_all(world.repo, "prod: support-chat smaller, helper added")
    world.record()
    before = Snapshot.of(world.repo)
    body = failed(world.client().post(f"{BASE}/serving/endpoints/support-chat/rollback",
                                      params={"environment": "prod"}), 403)
    assert "team nlp-platform uses 10 GPUs in prod" in body["message"]
    assert_refused(world, before, body, "gpu-budget")


def test_a_write_outside_the_change_window_is_accepted_and_says_applying_waits(
        world: World) -> None:
    client = world.client()
    at(client, SATURDAY)
    data = ok(client.post(f"{BASE}/prompts/experiments/support-greeting-v2-vs-v3/conclude",
                          json={"winnerTemplateId": "support-greeting-v3"}))
    assert data["branch"].startswith("llmops/conclude/")
    [note] = data["notes"]
    assert note.startswith("prod: change-window: outside every "
                           "prod change window")
    assert "applying it waits for the window" in note
    again = world.client()
    at(again, TUESDAY)
    data = ok(again.post(f"{BASE}/catalog/models/support-chat@1.3.0/promote",
                         json={"stage": "approved"}))
    assert data["notes"] == []


def test_a_write_that_reduces_an_existing_overrun_is_accepted_with_a_note(
        world: World) -> None:
    # A hand commit put dev over nlp-platform's budget (1 + 4 = 5 of 2); shrinking it
    # through the API brings no new denial, and the answer says dev stays blocked.
    path = world.repo / "endpoints/dev/support-chat.yaml"
    path.write_text(path.read_text().replace("    max: 1\n", "    max: 5\n", 1))
    commit_all(world.repo, "dev: many replicas")
    world.record()
    request = {"modelId": "support-chat@1.3.0", "environment": "dev",
               "route": "/v1/support-chat", "minReplicas": 1, "maxReplicas": 3}
    data = ok(world.client().post(f"{BASE}/serving/endpoints", json=request))
    [note] = data["notes"]
    assert note.startswith("dev: already denied before this write, so dev stays blocked")
    assert "uses 3 GPUs in dev" in note
