"""The resource types the emulator serves, and the discovery documents built from them.

Input: nothing (a fixed table). Output: `ResourceType` records looked up by URL
pieces (group, version, plural) or by (apiVersion, kind), and the JSON bodies of
`/version`, `/api`, `/api/v1`, `/apis` and `/apis/<group>/<version>`.
Called by `server` (routing, discovery) and `store` (scope, status subresource).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

READ_WRITE = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
READ_ONLY = ("get", "list", "watch")


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    verbs: tuple[str, ...] = READ_WRITE
    has_status: bool = False
    short_names: tuple[str, ...] = ()
    generation: bool = False  # whether the kind carries metadata.generation

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def qualified(self) -> str:
        """`deployments.apps`, `configmaps`: the resource name used in error messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def discovery_entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": list(self.verbs),
            "storageVersionHash": "",
        }
        if self.short_names:
            entry["shortNames"] = list(self.short_names)
        return entry


def _t(group: str, version: str, kind: str, plural: str, namespaced: bool = True,
       **kw: Any) -> ResourceType:
    return ResourceType(group, version, kind, plural, namespaced, **kw)


RESOURCE_TYPES: tuple[ResourceType, ...] = (
    _t("", "v1", "Namespace", "namespaces", False, has_status=True, short_names=("ns",)),
    _t("", "v1", "ConfigMap", "configmaps", short_names=("cm",)),
    _t("", "v1", "Secret", "secrets"),
    _t("", "v1", "Service", "services", has_status=True, short_names=("svc",)),
    _t("", "v1", "ServiceAccount", "serviceaccounts", short_names=("sa",)),
    _t("", "v1", "ResourceQuota", "resourcequotas", has_status=True, short_names=("quota",)),
    _t("", "v1", "Pod", "pods", verbs=READ_ONLY, has_status=True, short_names=("po",)),
    _t("apps", "v1", "Deployment", "deployments", has_status=True, short_names=("deploy",),
       generation=True),
    _t("batch", "v1", "Job", "jobs", has_status=True, generation=True),
    _t("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers",
       has_status=True, short_names=("hpa",), generation=True),
    _t("networking.k8s.io", "v1", "Ingress", "ingresses", has_status=True, short_names=("ing",),
       generation=True),
    _t("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", short_names=("netpol",),
       generation=True),
    _t("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", has_status=True,
       short_names=("pdb",), generation=True),
    _t("rbac.authorization.k8s.io", "v1", "Role", "roles"),
    _t("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings"),
    _t("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False),
    _t("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", False),
    # Custom resources a cluster serves once KEDA / the Gateway API CRDs are installed.
    _t("keda.sh", "v1alpha1", "ScaledObject", "scaledobjects", has_status=True,
       generation=True),
    _t("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes", has_status=True,
       generation=True),
)

_BY_URL = {(t.group, t.version, t.plural): t for t in RESOURCE_TYPES}
_BY_KIND = {(t.api_version, t.kind): t for t in RESOURCE_TYPES}
NAMESPACE = _BY_KIND[("v1", "Namespace")]


def by_url(group: str, version: str, plural: str) -> ResourceType | None:
    return _BY_URL.get((group, version, plural))


def by_kind(api_version: str, kind: str) -> ResourceType | None:
    return _BY_KIND.get((api_version, kind))


def group_versions() -> dict[str, list[str]]:
    """Named groups (not core) and their versions, in table order."""
    groups: dict[str, list[str]] = {}
    for t in RESOURCE_TYPES:
        if t.group and t.version not in groups.setdefault(t.group, []):
            groups[t.group].append(t.version)
    return groups


def version_info() -> dict[str, Any]:
    return {
        "major": "1", "minor": "33", "gitVersion": "v1.33.0-emulator",
        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.24", "compiler": "gc",
        "platform": "linux/amd64", "emulationMajor": "1", "emulationMinor": "33",
    }


def core_versions() -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]}


def api_group_list() -> dict[str, Any]:
    groups = []
    for name, versions in group_versions().items():
        gvs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
        groups.append({"name": name, "versions": gvs, "preferredVersion": gvs[0]})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(group: str) -> dict[str, Any] | None:
    versions = group_versions().get(group)
    if not versions:
        return None
    gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": gvs,
            "preferredVersion": gvs[0]}


def resource_list(group: str, version: str) -> dict[str, Any] | None:
    types = [t for t in RESOURCE_TYPES if t.group == group and t.version == version]
    if not types:
        return None
    resources: list[dict[str, Any]] = []
    for t in types:
        resources.append(t.discovery_entry())
        if t.has_status:
            resources.append({"name": f"{t.plural}/status", "singularName": "",
                              "namespaced": t.namespaced, "kind": t.kind,
                              "verbs": ["get", "patch", "update"]})
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
            "resources": resources}


def openapi_v3_index() -> dict[str, Any]:
    """`/openapi/v3`: one entry per served group-version."""
    gvs = ["api/v1"] + [f"apis/{g}/{v}" for g, vs in group_versions().items() for v in vs]
    return {"paths": {gv: {"serverRelativeURL": f"/openapi/v3/{gv}?hash=emulator"}
                      for gv in gvs}}


def openapi_v3_group_version(path: str) -> dict[str, Any] | None:
    """A skeleton OpenAPI v3 document for one group-version: no schemas, only the
    PATCH operations with their query parameters, which is what kubectl reads to
    learn that the server validates fields itself (`fieldValidation`)."""
    parts = path.split("/")
    if parts == ["api", "v1"]:
        group, version = "", "v1"
    elif len(parts) == 3 and parts[0] == "apis":
        group, version = parts[1], parts[2]
    else:
        return None
    types = [t for t in RESOURCE_TYPES if t.group == group and t.version == version]
    if not types:
        return None
    params = [{"name": n, "in": "query", "schema": {"type": "string"}}
              for n in ("dryRun", "fieldManager", "fieldValidation", "force")]
    paths: dict[str, Any] = {}
    for t in types:
        scope = "/namespaces/{namespace}" if t.namespaced else ""
        url = f"/{path}{scope}/{t.plural}/{{name}}"
        paths[url] = {"patch": {
            "operationId": f"patch{t.kind}", "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": {"group": group, "version": version,
                                                "kind": t.kind},
            "parameters": params, "responses": {"200": {"description": "OK"}}}}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.33.0"},
            "paths": paths, "components": {"schemas": {}}}
