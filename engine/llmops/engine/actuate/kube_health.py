"""Health of live Kubernetes objects, as the ``kubernetes`` actuator reads them back.

Input: one live object as plain data (or ``None`` when the server has no such
object). Output: a ``HealthStatus``. Called by ``llmops.engine.actuate.kube`` after
applying (the health of each ``ObjectOutcome``) and when waiting for an
environment to become healthy.

Rules (the shape of gitops-engine's ``pkg/health`` and kstatus; the status blocks in
``tests/test_kube_health.py`` were captured from kube-apiserver v1.28 where it makes them):
- absent -> Missing; being deleted -> Progressing.
- Deployment: Suspended when ``spec.paused``; Degraded when its ``Progressing``
  condition says ``ProgressDeadlineExceeded``; Progressing until the controller has
  observed the current generation and the updated and available replicas reach
  ``spec.replicas`` (with no old replicas left); then Healthy.
- StatefulSet: Progressing until the current generation is observed, the updated
  replicas reach ``replicas - partition`` (RollingUpdate) and, without a partition,
  ``currentRevision == updateRevision``, and every replica is ready; then Healthy.
- Job: Suspended when ``spec.suspend``; Healthy once it succeeded (``Complete``
  condition, or ``succeeded`` reaching ``completions``); Degraded on a ``Failed``
  condition (``BackoffLimitExceeded``, ``DeadlineExceeded``) or when ``failed`` exceeds
  ``backoffLimit``; Progressing otherwise.
- HorizontalPodAutoscaler: Degraded when ``AbleToScale`` is False; Progressing while it
  has no current metrics (just created, or no metrics API); Degraded when
  ``ScalingActive`` is False although metrics came; then Healthy.
- Ingress, and a Service of type LoadBalancer: Progressing until
  ``status.loadBalancer.ingress`` has an address; then Healthy.
- PersistentVolumeClaim: Bound -> Healthy, Lost -> Degraded, else (Pending) Progressing.
- Namespace: Progressing while ``Terminating``, Healthy otherwise.
- Everything else (ConfigMap, Secret, ClusterIP Service, ResourceQuota): present -> Healthy.

``finished`` says whether a Job has finished as the TTL-after-finished controller
counts it (a ``Complete`` or ``Failed`` condition with status True), and how.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
    rule = _RULES.get(str(obj.get("kind")))
    return rule(obj) if rule is not None else HealthStatus.HEALTHY


def _namespace(obj: KubeObject) -> HealthStatus:
    phase = (obj.get("status") or {}).get("phase")
    return HealthStatus.PROGRESSING if phase == "Terminating" else HealthStatus.HEALTHY


def _load_balanced(obj: KubeObject) -> HealthStatus:
    if obj.get("kind") == "Service" and (obj.get("spec") or {}).get("type") != "LoadBalancer":
        return HealthStatus.HEALTHY
    ingress = (((obj.get("status") or {}).get("loadBalancer")) or {}).get("ingress")
    return HealthStatus.HEALTHY if ingress else HealthStatus.PROGRESSING


def _pvc(obj: KubeObject) -> HealthStatus:
    phase = (obj.get("status") or {}).get("phase")
    if phase == "Bound":
        return HealthStatus.HEALTHY
    return HealthStatus.DEGRADED if phase == "Lost" else HealthStatus.PROGRESSING


def _hpa(obj: KubeObject) -> HealthStatus:
    status = obj.get("status") or {}
    conditions = _conditions(status)
    if (conditions.get("AbleToScale") or {}).get("status") == "False":
        return HealthStatus.DEGRADED
    if not status.get("currentMetrics"):
        return HealthStatus.PROGRESSING
    if (conditions.get("ScalingActive") or {}).get("status") == "False":
        return HealthStatus.DEGRADED
    return HealthStatus.HEALTHY


def _statefulset(obj: KubeObject) -> HealthStatus:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    generation = _int((obj.get("metadata") or {}).get("generation"))
    observed = status.get("observedGeneration")
    if not isinstance(observed, int) or observed < generation:
        return HealthStatus.PROGRESSING
    wanted = _int(spec.get("replicas"), 1)
    if _int(status.get("readyReplicas")) < wanted:
        return HealthStatus.PROGRESSING
    strategy = spec.get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return HealthStatus.HEALTHY
    partition = _int((strategy.get("rollingUpdate") or {}).get("partition"))
    if partition > 0:
        done = _int(status.get("updatedReplicas")) >= wanted - partition
        return HealthStatus.HEALTHY if done else HealthStatus.PROGRESSING
    same = status.get("updateRevision") == status.get("currentRevision")
    return HealthStatus.HEALTHY if same else HealthStatus.PROGRESSING


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
    if spec.get("paused"):
        return HealthStatus.SUSPENDED
    conditions = _conditions(status)
    progressing = conditions.get("Progressing")
    if progressing is not None and progressing.get("reason") == "ProgressDeadlineExceeded":
        return HealthStatus.DEGRADED
    generation = _int((obj.get("metadata") or {}).get("generation"))
    observed = status.get("observedGeneration")
    if not isinstance(observed, int) or observed < generation:
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
    if spec.get("suspend") is True:
        return HealthStatus.SUSPENDED
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


def finished(obj: KubeObject | None) -> tuple[HealthStatus, str] | None:
    """``(Healthy, "Complete")`` or ``(Degraded, "Failed (<reason>)")`` for a finished Job
    (the conditions the TTL controller waits for); None for anything else."""
    if obj is None or obj.get("kind") != "Job":
        return None
    conditions = _conditions(obj.get("status") or {})
    failed = conditions.get("Failed")
    if failed is not None and failed.get("status") == "True":
        why = failed.get("reason")
        return HealthStatus.DEGRADED, f"Failed ({why})" if isinstance(why, str) and why \
            else "Failed"
    complete = conditions.get("Complete")
    if complete is not None and complete.get("status") == "True":
        return HealthStatus.HEALTHY, "Complete"
    return None


_RULES: dict[str, Callable[[KubeObject], HealthStatus]] = {
    "Deployment": _deployment, "StatefulSet": _statefulset, "Job": _job,
    "HorizontalPodAutoscaler": _hpa, "Ingress": _load_balanced, "Service": _load_balanced,
    "PersistentVolumeClaim": _pvc, "Namespace": _namespace,
}
