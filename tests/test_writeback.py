"""Writes through git: rollback, conclude and promote over HTTP, each one commit in the specs repo.

A real specs repo (``scaffold.init_repo``), a real store with the catalog
seeded from that repo, and the API with signed proxy headers. Every test
checks what a user of the repo would see: the commit's content, author and
branch, that nothing else in the repo moved (HEAD, the work tree, the
tracked branch unless the write went direct) and the audit rows.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from test_source import hook_dir

from conftest import failed, ok
from llmops.api.app import create_app
from llmops.api.auth import proxy_signature
from llmops.engine import settings
from llmops.engine.source import scaffold, specedits, writeback
from llmops.engine.spec import validate
from llmops.engine.store import Store, audit, catalog, state
from llmops.engine.store.models import RunResult
from llmops.engine.types import Kind, SpecKey

BASE = "/llm-ops/v1"
SECRET = "writeback-test-proxy-secret"
USER = "Ada Lovelace"
GIT_ENV = {"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "dev", "GIT_AUTHOR_EMAIL": "dev@example.com",
           "GIT_COMMITTER_NAME": "dev", "GIT_COMMITTER_EMAIL": "dev@example.com"}


def git(repo: Path, *args: str) -> str:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **GIT_ENV}
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          check=True, env=env).stdout


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--no-verify", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()


@dataclass
class Snapshot:
    """What the user of a clone sees: HEAD, its branch, every branch tip, the work tree."""

    head: str
    symbolic: str
    refs: dict[str, str]
    status: str
    files: dict[str, bytes]

    @classmethod
    def of(cls, repo: Path) -> Snapshot:
        refs = dict(line.split(" ", 1)[::-1] for line in
                    git(repo, "for-each-ref", "--format=%(objectname) %(refname)").splitlines())
        bare = git(repo, "rev-parse", "--is-bare-repository").strip() == "true"
        files = {} if bare else {
            str(p.relative_to(repo)): p.read_bytes() for p in sorted(repo.rglob("*"))
            if p.is_file() and ".git" not in p.relative_to(repo).parts}
        return cls(head=git(repo, "rev-parse", "HEAD").strip(),
                   symbolic=git(repo, "symbolic-ref", "HEAD").strip(), refs=refs,
                   status="" if bare else git(repo, "status", "--porcelain"), files=files)


@dataclass
class World:
    repo: Path
    store: Store
    client: Callable[..., TestClient]

    def record(self) -> str:
        """Record the catalog at the tip of main, as the reconciler would."""
        head = git(self.repo, "rev-parse", "refs/heads/main").strip()
        catalog.record(self.store, head, validate.load_and_validate(self.checkout(head)))
        return head

    def checkout(self, rev: str) -> Path:
        out = self.repo.parent / f"export-{rev[:12]}"
        if not out.exists():
            out.mkdir()
            archive = subprocess.run(["git", "-C", str(self.repo), "archive", rev],
                                     capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
        return out

    def show(self, rev: str, file: str) -> str:
        return git(self.repo, "show", f"{rev}:{file}")


def client_for(store: Store, repo: Path | str, roles: str = "admin", *, user: str = USER,
               **overrides: Any) -> TestClient:
    api = {"trusted_proxies": ["127.0.0.1"], "proxy_secret": SECRET}
    cfg = settings.load(api=api, git={"repo": str(repo), "branch": "main"}, **overrides)
    headers = {"X-User-Id": user, "X-User-Roles": roles,
               "X-Proxy-Signature": proxy_signature(user, roles, SECRET)}
    return TestClient(create_app(store, settings=cfg), client=("127.0.0.1", 40000),
                      headers=headers)


def make_world(store: Store, tmp_path: Path) -> World:
    """A specs repo from the template and the catalog recorded at its tip."""
    repo = tmp_path / "specs"
    scaffold.init_repo(repo)
    w = World(repo=repo, store=store,
              client=lambda roles="admin", **kw: client_for(store, repo, roles, **kw))
    w.record()
    return w


@pytest.fixture
def world(store: Store, tmp_path: Path) -> World:
    return make_world(store, tmp_path)


def writes(store: Store) -> list[audit.AuditRecord]:
    return list(reversed(audit.AuditLog(store).query(action="write").entries))


def model_id(name: str) -> str:
    return str(SpecKey(Kind.MODEL, "", name).id)


def changed_lines(repo: Path, parent: str, commit: str) -> list[str]:
    diff = git(repo, "diff", "--unified=0", parent, commit)
    return [line for line in diff.splitlines()
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]


# --------------------------------------------------------------------------- promote


def test_promote_commits_only_the_stage_line_on_a_review_branch(world: World) -> None:
    before = Snapshot.of(world.repo)
    data = ok(world.client().post(f"{BASE}/catalog/models/support-chat@1.3.0/promote",
                                  json={"stage": "approved"}))
    assert data["direct"] is False
    assert data["branch"].startswith("llmops/promote/support-chat-")
    assert data["parent"] == before.refs["refs/heads/main"]
    assert data["file"] == "models/support-chat-1.3.0.yaml"
    assert "review branches" in data["reason"]
    commit = data["commit"]
    assert git(world.repo, "rev-parse", f"refs/heads/{data['branch']}").strip() == commit
    # Only the stage line changed; comments and layout are as the user wrote them.
    assert changed_lines(world.repo, data["parent"], commit) == ["-  stage: draft",
                                                                 "+  stage: approved"]
    text = world.show(commit, "models/support-chat-1.3.0.yaml")
    assert text.startswith("# Model: support-chat 1.3.0, the next fine-tune, still a draft.")
    author = git(world.repo, "log", "-1", "--format=%an <%ae>|%cn", commit).strip()
    assert author == "Ada Lovelace <ada-lovelace@users.llmops>|llmops"
    message = git(world.repo, "log", "-1", "--format=%B", commit)
    assert "Llmops-Action: promote" in message
    assert "Llmops-Requested-By: Ada Lovelace" in message
    # Nothing the user holds moved: HEAD, main, the work tree.
    after = Snapshot.of(world.repo)
    assert after.head == before.head
    assert after.symbolic == before.symbolic
    assert after.files == before.files
    assert after.status == before.status == ""
    assert {k: v for k, v in after.refs.items() if k != f"refs/heads/{data['branch']}"} \
        == before.refs
    rows = writes(world.store)
    assert [(r.result, r.target) for r in rows] == [
        ("intent", "Model support-chat@1.3.0"), ("succeeded", "Model support-chat@1.3.0")]
    assert rows[1].actor == USER
    assert rows[1].source_commit == commit
    assert rows[1].reason == "stage draft -> approved"
    assert rows[1].details["branch"] == data["branch"]


@pytest.mark.slow  # over 0.5 s of CPU on its own
def test_promote_to_the_current_stage_is_a_409_without_a_commit(world: World) -> None:
    before = Snapshot.of(world.repo)
    uid = model_id("support-chat@1.3.0")
    body = failed(world.client().post(f"{BASE}/catalog/models/{uid}/promote",
                                      json={"stage": "draft"}), 409)
    assert "nothing to commit" in body["message"]
    assert Snapshot.of(world.repo) == before
    assert [r.result for r in writes(world.store)] == ["intent", "failed"]
    failed(world.client().post(f"{BASE}/catalog/models/support-chat@1.3.0/promote",
                               json={"stage": "retired"}), 422)
    failed(world.client().post(f"{BASE}/catalog/models/support-chat/promote",
                               json={"stage": "approved"}), 409)  # which version?


def test_a_viewer_cannot_write_and_the_denial_is_audited(world: World) -> None:
    before = Snapshot.of(world.repo)
    viewer = world.client("viewer")
    failed(viewer.post(f"{BASE}/catalog/models/support-chat@1.3.0/promote",
                       json={"stage": "approved"}), 403)
    failed(viewer.post(f"{BASE}/prompts/experiments/support-greeting-v2-vs-v3/conclude",
                       json={"winnerTemplateId": "support-greeting-v3"}), 403)
    failed(viewer.post(f"{BASE}/serving/endpoints/support-chat/rollback",
                       params={"environment": "prod"}), 403)
    assert Snapshot.of(world.repo) == before
    denied = audit.AuditLog(world.store).query(action="access").entries
    assert {r.reason for r in denied} == {"models:promote", "prompts:conclude",
                                          "serving:rollback"}
    assert writes(world.store) == []


def test_an_unreachable_remote_is_a_clear_503(world: World, store: Store,
                                              tmp_path: Path) -> None:
    client = client_for(store, "https://user:s3cret@127.0.0.1:1/specs.git",
                        home=tmp_path / "home")
    response = client.post(f"{BASE}/catalog/models/support-chat@1.3.0/promote",
                           json={"stage": "approved"})
    body = failed(response, 503)
    assert "s3cret" not in response.text
    assert body["message"]
    assert [r.result for r in writes(store)] == ["intent", "failed"]


@pytest.mark.slow  # over 0.5 s of CPU on its own
def test_writes_to_a_remote_repo_are_pushed(world: World, store: Store,
                                            tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(world.repo), str(remote)], check=True)
    client = client_for(store, f"file://{remote}", home=tmp_path / "home")
    data = ok(client.post(f"{BASE}/catalog/models/support-chat@1.3.0/promote",
                          json={"stage": "approved"}))
    pushed = subprocess.run(["git", "--git-dir", str(remote), "rev-parse",
                             f"refs/heads/{data['branch']}"], check=True,
                            capture_output=True, text=True).stdout.strip()
    assert pushed == data["commit"]
    assert writes(store)[-1].result == "succeeded"


# --------------------------------------------------------------------------- conclude


EXPERIMENT = "experiments/support-greeting-v2-vs-v3.yaml"


def test_conclude_sets_state_winner_and_notes(world: World) -> None:
    winner_uuid = str(SpecKey(Kind.PROMPT_TEMPLATE, "", "support-greeting-v3").id)
    data = ok(world.client().post(
        f"{BASE}/prompts/experiments/support-greeting-v2-vs-v3/conclude",
        json={"winnerTemplateId": winner_uuid,
              "notes": "v3 cut follow-ups by 12%.\nLatency unchanged."}))
    assert data["branch"].startswith("llmops/conclude/support-greeting-v2-vs-v3-")
    text = world.show(data["commit"], EXPERIMENT)
    assert "  state: concluded\n" in text
    assert "  winner: support-greeting-v3\n" in text
    assert "  notes: |\n    v3 cut follow-ups by 12%.\n    Latency unchanged.\n" in text
    # Comments inside the spec survive the round trip.
    assert "  # A ServingEndpoint of the same environment.\n" in text
    assert sorted(changed_lines(world.repo, data["parent"], data["commit"])) == sorted([
        "-  state: running",
        "-    Hypothesis: retrieved help-center context (v3) cuts follow-up questions",
        "-    without hurting latency. Started at 20% to bound the extra context cost.",
        "+  state: concluded", "+    v3 cut follow-ups by 12%.",
        "+    Latency unchanged.", "+  winner: support-greeting-v3"])
    rows = writes(world.store)
    assert rows[-1].result == "succeeded"
    assert rows[-1].target == "PromptExperiment prod/support-greeting-v2-vs-v3"
    assert rows[-1].environment == "prod"


@pytest.mark.parametrize("winner", ["support-greeting-v1", "no-such-template",
                                    str(SpecKey(Kind.DATASET, "", "customer-tickets").id)])
def test_a_winner_that_is_not_a_variant_is_a_409_without_a_commit(world: World,
                                                                  winner: str) -> None:
    """Well formed, so not a 422: the experiment's variants in the repo refuse it (a
    schema-valid request answered 422 is one schemathesis calls rejected)."""
    before = Snapshot.of(world.repo)
    body = failed(world.client().post(
        f"{BASE}/prompts/experiments/support-greeting-v2-vs-v3/conclude",
        json={"winnerTemplateId": winner}), 409)
    assert "winner" in body["message"].lower() or "winnerTemplateId" in body["message"]
    assert Snapshot.of(world.repo) == before


def test_conclude_rejects_unknown_fields(world: World) -> None:
    failed(world.client().post(
        f"{BASE}/prompts/experiments/support-greeting-v2-vs-v3/conclude",
        json={"winnerTemplateId": "support-greeting-v3", "state": "running"}), 422)


# --------------------------------------------------------------------------- rollback


PROD_ENDPOINT = "endpoints/prod/support-chat.yaml"


def _bump_prod_replicas(world: World) -> tuple[str, str]:
    path = world.repo / PROD_ENDPOINT
    original = path.read_text()
    path.write_text(original.replace("    max: 4\n", "    max: 5\n", 1))
    assert path.read_text() != original
    return original, commit_all(world.repo, "prod: more replicas")


def test_rollback_restores_the_previous_spec_on_a_branch(world: World) -> None:
    original, bumped = _bump_prod_replicas(world)
    # A later commit that only reformats a comment does not count as a spec change.
    path = world.repo / PROD_ENDPOINT
    path.write_text("# reworded header\n" + path.read_text())
    commit_all(world.repo, "comment only")
    applied = world.record()
    before = Snapshot.of(world.repo)
    data = ok(world.client().post(f"{BASE}/serving/endpoints/support-chat/rollback",
                                  params={"environment": "prod"}))
    assert data["branch"].startswith("llmops/rollback/support-chat-")
    assert data["parent"] == applied
    assert world.show(data["commit"], PROD_ENDPOINT) == original
    after = Snapshot.of(world.repo)
    assert (after.head, after.files, after.status) == (before.head, before.files, "")
    assert after.refs["refs/heads/main"] == applied
    row = writes(world.store)[-1]
    assert row.result == "succeeded"
    assert row.target == "ServingEndpoint prod/support-chat"
    assert bumped[:12] in row.reason


def _applied(world: World, env: str, revision: str) -> None:
    """What the reconciler records when ``env`` applied ``revision``."""
    run = state.start_run(world.store, env, revision)
    state.finish_run(world.store, run.id, RunResult.SUCCEEDED)
    state.put_environment_status(world.store, state.EnvironmentStatus(
        env, observed_revision=revision, last_applied_revision=revision))


def test_rollback_skips_a_version_that_was_never_applied(world: World) -> None:
    path = world.repo / PROD_ENDPOINT
    original = path.read_text()
    _applied(world, "prod", world.record())
    path.write_text(original.replace("    max: 4\n", "    max: 9\n", 1))
    commit_all(world.repo, "prod: far more replicas (a policy blocks it: never applied)")
    path.write_text(original.replace("    max: 4\n", "    max: 5\n", 1))
    commit_all(world.repo, "prod: more replicas")
    _applied(world, "prod", world.record())
    data = ok(world.client().post(f"{BASE}/serving/endpoints/support-chat/rollback",
                                  params={"environment": "prod"}))
    assert world.show(data["commit"], PROD_ENDPOINT) == original  # max: 4, not the blocked 9


def test_rollback_with_no_earlier_version_is_a_409(world: World) -> None:
    before = Snapshot.of(world.repo)
    body = failed(world.client().post(f"{BASE}/serving/endpoints/support-chat/rollback",
                                      params={"environment": "prod"}), 409)
    assert "no earlier version" in body["message"]
    assert Snapshot.of(world.repo) == before
    assert [r.result for r in writes(world.store)] == ["intent", "failed"]


def test_a_rollback_that_breaks_the_repo_is_a_409_with_issues(world: World) -> None:
    """The request is well-formed; the repo as it stands does not take the old file."""
    dev = world.repo / "endpoints/dev/support-chat.yaml"
    dev.write_text(dev.read_text().replace("version: 1.3.0", "version: 1.2.0"))
    (world.repo / "models/support-chat-1.3.0.yaml").unlink()
    commit_all(world.repo, "dev back on 1.2.0; drop 1.3.0")
    world.record()
    before = Snapshot.of(world.repo)
    body = failed(world.client().post(f"{BASE}/serving/endpoints/support-chat/rollback",
                                      params={"environment": "dev"}), 409)
    issues = body["data"]["issues"]
    assert any(i["file"] == "endpoints/dev/support-chat.yaml" and "1.3.0" in i["message"]
               for i in issues), issues
    assert Snapshot.of(world.repo) == before
    assert writes(world.store)[-1].result == "failed"


# --------------------------------------------------------------------------- direct commits


def _allow_direct(world: World, *envs: str) -> None:
    path = world.repo / "llmops.yaml"
    text = path.read_text()
    for env in envs:
        text = text.replace(f"      context: kind-llmops-{env}\n",
                            f"      context: kind-llmops-{env}\n    directCommits: true\n")
    path.write_text(text)
    commit_all(world.repo, f"direct commits in {', '.join(envs)}")


def _bare_clone(world: World) -> Path:
    bare = world.repo.parent / "specs.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(world.repo), str(bare)], check=True,
                   env={"PATH": os.environ.get("PATH", ""), **GIT_ENV})
    return bare


def test_direct_commit_when_the_environment_allows_it(world: World) -> None:
    _allow_direct(world, "prod")
    world.record()
    bare = _bare_clone(world)
    before = Snapshot.of(bare)
    client = client_for(world.store, bare)
    data = ok(client.post(f"{BASE}/prompts/experiments/support-greeting-v2-vs-v3/conclude",
                          json={"winnerTemplateId": "support-greeting-v2"}))
    assert data["direct"] is True
    assert data["branch"] == "main"
    assert data["parent"] == before.refs["refs/heads/main"]
    after = Snapshot.of(bare)
    assert after.refs == {**before.refs, "refs/heads/main": data["commit"]}
    assert git(bare, "rev-parse", f"{data['commit']}^").strip() == data["parent"]
    # A global spec (Model) goes direct only when every environment allows it.
    data = ok(client.post(f"{BASE}/catalog/models/support-chat@1.3.0/promote",
                          json={"stage": "approved"}))
    assert data["direct"] is False
    assert "dev, stg take changes through review branches" in data["reason"]


def test_models_go_direct_only_when_every_environment_allows_it(world: World) -> None:
    _allow_direct(world, "dev", "stg", "prod")
    world.record()
    bare = _bare_clone(world)
    data = ok(client_for(world.store, bare).post(
        f"{BASE}/catalog/models/support-chat@1.3.0/promote", json={"stage": "approved"}))
    assert (data["direct"], data["branch"]) == (True, "main")


def test_a_clean_checked_out_tracked_branch_moves_with_its_work_tree(world: World) -> None:
    _allow_direct(world, "prod")
    world.record()
    before = Snapshot.of(world.repo)
    data = ok(world.client().post(
        f"{BASE}/prompts/experiments/support-greeting-v2-vs-v3/conclude",
        json={"winnerTemplateId": "support-greeting-v2"}))
    assert (data["direct"], data["branch"]) == (True, "main")
    assert "clean work tree" in data["reason"]
    after = Snapshot.of(world.repo)
    assert after.head == data["commit"] != before.head
    assert after.status == ""  # the work tree and the index follow the branch
    experiment = "experiments/support-greeting-v2-vs-v3.yaml"
    assert after.files[experiment].decode() == world.show(data["commit"], experiment)


def test_uncommitted_changes_keep_the_checked_out_branch_where_it_is(world: World) -> None:
    _allow_direct(world, "prod")
    world.record()
    readme = world.repo / "README.md"
    readme.write_text(readme.read_text() + "\nwork in progress\n")
    before = Snapshot.of(world.repo)
    data = ok(world.client().post(
        f"{BASE}/prompts/experiments/support-greeting-v2-vs-v3/conclude",
        json={"winnerTemplateId": "support-greeting-v2"}))
    assert data["direct"] is False
    assert "uncommitted changes" in data["reason"]
    after = Snapshot.of(world.repo)
    assert after.refs["refs/heads/main"] == before.refs["refs/heads/main"]
    assert (after.head, after.files, after.status) == (before.head, before.files,
                                                       before.status)


def test_rollback_goes_onto_the_default_branch_when_the_policy_allows_it(
        world: World) -> None:
    _allow_direct(world, "prod")
    path = world.repo / "endpoints/prod/support-chat.yaml"
    original = path.read_text()
    path.write_text(original.replace("    max: 4\n", "    max: 5\n", 1))
    commit_all(world.repo, "prod: more replicas")
    world.record()
    data = ok(world.client().post(f"{BASE}/serving/endpoints/support-chat/rollback",
                                  params={"environment": "prod"}))
    assert (data["direct"], data["branch"]) == (True, "main")
    assert path.read_text() == original
    assert git(world.repo, "status", "--porcelain") == ""


# --------------------------------------------------------------------------- layout


def test_edits_keep_a_four_space_layout_and_touch_only_the_changed_fields() -> None:
    text = ("# experiment with a wider indent\n"
            "apiVersion: llmops.io/v1alpha1\nkind: PromptExperiment\nmetadata:\n"
            "    name: ab\nspec:\n    environment: dev\n    endpointRef: chat\n"
            "    variants:\n    -   templateRef: a  # the control\n        weight: 50\n"
            "    -   templateRef: b\n        weight: 50\n    state: running\n")
    edited = specedits.conclude_experiment("ab", "b", None)(text)
    assert edited == text.replace("state: running", "state: concluded") + "    winner: b\n"
    with pytest.raises(writeback.NotAVariant):  # a conflict with the spec (409)
        specedits.conclude_experiment("ab", "c", None)(text)
    with pytest.raises(writeback.TargetMissing):
        specedits.conclude_experiment("other", "b", None)(text)


def test_a_write_back_runs_nothing_the_specs_repo_configures(world: World,
                                                             tmp_path: Path) -> None:
    """Filter drivers, textconv, diff drivers and hooks configured in the specs repo (its
    ``.git/config``, ``.gitattributes`` and hooks folder) never run during a write-back,
    direct into a checked-out work tree or onto a review branch."""
    canaries = tmp_path / "canaries"
    canaries.mkdir()
    (world.repo / ".gitattributes").write_text("*.yaml filter=evil diff=evil merge=evil\n")
    commit_all(world.repo, "attributes")
    _allow_direct(world, "prod")
    world.record()
    for name in ("clean", "smudge"):  # pass the content through, and leave a trace
        git(world.repo, "config", f"filter.evil.{name}", f"touch {canaries}/filter-{name};cat")
    git(world.repo, "config", "diff.evil.textconv", f"touch {canaries}/textconv;cat")
    git(world.repo, "config", "diff.evil.command", f"touch {canaries}/diff")
    git(world.repo, "config", "merge.evil.driver", f"touch {canaries}/merge")
    hook_dir(world.repo / ".git" / "hooks", canaries)
    for hook in ("pre-commit", "commit-msg", "post-commit", "pre-push"):
        (world.repo / ".git" / "hooks" / hook).write_text(f"#!/bin/sh\ntouch {canaries}/{hook}\n")
        (world.repo / ".git" / "hooks" / hook).chmod(0o755)
    client = world.client()
    direct = ok(client.post(f"{BASE}/prompts/experiments/support-greeting-v2-vs-v3/conclude",
                            json={"winnerTemplateId": "support-greeting-v2"}))
    assert direct["direct"] is True, direct["reason"]
    review = ok(client.post(f"{BASE}/catalog/models/support-chat@1.3.0/promote",
                            json={"stage": "approved"}))
    assert review["direct"] is False
    assert sorted(p.name for p in canaries.iterdir()) == []
