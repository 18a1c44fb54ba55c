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

- ``observe``: one labelled list per kind llmops renders, selecting this
  environment's and specs repo's ApplySet (``kube_applyset``: a parent Secret per
  environment and repo; a parent another tool manages stops here), paged; an object
  with our label that field manager llmops never applied is someone else's and is
  left out. Any failed or partial list raises ``ActuatorError``: unknown is never empty.
- ``act``: every write is first a server-side dry run (``dryRun=All``); if any is
  rejected nothing is applied, the rejected objects fail and the others are skipped.
  Objects in a namespace the same pass creates (its own dry run answered 201, or
  failed) are checked by their real apply: a dry run there can only say NotFound.
  An object is read only when its dry run says it exists (200, not 201), to diff
  against. Then the parent is widened, objects are applied in dependency order
  (``APPLY_ORDER``) as field manager ``settings.kube.field_manager``, each only when
  its dry run differs from live (bookkeeping annotations ignored); its health is
  assessed on what the apply returned (no read-back). So a first apply sends one
  apply per object plus a dry run per namespace; a drift repair three requests per
  written object (dry run, read, apply). A field conflict
  with another *applier* fails the object naming that manager, unless the
  environment sets ``forceConflicts`` or the spec is annotated
  ``llmops.io/force-conflicts: "true"``; fields taken by plain writes (``Update``
  managers: kubectl edit/patch) are drift and are taken back. The first failed
  write stops the pass: later writes and every deletion are ``skipped``. Deletions
  run last, in reverse order, with ``propagationPolicy=Background``, each only if
  the live object is still in the set and applied by llmops; after a complete pass
  the parent lists exactly the rendered set. Every object gets one outcome.
- Every request is retried with capped exponential backoff on 429 (honouring
  ``Retry-After``), 5xx, timeouts and connection errors; other 4xx, and a 500 that
  cannot improve (an exhausted IP range, a quota: ``kube_errors.retryable``), fail
  at once.
- Messages never carry a Secret's values: they are masked, then redacted.
"""

from __future__ import annotations

import json
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
from llmops.engine.actuate import kube_applyset, kube_errors, kube_health
from llmops.engine.actuate.base import ActPlan, ActResult, ActuatorError, ObjectOutcome, Outcome
from llmops.engine.actuate.health import HealthStatus
from llmops.engine.actuate.kube_errors import ApplyError, mask, reason_of
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
OPTIONAL_TYPES: tuple[tuple[str, str], ...] = (
    ("keda.sh/v1alpha1", "ScaledObject"), ("gateway.networking.k8s.io/v1", "HTTPRoute"),
)
"""Types llmops renders only when an environment chooses them (KEDA, Gateway API): their
CRDs may be absent, so they are listed only once the ApplySet parent lists their kind."""

APPLY_ORDER = {
    "Namespace": 0, "CustomResourceDefinition": 1, "ResourceQuota": 2, "LimitRange": 2,
    "ServiceAccount": 3, "ClusterRole": 3, "Role": 3, "ClusterRoleBinding": 3, "RoleBinding": 3,
    "ConfigMap": 4, "Secret": 4, "PersistentVolumeClaim": 5,
    "Deployment": 6, "StatefulSet": 6, "DaemonSet": 6, "Job": 6, "CronJob": 6,
    "Service": 7, "Ingress": 8, "HTTPRoute": 8, "HorizontalPodAutoscaler": 9,
    "ScaledObject": 9, "PodDisruptionBudget": 9}
"""Dependency order: namespaces, CRDs, quotas, RBAC, config, storage, workloads,
services, ingress, autoscalers. Deletions run in reverse."""
UNKNOWN_KIND_RANK = 6
PAGE_SIZE = 500
HTTP_CREATED = 201
MAX_CHANGED_PATHS = 5


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


@dataclass(frozen=True, slots=True)
class _Prepared:
    """One write after its dry run: what to send, what is live, what the server made."""

    key: ResourceKey
    resource: Any
    body: KubeObject
    live: KubeObject | None
    dry: KubeObject | None
    """None when the object's namespace is created in the same pass."""
    force: bool
    took: str


# --------------------------------------------------------------------------- the actuator


