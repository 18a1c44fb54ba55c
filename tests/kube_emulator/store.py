"""The object store: every API verb's effect on state, under one lock.

Input: decoded requests from `server` (resource type, namespace, name, body,
options). Output: response bodies (dicts) or `ApiError`. Keeps objects with their
field managers, a global resourceVersion counter bumped on every write, and a
log of writes (who wrote what) that tests read through `EmulatorServer.stats`.
Calls `admission` (defaults, validation), `ssa` (ownership), `patches`.
Change events go to listeners (the simulated controllers) after the lock is
released.
"""

from __future__ import annotations

import base64
import copy
import json
import secrets
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from . import admission, catalog, errors, patches, selectors, ssa
from .catalog import ResourceType

Key = tuple[ResourceType, str, str]  # (type, namespace or "", name)
# Server-owned metadata: ignored in client bodies, carried over from the stored object.
_SYSTEM_META = ("uid", "creationTimestamp", "resourceVersion", "generation", "managedFields",
                "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink")


@dataclass
class Record:
    obj: dict[str, Any]
    managers: list[ssa.Manager]


@dataclass(frozen=True)
class Write:
    """One committed change. `actor` is "client", "controller" or "gc"."""
    actor: str
    verb: str  # create | update | patch | apply | delete
    kind: str
    namespace: str
    name: str
    resource_version: str


@dataclass(frozen=True)
class Event:
    type: str  # ADDED | MODIFIED | DELETED
    rt: ResourceType
    obj: dict[str, Any]


@dataclass
class Options:
    manager: str = ""
    dry_run: bool = False
    force: bool = False
    subresource: str = ""
    actor: str = "client"


def _content(obj: dict[str, Any]) -> dict[str, Any]:
    """The object without the fields every write changes by itself."""
    out = copy.deepcopy(obj)
    meta = out.get("metadata", {})
    meta.pop("managedFields", None)
    meta.pop("resourceVersion", None)
    return out


def _spec_changed(old: dict[str, Any], new: dict[str, Any]) -> bool:
    skip = {"metadata", "status", "apiVersion", "kind"}
    return {k: v for k, v in old.items() if k not in skip} != {
        k: v for k, v in new.items() if k not in skip}


