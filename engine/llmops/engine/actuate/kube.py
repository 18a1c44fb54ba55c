"""The ``kubernetes`` actuator: server-side apply to a cluster, as Flux's kustomize-controller.

Input: an environment name (``observe``), an ``ActPlan`` (``act``) or keys
(``health``). Output: the live objects llmops owns in the environment, an
``ActResult`` with one outcome and health per object, or health per key.
Called by the reconciler (through the actuator factory in
``llmops.engine.service.compose``) and by ``llmops reconcile --wait``.

How it talks to the cluster: the official client's ``DynamicClient`` over a
fresh ``Configuration``/``ApiClient`` (never the process-wide default), with
discovery cached in a file under a private directory of this actuator. The
kubeconfig path and context come from the environment's ``cluster``
(or ``settings.kube.kubeconfig``); ``inCluster`` uses the pod's service account.

- ``observe``: one labelled list per kind llmops renders, selecting the
  environment's ApplySet label (``applyset.kubernetes.io/part-of``), paged.
  Any failed or partial list raises ``ActuatorError``: unknown is never empty.
- ``act``: objects are applied in order (Namespaces, ResourceQuotas, then
  ConfigMaps and Secrets, Services, workloads, HPAs and Ingresses) with
  server-side apply as field manager ``settings.kube.field_manager``. Each
  write is a server-side dry run first, compared with the live object
  (bookkeeping annotations ignored); only a difference is sent for real. A
  field conflict with another *applier* fails the object naming that manager,
  unless the environment sets ``forceConflicts`` or the spec is annotated
  ``llmops.io/force-conflicts: "true"``; fields taken by plain writes
  (``Update`` managers: kubectl edit/patch) are drift and are taken back.
  The first failed write stops the pass: later writes and every deletion are
  ``skipped`` (nothing is pruned after a failure). Deletions run in reverse
  order with ``propagationPolicy=Background``.
- Every request is retried with capped exponential backoff on 429 (honouring
  ``Retry-After``), 5xx, timeouts and connection errors; other 4xx fail at once.
- Messages never carry a Secret's values: they are masked, then redacted.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import tempfile
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import urllib3
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ResourceNotFoundError, ResourceNotUniqueError

from llmops.engine import manifest, redact
from llmops.engine.actuate import kube_health
from llmops.engine.actuate.base import ActPlan, ActResult, ActuatorError, ObjectOutcome, Outcome
from llmops.engine.actuate.health import HealthStatus
from llmops.engine.errors import LlmopsError
from llmops.engine.plan import changeset, diff
from llmops.engine.settings import KubeSettings
from llmops.engine.spec import repoconfig
from llmops.engine.types import KubeObject, ResourceKey

T = TypeVar("T")

OWNED_TYPES: tuple[tuple[str, str], ...] = (
    ("v1", "Namespace"), ("v1", "ResourceQuota"), ("v1", "ConfigMap"), ("v1", "Secret"),
    ("v1", "Service"), ("apps/v1", "Deployment"), ("batch/v1", "Job"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"), ("networking.k8s.io/v1", "Ingress"),
    ("policy/v1", "PodDisruptionBudget"),
)
"""The (apiVersion, kind) of every type llmops renders, and so lists and may prune."""

APPLY_ORDER = {"Namespace": 0, "ResourceQuota": 1, "ConfigMap": 2, "Secret": 2, "Service": 3,
               "Deployment": 4, "Job": 4, "HorizontalPodAutoscaler": 5, "Ingress": 5,
               "PodDisruptionBudget": 5}
UNKNOWN_KIND_RANK = 4
_MANAGER_RE = re.compile(r'conflict with "([^"]+)"')
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
PAGE_SIZE = 500
MAX_CHANGED_PATHS = 5


class ApplyError(LlmopsError):
    """One object could not be applied or deleted; formats as
    ``Deployment/llmops-prod/chat: dry-run failed (Conflict): …``."""

    def __init__(self, key: ResourceKey, phase: str, reason: str, detail: str, *,
                 managers: tuple[str, ...] = ()) -> None:
        self.key = key
        self.phase = phase
        self.reason = reason
        self.detail = detail
        self.managers = managers
        """For a field conflict: the field managers that own the contested fields."""
        super().__init__(f"{key}: {self.summary}")

    @property
    def summary(self) -> str:
        """The message without the object (the reconciler prefixes the key itself)."""
        return f"{self.phase} failed ({self.reason}): {self.detail}"


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped exponential backoff between tries of one request."""

    initial: float = 0.2
    factor: float = 2.0
    cap: float = 5.0
    tries: int = 5
    max_retry_after: float = 30.0


