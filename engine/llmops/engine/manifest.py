"""How llmops marks the Kubernetes objects it owns, and how it reads the marks back.

The one place that names llmops' labels and annotations, knows which kinds
have no namespace, and finds the spec an object was rendered for. The
renderers stamp objects with these names (``llmops.renderers.objects``); the
diff, the actuators and the reconciler read them through the functions here.
Imports nothing from llmops but ``types``; every stage may import it.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from typing import Any

from llmops.engine.types import GLOBAL_KINDS, SpecKey

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
"""``"true"``: never delete the object."""
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
    return (str(annotations_of(obj).get(PRUNE_ANNOTATION, "")).lower() == "disabled"
            or str(labels_of(obj).get(PRUNE_PROTECTED_LABEL, "")).lower() == "true")
