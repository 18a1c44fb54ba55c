"""Simulated controllers: the status a real cluster's controllers would write.

Input: change events from `store` (after every committed write). Output: status
writes through `Store.set_status` (actor "controller", so they never count as
client writes) and namespace finalization. Called by the store's listener hook;
configured by tests through `EmulatorServer.controllers`.

- Deployment: `observedGeneration`, replica counts = `spec.replicas`,
  `Available`/`Progressing` conditions; or stuck (`stalled`: ProgressDeadlineExceeded)
  or still rolling (`progressing`) when a test asks for it.
- Job: `succeeded` and `Complete`; or `failed` + `Failed`; or `running`.
- HorizontalPodAutoscaler: a metrics API answers: `currentMetrics` for each metric,
  `AbleToScale`/`ScalingActive` True, replicas at `minReplicas`.
- Ingress: an ingress controller gives it a load-balancer address.
- Namespace: a deleted namespace's contents go, then the namespace.
Services get their cluster IP and namespaces their `Active` phase at creation
(`admission`), as on a real apiserver.
"""

from __future__ import annotations

import threading
from typing import Any

from . import catalog, errors, ssa
from .store import Event, Store

DEPLOYMENT_STATES = ("available", "stalled", "progressing")
INGRESS_ADDRESS = "203.0.113.10"
JOB_STATES = ("complete", "failed", "running")