def apply_rank(key: ResourceKey) -> tuple[int, str, str, str]:
    """Sort key of the apply order (deletions use its reverse)."""
    return (APPLY_ORDER.get(key.kind, UNKNOWN_KIND_RANK), key.namespace, key.name, key.group)


# --------------------------------------------------------------------------- errors


def _status_body(exc: ApiException) -> dict[str, Any]:
    try:
        body = json.loads(exc.body) if exc.body else {}
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def _describe(exc: ApiException) -> tuple[str, str]:
    """(reason, detail) of an API error: field-manager conflicts name the manager and field."""
    body = _status_body(exc)
    reason = str(body.get("reason") or exc.reason or exc.status)
    causes = [c for c in ((body.get("details") or {}).get("causes") or [])
              if isinstance(c, Mapping)]
    conflicts = [c for c in causes if c.get("reason") == "FieldManagerConflict"]
    if exc.status == 409 and conflicts:
        detail = "; ".join(f"{c.get('message', 'conflict')} on {c.get('field', '?')}"
                           for c in conflicts)
        return "Conflict", detail
    message = str(body.get("message") or exc.reason or "")
    return reason, message or f"HTTP {exc.status}"


def _conflict_managers(detail: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(_MANAGER_RE.findall(detail)))


def _hand_edits_only(live: Mapping[str, Any], managers: Iterable[str]) -> bool:
    """Whether every manager owns its fields through plain writes (``Update``: kubectl
    edit/patch, a script), never through server-side apply: such changes are drift."""
    entries = [e for e in ((live.get("metadata") or {}).get("managedFields") or [])
               if isinstance(e, Mapping)]
    for manager in managers:
        ops = {e.get("operation") for e in entries if e.get("manager") == manager}
        if ops != {"Update"}:
            return False
    return True


def _retry_after(exc: ApiException) -> float | None:
    headers = exc.headers or {}
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    if value is None:
        value = ((_status_body(exc).get("details") or {}).get("retryAfterSeconds"))
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _secret_values(obj: Mapping[str, Any] | None) -> list[str]:
    """The values (encoded and decoded) a Secret carries, longest first, to mask in text."""
    if not obj or obj.get("kind") != "Secret":
        return []
    found: set[str] = set()
    for field_name in ("data", "stringData"):
        for value in (obj.get(field_name) or {}).values():
            if not isinstance(value, str) or not value:
                continue
            found.add(value)
            if field_name == "data":
                try:
                    found.add(base64.b64decode(value, validate=True).decode())
                except (ValueError, UnicodeDecodeError):
                    pass
            else:
                found.add(base64.b64encode(value.encode()).decode())
    return sorted((v for v in found if len(v) >= 3), key=len, reverse=True)


def mask(text: str, *objects: Mapping[str, Any] | None) -> str:
    """``text`` without the values of the Secrets among ``objects``, then redacted."""
    for obj in objects:
        for value in _secret_values(obj):
            text = text.replace(value, diff.MASK)
    return redact.redact(text)


# --------------------------------------------------------------------------- the actuator


