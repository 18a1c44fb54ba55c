"""Tenant scoping of the write routes: a team's principal writes only its team's specs.

A real specs repo and store (``test_writeback.make_world``); principals come
through the signed proxy (``X-User-Teams`` inside the HMAC) or an HS256
bearer token with a ``teams`` claim. A write on another team's spec is a
403 before anything is written (no intent row, no commit) and an ``access``
``denied`` audit row naming the team and the spec; the platform admin
(``*``) writes anywhere.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from test_writeback import (
    BASE,
    SECRET,
    Snapshot,
    World,
    commit_all,
    failed,
    make_world,
    ok,
    writes,
)

from llmops.api import tokens
from llmops.api.app import create_app
from llmops.api.auth import proxy_signature
from llmops.engine import settings
from llmops.engine.service.access import owner_team
from llmops.engine.store import Store, audit, catalog
from llmops.engine.types import Kind, SpecKey

JWT_SECRET = "tenant-test-jwt-secret-0123456789"
EXPERIMENT = "support-greeting-v2-vs-v3"  # prod support-chat: nlp-platform
DS_EXPERIMENT = "sql-prompts-a-vs-b"  # dev sql-assistant: data-science

SQL_EXPERIMENT = f"""\
apiVersion: llmops.io/v1alpha1
kind: PromptExperiment
metadata:
  name: {DS_EXPERIMENT}
spec:
  environment: dev
  endpointRef: sql-assistant
  variants:
    - templateRef: support-greeting-v1
      weight: 50
    - templateRef: support-greeting-v2
      weight: 50
  metric: latency_ms
  state: running
