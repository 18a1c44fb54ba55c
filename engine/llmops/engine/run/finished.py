"""Finished Jobs: remembered, so a Job Kubernetes' TTL controller deleted does not run again.

Input: an environment's rendered objects, the live ones the actuator observed, and
the finished Jobs the store remembers. Output: the ``FinishedJob`` records of Jobs
newly seen finished, and the ``ObjectOutcome`` a finished Job that is gone reports
(its recorded health and how it ended). Called only by
``llmops.engine.run.reconciler``: ``seen`` before deciding, ``outcomes`` after.

A training Job carries ``ttlSecondsAfterFinished``: some time after it is
``Complete`` or ``Failed`` Kubernetes deletes it, and a pass that then finds the
desired Job missing would create it again, i.e. train again. So when a pass sees a
live Job finished it records the Job's key with the ``run_hash`` of the pod
template it ran (``llmops.engine.plan.decide``); ``decide`` then skips creating a
desired Job recorded with the same hash (``decide.FINISHED``). A changed pod
template is a new hash (and, as training Jobs are named by it, a new Job): it runs.
Records of Jobs that leave the inventory (their TrainingJob removed) are dropped.

A Job deleted before any pass saw it finished (a TTL shorter than the time the
reconciler was away) cannot be told from one deleted by hand, and is created again.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from llmops.engine.actuate import kube_health
from llmops.engine.actuate.base import ObjectOutcome, Outcome
from llmops.engine.actuate.health import HealthStatus
from llmops.engine.plan import decide
from llmops.engine.plan.changeset import Action, ChangeSet
from llmops.engine.store.state import FinishedJob
from llmops.engine.types import KubeObject, ResourceKey


def seen(desired: Mapping[ResourceKey, KubeObject], live: Mapping[ResourceKey, KubeObject],
         known: Mapping[ResourceKey, FinishedJob], now: datetime) -> list[FinishedJob]:
    """Desired Jobs live and finished that ``known`` does not hold as they are now."""
    out = []
    for key, obj in live.items():
        ended = kube_health.finished(obj)
        if ended is None or key not in desired:
            continue
        health, reason = ended
        job = FinishedJob(key, decide.run_hash(desired[key]), health.value, reason, now)
        old = known.get(key)
        if old is None or (old.template_hash, old.health, old.reason) != (
                job.template_hash, job.health, job.reason):
            out.append(job)
    return out


def hashes(known: Mapping[ResourceKey, FinishedJob]) -> dict[ResourceKey, str]:
    """What ``decide`` takes: each finished Job's ``run_hash``."""
    return {key: job.template_hash for key, job in known.items()}


def outcomes(changes: ChangeSet,
             known: Mapping[ResourceKey, FinishedJob]) -> dict[ResourceKey, ObjectOutcome]:
    """The outcome of each finished Job this pass does not create again: unchanged, with
    the health it finished with."""
    out = {}
    for entry in changes.entries:
        job = known.get(entry.key)
        if entry.action is Action.SKIPPED and entry.reason == decide.FINISHED and job:
            when = f" at {job.finished_at:%Y-%m-%dT%H:%M%z}" if job.finished_at else ""
            out[entry.key] = ObjectOutcome(
                Outcome.UNCHANGED,
                f"finished ({job.reason}, seen{when}); gone from the cluster "
                "(ttlSecondsAfterFinished), not run again", HealthStatus(job.health))
    return out