class Store:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.objects: dict[Key, Record] = {}
        self.resource_version = 0
        self.writes: list[Write] = []
        self.listeners: list[Callable[[Event], None]] = []
        self._ip = 10
        self._events = threading.local()
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self.create(catalog.NAMESPACE, "", {"apiVersion": "v1", "kind": "Namespace",
                                                "metadata": {"name": ns}},
                        Options(manager="kube-apiserver", actor="system"))
        self._events.pending = []

    # ---- helpers -------------------------------------------------------------------

    def _allocate_ip(self) -> str:
        self._ip += 1
        return f"10.96.{self._ip // 250}.{self._ip % 250 + 1}"

    def _record(self, rt: ResourceType, ns: str, name: str) -> Record:
        rec = self.objects.get((rt, ns, name))
        if rec is None:
            raise errors.not_found(rt, name)
        return rec

    def _emit(self, event: Event) -> None:
        pending = getattr(self._events, "pending", None)
        if pending is None:
            pending = self._events.pending = []
        pending.append(event)

    def flush_events(self) -> None:
        """Deliver queued change events to listeners (outside the lock)."""
        while pending := getattr(self._events, "pending", None):
            self._events.pending = []
            for event in pending:
                for listener in list(self.listeners):
                    listener(event)

    def _commit(self, rt: ResourceType, key: Key, obj: dict[str, Any],
                managers: list[ssa.Manager], verb: str, opts: Options, created: bool) -> None:
        self.resource_version += 1
        obj["metadata"]["resourceVersion"] = str(self.resource_version)
        if managers:
            obj["metadata"]["managedFields"] = ssa.render(managers)
        else:
            obj["metadata"].pop("managedFields", None)
        self.objects[key] = Record(obj, managers)
        self.writes.append(Write(opts.actor, verb, rt.kind, key[1], key[2],
                                 str(self.resource_version)))
        self._emit(Event("ADDED" if created else "MODIFIED", rt, copy.deepcopy(obj)))

    def _check_namespace(self, rt: ResourceType, ns: str, name: str) -> None:
        if not rt.namespaced:
            return
        rec = self.objects.get((catalog.NAMESPACE, "", ns))
        if rec is None:
            raise errors.not_found(catalog.NAMESPACE, ns)
        if rec.obj["metadata"].get("deletionTimestamp"):
            raise errors.ApiError(
                403, "Forbidden", f'{rt.qualified} "{name}" is forbidden: unable to create new '
                f"content in namespace {ns} because it is being terminated",
                {"causes": [{"reason": "NamespaceTerminating", "field": "metadata.namespace",
                             "message": f"namespace {ns} is being terminated"}]})

    def _check_identity(self, rt: ResourceType, ns: str, name: str | None,
                        body: Any, require_kind: bool = False) -> dict[str, Any]:
        """Check a body against the URL. Create and update bodies may omit apiVersion
        and kind (the URL supplies them, as on a real apiserver); apply bodies may not."""
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request must be a JSON or YAML object")
        if not require_kind:
            body.setdefault("apiVersion", rt.api_version)
            body.setdefault("kind", rt.kind)
        api_version, kind = body.get("apiVersion"), body.get("kind")
        if not api_version or not kind:
            raise errors.bad_request("Object 'Kind' is missing in request body" if not kind
                                     else "Object 'apiVersion' is missing in request body")
        if api_version != rt.api_version:
            raise errors.bad_request(f"the API version in the data ({api_version}) does not "
                                     f"match the expected API version ({rt.api_version})")
        if kind != rt.kind:
            raise errors.bad_request(f"the kind in the data ({kind}) does not match the "
                                     f"expected kind ({rt.kind})")
        meta = body.get("metadata")
        if meta is None:
            meta = body["metadata"] = {}
        if not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")
        if rt.namespaced:
            if meta.get("namespace") not in (None, "", ns):
                raise errors.bad_request("the namespace of the provided object does not match "
                                         "the namespace sent on the request")
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        if name is not None and meta.get("name") not in (None, name):
            raise errors.bad_request(f"the name of the object ({meta.get('name')}) does not "
                                     f"match the name on the URL ({name})")
        return body

    def _finish(self, rt: ResourceType, obj: dict[str, Any],
                old: dict[str, Any] | None) -> dict[str, Any]:
        obj = admission.default(rt, obj, self._allocate_ip)
        admission.validate(rt, obj, old)
        return obj

    # ---- reads ---------------------------------------------------------------------

    def get(self, rt: ResourceType, ns: str, name: str) -> dict[str, Any]:
        with self.lock:
            return copy.deepcopy(self._record(rt, ns, name).obj)

    def list_items(self, rt: ResourceType, ns: str | None, label: str | None = None,
             field_sel: str | None = None, limit: int = 0,
             cont: str | None = None) -> dict[str, Any]:
        match_labels = selectors.label_selector(label)
        match_fields = selectors.field_selector(field_sel)
        with self.lock:
            keys = sorted(k for k in self.objects if k[0] == rt and (ns is None or k[1] == ns))
            items = [self.objects[k].obj for k in keys]
            items = [o for o in items if match_labels(o) and match_fields(o)]
            rv = str(self.resource_version)
            start = 0
            if cont:
                try:
                    start = int(json.loads(base64.b64decode(cont))["start"])
                except (ValueError, KeyError, TypeError) as exc:
                    raise errors.ApiError(410, "Expired", "continue token is invalid") from exc
            meta: dict[str, Any] = {"resourceVersion": rv}
            page = items[start:]
            if limit and len(page) > limit:
                page = page[:limit]
                token = {"start": start + limit, "rv": rv}
                meta["continue"] = base64.b64encode(json.dumps(token).encode()).decode()
                meta["remainingItemCount"] = len(items) - start - limit
            out_items = []
            for obj in page:
                item = copy.deepcopy(obj)
                item.pop("apiVersion", None)  # a real list's items carry neither
                item.pop("kind", None)
                out_items.append(item)
        return {"kind": f"{rt.kind}List", "apiVersion": rt.api_version, "metadata": meta,
                "items": out_items}

    # ---- create --------------------------------------------------------------------

    def create(self, rt: ResourceType, ns: str, body: Any, opts: Options) -> dict[str, Any]:
        with self.lock:
            body = self._check_identity(rt, ns, None, copy.deepcopy(body))
            meta = body["metadata"]
            for k in _SYSTEM_META:
                meta.pop(k, None)
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
            name = meta.get("name", "")
            if name and (rt, ns, name) in self.objects:
                raise errors.already_exists(rt, name)
            self._check_namespace(rt, ns, name)
            obj = self._new_object(rt, body)
            obj = self._finish(rt, obj, None)
            managers = ssa.update(None, [], obj, opts.manager, rt.api_version)
            if opts.dry_run:
                return self._dry(obj, managers)
            self._commit(rt, (rt, ns, name), obj, managers, "create", opts, created=True)
            return copy.deepcopy(obj)

    def _new_object(self, rt: ResourceType, body: dict[str, Any]) -> dict[str, Any]:
        obj = copy.deepcopy(body)
        meta = obj["metadata"]
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = ssa.now()
        if rt.generation:
            meta["generation"] = 1
        if rt.has_status and rt.kind not in ("Namespace",):
            obj["status"] = {}
        return obj

    def _dry(self, obj: dict[str, Any], managers: list[ssa.Manager]) -> dict[str, Any]:
        out = copy.deepcopy(obj)
        if managers:
            out["metadata"]["managedFields"] = ssa.render(managers)
        return out

    # ---- update, patch, apply -------------------------------------------------------

    def replace(self, rt: ResourceType, ns: str, name: str, body: Any,
                opts: Options) -> dict[str, Any]:
        with self.lock:
            body = self._check_identity(rt, ns, name, copy.deepcopy(body))
            return self._update(rt, ns, name, body, opts, "update")

    def patch(self, rt: ResourceType, ns: str, name: str, content_type: str, raw: bytes,
              opts: Options) -> dict[str, Any]:
        if content_type not in patches.KNOWN:
            raise errors.unsupported_media_type(content_type)
        if content_type == patches.APPLY:
            return self.apply(rt, ns, name, raw, opts)
        if opts.force:
            raise errors.ApiError(422, "Invalid", "force: Forbidden: may not be specified for "
                                  "non-apply patch")
        try:
            patch = json.loads(raw or b"null")
        except ValueError as exc:
            raise errors.bad_request(f"error decoding patch: {exc}") from exc
        with self.lock:
            current = copy.deepcopy(self._record(rt, ns, name).obj)
            if content_type == patches.JSON_PATCH:
                new = patches.json_patch(current, patch)
            else:
                if not isinstance(patch, dict):
                    raise errors.bad_request("patch body must be a JSON object")
                new = patches.merge_patch(current, patch, content_type == patches.STRATEGIC)
            new = self._check_identity(rt, ns, name, new)
            return self._update(rt, ns, name, new, opts, "patch")

    def _update(self, rt: ResourceType, ns: str, name: str, body: dict[str, Any],
                opts: Options, verb: str) -> dict[str, Any]:
        rec = self._record(rt, ns, name)
        old = rec.obj
        wanted_rv = body["metadata"].get("resourceVersion")
        if wanted_rv and wanted_rv != old["metadata"]["resourceVersion"]:
            raise errors.stale(rt, name)
        new = copy.deepcopy(body)
        meta = new["metadata"]
        for k in _SYSTEM_META:
            meta.pop(k, None)
            if k in old["metadata"]:
                meta[k] = copy.deepcopy(old["metadata"][k])
        if opts.subresource == "status":
            status = new.get("status")
            new = copy.deepcopy(old)
            if status is not None:
                new["status"] = status
        elif rt.has_status:
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        new = self._finish(rt, new, old)
        return self._store_change(rt, (rt, ns, name), rec, new,
                                  ssa.update(old, rec.managers, new, opts.manager,
                                             rt.api_version, opts.subresource),
                                  verb, opts)

    def _store_change(self, rt: ResourceType, key: Key, rec: Record | None, new: dict[str, Any],
                      managers: list[ssa.Manager], verb: str, opts: Options) -> dict[str, Any]:
        old = rec.obj if rec else None
        if old is not None:
            if rt.generation and _spec_changed(old, new):
                new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
            if rec is not None and _content(old) == _content(new) and managers == rec.managers:
                return copy.deepcopy(old)  # nothing changed: no write, no new resourceVersion
        if opts.dry_run:
            return self._dry(new, managers)
        if old is not None and self._finalized(new):
            return self._remove(rt, key, opts, verb, new)  # last finalizer gone
        self._commit(rt, key, new, managers, verb, opts, created=old is None)
        return copy.deepcopy(new)

    def apply(self, rt: ResourceType, ns: str, name: str, raw: bytes,
              opts: Options) -> dict[str, Any]:
        if not opts.manager:
            raise errors.ApiError(
                422, "Invalid", 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: '
                "Required value: is required for apply patch",
                {"kind": "PatchOptions", "group": "meta.k8s.io", "causes": [
                    {"reason": "FieldValueRequired", "message": "Required value: is required "
                     "for apply patch", "field": "fieldManager"}]})
        try:
            applied = yaml.safe_load(raw.decode() if raw else "")
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise errors.bad_request(f"error decoding YAML: {exc}") from exc
        with self.lock:
            applied = self._check_identity(rt, ns, name, applied, require_kind=True)
            meta = applied["metadata"]
            if meta.get("managedFields") is not None:
                raise errors.bad_request("metadata.managedFields must be nil")
            wanted_rv = meta.pop("resourceVersion", None)
            for k in _SYSTEM_META:
                meta.pop(k, None)
            meta["name"] = name
            rec = self.objects.get((rt, ns, name))
            if rec is None:
                if wanted_rv:
                    raise errors.not_found(rt, name)
                self._check_namespace(rt, ns, name)
                live = self._new_object(rt, {"apiVersion": rt.api_version, "kind": rt.kind,
                                             "metadata": {k: v for k, v in meta.items()
                                                          if k in ("name", "namespace")}})
                managers: list[ssa.Manager] = []
                old = None
            else:
                if wanted_rv and wanted_rv != rec.obj["metadata"]["resourceVersion"]:
                    raise errors.stale(rt, name)
                live = copy.deepcopy(rec.obj)
                live["metadata"].pop("managedFields", None)
                managers = rec.managers
                old = rec.obj

            def finish(obj: dict[str, Any]) -> dict[str, Any]:
                return self._finish(rt, obj, old)

            new, new_managers = ssa.apply(live, managers, applied, opts.manager,
                                          rt.api_version, opts.force, finish)
            return self._store_change(rt, (rt, ns, name), rec, new, new_managers, "apply", opts)

    # ---- delete --------------------------------------------------------------------

    def delete(self, rt: ResourceType, ns: str, name: str, opts: Options,
               propagation: str = "Background",
               preconditions: dict[str, Any] | None = None) -> dict[str, Any]:
        with self.lock:
            rec = self._record(rt, ns, name)
            meta = rec.obj["metadata"]
            pre = preconditions or {}
            if pre.get("uid") and pre["uid"] != meta["uid"]:
                raise errors.conflict(rt, name, f"Precondition failed: UID in precondition: "
                                      f"{pre['uid']}, UID in object meta: {meta['uid']}")
            if pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]:
                raise errors.conflict(rt, name, "Precondition failed: ResourceVersion in "
                                      f"precondition: {pre['resourceVersion']}, ResourceVersion "
                                      f"in object meta: {meta['resourceVersion']}")
            if propagation not in ("Background", "Foreground", "Orphan"):
                raise errors.bad_request(f"unknown propagationPolicy {propagation!r}")
            if opts.dry_run:
                return self._deleted_status(rt, rec.obj)
            if rt.kind == "Namespace" or meta.get("finalizers"):
                return self._mark_deleting(rt, (rt, ns, name), rec, opts)
            if propagation == "Foreground":
                self._collect_dependents(meta["uid"], opts)
            out = self._remove(rt, (rt, ns, name), opts, "delete", rec.obj)
            if propagation == "Orphan":
                self._orphan_dependents(meta["uid"], opts)
            else:
                self._collect_dependents(meta["uid"], opts)
            return out

    def _mark_deleting(self, rt: ResourceType, key: Key, rec: Record,
                       opts: Options) -> dict[str, Any]:
        if rec.obj["metadata"].get("deletionTimestamp"):
            return copy.deepcopy(rec.obj)
        obj = copy.deepcopy(rec.obj)
        obj["metadata"]["deletionTimestamp"] = ssa.now()
        obj["metadata"]["deletionGracePeriodSeconds"] = 0
        if rt.kind == "Namespace":
            obj.setdefault("status", {})["phase"] = "Terminating"
        self._commit(rt, key, obj, rec.managers, "delete", opts, created=False)
        return copy.deepcopy(obj)

    @staticmethod
    def _finalized(obj: dict[str, Any]) -> bool:
        meta = obj["metadata"]
        return bool(meta.get("deletionTimestamp")) and not meta.get("finalizers") and (
            obj.get("kind") != "Namespace" or not (obj.get("spec") or {}).get("finalizers"))

    def _remove(self, rt: ResourceType, key: Key, opts: Options, verb: str,
                obj: dict[str, Any]) -> dict[str, Any]:
        del self.objects[key]
        self.resource_version += 1
        self.writes.append(Write(opts.actor, verb, rt.kind, key[1], key[2],
                                 str(self.resource_version)))
        self._emit(Event("DELETED", rt, copy.deepcopy(obj)))
        return self._deleted_status(rt, obj)

    @staticmethod
    def _deleted_status(rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        details: dict[str, Any] = {"name": obj["metadata"]["name"], "kind": rt.plural,
                                   "uid": obj["metadata"].get("uid", "")}
        if rt.group:
            details["group"] = rt.group
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": details}

    def _dependents(self, uid: str) -> list[Key]:
        return [k for k, r in self.objects.items()
                if any(ref.get("uid") == uid
                       for ref in r.obj["metadata"].get("ownerReferences") or [])]

    def _collect_dependents(self, uid: str, opts: Options) -> None:
        for key in self._dependents(uid):
            if key in self.objects:
                gc = Options(manager=opts.manager, actor="gc")
                self.delete(key[0], key[1], key[2], gc, "Background")

    def _orphan_dependents(self, uid: str, opts: Options) -> None:
        for key in self._dependents(uid):
            rec = self.objects[key]
            obj = copy.deepcopy(rec.obj)
            refs = [r for r in obj["metadata"]["ownerReferences"] if r.get("uid") != uid]
            if refs:
                obj["metadata"]["ownerReferences"] = refs
            else:
                del obj["metadata"]["ownerReferences"]
            managers = ssa.update(rec.obj, rec.managers, obj, "garbage-collector",
                                  key[0].api_version)
            self._commit(key[0], key, obj, managers, "update", Options(actor="gc"), False)

    def delete_collection(self, rt: ResourceType, ns: str | None, label: str | None,
                          field_sel: str | None, opts: Options,
                          propagation: str = "Background") -> dict[str, Any]:
        with self.lock:
            listed = self.list_items(rt, ns, label, field_sel)
            for item in listed["items"]:
                meta = item["metadata"]
                if (rt, meta.get("namespace", ""), meta["name"]) in self.objects:
                    self.delete(rt, meta.get("namespace", ""), meta["name"], opts, propagation)
            return listed

    def finish_namespace(self, name: str) -> None:
        """The namespace controller's work: delete the contents of a terminating
        namespace, then the namespace itself."""
        with self.lock:
            rec = self.objects.get((catalog.NAMESPACE, "", name))
            if rec is None or not rec.obj["metadata"].get("deletionTimestamp"):
                return
            opts = Options(manager="namespace-controller", actor="controller")
            for key in [k for k in self.objects if k[0].namespaced and k[1] == name]:
                if key in self.objects:
                    self._remove(key[0], key, opts, "delete", self.objects[key].obj)
            if not rec.obj["metadata"].get("finalizers"):
                self._remove(catalog.NAMESPACE, (catalog.NAMESPACE, "", name), opts, "delete",
                             rec.obj)

    # ---- writes by the simulated controllers ------------------------------------------

    def set_status(self, rt: ResourceType, ns: str, name: str, status: dict[str, Any],
                   actor: str = "controller") -> None:
        """Replace an object's status as a controller would (no-op when equal)."""
        with self.lock:
            rec = self.objects.get((rt, ns, name))
            if rec is None or rec.obj.get("status") == status:
                return
            obj = copy.deepcopy(rec.obj)
            obj["status"] = copy.deepcopy(status)
            self._commit(rt, (rt, ns, name), obj, rec.managers, "update",
                         Options(actor=actor), created=False)
