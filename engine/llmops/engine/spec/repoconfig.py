"""``llmops.yaml``: the repo's environments, where each is applied and its safety settings.

Input: the parsed ``llmops.yaml`` document. Output: a ``RepoConfig`` (validated
by ``llmops.engine.spec.validate.parse_config``). Read by every stage that
needs an environment's namespace, actuator, cluster or prune limits.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    model_serializer,
    model_validator,
)

from llmops.engine.spec.schema import DnsLabel, Strict

DEFAULT_PRUNE_PERCENT = 30


class ActuatorName(StrEnum):
    HYDRATE = "hydrate"
    HYDRATE_BRANCH = "hydrate-branch"
    NONE = "none"
    KUBERNETES = "kubernetes"


NAMESPACE_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class Cluster(Strict):
    context: Annotated[str, StringConstraints(min_length=1, max_length=253)] | None = None
    kubeconfig: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = None
    inCluster: bool = False

    @model_validator(mode="after")
    def _one(self) -> Cluster:
        if self.inCluster and (self.context or self.kubeconfig):
            raise ValueError("inCluster excludes context and kubeconfig")
        return self


class Safety(Strict):
    allowEmpty: bool = False
    maxPrunePercent: Annotated[int, Field(ge=0, le=100)] = DEFAULT_PRUNE_PERCENT


GIT_SEGMENT_RE = r"[A-Za-z0-9_][A-Za-z0-9_.-]*"
BRANCH_NAME_RE = rf"^{GIT_SEGMENT_RE}(/{GIT_SEGMENT_RE})*$"
BRANCH_DIR_RE = rf"^(\.|{GIT_SEGMENT_RE}(/{GIT_SEGMENT_RE})*)?$"


class HydrateBranch(Strict):
    """Where the ``hydrate-branch`` actuator commits an environment in the specs repo."""

    branch: Annotated[str, StringConstraints(pattern=BRANCH_NAME_RE, max_length=200)] | None \
        = None
    """Default ``environments/<env>``."""
    path: Annotated[str, StringConstraints(pattern=BRANCH_DIR_RE, max_length=200)] | None = None
    """Directory inside the branch; default ``<env>``; ``"."`` or ``""`` is the branch root."""

    @model_validator(mode="after")
    def _git_names(self) -> HydrateBranch:
        if self.branch is not None and (".." in self.branch or self.branch.endswith(
                (".lock", ".")) or any(p.endswith(".lock") for p in self.branch.split("/"))):
            raise ValueError(f"branch {self.branch!r} is not a valid git branch name")
        return self


class Environment(Strict):
    namespace: Annotated[str, StringConstraints(min_length=1, max_length=63)]
    cluster: Cluster = Cluster()
    actuator: ActuatorName = ActuatorName.HYDRATE
    hydrateBranch: HydrateBranch | None = None
    allowEmpty: bool | None = None
    maxPrunePercent: Annotated[int, Field(ge=0, le=100)] | None = None
    forceConflicts: bool = False
    directCommits: bool = False

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Unset, hydrateBranch is left out, so the dump (and the hash of an environment's
        # config stamped on its Namespaces) is what it was before the field existed.
        data: dict[str, Any] = handler(self)
        if self.hydrateBranch is None:
            data.pop("hydrateBranch", None)
        return data

    @model_validator(mode="after")
    def _hydrate_branch(self) -> Environment:
        if self.hydrateBranch is not None and self.actuator != ActuatorName.HYDRATE_BRANCH:
            raise ValueError(f"hydrateBranch applies only to actuator "
                             f"{ActuatorName.HYDRATE_BRANCH.value} (this environment uses "
                             f"{self.actuator.value})")
        return self

    @model_validator(mode="after")
    def _namespace(self) -> Environment:
        probe = self.namespace.replace("{team}", "team")
        if self.namespace.replace("{team}", "").count("{") or not NAMESPACE_RE.match(probe):
            raise ValueError(
                f"namespace {self.namespace!r} is not a DNS-1123 label "
                "(it may contain the placeholder {team})"
            )
        return self

    def namespace_for(self, team: str) -> str:
        return self.namespace.replace("{team}", team)


class RepoConfig(Strict):
    """``llmops.yaml`` at the root of a specs repo."""

    apiVersion: Literal["llmops.io/v1alpha1"] = "llmops.io/v1alpha1"
    kind: Literal["Repository"] = "Repository"
    environments: dict[DnsLabel, Environment]
    promotionOrder: list[DnsLabel] = Field(default_factory=list)
    safety: Safety = Safety()

    @model_validator(mode="after")
    def _rules(self) -> RepoConfig:
        if not self.environments:
            raise ValueError("declare at least one environment")
        unknown = [e for e in self.promotionOrder if e not in self.environments]
        if unknown:
            raise ValueError(f"promotionOrder names undeclared environments: {', '.join(unknown)}")
        return self

    def allow_empty(self, env: str) -> bool:
        value = self.environments[env].allowEmpty
        return self.safety.allowEmpty if value is None else value

    def max_prune_percent(self, env: str) -> int:
        value = self.environments[env].maxPrunePercent
        return self.safety.maxPrunePercent if value is None else value
