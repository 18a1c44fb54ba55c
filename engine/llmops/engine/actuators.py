"""The act stage: actuators behind one small interface.

Input: an ``ActPlan`` for one environment (every desired object, those to
write, those to delete, those to keep although git dropped them). Output: an
``ActResult`` with one outcome per object. Called only by the reconciler.

- ``hydrate`` (the embedded default): publishes the environment's rendered
  objects as files under a directory, swapped atomically (``hydrate.py``), for
  Argo CD, Flux or a person to read. Health is not observable from files:
  objects report Unknown ("applied downstream").
- ``none``: plan only; acts on nothing and reports nothing as applied.
- ``kubernetes``: server-side apply to a cluster (its own module).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from llmops.engine import hydrate
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

    def observe(self, environment: str) -> dict[ResourceKey, KubeObject]:
        try:
            published = hydrate.read_set(self.root, environment)
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
