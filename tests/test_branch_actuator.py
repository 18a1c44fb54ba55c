"""The ``hydrate-branch`` actuator through the reconciler, on a real git specs repo.

What a user (or Argo CD) sees: each environment's rendered manifests on its
own branch of the specs repo, in the Source Hydrator layout
(``<path>/manifest.yaml``, ``<path>/README.md``, root ``hydrator.metadata``);
one commit per change and none when nothing changed, also after a restart
that lost the store; the branch read back as the published state (a missing
branch is "nothing published", an unreadable one stops the environment);
the user's HEAD, index and work tree untouched.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from test_reconcile import bump_stg_support_chat, commit, drop_dev_sql_assistant

from conftest import edit
from llmops.engine import settings
from llmops.engine.actuate.base import ActuatorError
from llmops.engine.actuate.branch import HydrateBranchActuator
from llmops.engine.run import reconciler
from llmops.engine.service import compose
from llmops.engine.source import snapshots
from llmops.engine.spec import repoconfig
from llmops.engine.store import state
from llmops.engine.store.db import Store
from llmops.engine.store.models import RunResult
from llmops.engine.types import ResourceKey

WEDNESDAY = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)  # inside prod's change window
BRANCHES = {"dev": "environments/dev", "stg": "environments/stg", "prod": "rendered/prod"}


def git(repo: Path, *args: str, stdin: str | None = None,
        env: dict[str, str] | None = None) -> str:
    done = subprocess.run(["git", "-c", "core.hooksPath=/dev/null", *args], cwd=repo,
                          input=stdin, capture_output=True, text=True, check=False,
                          timeout=60, env={**os.environ, **(env or {})})
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def tip(repo: Path, branch: str) -> str:
    return git(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}")


def commits(repo: Path, branch: str) -> list[str]:
    return git(repo, "rev-list", f"refs/heads/{branch}", "--").split()


def manifest(repo: Path, env: str) -> dict[ResourceKey, dict[str, Any]]:
    rel = "manifest.yaml" if env == "prod" else f"{env}/manifest.yaml"
    docs = yaml.safe_load_all(git(repo, "show", f"{BRANCHES[env]}:{rel}"))
    return {ResourceKey.of(d): d for d in docs if d}


def metadata(repo: Path, env: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(git(repo, "show", f"{BRANCHES[env]}:hydrator.metadata"))
    return data


def plant(repo: Path, branch: str, rel: str, text: str, scratch: Path) -> str:
    """Commit one file to ``branch`` with plumbing (someone else wrote the branch)."""
    blob = git(repo, "hash-object", "-w", "--stdin", stdin=text)
    index = {"GIT_INDEX_FILE": str(scratch / "plant-index")}
    git(repo, "update-index", "--add", "--cacheinfo", f"100644,{blob},{rel}", env=index)
    tree = git(repo, "write-tree", env=index)
    new = git(repo, "-c", "user.name=Eve", "-c", "user.email=eve@example.com", "commit-tree",
              tree, "-m", "hand-written", env=index)
    git(repo, "update-ref", f"refs/heads/{branch}", new)
    return new


def open_store(path: Path) -> Store:
    opened = Store(f"sqlite:///{path}")
    opened.migrate()
    return opened


@pytest.fixture
def specs_repo(template_git_repo: Path) -> Path:
    """The template with every environment on ``hydrate-branch`` (prod: its own settings)."""
    edit(template_git_repo, "llmops.yaml", "    actuator: hydrate\n  stg:",
         "    actuator: hydrate-branch\n  stg:")
    edit(template_git_repo, "llmops.yaml", "    actuator: hydrate\n  prod:",
         "    actuator: hydrate-branch\n  prod:")
    edit(template_git_repo, "llmops.yaml",
         "      context: kind-llmops-prod\n    actuator: hydrate\n",
         "      context: kind-llmops-prod\n    actuator: hydrate-branch\n"
         "    hydrateBranch: {branch: rendered/prod, path: \".\"}\n")
    commit(template_git_repo, "publish to branches")
    return template_git_repo


class Harness:
    """A reconciler wired the way `llmops reconcile`/the daemon wire it (``service``)."""

    def __init__(self, repo: Path, tmp: Path, store: Store) -> None:
        self.repo = repo
        self.tmp = tmp
        self.store = store
        self.src = snapshots.open_source(str(repo), "main", tmp / "work")
        self.rec = self.make(store)

    def make(self, store: Store) -> reconciler.Reconciler:
        factory = compose.actuator_factory(settings.load(home=self.tmp / "home"),
                                           repo=str(self.repo))
        return reconciler.Reconciler(store, self.src, factory, clock=lambda: WEDNESDAY)

    def run(self) -> dict[str, reconciler.PassResult]:
        return {r.environment: r for r in self.rec.run_once()}

    def tips(self) -> dict[str, str]:
        return {env: tip(self.repo, branch) for env, branch in BRANCHES.items()}


@pytest.fixture
def h(specs_repo: Path, tmp_path: Path) -> Iterator[Harness]:
    with open_store(tmp_path / "llmops.db") as store:
        yield Harness(specs_repo, tmp_path, store)


def users_view(repo: Path) -> tuple[str, str, str, bytes, str]:
    return (git(repo, "symbolic-ref", "HEAD"), git(repo, "rev-parse", "HEAD"),
            git(repo, "status", "--porcelain"), (repo / ".git/index").read_bytes(),
            (repo / "endpoints/prod/support-chat.yaml").read_text())


@pytest.mark.slow  # over 0.5 s of CPU on its own
def test_first_pass_commits_each_environment_to_its_branch(h: Harness) -> None:
    # The user is mid-edit: none of it may reach a branch, none of it may change.
    edit(h.repo, "endpoints/prod/support-chat.yaml", "    max: 4", "    max: 3")
    (h.repo / "notes.txt").write_text("mine\n")
    before = users_view(h.repo)
    head = git(h.repo, "rev-parse", "HEAD")

    results = h.run()

    assert {env: r.result for env, r in results.items()} == {
        "dev": RunResult.SUCCEEDED, "stg": RunResult.SUCCEEDED, "prod": RunResult.SUCCEEDED}
    assert users_view(h.repo) == before
    for env in ("dev", "stg"):
        files = sorted(git(h.repo, "ls-tree", "-r", "--name-only", BRANCHES[env]).split())
        assert files == sorted([f"{env}/README.md", f"{env}/manifest.yaml",
                                "hydrator.metadata"])
    assert sorted(git(h.repo, "ls-tree", "-r", "--name-only", "rendered/prod").split()) == [
        "README.md", "hydrator.metadata", "manifest.yaml"]
    for env in BRANCHES:
        assert len(commits(h.repo, BRANCHES[env])) == 1
        assert metadata(h.repo, env)["drySha"] == head
        published = manifest(h.repo, env)
        assert set(published) == {i.key for i in state.read_inventory(h.store, env)}
        # the dry commit is named once (hydrator.metadata), never stamped on every object
        assert not [o for o in published.values()
                    if "llmops.io/source-commit" in o["metadata"].get("annotations", {})]
    # the committed spec, not the uncommitted edit, is on the branch
    deployment = next(o for k, o in manifest(h.repo, "prod").items()
                      if (k.kind, k.name) == ("Deployment", "support-chat"))
    assert "max: 3" not in yaml.safe_dump(deployment)
    readme = git(h.repo, "show", "environments/stg:stg/README.md")
    assert f"git checkout {head}" in readme
    assert "llmops render . --env stg\n" in readme


@pytest.mark.slow  # over 0.5 s of CPU on its own
def test_second_pass_and_a_restart_without_state_commit_nothing(h: Harness) -> None:
    h.run()
    first = h.tips()
    assert {r.result for r in h.run().values()} == {RunResult.NOOP}
    assert h.tips() == first
    # A daemon restarted on an empty store reads the branches back: nothing to write,
    # and the same manifest is not committed again.
    with open_store(h.tmp / "fresh.db") as fresh:
        h.rec = h.make(fresh)
        again = h.run()
        assert {r.result for r in again.values()} == {RunResult.SUCCEEDED}
        assert {(r.counts.created, r.counts.configured, r.counts.deleted)
                for r in again.values()} == {(0, 0, 0)}
    assert h.tips() == first


@pytest.mark.slow  # over 0.5 s of CPU on its own
def test_a_change_is_exactly_one_commit_on_its_branch(h: Harness) -> None:
    h.run()
    before, objects_before = h.tips(), manifest(h.repo, "stg")
    sha, stg = bump_stg_support_chat(h)
    assert (stg.counts.created, stg.counts.configured, stg.counts.deleted) == (0, 1, 0)
    after = h.tips()
    assert {e: after[e] for e in ("dev", "prod")} == {e: before[e] for e in ("dev", "prod")}
    assert commits(h.repo, BRANCHES["stg"]) == [after["stg"], before["stg"]]
    assert metadata(h.repo, "stg")["drySha"] == sha
    # only the changed object differs in the hydrated set (no per-object commit stamp)
    objects_after = manifest(h.repo, "stg")
    assert objects_after.keys() == objects_before.keys()
    assert [str(k) for k in objects_after if objects_after[k] != objects_before[k]] == [
        "Deployment/nlp-platform-stg/support-chat"]
    diff = git(h.repo, "diff", "-U0", before["stg"], after["stg"], "--", "stg/manifest.yaml")
    assert "source-commit" not in diff
    message = git(h.repo, "show", "-s", "--format=%B", BRANCHES["stg"])
    assert f"Argocd-reference-commit-sha: {sha}" in message
    assert {r.result for r in h.run().values()} == {RunResult.NOOP}
    assert h.tips() == after


@pytest.mark.slow  # over 0.5 s of CPU on its own
def test_a_removed_endpoint_leaves_the_branch(h: Harness) -> None:
    drop_dev_sql_assistant(h)
    assert not any(k.name == "sql-assistant" for k in manifest(h.repo, "dev"))
    assert len(commits(h.repo, BRANCHES["dev"])) == 2


def test_an_unreadable_branch_stops_the_environment_and_commits_nothing(
        h: Harness) -> None:
    broken = plant(h.repo, BRANCHES["dev"], "dev/manifest.yaml", "kind: [unclosed\n", h.tmp)
    not_objects = plant(h.repo, BRANCHES["stg"], "stg/manifest.yaml", "---\n- a list\n",
                        h.tmp)
    results = h.run()
    for env, planted in (("dev", broken), ("stg", not_objects)):
        assert (results[env].result, results[env].reason) == (RunResult.FAILED,
                                                              "ObserveFailed")
        assert BRANCHES[env] in results[env].message
        assert tip(h.repo, BRANCHES[env]) == planted
    # prod's branch did not exist: nothing was published, so everything is created
    assert results["prod"].result is RunResult.SUCCEEDED
    assert results["prod"].counts.created == len(manifest(h.repo, "prod"))


def test_the_specs_repo_must_be_local(tmp_path: Path, specs_repo: Path) -> None:
    env = repoconfig.Environment(namespace="x", actuator=repoconfig.ActuatorName.HYDRATE_BRANCH)
    cfg = settings.load(home=tmp_path / "home")
    remote = compose.actuator_factory(cfg, repo="https://git.example.com/schema.git")("dev", env)
    with pytest.raises(ActuatorError, match="must be a local path"):
        remote.observe("dev")
    by_url = compose.actuator_factory(cfg, repo=specs_repo.as_uri())("dev", env)
    assert isinstance(by_url, HydrateBranchActuator)
    assert by_url.repo == specs_repo.resolve()
    assert (by_url.branch, by_url.path) == ("environments/dev", "dev")
    assert by_url.observe("dev") == {}  # no branch yet: nothing published


@pytest.mark.parametrize("bad", [
    {"actuator": "hydrate", "hydrateBranch": {"branch": "environments/dev"}},
    {"actuator": "hydrate-branch", "hydrateBranch": {"branch": "a..b"}},
    {"actuator": "hydrate-branch", "hydrateBranch": {"branch": "-x"}},
    {"actuator": "hydrate-branch", "hydrateBranch": {"path": "../elsewhere"}},
    {"actuator": "hydrate-branch", "hydrateBranch": {"path": ".git/hooks"}},
])
def test_hydrate_branch_settings_are_checked(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        repoconfig.Environment.model_validate({"namespace": "x", **bad})
