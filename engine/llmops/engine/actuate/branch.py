"""The ``hydrate-branch`` actuator: one environment committed to a branch of the specs repo.

Input: an ``ActPlan``. Output: at most one commit on the environment's branch
(``llmops.engine.source.branches`` writes it in Argo CD's Source Hydrator
layout); observing reads ``manifest.yaml`` back from the branch through the
git layer (``gitcli``, ``gitobjects``). Health is Unknown, as for
``hydrate``: Argo CD applies downstream. Called by the reconciler through the
actuator factory.
"""

from __future__ import annotations

import shlex
import tempfile
from pathlib import Path

import yaml

from llmops.engine.actuate.base import ActPlan, ActResult, ActuatorError, ObjectOutcome, Outcome
from llmops.engine.actuate.health import HealthStatus
from llmops.engine.errors import LlmopsError
from llmops.engine.source import branches, gitcli, gitobjects
from llmops.engine.types import KubeObject, ResourceKey


class HydrateBranchActuator:
    """Commits one environment's rendered manifests to ``branch``:``path`` of the specs repo.

    ``repo`` is the local git repository the reconciler follows (None when it
    follows a remote URL: this actuator then fails every pass with the reason,
    since it never pushes). The user's HEAD, index and work tree are never
    touched (``branches`` writes through a private index).
    """

    name = "hydrate-branch"
    applies = True

    def __init__(self, repo: Path | None, branch: str, path: str, *,
                 repo_shown: str = "") -> None:
        self.repo = repo
        self.branch = branch
        self.path = path
        self.repo_shown = repo_shown or (str(repo) if repo else "")

    def _target(self, environment: str) -> tuple[Path, str, str]:
        """The repo, the checked branch and path; ``ActuatorError`` when unusable."""
        if self.repo is None:
            raise ActuatorError(
                f"environment {environment}: actuator hydrate-branch commits to a branch of "
                f"the specs repo, which must be a local path; the reconciler follows "
                f"{gitcli.redact(self.repo_shown)[:200]!r} (set LLMOPS_GIT__REPO or --repo to "
                f"a local clone, or use actuator hydrate)")
        try:
            return self.repo, gitcli.check_branch(self.branch), branches.check_path(self.path)
        except LlmopsError as exc:
            raise ActuatorError(f"environment {environment}: hydrateBranch: {exc}") from exc

    def _where(self, branch: str, path: str) -> str:
        return f"{self.repo}@{branch}:{path or '.'}"

    def observe(self, environment: str) -> dict[ResourceKey, KubeObject]:
        repo, branch, path = self._target(environment)
        rel = f"{path}/{branches.MANIFEST}" if path else branches.MANIFEST
        try:
            text = _read_from_branch(repo, branch, rel)
        except LlmopsError as exc:
            raise ActuatorError(f"{self._where(branch, path)}: cannot read the published "
                                f"manifest: {exc}") from exc
        if text is None:
            return {}
        try:
            documents = list(yaml.safe_load_all(text))
        except yaml.YAMLError as exc:
            raise ActuatorError(f"{self._where(branch, path)}: {branches.MANIFEST} is not "
                                f"valid YAML: {str(exc)[:300]}") from exc
        objects: dict[ResourceKey, KubeObject] = {}
        for number, doc in enumerate(documents, start=1):
            if doc is None:
                continue
            if not isinstance(doc, dict) or not isinstance(doc.get("metadata"), dict) \
                    or not doc.get("kind") or not doc["metadata"].get("name"):
                raise ActuatorError(f"{self._where(branch, path)}: document {number} of "
                                    f"{branches.MANIFEST} is not a Kubernetes object")
            objects[ResourceKey.of(doc)] = doc
        return objects

    def act(self, plan: ActPlan) -> ActResult:
        repo, branch, path = self._target(plan.environment)
        objects = {**plan.keep, **plan.desired}
        command = f"llmops render . --env {shlex.quote(plan.environment)}"
        try:
            dry = branches.dry_commit(repo, plan.revision)
            done = branches.hydrate_branch(repo, branch, objects.values(), dry, path=path,
                                            command=command)
        except LlmopsError as exc:
            raise ActuatorError(f"{self._where(branch, path)}: cannot publish: {exc}") from exc
        verb = "committed" if done.changed else "already held"
        message = (f"{verb} on {done.branch} ({done.commit[:12]}); applied downstream; "
                   "health not observed (hydrate-branch actuator)")
        outcomes = {key: ObjectOutcome(Outcome(action), message, HealthStatus.NOT_OBSERVED)
                    for key, action in plan.write.items()}
        outcomes |= {key: ObjectOutcome(Outcome.DELETED, f"removed from {done.branch}")
                     for key in plan.delete}
        return ActResult(outcomes)


def _read_from_branch(repo: Path, branch: str, rel: str) -> str | None:
    """The text of ``rel`` on ``branch`` of ``repo``; None when the branch or file is absent.

    A missing branch is "nothing published"; any other git failure raises.
    """
    ref = f"refs/heads/{branch}"
    with tempfile.TemporaryDirectory(prefix="llmops-observe-") as scratch:
        git = branches.open_repo(repo, Path(scratch))
        try:
            listed = git.text("for-each-ref", "--format=%(objectname) %(refname)", ref)
            tips = [line.split(" ", 1)[0] for line in listed.splitlines()
                    if line.split(" ", 1)[1:] == [ref]]
            entry = gitobjects.entry_at(git, tips[0], rel) if tips else None
            if entry is None:
                return None
            return gitobjects.read_blob(git, entry.blob).decode("utf-8", "replace")
        except gitcli.GitFailed as exc:
            raise branches.HydrateError(exc.detail()) from None
