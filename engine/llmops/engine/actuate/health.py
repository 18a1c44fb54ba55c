"""Health vocabulary of the assess stage: per object and per spec (worst of its objects).

Input: statuses reported by an actuator. Output: ``HealthStatus`` values and
their aggregate. Called by the actuators (to report) and the reconciler (to
roll objects up to specs and environments).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class HealthStatus(StrEnum):
    """Ordered from best to worst, as gitops-engine orders them."""

    HEALTHY = "Healthy"
    SUSPENDED = "Suspended"
    """Paused on purpose (a paused Deployment, a suspended Job): not Healthy, not broken."""
    PROGRESSING = "Progressing"
    NOT_OBSERVED = "NotObserved"
    """Published for someone else to apply (the hydrate actuators, ``none``): llmops
    cannot see the cluster, so it does not guess. Not a fault, unlike Unknown."""
    UNKNOWN = "Unknown"
    MISSING = "Missing"
    DEGRADED = "Degraded"

    @property
    def rank(self) -> int:
        return _ORDER.index(self)


_ORDER = list(HealthStatus)


def worst(statuses: Iterable[HealthStatus]) -> HealthStatus:
    """The worst status of ``statuses``; Unknown when there is none."""
    found = list(statuses)
    return max(found, key=lambda s: s.rank) if found else HealthStatus.UNKNOWN