class KubernetesActuator:
    """Server-side applies one environment's objects to the cluster its ``cluster`` names."""

    name = "kubernetes"
    applies = True

    def __init__(self, settings: KubeSettings, cluster: repoconfig.Cluster | None = None, *,
                 force_conflicts: bool = False, backoff: Backoff | None = None,
                 sleep: Callable[[float], None] = time.sleep, repository: str = "") -> None:
        self.settings = settings
        self.repository = repository
        """The specs repo's identity (URL or absolute path): part of the ApplySet's."""
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
            api_version = next((v for v, k in (*OWNED_TYPES, *OPTIONAL_TYPES)
                                if k == key.kind and v.rpartition("/")[0] == key.group), "")
        return self._resource(api_version, key.kind)

    def _call(self, fn: Callable[[], T]) -> T:
        """``fn()``, retried on 429/5xx, timeouts and connection errors with capped backoff."""
        delay = self.backoff.initial
        for attempt in range(1, self.backoff.tries + 1):
            try:
                return fn()
            except ApiException as exc:
                if not kube_errors.retryable(exc) or attempt == self.backoff.tries:
                    raise
                wait = delay
                if exc.status == 429:
                    after = kube_errors.retry_after(exc)
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
            reason, detail = kube_errors.describe(exc)
            return mask(f"{reason}: {detail}", *objects)
        return mask(f"{type(exc).__name__}: {exc}", *objects)

    def _timeout(self) -> float:
        return self.settings.request_timeout_seconds

    # ------------------------------------------------------------------ observe

    def applyset(self, environment: str) -> kube_applyset.ApplySet:
        return kube_applyset.ApplySet(environment, self.repository,
                                      self.settings.applyset_namespace)

    def observe(self, environment: str) -> dict[ResourceKey, KubeObject]:
        """Every object of this environment's ApplySet that llmops applied; raises when
        unknown. Objects with our label but none of our fields are someone else's."""
        aset = self.applyset(environment)
        listed, _ = aset.listed(self._parent(aset))
        selector = f"{manifest.APPLYSET_LABEL}={aset.id}"
        out: dict[ResourceKey, KubeObject] = {}
        optional = [(v, k) for v, k in OPTIONAL_TYPES
                    if kube_applyset.group_kind(ResourceKey(v.rpartition("/")[0], k, "", ""))
                    in listed]
        for api_version, kind in (*OWNED_TYPES, *optional):
            for item in self._list(api_version, kind, selector):
                if kube_applyset.managed_by(item, self.settings.field_manager):
                    out[ResourceKey.of(item)] = aset.logical(item)
        return out

    def _parent(self, aset: kube_applyset.ApplySet) -> KubeObject | None:
        """The live parent; raises when it cannot be read or another tool manages it."""
        try:
            parent = self._get(aset.key, self._resource("v1", kube_applyset.PARENT_KIND))
        except (ApiException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise ActuatorError(f"cluster {self._where()}: reading the ApplySet parent "
                                f"{aset.key} failed: {self._error_text(exc)}") from exc
        foreign = aset.foreign_tooling(parent)
        if foreign:
            raise ActuatorError(f"cluster {self._where()}: the ApplySet parent {aset.key} "
                                f"is managed by {foreign!r}, not llmops; refusing to touch it")
        return parent

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
        """Dry-run every write, apply only if none was rejected, then prune.

        Every object of the plan gets exactly one outcome."""
        self._client()
        aset = self.applyset(plan.environment)
        order = sorted(plan.write, key=apply_rank)
        prepared: list[_Prepared] = []
        rejected: dict[ResourceKey, str] = {}
        # Namespaces this pass writes that do not exist yet (their own dry run said so,
        # or failed): nothing in them can be dry-run before they do. Namespaces rank first.
        unchecked: set[str] = set()
        for key in order:
            try:
                item = self._prepare(key, aset.physical(plan.desired[key]), unchecked)
            except ApplyError as err:
                rejected[key] = err.summary
                item = None
            if key.kind == "Namespace" and not key.group and (item is None or item.live is None):
                unchecked.add(key.name)
            if item is not None:
                prepared.append(item)
        if rejected:
            return self._rejected(plan, order, rejected)
        parent = self._write_parent(aset, [*plan.desired, *plan.delete], grow=True,
                                    live=self._parent(aset))
        outcomes = self._apply_all(prepared)
        failed = next((k for k, o in outcomes.items() if o.outcome is Outcome.FAILED), None)
        for key in sorted(plan.delete, key=apply_rank, reverse=True):
            if failed is not None:
                outcomes[key] = ObjectOutcome(Outcome.SKIPPED,
                                              f"not pruned: {failed} failed in this pass")
                continue
            try:
                outcomes[key] = self._delete_one(key, plan.keep.get(key), aset)
            except ApplyError as err:
                outcomes[key] = ObjectOutcome(Outcome.FAILED, err.summary, HealthStatus.UNKNOWN)
                failed = key
        if failed is None:
            self._write_parent(aset, plan.desired, grow=False, live=parent)
        # A write's health is the object the apply returned (as stored, with its status);
        # later passes and ``health`` read it anew.
        for key, obj in plan.desired.items():
            if key not in plan.write:
                outcomes[key] = ObjectOutcome(Outcome.UNCHANGED, "", kube_health.assess(obj))
        return ActResult(outcomes)

    def _rejected(self, plan: ActPlan, order: list[ResourceKey],
                  rejected: Mapping[ResourceKey, str]) -> ActResult:
        """The result of a pass the dry run stopped: nothing applied, nothing pruned."""
        names = ", ".join(str(k) for k in list(rejected)[:MAX_CHANGED_PATHS]) + (
            f" and {len(rejected) - MAX_CHANGED_PATHS} more"
            if len(rejected) > MAX_CHANGED_PATHS else "")
        why = f"the server-side dry run rejected {len(rejected)} object(s): {names}"
        outcomes: dict[ResourceKey, ObjectOutcome] = {}
        for key in order:
            outcomes[key] = (ObjectOutcome(Outcome.FAILED, rejected[key], HealthStatus.UNKNOWN)
                             if key in rejected else
                             ObjectOutcome(Outcome.SKIPPED, f"not applied: {why}"))
        for key in plan.delete:
            outcomes[key] = ObjectOutcome(Outcome.SKIPPED, f"not pruned: {why}")
        for key, obj in plan.desired.items():
            outcomes.setdefault(key, ObjectOutcome(Outcome.UNCHANGED, "",
                                                   kube_health.assess(obj)))
        return ActResult(outcomes)

    def _apply_all(self, prepared: list[_Prepared]) -> dict[ResourceKey, ObjectOutcome]:
        """Apply in order what the dry run found different; the first failure stops it."""
        outcomes: dict[ResourceKey, ObjectOutcome] = {}
        failed: ResourceKey | None = None
        for item in prepared:
            if failed is not None:
                outcomes[item.key] = ObjectOutcome(Outcome.SKIPPED,
                                                   f"not applied: {failed} failed first")
                continue
            try:
                outcomes[item.key] = self._commit(item)
            except ApplyError as err:
                outcomes[item.key] = ObjectOutcome(Outcome.FAILED, err.summary,
                                                   HealthStatus.UNKNOWN)
                failed = item.key
        return outcomes

    def _write_parent(self, aset: kube_applyset.ApplySet, members: Iterable[ResourceKey], *,
                      grow: bool, live: KubeObject | None) -> KubeObject | None:
        """Make the parent (``live`` now) list ``members`` (plus what it lists already,
        when ``grow``); returns the parent as it then is."""
        wanted = aset.parent(members)
        if live is not None:
            kinds, spaces = aset.listed(live)
            new_kinds, new_spaces = aset.listed(wanted)
            if grow:
                new_kinds, new_spaces = kinds | new_kinds, spaces | new_spaces
            if (kinds, spaces) == (new_kinds, new_spaces) and manifest.labels_of(live).get(
                    kube_applyset.ID_LABEL) == aset.id:
                return live
            notes = wanted["metadata"]["annotations"]
            notes[kube_applyset.GROUP_KINDS_ANNOTATION] = ",".join(sorted(new_kinds))
            notes[kube_applyset.NAMESPACES_ANNOTATION] = ",".join(sorted(new_spaces))
        try:
            return self._apply(aset.key, self._resource("v1", kube_applyset.PARENT_KIND),
                               wanted, dry_run=False, force=True)[0]
        except ApplyError as err:
            raise ActuatorError(f"cluster {self._where()}: writing the ApplySet parent "
                                f"failed: {err}") from err

    def _read(self, key: ResourceKey, resource: Any,
              obj: Mapping[str, Any] | None) -> KubeObject | None:
        """The live object (None when absent); ``ApplyError`` when it cannot be read."""
        try:
            return self._get(key, resource)
        except (ApiException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise ApplyError(key, "read", reason_of(exc), self._error_text(exc, obj)) from exc

    def _prepare(self, key: ResourceKey, obj: KubeObject, unchecked: set[str]) -> _Prepared:
        """Dry-run the apply; raises ``ApplyError`` when rejected.

        The dry run's status says whether the object exists (201: it would be created);
        only an existing object is read, to diff against, or to tell a hand edit from
        another applier in a conflict. In a namespace that does not exist yet but this
        pass creates (``unchecked``) a dry run can only answer NotFound: the check is
        left to the real apply (as Argo CD does)."""
        try:
            resource = self._resource_for(key, obj)
        except ActuatorError as exc:
            raise ApplyError(key, "apply", "NotServed", str(exc)) from exc
        body = diff.normalize(obj)
        force = self.force_conflicts or manifest.annotations_of(obj).get(
            manifest.FORCE_CONFLICTS_ANNOTATION) == "true"
        if key.namespace in unchecked:
            return _Prepared(key, resource, body, None, None, force, "")
        try:
            dry, created = self._apply(key, resource, body, dry_run=True, force=force)
        except ApplyError as err:
            # A field taken by a hand edit (an Update, not another applier) is drift:
            # take it back. Another applier's fields are only taken with forceConflicts.
            live = self._read(key, resource, obj) if err.managers else None
            if live is None or not kube_errors.hand_edits_only(live, err.managers):
                raise
            took = "; took fields back from " + ", ".join(f'"{m}"' for m in err.managers) + (
                " (a hand edit)")
            dry = self._apply(key, resource, body, dry_run=True, force=True)[0]
            return _Prepared(key, resource, body, live, dry, True, took)
        live = None if created else self._read(key, resource, obj)
        return _Prepared(key, resource, body, live, dry, force, "")

    def _commit(self, item: _Prepared) -> ObjectOutcome:
        """Apply for real when the dry run differs from live; health from the response."""
        if item.live is None or item.dry is None:
            applied = self._apply(item.key, item.resource, item.body, dry_run=False,
                                  force=item.force)[0]
            return ObjectOutcome(Outcome.CREATED, "created", kube_health.assess(applied))
        entry = diff.diff_revisions([item.live], [item.dry],
                                    ignore_annotations=manifest.REVISION_BOOKKEEPING
                                    ).get(item.key)
        if entry is None or entry.action is changeset.Action.UNCHANGED:
            return ObjectOutcome(Outcome.UNCHANGED, "unchanged (server-side dry run)",
                                 kube_health.assess(item.live))
        paths = [c.path for c in entry.changes]
        shown = ", ".join(paths[:MAX_CHANGED_PATHS]) + (
            f" and {len(paths) - MAX_CHANGED_PATHS} more" if len(paths) > MAX_CHANGED_PATHS
            else "")
        applied = self._apply(item.key, item.resource, item.body, dry_run=False,
                              force=item.force)[0]
        return ObjectOutcome(Outcome.CONFIGURED,
                             mask(f"configured: {shown}{item.took}", item.body),
                             kube_health.assess(applied))

    def _apply(self, key: ResourceKey, resource: Any, body: KubeObject, *,
               dry_run: bool, force: bool) -> tuple[KubeObject, bool]:
        """The object as stored (or as it would be, dry run) and whether the apply
        created it (HTTP 201); ``ApplyError`` when refused."""
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
            created = resp.status == HTTP_CREATED
        except ApiException as exc:
            reason, detail = kube_errors.describe(exc)
            managers = kube_errors.conflict_managers(detail) if reason == "Conflict" else ()
            if managers:
                detail += ("; not forced (set forceConflicts on the environment, or the "
                           f"{manifest.FORCE_CONFLICTS_ANNOTATION}: \"true\" annotation on the "
                           "spec, to take over)")
            raise ApplyError(key, phase, reason, mask(detail, body),
                             managers=managers) from exc
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise ApplyError(key, phase, reason_of(exc), self._error_text(exc, body)) from exc
        result.setdefault("apiVersion", resource.group_version)
        result.setdefault("kind", resource.kind)
        return result, created

    def _delete_one(self, key: ResourceKey, last: KubeObject | None,
                    aset: kube_applyset.ApplySet) -> ObjectOutcome:
        """Delete ``key`` if it is still ours: in this ApplySet and applied by llmops."""
        try:
            resource = self._resource_for(key, last)
        except ActuatorError as exc:
            raise ApplyError(key, "delete", "NotServed", str(exc)) from exc
        live = self._read(key, resource, last)
        if live is None:
            return ObjectOutcome(Outcome.DELETED, "already gone", HealthStatus.MISSING)
        part_of = manifest.labels_of(live).get(manifest.APPLYSET_LABEL)
        if part_of != aset.id:
            return ObjectOutcome(Outcome.SKIPPED, "not pruned: not in this ApplySet "
                                 f"({manifest.APPLYSET_LABEL}={part_of or 'none'})",
                                 kube_health.assess(live))
        if not kube_applyset.managed_by(live, self.settings.field_manager):
            return ObjectOutcome(Outcome.SKIPPED, "not pruned: field manager "
                                 f"{self.settings.field_manager} never applied it",
                                 kube_health.assess(live))
        dyn = self._client()
        try:
            self._call(lambda: dyn.delete(resource, name=key.name,
                                          namespace=key.namespace or None,
                                          propagation_policy="Background", serialize=False,
                                          _request_timeout=self._timeout()))
        except ApiException as exc:
            if exc.status == 404:
                return ObjectOutcome(Outcome.DELETED, "already gone", HealthStatus.MISSING)
            reason, detail = kube_errors.describe(exc)
            raise ApplyError(key, "delete", reason, mask(detail, last)) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ApplyError(key, "delete", reason_of(exc), self._error_text(exc, last)) from exc
        return ObjectOutcome(Outcome.DELETED, "deleted (propagation Background)",
                             HealthStatus.MISSING)

