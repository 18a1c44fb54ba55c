"""The act stage's interface: the ``Actuator`` protocol, its values, and the plan-only actuator.

Input: an ``ActPlan`` for one environment (every desired object, those to
write, those to delete, those to keep although git dropped them). Output: an
``ActResult`` with one outcome per object. Called only by the reconciler.

- ``hydrate`` (the embedded default, ``actuate/hydrate.py``): publishes the
  environment's rendered objects as files under a directory, swapped
  atomically, for Argo CD, Flux or a person to read. Health is not observable
  from files: objects report Unknown ("applied downstream").
- ``hydrate-branch`` (``actuate/branch.py``): commits the environment's
  rendered objects to a branch of the (local) specs repo in Argo CD's Source
  Hydrator layout (``source/branches.py``): one atomic ref move per change, no
  commit when the branch already holds the manifest; observes by reading
  ``manifest.yaml`` back from the branch. Health is Unknown, as for ``hydrate``.
- ``none`` (here): plan only; acts on nothing and reports nothing as applied.
- ``kubernetes`` (``actuate/kube.py``): server-side apply to a cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from llmops.engine.actuate.health import HealthStatus
from llmops.engine.errors import LlmopsError
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

    def observe(self, environment: str) -> Mapping[ResourceKey, KubeObject]:
        """The objects currently published/applied for the environment, read-only (an
        actuator may hand out the same mapping again while nothing changed); raises
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
        return ActResult({key: ObjectOutcome(Outcome.SKIPPED, "plan only (actuator none)",
                                             HealthStatus.NOT_OBSERVED)
                          for key in (*plan.write, *plan.delete)})
