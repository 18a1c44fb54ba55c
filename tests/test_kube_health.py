"""Health of live objects, table-driven. Status blocks marked ``real`` were captured from
kube-apiserver v1.28 with kube-controller-manager (the real-server tier's control plane,
which has no kubelet, scheduler, metrics API, ingress controller or volume provisioner);
the others follow the API's documented shape for what that cluster cannot make."""

from __future__ import annotations

from typing import Any

import pytest

from llmops.engine.actuate import kube_health
from llmops.engine.actuate.health import HealthStatus as H

T0 = "2026-12-07T14:11:02Z"


def obj(
    kind: str, status: dict[str, Any], spec: dict[str, Any] | None = None, generation: int = 1
) -> dict[str, Any]:
    return {
        "kind": kind,
        "metadata": {"name": "x", "generation": generation},
        "spec": spec or {},
        "status": status,
    }


def cond(kind: str, status: str, reason: str) -> dict[str, str]:
    return {"type": kind, "status": status, "reason": reason, "lastTransitionTime": T0}


REAL_DEPLOYMENT_PENDING = {  # real: a Deployment whose Pod stays Pending
    "conditions": [
        cond("Available", "False", "MinimumReplicasUnavailable"),
        cond("Progressing", "True", "ReplicaSetUpdated"),
    ],
    "observedGeneration": 1,
    "replicas": 1,
    "unavailableReplicas": 1,
    "updatedReplicas": 1,
}
REAL_DEPLOYMENT_PAUSED = {  # real: spec.paused true
    "conditions": [
        cond("Progressing", "Unknown", "DeploymentPaused"),
        cond("Available", "False", "MinimumReplicasUnavailable"),
    ],
    "observedGeneration": 1,
}
REAL_HPA_NO_METRICS = {  # real: no metrics API
    "conditions": [
        cond("AbleToScale", "True", "SucceededGetScale"),
        cond("ScalingActive", "False", "FailedGetResourceMetric"),
    ],
    "currentMetrics": None,
    "currentReplicas": 1,
    "desiredReplicas": 0,
}
REAL_STATEFULSET_PARTITIONED = {  # real: replicas 2, partition 1, Pods Pending
    "availableReplicas": 0,
    "collisionCount": 0,
    "currentReplicas": 1,
    "currentRevision": "db-6b95f677cf",
    "observedGeneration": 1,
    "replicas": 1,
    "updateRevision": "db-6b95f677cf",
    "updatedReplicas": 1,
}
CPU_METRIC = [
    {
        "type": "Resource",
        "resource": {"name": "cpu", "current": {"averageUtilization": 12, "averageValue": "12m"}},
    }
]
STS_SPEC = {
    "replicas": 2,
    "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}},
}