"""


def signed_teams(user: str, roles: str, teams: str) -> dict[str, str]:
    return {"X-User-Id": user, "X-User-Roles": roles, "X-User-Teams": teams,
            "X-Proxy-Signature": proxy_signature(user, roles, SECRET, teams)}


def client(world: World, headers: dict[str, str] | None = None) -> TestClient:
    api = {"trusted_proxies": ["127.0.0.1"], "proxy_secret": SECRET, "jwt_secret": JWT_SECRET}
    cfg = settings.load(api=api, git={"repo": str(world.repo), "branch": "main"})
    return TestClient(create_app(world.store, settings=cfg), client=("127.0.0.1", 40000),
                      headers=headers or {})


def bearer(**claims: Any) -> dict[str, str]:
    base: dict[str, Any] = {"sub": "dee", "roles": ["ml-engineer"], "exp": time.time() + 300}
    base.update(claims)
    return {"Authorization": f"Bearer {tokens.encode(base, JWT_SECRET)}"}


@pytest.fixture
def world(store: Store, tmp_path: Path) -> World:
    w = make_world(store, tmp_path)
    (w.repo / "experiments" / f"{DS_EXPERIMENT}.yaml").write_text(SQL_EXPERIMENT)
    commit_all(w.repo, "a data-science experiment")
    w.record()
    return w


def denials(store: Store) -> list[audit.AuditRecord]:
    return list(reversed(audit.AuditLog(store).query(action="access",
                                                     result="denied").entries))


def test_owner_team_follows_the_spec_the_model_and_the_endpoint(world: World) -> None:
    def team(kind: Kind, env: str, name: str) -> str:
        entry = catalog.get_key(world.store, SpecKey(kind, env, name))
        assert entry is not None
        return owner_team(world.store, entry)

    assert team(Kind.MODEL, "", "sql-adapter@1.0.0") == "data-science"
    assert team(Kind.MODEL, "", "support-chat@1.3.0") == "nlp-platform"
    assert team(Kind.SERVING_ENDPOINT, "dev", "sql-assistant") == "data-science"
    assert team(Kind.SERVING_ENDPOINT, "prod", "support-chat") == "nlp-platform"
    assert team(Kind.PROMPT_EXPERIMENT, "prod", EXPERIMENT) == "nlp-platform"
    assert team(Kind.PROMPT_EXPERIMENT, "dev", DS_EXPERIMENT) == "data-science"


def test_another_teams_experiment_is_403_audited_and_untouched(world: World) -> None:
    before = Snapshot.of(world.repo)
    dee = client(world, signed_teams("dee", "ml-engineer", "data-science"))
    body = failed(dee.post(f"{BASE}/prompts/experiments/{EXPERIMENT}/conclude",
                           json={"winnerTemplateId": "support-greeting-v3"}), 403)
    assert "team data-science does not own" in body["message"]
    assert body["data"] == {"ownerTeam": "nlp-platform", "teams": ["data-science"]}
    assert Snapshot.of(world.repo) == before
    assert writes(world.store) == []  # refused before the intent row
    [row] = denials(world.store)
    assert (row.actor, row.action, row.result, row.target) == (
        "dee", "access", "denied", f"PromptExperiment prod/{EXPERIMENT}")
    assert row.reason == f"team data-science does not own PromptExperiment prod/{EXPERIMENT}"
    assert row.details["ownerTeam"] == "nlp-platform"
    assert row.details["route"] == f"POST {BASE}/prompts/experiments/{{experiment_id}}/conclude"
    assert audit.verify(world.store).ok


def test_the_other_write_routes_are_scoped_too(world: World) -> None:
    before = Snapshot.of(world.repo)
    dee = client(world, signed_teams("dee", "ml-engineer", "data-science"))
    failed(dee.post(f"{BASE}/catalog/models/support-chat@1.3.0/promote",
                    json={"stage": "approved"}), 403)
    failed(dee.post(f"{BASE}/serving/endpoints/support-chat/rollback",
                    params={"environment": "prod"}), 403)
    failed(dee.post(f"{BASE}/catalog/models/support-chat@1.3.0/upload",
                    params={"filename": "config.json"}, content=b"{}",
                    headers={"Content-Type": "application/octet-stream"}), 403)
    # No teams at all: nothing is owned by the caller.
    nobody = client(world, {"X-User-Id": "ned", "X-User-Roles": "ml-engineer",
                            "X-Proxy-Signature": proxy_signature("ned", "ml-engineer",
                                                                 SECRET)})
    body = failed(nobody.post(f"{BASE}/catalog/models/sql-adapter@1.0.0/promote",
                              json={"stage": "deprecated"}), 403)
    assert "team (none) does not own Model sql-adapter@1.0.0" in body["message"]
    assert Snapshot.of(world.repo) == before
    assert writes(world.store) == []
    assert [r.target for r in denials(world.store)] == [
        "Model support-chat@1.3.0", "ServingEndpoint prod/support-chat",
        "Model support-chat@1.3.0", "Model sql-adapter@1.0.0"]


def test_own_teams_specs_are_written(world: World) -> None:
    dee = client(world, signed_teams("dee", "ml-engineer", "qa, data-science"))
    data = ok(dee.post(f"{BASE}/prompts/experiments/{DS_EXPERIMENT}/conclude",
                       json={"winnerTemplateId": "support-greeting-v2"}))
    assert data["branch"].startswith(f"llmops/conclude/{DS_EXPERIMENT}-")
    assert "state: concluded" in world.show(data["commit"], f"experiments/{DS_EXPERIMENT}.yaml")
    # (Deprecating sql-adapter 1.0.0, which prod serves, would break the promotion rule.)
    data = ok(dee.post(f"{BASE}/serving/endpoints", json={
        "modelId": "sql-adapter@1.0.0", "environment": "dev", "route": "/v1/sql-helper",
        "minReplicas": 1, "maxReplicas": 1, "name": "sql-helper"}), 201)
    assert "ownerTeam: data-science" in world.show(data["commit"], "endpoints/dev/sql-helper.yaml")
    assert [(r.result, r.actor) for r in writes(world.store)] == [
        ("intent", "dee"), ("succeeded", "dee")] * 2
    assert denials(world.store) == []


@pytest.mark.slow  # over 0.5 s of CPU on its own
def test_the_platform_admin_writes_anywhere(world: World) -> None:
    root = client(world, signed_teams("root", "admin", "data-science"))
    ok(root.post(f"{BASE}/prompts/experiments/{EXPERIMENT}/conclude",
                 json={"winnerTemplateId": "support-greeting-v3"}))
    teamless = client(world, {"X-User-Id": "root", "X-User-Roles": "admin",
                              "X-Proxy-Signature": proxy_signature("root", "admin", SECRET)})
    ok(teamless.post(f"{BASE}/catalog/models/support-chat@1.3.0/promote",
                     json={"stage": "approved"}))
    assert [r.result for r in writes(world.store)] == ["intent", "succeeded"] * 2
    assert denials(world.store) == []


@pytest.mark.slow  # over 0.5 s of CPU on its own
def test_the_teams_header_is_inside_the_proxy_signature(world: World) -> None:
    url = f"{BASE}/prompts/experiments/{EXPERIMENT}/conclude"
    body = {"winnerTemplateId": "support-greeting-v3"}
    # A teams header added to an old two-line signature is not believed.
    two_line = {"X-User-Id": "dee", "X-User-Roles": "ml-engineer",
                "X-User-Teams": "nlp-platform",
                "X-Proxy-Signature": proxy_signature("dee", "ml-engineer", SECRET)}
    assert "signature" in failed(client(world, two_line).post(url, json=body), 401)["message"]
    # Teams swapped after signing.
    swapped = {**signed_teams("dee", "ml-engineer", "data-science"),
               "X-User-Teams": "nlp-platform"}
    failed(client(world, swapped).post(url, json=body), 401)
    # Twice, or an underscore spelling: 400.
    good = signed_teams("dee", "ml-engineer", "data-science")
    failed(client(world).post(url, json=body,
                              headers=[*good.items(), ("X-User-Teams", "nlp-platform")]), 400)
    failed(client(world).post(url, json=body, headers={**good, "X_User_Teams": "x"}), 400)
    failed(client(world, signed_teams("dee", "ml-engineer", "bad team!")).post(
        url, json=body), 400)
    assert writes(world.store) == []
    # Signed correctly, the right team writes.
    ok(client(world, signed_teams("nia", "ml-engineer", "nlp-platform")).post(url, json=body))


@pytest.mark.slow  # over 0.5 s of CPU on its own
def test_the_teams_claim_of_a_bearer_token(world: World) -> None:
    url = f"{BASE}/prompts/experiments/{DS_EXPERIMENT}/conclude"  # data-science's
    body = {"winnerTemplateId": "support-greeting-v2"}
    failed(client(world, bearer(teams=["nlp-platform"])).post(url, json=body), 403)
    failed(client(world, bearer()).post(url, json=body), 403)
    failed(client(world, bearer(teams=[3])).post(url, json=body), 401)
    ok(client(world, bearer(teams=["data-science"])).post(url, json=body))
    # The 401 (a teams claim that is not a list of names) is audited with the actor
    # as claimed, unverified.
    assert [r.actor for r in denials(world.store)] == ["dee", "dee", "unverified:dee"]