class KubernetesActuator:
    """Server-side applies one environment's objects to the cluster its ``cluster`` names."""

    name = "kubernetes"
    applies = True

    def __init__(self, settings: KubeSettings, cluster: repoconfig.Cluster | None = None, *,
                 force_conflicts: bool = False, backoff: Backoff | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self.cluster = cluster or repoconfig.Cluster()
        self.force_conflicts = force_conflicts
        self.backoff = backoff or Backoff()
        self.sleep = sleep
        self._dyn: Any = None
        self._resources: dict[tuple[str, str], Any] = {}
        self._cache_dir = Path(tempfile.mkdtemp(prefix="llmops-kube-"))
        weakref.finalize(self, shutil.rmtree, self._cache_dir, True)

    # ------------------------------------------------------------------ client

    def _where(self) -> str:
        if self.cluster.inCluster:
            return "in-cluster"
        path = self.cluster.kubeconfig or self.settings.kubeconfig or "default kubeconfig"
        return f"{path} (context {self.cluster.context or 'current'})"

    def _client(self) -> Any:
        if self._dyn is not None:
            return self._dyn
        cfg = k8s_client.Configuration()
        try:
            if self.cluster.inCluster:
                k8s_config.load_incluster_config(  # type: ignore[no-untyped-call]
                    client_configuration=cfg)
            else:
                path = self.cluster.kubeconfig or self.settings.kubeconfig or None
                k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                    config_file=str(Path(path).expanduser()) if path else None,
                    context=self.cluster.context, client_configuration=cfg,
                    persist_config=False)
        except (k8s_config.ConfigException, OSError, ValueError, KeyError, TypeError) as exc:
            raise ActuatorError(f"cluster {self._where()}: cannot load the client "
                                f"configuration: {redact.redact(str(exc))}") from exc
        cfg.retries = False  # this module retries, with backoff, on its own terms
        api = k8s_client.ApiClient(cfg)
        api.user_agent = f"{self.settings.field_manager}/kubernetes-actuator"
        cache_file = str(self._cache_dir / "discovery.json")
        try:
            self._dyn = self._call(lambda: DynamicClient(  # type: ignore[no-untyped-call]
                api, cache_file=cache_file))
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise ActuatorError(f"cluster {self._where()}: API discovery failed: "
                                f"{self._error_text(exc)}") from exc
        return self._dyn

    def _resource(self, api_version: str, kind: str) -> Any:
        found = self._resources.get((api_version, kind))
        if found is not None:
            return found
        dyn = self._client()
        try:
            if api_version:
                found = self._call(lambda: dyn.resources.get(api_version=api_version, kind=kind))
            else:
                found = self._call(lambda: dyn.resources.get(kind=kind))
        except (ResourceNotFoundError, ResourceNotUniqueError) as exc:
            raise ActuatorError(f"cluster {self._where()}: the API serves no single "
                                f"{api_version or '?'} {kind}: {exc}") from exc
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise ActuatorError(f"cluster {self._where()}: discovery of {kind} failed: "
                                f"{self._error_text(exc)}") from exc
        self._resources[(api_version, kind)] = found
        return found

    def _resource_for(self, key: ResourceKey, obj: Mapping[str, Any] | None) -> Any:
        api_version = str((obj or {}).get("apiVersion") or "")
        if not api_version:
            api_version = next((v for v, k in OWNED_TYPES
                                if k == key.kind and v.rpartition("/")[0] == key.group), "")
        return self._resource(api_version, key.kind)

    def _call(self, fn: Callable[[], T]) -> T:
        """``fn()``, retried on 429/5xx, timeouts and connection errors with capped backoff."""
        delay = self.backoff.initial
        for attempt in range(1, self.backoff.tries + 1):
            try:
                return fn()
            except ApiException as exc:
                if exc.status not in RETRYABLE_STATUS or attempt == self.backoff.tries:
                    raise
                wait = delay
                if exc.status == 429:
                    after = _retry_after(exc)
                    if after is not None:
                        wait = min(max(after, 0.0), self.backoff.max_retry_after)
            except (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError):
                if attempt == self.backoff.tries:
                    raise
                wait = delay
            self.sleep(wait)
            delay = min(delay * self.backoff.factor, self.backoff.cap)
        raise AssertionError("unreachable")  # pragma: no cover

    def _error_text(self, exc: BaseException, *objects: Mapping[str, Any] | None) -> str:
        if isinstance(exc, ApiException):
            reason, detail = _describe(exc)
            return mask(f"{reason}: {detail}", *objects)
        return mask(f"{type(exc).__name__}: {exc}", *objects)

    def _timeout(self) -> float:
        return self.settings.request_timeout_seconds

    # ------------------------------------------------------------------ observe

    def observe(self, environment: str) -> dict[ResourceKey, KubeObject]:
        """Every object carrying the environment's ApplySet label; raises when unknown."""
        selector = f"{manifest.APPLYSET_LABEL}={manifest.applyset_id(environment)}"
        out: dict[ResourceKey, KubeObject] = {}
        for api_version, kind in OWNED_TYPES:
            for item in self._list(api_version, kind, selector):
                out[ResourceKey.of(item)] = item
        return out

    def _list(self, api_version: str, kind: str, selector: str) -> list[KubeObject]:
        resource = self._resource(api_version, kind)
        dyn = self._client()
        items: list[KubeObject] = []
        token: str | None = None
        while True:
            def page(token: str | None = token) -> Any:
                return dyn.get(resource, label_selector=selector, limit=PAGE_SIZE,
                               _continue=token, serialize=False,
                               _request_timeout=self._timeout())
            try:
                data = json.loads(self._call(page).data)
            except (ApiException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
                raise ActuatorError(f"cluster {self._where()}: listing {kind} failed, so "
                                    f"what is applied is unknown: {self._error_text(exc)}"
                                    ) from exc
            if not isinstance(data, dict) or not isinstance(data.get("items"), list):
                raise ActuatorError(f"cluster {self._where()}: listing {kind} returned no "
                                    "item list; what is applied is unknown")
            for item in data["items"]:
                if isinstance(item, dict):
                    items.append({"apiVersion": api_version, "kind": kind, **item})
            token = (data.get("metadata") or {}).get("continue") or None
            if not token:
                return items

    # ------------------------------------------------------------------ reads

    def _get(self, key: ResourceKey, resource: Any) -> KubeObject | None:
        dyn = self._client()
        try:
            resp = self._call(lambda: dyn.get(resource, name=key.name,
                                              namespace=key.namespace or None, serialize=False,
                                              _request_timeout=self._timeout()))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        obj: KubeObject = json.loads(resp.data)
        obj.setdefault("apiVersion", resource.group_version)
        obj.setdefault("kind", resource.kind)
        return obj

    def health(self, environment: str,
               keys: Iterable[ResourceKey]) -> dict[ResourceKey, HealthStatus]:
        """Health per key, read now; an object that cannot be read is Unknown."""
        out: dict[ResourceKey, HealthStatus] = {}
        for key in keys:
            try:
                out[key] = kube_health.assess(self._get(key, self._resource_for(key, None)))
            except (ActuatorError, ApiException, urllib3.exceptions.HTTPError, OSError,
                    ValueError):
                out[key] = HealthStatus.UNKNOWN
        return out

    # ------------------------------------------------------------------ act

    def act(self, plan: ActPlan) -> ActResult:
        self._client()
        outcomes: dict[ResourceKey, ObjectOutcome] = {}
        failed_first: ResourceKey | None = None
        written: list[ResourceKey] = []
        for key in sorted(plan.write, key=apply_rank):
            if failed_first is not None:
                outcomes[key] = ObjectOutcome(Outcome.SKIPPED,
                                              f"not applied: {failed_first} failed first")
                continue
            try:
                outcomes[key] = self._apply_one(key, plan.desired[key])
            except ApplyError as err:
                outcomes[key] = ObjectOutcome(Outcome.FAILED, err.summary, HealthStatus.UNKNOWN)
                failed_first = key
                continue
            if outcomes[key].outcome in (Outcome.CREATED, Outcome.CONFIGURED):
                written.append(key)
        for key in sorted(plan.delete, key=apply_rank, reverse=True):
            if failed_first is not None:
                outcomes[key] = ObjectOutcome(
                    Outcome.SKIPPED, f"not pruned: {failed_first} failed in this pass")
                continue
            try:
                outcomes[key] = self._delete_one(key, plan.keep.get(key))
            except ApplyError as err:
                outcomes[key] = ObjectOutcome(Outcome.FAILED, err.summary, HealthStatus.UNKNOWN)
        # Read back what was written: its health is what the controllers made of it.
        for key in written:
            o = outcomes[key]
            outcomes[key] = ObjectOutcome(o.outcome, o.message, self._read_health(key, plan))
        for key, obj in plan.desired.items():
            if key not in plan.write:
                outcomes[key] = ObjectOutcome(Outcome.UNCHANGED, "", kube_health.assess(obj))
        return ActResult(outcomes)

    def _read_health(self, key: ResourceKey, plan: ActPlan) -> HealthStatus:
        try:
            return kube_health.assess(self._get(key, self._resource_for(key, plan.desired[key])))
        except (ActuatorError, ApiException, urllib3.exceptions.HTTPError, OSError, ValueError):
            return HealthStatus.UNKNOWN

    def _apply_one(self, key: ResourceKey, obj: KubeObject) -> ObjectOutcome:
        """Dry run, compare, and apply for real only when the result differs from live."""
        try:
            resource = self._resource_for(key, obj)
        except ActuatorError as exc:
            raise ApplyError(key, "apply", "NotServed", str(exc)) from exc
        try:
            live = self._get(key, resource)
        except (ApiException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise ApplyError(key, "read", _reason(exc), self._error_text(exc, obj)) from exc
        body = diff.normalize(obj)
        force = self.force_conflicts or manifest.annotations_of(obj).get(
            manifest.FORCE_CONFLICTS_ANNOTATION) == "true"
        took = ""
        try:
            dry = self._apply(key, resource, body, dry_run=True, force=force)
        except ApplyError as err:
            # A field taken by a hand edit (an Update, not another applier) is drift:
            # take it back. Another applier's fields are only taken with forceConflicts.
            if not (err.managers and live is not None
                    and _hand_edits_only(live, err.managers)):
                raise
            force = True
            took = "; took fields back from " + ", ".join(f'"{m}"' for m in err.managers) + (
                " (a hand edit)")
            dry = self._apply(key, resource, body, dry_run=True, force=force)
        if live is not None:
            entry = diff.diff_revisions([live], [dry],
                                        ignore_annotations=manifest.REVISION_BOOKKEEPING).get(key)
            if entry is None or entry.action is changeset.Action.UNCHANGED:
                return ObjectOutcome(Outcome.UNCHANGED, "unchanged (server-side dry run)",
                                     kube_health.assess(live))
            paths = [c.path for c in entry.changes]
            shown = ", ".join(paths[:MAX_CHANGED_PATHS]) + (
                f" and {len(paths) - MAX_CHANGED_PATHS} more" if len(paths) > MAX_CHANGED_PATHS
                else "")
            self._apply(key, resource, body, dry_run=False, force=force)
            return ObjectOutcome(Outcome.CONFIGURED, mask(f"configured: {shown}{took}", obj))
        self._apply(key, resource, body, dry_run=False, force=force)
        return ObjectOutcome(Outcome.CREATED, "created")

    def _apply(self, key: ResourceKey, resource: Any, body: KubeObject, *,
               dry_run: bool, force: bool) -> KubeObject:
        dyn = self._client()
        phase = "dry-run" if dry_run else "apply"
        try:
            resp = self._call(lambda: dyn.server_side_apply(
                resource, body=body, name=key.name, namespace=key.namespace or None,
                field_manager=self.settings.field_manager,
                force_conflicts=True if force else None,
                dry_run="All" if dry_run else None, serialize=False,
                _request_timeout=self._timeout()))
            result: KubeObject = json.loads(resp.data)
        except ApiException as exc:
            reason, detail = _describe(exc)
            managers = _conflict_managers(detail) if reason == "Conflict" else ()
            if managers:
                detail += ("; not forced (set forceConflicts on the environment, or the "
                           f"{manifest.FORCE_CONFLICTS_ANNOTATION}: \"true\" annotation on the "
                           "spec, to take over)")
            raise ApplyError(key, phase, reason, mask(detail, body),
                             managers=managers) from exc
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise ApplyError(key, phase, _reason(exc), self._error_text(exc, body)) from exc
        result.setdefault("apiVersion", resource.group_version)
        result.setdefault("kind", resource.kind)
        return result

    def _delete_one(self, key: ResourceKey, last: KubeObject | None) -> ObjectOutcome:
        try:
            resource = self._resource_for(key, last)
        except ActuatorError as exc:
            raise ApplyError(key, "delete", "NotServed", str(exc)) from exc
        dyn = self._client()
        try:
            self._call(lambda: dyn.delete(resource, name=key.name,
                                          namespace=key.namespace or None,
                                          propagation_policy="Background", serialize=False,
                                          _request_timeout=self._timeout()))
        except ApiException as exc:
            if exc.status == 404:
                return ObjectOutcome(Outcome.DELETED, "already gone", HealthStatus.MISSING)
            reason, detail = _describe(exc)
            raise ApplyError(key, "delete", reason, mask(detail, last)) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ApplyError(key, "delete", _reason(exc), self._error_text(exc, last)) from exc
        return ObjectOutcome(Outcome.DELETED, "deleted (propagation Background)",
                             HealthStatus.MISSING)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        return _describe(exc)[0]
    if isinstance(exc, urllib3.exceptions.TimeoutError | TimeoutError):
        return "Timeout"
    if isinstance(exc, ValueError):
        return "BadResponse"
    return "Unreachable"