CASES: dict[str, tuple[dict[str, Any] | None, H]] = {
    "absent": (None, H.MISSING),
    # Deployment
    "deployment-pods-pending (real)": (
        obj("Deployment", REAL_DEPLOYMENT_PENDING, {"replicas": 1}),
        H.PROGRESSING,
    ),
    "deployment-paused (real)": (
        obj("Deployment", REAL_DEPLOYMENT_PAUSED, {"replicas": 1, "paused": True}),
        H.SUSPENDED,
    ),
    "deployment-available": (
        obj(
            "Deployment",
            {
                "observedGeneration": 1,
                "replicas": 1,
                "updatedReplicas": 1,
                "availableReplicas": 1,
                "readyReplicas": 1,
            },
            {"replicas": 1},
        ),
        H.HEALTHY,
    ),
    "deployment-old-generation": (
        obj(
            "Deployment",
            {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1},
            {"replicas": 1},
            generation=2,
        ),
        H.PROGRESSING,
    ),
    "deployment-deadline": (
        obj(
            "Deployment",
            {
                "observedGeneration": 1,
                "conditions": [cond("Progressing", "False", "ProgressDeadlineExceeded")],
            },
            {"replicas": 1},
        ),
        H.DEGRADED,
    ),
    # HorizontalPodAutoscaler
    "hpa-no-metrics (real)": (obj("HorizontalPodAutoscaler", REAL_HPA_NO_METRICS), H.PROGRESSING),
    "hpa-just-created": (obj("HorizontalPodAutoscaler", {}), H.PROGRESSING),
    "hpa-scaling": (
        obj(
            "HorizontalPodAutoscaler",
            {
                "conditions": [
                    cond("AbleToScale", "True", "ReadyForNewScale"),
                    cond("ScalingActive", "True", "ValidMetricFound"),
                ],
                "currentMetrics": CPU_METRIC,
                "currentReplicas": 1,
                "desiredReplicas": 1,
            },
        ),
        H.HEALTHY,
    ),
    "hpa-cannot-scale": (
        obj(
            "HorizontalPodAutoscaler",
            {"conditions": [cond("AbleToScale", "False", "FailedGetScale")]},
        ),
        H.DEGRADED,
    ),
    # Ingress, Service
    "ingress-no-address (real)": (obj("Ingress", {"loadBalancer": {}}), H.PROGRESSING),
    "ingress-with-address": (
        obj("Ingress", {"loadBalancer": {"ingress": [{"ip": "203.0.113.10"}]}}),
        H.HEALTHY,
    ),
    "service-cluster-ip": (obj("Service", {"loadBalancer": {}}, {"type": "ClusterIP"}), H.HEALTHY),
    "service-lb-pending": (
        obj("Service", {"loadBalancer": {}}, {"type": "LoadBalancer"}),
        H.PROGRESSING,
    ),
    # PersistentVolumeClaim
    "pvc-pending (real)": (obj("PersistentVolumeClaim", {"phase": "Pending"}), H.PROGRESSING),
    "pvc-bound": (obj("PersistentVolumeClaim", {"phase": "Bound"}), H.HEALTHY),
    "pvc-lost": (obj("PersistentVolumeClaim", {"phase": "Lost"}), H.DEGRADED),
    # StatefulSet
    "statefulset-partitioned-pending (real)": (
        obj("StatefulSet", REAL_STATEFULSET_PARTITIONED, STS_SPEC),
        H.PROGRESSING,
    ),
    "statefulset-partition-reached": (
        obj(
            "StatefulSet",
            {
                **REAL_STATEFULSET_PARTITIONED,
                "replicas": 2,
                "readyReplicas": 2,
                "updateRevision": "db-new",
            },
            STS_SPEC,
        ),
        H.HEALTHY,
    ),
    "statefulset-revision-rolling": (
        obj(
            "StatefulSet",
            {
                "observedGeneration": 1,
                "replicas": 2,
                "readyReplicas": 2,
                "updatedReplicas": 1,
                "currentRevision": "db-old",
                "updateRevision": "db-new",
            },
            {"replicas": 2},
        ),
        H.PROGRESSING,
    ),
    "statefulset-rolled": (
        obj(
            "StatefulSet",
            {
                "observedGeneration": 1,
                "replicas": 2,
                "readyReplicas": 2,
                "updatedReplicas": 2,
                "currentRevision": "db-new",
                "updateRevision": "db-new",
            },
            {"replicas": 2},
        ),
        H.HEALTHY,
    ),
    # Job
    "job-backoff-exceeded": (
        obj(
            "Job",
            {"failed": 7, "conditions": [cond("Failed", "True", "BackoffLimitExceeded")]},
            {"backoffLimit": 6},
        ),
        H.DEGRADED,
    ),
    "job-running": (obj("Job", {"active": 1}, {"backoffLimit": 6}), H.PROGRESSING),
    "job-complete": (
        obj("Job", {"succeeded": 1, "conditions": [cond("Complete", "True", "")]}),
        H.HEALTHY,
    ),
    "job-suspended": (obj("Job", {}, {"suspend": True}), H.SUSPENDED),
    # Namespace, others
    "namespace-terminating": (obj("Namespace", {"phase": "Terminating"}), H.PROGRESSING),
    "configmap": (obj("ConfigMap", {}), H.HEALTHY),
}


@pytest.mark.parametrize("case", list(CASES))
def test_health(case: str) -> None:
    live, expected = CASES[case]
    assert kube_health.assess(live) is expected


def test_suspended_ranks_between_healthy_and_progressing() -> None:
    from llmops.engine.actuate.health import worst

    assert worst([H.HEALTHY, H.SUSPENDED]) is H.SUSPENDED
    assert worst([H.SUSPENDED, H.PROGRESSING]) is H.PROGRESSING


def test_a_job_is_finished_only_by_the_conditions_the_ttl_controller_waits_for() -> None:
    done = {case: kube_health.finished(CASES[case][0]) for case in CASES}
    assert done["job-complete"] == (H.HEALTHY, "Complete")
    assert done["job-backoff-exceeded"] == (H.DEGRADED, "Failed (BackoffLimitExceeded)")
    # Failed pods under the backoff limit, or a count with no condition yet: not finished.
    assert done["job-running"] is None
    assert kube_health.finished(obj("Job", {"failed": 7}, {"backoffLimit": 6})) is None
    assert kube_health.finished(obj("Job", {"conditions": [
        cond("Complete", "False", "")]})) is None
    assert kube_health.finished(CASES["configmap"][0]) is None
    assert kube_health.finished(None) is None