def _condition(old: list[dict[str, Any]], type_: str, status: str, reason: str,
               message: str, update_time: bool = False) -> dict[str, Any]:
    """A condition that keeps its old timestamps while its status and reason hold."""
    prev = next((c for c in old if c.get("type") == type_), None)
    stamp = ssa.now()
    if prev and prev.get("status") == status and prev.get("reason") == reason:
        cond = dict(prev)
        cond["message"] = message
        return cond
    cond = {"type": type_, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": stamp}
    if update_time:
        cond["lastUpdateTime"] = stamp
    return cond


class Controllers:
    """Toggle with `enabled`; `delay` > 0 moves status writes to a timer thread
    (so a client can observe the object before it becomes ready)."""

    def __init__(self, store: Store, enabled: bool = True, delay: float = 0.0) -> None:
        self.store = store
        self.enabled = enabled
        self.delay = delay
        self._states: dict[tuple[str, str, str], str] = {}
        self._timers: list[threading.Timer] = []
        self._lock = threading.Lock()
        store.listeners.append(self._on_event)

    # ---- configuration ---------------------------------------------------------

    def stall_deployment(self, namespace: str, name: str) -> None:
        """The Deployment never becomes available: Progressing=False ProgressDeadlineExceeded."""
        self.set_state("Deployment", namespace, name, "stalled")

    def fail_job(self, namespace: str, name: str) -> None:
        """The Job fails: `failed` count and a Failed=True BackoffLimitExceeded condition."""
        self.set_state("Job", namespace, name, "failed")

    def set_state(self, kind: str, namespace: str, name: str, state: str) -> None:
        allowed = DEPLOYMENT_STATES if kind == "Deployment" else JOB_STATES
        if kind not in ("Deployment", "Job") or state not in allowed:
            raise ValueError(f"unknown state {state!r} for {kind}")
        with self._lock:
            self._states[(kind, namespace, name)] = state
        self.reconcile_all()

    def reset(self) -> None:
        with self._lock:
            self._states.clear()

    def stop(self) -> None:
        with self._lock:
            for timer in self._timers:
                timer.cancel()
            self._timers.clear()

    # ---- reconciliation ------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        if not self.enabled:
            return
        meta = event.obj["metadata"]
        key = (event.rt, meta.get("namespace", ""), meta["name"])
        if event.type == "DELETED":
            return
        if self.delay > 0:
            timer = threading.Timer(self.delay, self._reconcile_key, key)
            timer.daemon = True
            with self._lock:
                self._timers = [t for t in self._timers if t.is_alive()]
                self._timers.append(timer)
            timer.start()
        else:
            self._reconcile_key(*key)

    def reconcile_all(self) -> None:
        """Bring every object's status up to date now (e.g. after enabling)."""
        if not self.enabled:
            return
        with self.store.lock:
            keys = list(self.store.objects)
        for key in keys:
            self._reconcile_key(*key)

    def _reconcile_key(self, rt: catalog.ResourceType, namespace: str, name: str) -> None:
        if not self.enabled:
            return
        try:
            obj = self.store.get(rt, namespace, name)
        except errors.ApiError:  # deleted meanwhile
            return
        with self._lock:
            state = self._states.get((rt.kind, namespace, name))
        if rt.kind == "Deployment":
            status = deployment_status(obj, state or "available")
        elif rt.kind == "Job":
            status = job_status(obj, state or "complete")
        elif rt.kind == "HorizontalPodAutoscaler":
            status = hpa_status(obj)
        elif rt.kind == "Ingress":
            status = {"loadBalancer": {"ingress": [{"ip": INGRESS_ADDRESS}]}}
        elif rt.kind == "Namespace" and obj["metadata"].get("deletionTimestamp"):
            self.store.finish_namespace(name)
            self.store.flush_events()
            return
        else:
            return
        self.store.set_status(rt, namespace, name, status)
        self.store.flush_events()


def deployment_status(obj: dict[str, Any], state: str) -> dict[str, Any]:
    spec, old = obj.get("spec") or {}, obj.get("status") or {}
    name = obj["metadata"]["name"]
    replicas = int(spec.get("replicas", 1))
    conds = old.get("conditions") or []
    rs = f'ReplicaSet "{name}-{obj["metadata"].get("generation", 1):x}"'
    status: dict[str, Any] = {"observedGeneration": obj["metadata"].get("generation", 1)}
    if state == "available":
        counts = {"replicas": replicas, "updatedReplicas": replicas,
                  "readyReplicas": replicas, "availableReplicas": replicas}
        conditions = [
            _condition(conds, "Available", "True", "MinimumReplicasAvailable",
                       "Deployment has minimum availability.", True),
            _condition(conds, "Progressing", "True", "NewReplicaSetAvailable",
                       f"{rs} has successfully progressed.", True)]
    else:
        counts = {"replicas": replicas, "updatedReplicas": replicas,
                  "unavailableReplicas": replicas}
        progressing = (("False", "ProgressDeadlineExceeded", f"{rs} has timed out progressing.")
                       if state == "stalled" else
                       ("True", "ReplicaSetUpdated", f"{rs} is progressing."))
        conditions = [
            _condition(conds, "Available", "False", "MinimumReplicasUnavailable",
                       "Deployment does not have minimum availability.", True),
            _condition(conds, "Progressing", *progressing, True)]
    status.update({k: v for k, v in counts.items() if v})
    status["conditions"] = conditions
    return status


def job_status(obj: dict[str, Any], state: str) -> dict[str, Any]:
    spec, old = obj.get("spec") or {}, obj.get("status") or {}
    conds = old.get("conditions") or []
    status: dict[str, Any] = {"startTime": old.get("startTime") or ssa.now()}
    if state == "complete":
        status["succeeded"] = int(spec.get("completions", 1))
        status["completionTime"] = old.get("completionTime") or ssa.now()
        status["conditions"] = [
            _condition(conds, "SuccessCriteriaMet", "True", "CompletionsReached",
                       "Reached expected number of succeeded pods"),
            _condition(conds, "Complete", "True", "CompletionsReached",
                       "Reached expected number of succeeded pods")]
    elif state == "failed":
        status["failed"] = int(spec.get("backoffLimit", 6)) + 1
        status["conditions"] = [
            _condition(conds, "FailureTarget", "True", "BackoffLimitExceeded",
                       "Job has reached the specified backoff limit"),
            _condition(conds, "Failed", "True", "BackoffLimitExceeded",
                       "Job has reached the specified backoff limit")]
    else:
        status["active"] = int(spec.get("parallelism", 1))
    return status


def hpa_status(obj: dict[str, Any]) -> dict[str, Any]:
    spec, old = obj.get("spec") or {}, obj.get("status") or {}
    conds = old.get("conditions") or []
    current = []
    for metric in spec.get("metrics") or []:
        kind = metric.get("type", "Resource")
        source = dict(metric.get(kind[0].lower() + kind[1:]) or {})
        target = source.pop("target", {}) or {}
        value = ({"averageUtilization": 1} if target.get("type") == "Utilization"
                 else {"averageValue": "0"})
        current.append({"type": kind, kind[0].lower() + kind[1:]: {**source, "current": value}})
    replicas = int(spec.get("minReplicas", 1))
    return {"currentReplicas": replicas, "desiredReplicas": replicas, "currentMetrics": current,
            "conditions": [
                _condition(conds, "AbleToScale", "True", "ReadyForNewScale",
                           "recommended size matches current size"),
                _condition(conds, "ScalingActive", "True", "ValidMetricFound",
                           "the HPA was able to successfully calculate a replica count")]}
