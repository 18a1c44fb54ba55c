"""Admission: validation and defaulting applied to every object before it is stored.

Input: a resource type and the object about to be written (plus the old one on
updates). Output: the defaulted object, or an `ApiError` (422 Invalid, 400
BadRequest) worded like the apiserver's. Called by `store` on create, update,
patch and apply (dry runs included).

Defaults are a small, common subset of the real ones, chosen because they are
what makes a live object differ from the manifest that created it (the classic
source of false drift): Deployment strategy and limits, pod template and
container defaults, Service ports and cluster IPs, Job selector and labels,
Secret `stringData` folded into `data`, Namespace finalizers and phase.
"""

from __future__ import annotations

import base64
import binascii
import copy
import re
from typing import Any

from . import errors
from .catalog import ResourceType

_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = rf"{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*"
_DNS1035_LABEL = r"[a-z]([-a-z0-9]*[a-z0-9])?"
_QUALIFIED_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE = rf"({_QUALIFIED_NAME})?"

_SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                  "characters, '-' or '.', and must start and end with an alphanumeric "
                  "character (e.g. 'example.com', regex used for validation is "
                  f"'{_DNS1123_SUBDOMAIN}')")
_LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters "
              "or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  "
              f"or '123-abc', regex used for validation is '{_DNS1123_LABEL}')")
_DNS1035_MSG = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
                "start with an alphabetic character, and end with an alphanumeric character "
                f"(e.g. 'my-name',  or 'abc-123', regex used for validation is '{_DNS1035_LABEL}')")

Cause = tuple[str, str, str]


def check_name(rt: ResourceType, name: str) -> list[Cause]:
    if rt.kind == "Namespace":
        pattern, limit, msg = _DNS1123_LABEL, 63, _LABEL_MSG
    elif rt.kind == "Service":
        pattern, limit, msg = _DNS1035_LABEL, 63, _DNS1035_MSG
    else:
        pattern, limit, msg = _DNS1123_SUBDOMAIN, 253, _SUBDOMAIN_MSG
    if len(name) > limit:
        return [("FieldValueInvalid", "metadata.name",
                 f'Invalid value: "{name}": must be no more than {limit} characters')]
    if not re.fullmatch(pattern, name):
        return [("FieldValueInvalid", "metadata.name", f'Invalid value: "{name}": {msg}')]
    return []


def _check_labels(labels: Any, field: str) -> list[Cause]:
    if labels is None:
        return []
    if not isinstance(labels, dict):
        return [("FieldValueInvalid", field, "Invalid value: must be a map of strings")]
    causes: list[Cause] = []
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        key_ok = (0 < len(name) <= 63 and re.fullmatch(_QUALIFIED_NAME, name)
                  and (not prefix or (len(prefix) <= 253
                                      and re.fullmatch(_DNS1123_SUBDOMAIN, prefix))))
        if not key_ok:
            causes.append(("FieldValueInvalid", field,
                           f'Invalid value: "{key}": name part must consist of alphanumeric '
                           "characters, '-', '_' or '.', and must start and end with an "
                           "alphanumeric character"))
        if not isinstance(value, str) or len(value) > 63 or not re.fullmatch(_LABEL_VALUE, value):
            causes.append(("FieldValueInvalid", field,
                           f'Invalid value: "{value}": a valid label must be an empty string '
                           "or consist of alphanumeric characters, '-', '_' or '.', and must "
                           "start and end with an alphanumeric character"))
    return causes


