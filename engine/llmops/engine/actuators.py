"""The act stage: actuators behind one small interface.

Input: an ``ActPlan`` for one environment (every desired object, those to
write, those to delete, those to keep although git dropped them). Output: an
``ActResult`` with one outcome per object. Called only by the reconciler.

- ``hydrate`` (the embedded default): publishes the environment's rendered
  objects as files under a directory, swapped atomically (``hydrate.py``), for
  Argo CD, Flux or a person to read. Health is not observable from files:
  objects report Unknown ("applied downstream").
- ``hydrate-branch``: commits the environment's rendered objects to a branch
  of the (local) specs repo in Argo CD's Source Hydrator layout
  (``gitbranch.py``): one atomic ref move per change, no commit when the
  branch already holds the manifest; observes by reading ``manifest.yaml``
  back from the branch. Health is Unknown, as for ``hydrate``.
- ``none``: plan only; acts on nothing and reports nothing as applied.
- ``kubernetes``: server-side apply to a cluster (its own module).
"""

from __future__ import annotations

import shlex
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol

import yaml

from llmops.engine import gitbranch, hydrate
from llmops.engine import gitguard as guard
from llmops.engine.errors import LlmopsError
from llmops.engine.health import HealthStatus
from llmops.engine.types import KubeObject, ResourceKey


class ActuatorError(LlmopsError):
    """The actuator could not observe or act at all (not one object's failure)."""


class Outcome(StrEnum):
    CREATED = "created"
    CONFIGURED = "configured"
    DELETED = "deleted"
    UNCHANGED = "unchanged"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ActPlan:
    environment: str
    revision: str
    desired: Mapping[ResourceKey, KubeObject]
    """Every object the revision wants, unchanged ones included."""
    write: Mapping[ResourceKey, str]
    """Objects to create or configure, with their action ("created"/"configured")."""
    delete: tuple[ResourceKey, ...] = ()
    keep: Mapping[ResourceKey, KubeObject] = field(default_factory=dict)
    """Objects git dropped that stay (prune-protected), as last applied."""


@dataclass(frozen=True, slots=True)
class ObjectOutcome:
    outcome: Outcome
    message: str = ""
    health: HealthStatus = HealthStatus.UNKNOWN


@dataclass(frozen=True, slots=True)
class ActResult:
    outcomes: dict[ResourceKey, ObjectOutcome]

    @property
    def failed(self) -> dict[ResourceKey, ObjectOutcome]:
        return {k: o for k, o in self.outcomes.items() if o.outcome is Outcome.FAILED}


class Actuator(Protocol):
    name: str
    applies: bool
    """Whether acting changes anything (False for the plan-only actuator)."""

    def observe(self, environment: str) -> dict[ResourceKey, KubeObject]:
        """The objects currently published/applied for the environment; raises
        ``ActuatorError`` when that cannot be known (unknown is never empty)."""
        ...

    def act(self, plan: ActPlan) -> ActResult: ...


class NoneActuator:
    """Plan only: observes nothing applied, acts on nothing."""

    name = "none"
    applies = False

    def observe(self, environment: str) -> dict[ResourceKey, KubeObject]:
        return {}

    def act(self, plan: ActPlan) -> ActResult:
        return ActResult({key: ObjectOutcome(Outcome.SKIPPED, "plan only (actuator none)")
                          for key in (*plan.write, *plan.delete)})


