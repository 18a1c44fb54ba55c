"""Health of live Kubernetes objects, as the ``kubernetes`` actuator reads them back.

Input: one live object as plain data (or ``None`` when the server has no such
object). Output: a ``HealthStatus``. Called by ``llmops.engine.actuate.kube`` after
applying (the health of each ``ObjectOutcome``) and when waiting for an
environment to become healthy.

Rules (the shape of gitops-engine's ``pkg/health``, reduced to the kinds llmops
renders):
- absent -> Missing; being deleted -> Progressing.
- Deployment: Degraded when its ``Progressing`` condition says
  ``ProgressDeadlineExceeded``; Progressing until the controller has observed
  the current generation and the updated and available replicas reach
  ``spec.replicas`` (with no old replicas left); then Healthy.
- Job: Healthy once it succeeded (``Complete`` condition, or ``succeeded``
  reaching ``completions``); Degraded on a ``Failed`` condition or when
  ``failed`` exceeds ``backoffLimit``; Progressing otherwise.
- Namespace: Progressing while ``Terminating``, Healthy otherwise.
- Everything else llmops renders (ConfigMap, Secret, Service, ResourceQuota,
  HorizontalPodAutoscaler, Ingress): present -> Healthy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmops.engine.actuate.health import HealthStatus
from llmops.engine.types import KubeObject

DEFAULT_BACKOFF_LIMIT = 6


def assess(obj: KubeObject | None) -> HealthStatus:
    """The health of one live object; ``None`` (not found) is Missing."""
    if obj is None:
        return HealthStatus.MISSING
    meta = obj.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return HealthStatus.PROGRESSING
    kind = obj.get("kind")
    if kind == "Deployment":
        return _deployment(obj)
    if kind == "Job":
        return _job(obj)
    if kind == "Namespace":
        phase = (obj.get("status") or {}).get("phase")
        return HealthStatus.PROGRESSING if phase == "Terminating" else HealthStatus.HEALTHY
    return HealthStatus.HEALTHY


def _conditions(status: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    out: dict[str, Mapping[str, Any]] = {}
    for cond in status.get("conditions") or []:
        if isinstance(cond, Mapping) and isinstance(cond.get("type"), str):
            out[cond["type"]] = cond
    return out


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _deployment(obj: KubeObject) -> HealthStatus:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    conditions = _conditions(status)
    progressing = conditions.get("Progressing")
    if progressing is not None and progressing.get("reason") == "ProgressDeadlineExceeded":
        return HealthStatus.DEGRADED
    generation = _int((obj.get("metadata") or {}).get("generation"))
    observed = status.get("observedGeneration")
    if not isinstance(observed, int) or observed < generation:
        return HealthStatus.PROGRESSING
    if spec.get("paused"):
        return HealthStatus.PROGRESSING
    wanted = _int(spec.get("replicas"), 1)
    updated = _int(status.get("updatedReplicas"))
    available = _int(status.get("availableReplicas"))
    total = _int(status.get("replicas"))
    if updated < wanted or total > updated or available < updated:
        return HealthStatus.PROGRESSING
    return HealthStatus.HEALTHY


def _job(obj: KubeObject) -> HealthStatus:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    conditions = _conditions(status)
    failed_cond = conditions.get("Failed")
    if failed_cond is not None and failed_cond.get("status") == "True":
        return HealthStatus.DEGRADED
    complete = conditions.get("Complete")
    if complete is not None and complete.get("status") == "True":
        return HealthStatus.HEALTHY
    if _int(status.get("succeeded")) >= max(_int(spec.get("completions"), 1), 1):
        return HealthStatus.HEALTHY
    backoff_limit = _int(spec.get("backoffLimit"), DEFAULT_BACKOFF_LIMIT)
    if _int(status.get("failed")) >= backoff_limit + 1:
        return HealthStatus.DEGRADED
    return HealthStatus.PROGRESSING