def validate(rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
    """Raise 422 Invalid for the checks a renderer or actuator bug would trip."""
    meta = obj.get("metadata") or {}
    name = meta.get("name", "")
    causes: list[Cause] = []
    if not name:
        causes.append(("FieldValueRequired", "metadata.name",
                       "Required value: name or generateName is required"))
    else:
        causes += check_name(rt, name)
    causes += _check_labels(meta.get("labels"), "metadata.labels")
    spec = obj.get("spec") or {}
    if rt.kind in ("Deployment", "Job"):
        template = spec.get("template") or {}
        causes += _check_labels((template.get("metadata") or {}).get("labels"),
                                "spec.template.metadata.labels")
        if not (template.get("spec") or {}).get("containers"):
            causes.append(("FieldValueRequired", "spec.template.spec.containers",
                           "Required value"))
    if rt.kind == "Deployment":
        causes += _check_selector(spec)
    if rt.kind == "Service":
        causes += _check_ports(spec)
    if rt.kind == "Job":
        policy = ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy")
        if policy not in ("Never", "OnFailure"):
            causes.append(("FieldValueNotSupported", "spec.template.spec.restartPolicy",
                           f'Unsupported value: "{policy or ""}": supported values: '
                           '"OnFailure", "Never"'))
    if old is not None:
        causes += _check_immutable(rt, old, obj)
    if causes:
        raise errors.invalid(rt, rt.kind, name, causes)


def _check_ports(spec: dict[str, Any]) -> list[Cause]:
    """Service ports in 1-65535, as kube-apiserver checks them (message as v1.28's)."""
    causes: list[Cause] = []
    for i, port in enumerate(spec.get("ports") or []):
        value = port.get("port") if isinstance(port, dict) else None
        if not isinstance(value, int) or not 1 <= value <= 65535:
            causes.append(("FieldValueInvalid", f"spec.ports[{i}].port",
                           f"Invalid value: {value}: must be between 1 and 65535, inclusive"))
    return causes


def _check_selector(spec: dict[str, Any]) -> list[Cause]:
    selector = spec.get("selector")
    if not selector:
        return [("FieldValueRequired", "spec.selector", "Required value")]
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    wanted = selector.get("matchLabels") or {}
    if any(labels.get(k) != v for k, v in wanted.items()):
        return [("FieldValueInvalid", "spec.template.metadata.labels",
                 f"Invalid value: {labels}: `selector` does not match template `labels`")]
    return []


def _immutable(field: str, value: Any) -> Cause:
    return ("FieldValueInvalid", field, f"Invalid value: {value!r}: field is immutable")


def _check_immutable(rt: ResourceType, old: dict[str, Any], new: dict[str, Any]) -> list[Cause]:
    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    causes: list[Cause] = []
    if rt.kind == "Deployment" and old_spec.get("selector") != new_spec.get("selector"):
        causes.append(_immutable("spec.selector", new_spec.get("selector")))
    if rt.kind == "Job":
        for field in ("selector", "template"):
            if old_spec.get(field) != new_spec.get(field):
                causes.append(_immutable(f"spec.{field}", new_spec.get(field)))
    if rt.kind == "Service" and old_spec.get("clusterIP") != new_spec.get("clusterIP"):
        causes.append(_immutable("spec.clusterIP", new_spec.get("clusterIP")))
    binding = rt.kind in ("RoleBinding", "ClusterRoleBinding")
    if binding and old.get("roleRef") != new.get("roleRef"):
        causes.append(("FieldValueInvalid", "roleRef",
                       f"Invalid value: {new.get('roleRef')!r}: cannot change roleRef"))
    if rt.kind in ("ConfigMap", "Secret") and old.get("immutable"):
        for field in ("data", "binaryData", "immutable"):
            if old.get(field) != new.get(field):
                causes.append(("FieldValueForbidden", field,
                               "Forbidden: field is immutable when `immutable` is set"))
    return causes


def default(rt: ResourceType, obj: dict[str, Any], ip_allocator: Any = None) -> dict[str, Any]:
    """A copy of `obj` with the emulated defaults filled in where fields are absent."""
    obj = copy.deepcopy(obj)
    spec = obj.get("spec")
    kind = rt.kind
    if kind == "Deployment" and isinstance(spec, dict):
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        strategy = spec.setdefault("strategy", {})
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            rolling = strategy.setdefault("rollingUpdate", {})
            rolling.setdefault("maxUnavailable", "25%")
            rolling.setdefault("maxSurge", "25%")
        _default_pod_template(spec.get("template"))
    elif kind == "Job" and isinstance(spec, dict):
        _default_job(obj, spec)
    elif kind == "Service" and isinstance(spec, dict):
        _default_service(spec, ip_allocator)
        obj.setdefault("status", {}).setdefault("loadBalancer", {})
    elif kind == "Secret":
        _fold_string_data(obj)
    elif kind == "Namespace":
        name = obj["metadata"].get("name", "")
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj.setdefault("status", {}).setdefault("phase", "Active")
    elif kind == "NetworkPolicy" and isinstance(spec, dict) and "policyTypes" not in spec:
        spec["policyTypes"] = ["Ingress", "Egress"] if "egress" in spec else ["Ingress"]
    return obj


def _default_pod_template(template: Any, restart_policy: str = "Always") -> None:
    if not isinstance(template, dict):
        return
    template.setdefault("metadata", {})
    pod = template.get("spec")
    if not isinstance(pod, dict):
        return
    pod.setdefault("restartPolicy", restart_policy)
    pod.setdefault("terminationGracePeriodSeconds", 30)
    pod.setdefault("dnsPolicy", "ClusterFirst")
    pod.setdefault("securityContext", {})
    pod.setdefault("schedulerName", "default-scheduler")
    for field in ("containers", "initContainers"):
        for c in pod.get(field) or []:
            if not isinstance(c, dict):
                continue
            image = str(c.get("image", ""))
            tag = image.rsplit("/", 1)[-1]
            latest = "@" not in tag and (":" not in tag or tag.endswith(":latest"))
            c.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
            c.setdefault("terminationMessagePath", "/dev/termination-log")
            c.setdefault("terminationMessagePolicy", "File")
            c.setdefault("resources", {})
            for port in c.get("ports") or []:
                if isinstance(port, dict):
                    port.setdefault("protocol", "TCP")


def _default_job(obj: dict[str, Any], spec: dict[str, Any]) -> None:
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completions", 1)
    spec.setdefault("parallelism", 1)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    uid = obj["metadata"].get("uid", "")
    name = obj["metadata"].get("name", "")
    if "selector" not in spec:
        spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    template = spec.get("template")
    if isinstance(template, dict):
        labels = template.setdefault("metadata", {}).setdefault("labels", {})
        for key, value in (("batch.kubernetes.io/controller-uid", uid),
                           ("batch.kubernetes.io/job-name", name),
                           ("controller-uid", uid), ("job-name", name)):
            labels.setdefault(key, value)
    _default_pod_template(template, restart_policy="Never")


def _default_service(spec: dict[str, Any], ip_allocator: Any) -> None:
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    spec.setdefault("internalTrafficPolicy", "Cluster")
    spec.setdefault("ipFamilies", ["IPv4"])
    spec.setdefault("ipFamilyPolicy", "SingleStack")
    for port in spec.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
    if "clusterIP" not in spec and ip_allocator is not None:
        spec["clusterIP"] = ip_allocator()
    if "clusterIP" in spec:
        spec.setdefault("clusterIPs", [spec["clusterIP"]])


def _fold_string_data(obj: dict[str, Any]) -> None:
    obj.setdefault("type", "Opaque")
    for key, value in (obj.get("data") or {}).items():
        try:
            base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise errors.bad_request(
                f"Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data "
                f"at key {key!r}: {exc}") from exc
    string_data = obj.pop("stringData", None)
    if string_data:
        data = obj.setdefault("data", {})
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()