class HydrateActuator:
    """Publishes rendered manifests per environment under ``root``, atomically."""

    name = "hydrate"
    applies = True

    def __init__(self, root: Path) -> None:
        self.root = root
        self._parsed: dict[str, dict[hydrate.FileStamp, KubeObject]] = {}

    def observe(self, environment: str) -> dict[ResourceKey, KubeObject]:
        try:
            published = hydrate.read_set(self.root, environment,
                                         self._parsed.setdefault(environment, {}))
        except (OSError, ValueError, KeyError) as exc:
            raise ActuatorError(f"{self.root / environment}: cannot read the published "
                                f"set: {exc}") from exc
        return dict(published.objects) if published else {}

    def act(self, plan: ActPlan) -> ActResult:
        objects = {**plan.keep, **plan.desired}
        try:
            hydrate.write_set(self.root, plan.environment, plan.revision, objects.values())
        except OSError as exc:
            raise ActuatorError(f"{self.root / plan.environment}: cannot publish: "
                                f"{exc.strerror or exc}") from exc
        message = "published; applied downstream"
        outcomes = {key: ObjectOutcome(Outcome(action), message)
                    for key, action in plan.write.items()}
        outcomes |= {key: ObjectOutcome(Outcome.DELETED, "removed from the published set")
                     for key in plan.delete}
        return ActResult(outcomes)


class HydrateBranchActuator:
    """Commits one environment's rendered manifests to ``branch``:``path`` of the specs repo.

    ``repo`` is the local git repository the reconciler follows (None when it
    follows a remote URL: this actuator then fails every pass with the reason,
    since it never pushes). The user's HEAD, index and work tree are never
    touched (``gitbranch`` writes through a private index).
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
                f"{guard.redact(self.repo_shown)[:200]!r} (set LLMOPS_GIT__REPO or --repo to "
                f"a local clone, or use actuator hydrate)")
        try:
            return self.repo, guard.check_branch(self.branch), gitbranch.check_path(self.path)
        except LlmopsError as exc:
            raise ActuatorError(f"environment {environment}: hydrateBranch: {exc}") from exc

    def _where(self, branch: str, path: str) -> str:
        return f"{self.repo}@{branch}:{path or '.'}"

    def observe(self, environment: str) -> dict[ResourceKey, KubeObject]:
        repo, branch, path = self._target(environment)
        rel = f"{path}/{gitbranch.MANIFEST}" if path else gitbranch.MANIFEST
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
            raise ActuatorError(f"{self._where(branch, path)}: {gitbranch.MANIFEST} is not "
                                f"valid YAML: {str(exc)[:300]}") from exc
        objects: dict[ResourceKey, KubeObject] = {}
        for number, doc in enumerate(documents, start=1):
            if doc is None:
                continue
            if not isinstance(doc, dict) or not isinstance(doc.get("metadata"), dict) \
                    or not doc.get("kind") or not doc["metadata"].get("name"):
                raise ActuatorError(f"{self._where(branch, path)}: document {number} of "
                                    f"{gitbranch.MANIFEST} is not a Kubernetes object")
            objects[ResourceKey.of(doc)] = doc
        return objects

    def act(self, plan: ActPlan) -> ActResult:
        repo, branch, path = self._target(plan.environment)
        objects = {**plan.keep, **plan.desired}
        command = (f"llmops render . --env {shlex.quote(plan.environment)} "
                   f"--commit {plan.revision}")
        try:
            dry = gitbranch.dry_commit(repo, plan.revision)
            done = gitbranch.hydrate_branch(repo, branch, objects.values(), dry, path=path,
                                            command=command)
        except LlmopsError as exc:
            raise ActuatorError(f"{self._where(branch, path)}: cannot publish: {exc}") from exc
        verb = "committed" if done.changed else "already held"
        message = f"{verb} on {done.branch} ({done.commit[:12]}); applied downstream"
        outcomes = {key: ObjectOutcome(Outcome(action), message)
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
        git = gitbranch.GitPlumbing(repo, Path(scratch))
        listed = git("for-each-ref", "--format=%(objectname) %(refname)", ref)
        tips = [line.split(" ", 1)[0] for line in listed.splitlines()
                if line.split(" ", 1)[1:] == [ref]]
        if not tips:
            return None
        blob = git.blob_at(tips[0], rel)
        return None if blob is None else git("cat-file", "blob", blob)
