"""Kubernetes objects as llmops writes and marks them: YAML text, ownership labels, owners.

The one place that names llmops' labels and annotations, knows which kinds
have no namespace, finds the spec an object was rendered for, and turns
objects into manifest text: each document lists ``apiVersion``, ``kind`` and
``metadata`` (name, namespace, labels, annotations) first, then the remaining
fields in the order the template gave them; multi-line strings are YAML
literal blocks; the same objects always give byte-identical text. The
renderers stamp objects with these names (``llmops.renderers.objects``); the
diff, the actuators and the reconciler read them through the functions here.
Imports nothing from llmops but ``types``; every stage may import it.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from llmops.engine.types import GLOBAL_KINDS, KubeObject, SpecKey

MANAGED_BY = "llmops"
"""Value of ``app.kubernetes.io/managed-by`` (and the field manager's default name)."""

# Labels stamped on every rendered object.
NAME_LABEL = "app.kubernetes.io/name"
INSTANCE_LABEL = "app.kubernetes.io/instance"
COMPONENT_LABEL = "app.kubernetes.io/component"
PART_OF_LABEL = "app.kubernetes.io/part-of"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
KIND_LABEL = "llmops.io/kind"
"""The kind of the spec that owns the object (``ServingEndpoint``, ...)."""
SPEC_LABEL = "llmops.io/spec"
"""The name of the spec that owns the object."""
ENVIRONMENT_LABEL = "llmops.io/environment"
APPLYSET_LABEL = "applyset.kubernetes.io/part-of"
"""One ApplySet per environment: the label kubectl's ApplySet pruning selects on."""

# Annotations stamped on every rendered object.
SOURCE_COMMIT_ANNOTATION = "llmops.io/source-commit"
SPEC_HASH_ANNOTATION = "llmops.io/spec-hash"
REVISION_BOOKKEEPING = (SOURCE_COMMIT_ANNOTATION, SPEC_HASH_ANNOTATION)
"""Derived from the commit or the spec: they differ whenever anything does, so no
comparison of object content counts them."""

# Annotations and labels users (or renderers) set to steer llmops.
CONFIG_CHECKSUM_ANNOTATION = "llmops.io/config-checksum"
SENSITIVE_ANNOTATION = "llmops.io/sensitive-fields"
PRUNE_ANNOTATION = "llmops.io/prune"
"""``disabled``: never delete the object."""
PRUNE_PROTECTED_LABEL = "llmops.io/prune-protected"
"""``"true"``, as a label or an annotation: never delete the object (rendered Namespaces
carry it as an annotation)."""
FORCE_CONFLICTS_ANNOTATION = "llmops.io/force-conflicts"
"""``"true"`` on a spec: take fields other appliers own (server-side apply force)."""

CLUSTER_SCOPED = frozenset({
    "Namespace", "Node", "PersistentVolume", "ClusterRole", "ClusterRoleBinding",
    "CustomResourceDefinition", "StorageClass", "PriorityClass", "IngressClass",
    "RuntimeClass", "APIService", "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration", "ValidatingAdmissionPolicy",
})
"""Kinds without a namespace; every other kind lives in one."""


def applyset_id(environment: str) -> str:
    """The ApplySet id of an environment, in kubectl's format (a valid label value).

    ``applyset-<base64url(sha256("llmops.<env>"))>-v1``: 55 characters.
    """
    digest = hashlib.sha256(f"llmops.{environment}".encode()).digest()
    return f"applyset-{base64.urlsafe_b64encode(digest).rstrip(b'=').decode()}-v1"


def _meta(obj: Mapping[str, Any] | None, field: str) -> Mapping[str, Any]:
    value = ((obj or {}).get("metadata") or {}).get(field)
    return value if isinstance(value, Mapping) else {}


def labels_of(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The object's labels ({} when it has none)."""
    return _meta(obj, "labels")


def annotations_of(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The object's annotations ({} when it has none)."""
    return _meta(obj, "annotations")


def owner_of(obj: Mapping[str, Any] | None) -> tuple[str, str]:
    """(kind, name) of the spec the object was rendered for; ("", "") when not ours."""
    found = labels_of(obj)
    return str(found.get(KIND_LABEL, "")), str(found.get(SPEC_LABEL, ""))


def owner_key(owner: tuple[str, str], environment: str) -> SpecKey:
    """The ``SpecKey`` of an owner ``(kind, name)`` (``owner_of``) in ``environment``."""
    kind, name = owner
    return SpecKey(kind, "" if kind in GLOBAL_KINDS else environment, name)


def prune_protected(obj: Mapping[str, Any] | None) -> bool:
    """Whether the object itself says it must never be deleted."""
    marks = annotations_of(obj)
    return (str(marks.get(PRUNE_ANNOTATION, "")).lower() == "disabled"
            or "true" in (str(labels_of(obj).get(PRUNE_PROTECTED_LABEL, "")).lower(),
                          str(marks.get(PRUNE_PROTECTED_LABEL, "")).lower()))


# --------------------------------------------------------------------------- text

HEAD_KEYS = ("apiVersion", "kind", "metadata")
METADATA_HEAD = ("name", "namespace", "labels", "annotations")


class _Dumper(yaml.CSafeDumper):
    """The C SafeDumper with literal blocks for multi-line strings and no aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: _Dumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _head_first(mapping: Mapping[str, Any], head: Iterable[str]) -> dict[str, Any]:
    out = {key: mapping[key] for key in head if key in mapping}
    out.update((key, value) for key, value in mapping.items() if key not in out)
    return out


def ordered(obj: KubeObject) -> KubeObject:
    """A copy of ``obj`` with apiVersion, kind, metadata (name, namespace, ...) first."""
    out = _head_first(obj, HEAD_KEYS)
    if isinstance(out.get("metadata"), Mapping):
        out["metadata"] = _head_first(out["metadata"], METADATA_HEAD)
    return out


def dump_object(obj: KubeObject) -> str:
    """One object as one YAML document (no ``---``)."""
    return yaml.dump(ordered(obj), Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                     default_flow_style=False, width=100)


def to_yaml(objects: Iterable[KubeObject]) -> str:
    """Objects as a YAML stream, each document starting with ``---``; "" for none."""
    return "".join(f"---\n{dump_object(obj)}" for obj in objects)
