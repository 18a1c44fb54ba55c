"""The ApplySet (KEP-3659) the ``kubernetes`` actuator keeps per environment and specs repo.

Input: an environment, the specs repo's identity (its URL or absolute path) and the
namespace of the parent. Output: the parent object (a Secret) and the set's id.

- The parent is ``Secret/<namespace>/llmops-<env>-<hash>``, where ``<hash>`` is 12 hex
  characters of sha256 over the repo's identity: two specs repos reconciled into the same
  cluster and environment have two parents, so two ids, and never see (or prune) each
  other's objects.
- Its id, label ``applyset.kubernetes.io/id``, is kubectl's:
  ``applyset-<base64url(sha256("<name>.<namespace>.Secret."))>-v1``. Every member carries
  it as ``applyset.kubernetes.io/part-of``.
- Annotations: ``applyset.kubernetes.io/tooling: llmops/v1``, ``contains-group-kinds``
  (``Deployment.apps,Namespace,...``) and ``additional-namespaces`` (members' namespaces
  other than the parent's), plus ``llmops.io/repository`` (the identity, credentials
  removed) and ``llmops.io/environment``.

The renderers stamp every object with the environment's logical id
(``manifest.applyset_id``), which stays the same whichever repo renders it (the hydrated
files carry it). The actuator swaps in this set's id when it writes, and swaps it back
in what it reads, so plans compare like with like.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from llmops.engine import manifest, redact
from llmops.engine.types import KubeObject, ResourceKey

ID_LABEL = "applyset.kubernetes.io/id"
TOOLING_ANNOTATION = "applyset.kubernetes.io/tooling"
GROUP_KINDS_ANNOTATION = "applyset.kubernetes.io/contains-group-kinds"
NAMESPACES_ANNOTATION = "applyset.kubernetes.io/additional-namespaces"
REPOSITORY_ANNOTATION = "llmops.io/repository"
TOOLING = "llmops/v1"
PARENT_KIND = "Secret"


def parent_id(name: str, namespace: str, kind: str, group: str) -> str:
    """The ApplySet id of a parent object, as kubectl computes it (KEP-3659)."""
    digest = hashlib.sha256(f"{name}.{namespace}.{kind}.{group}".encode()).digest()
    return f"applyset-{base64.urlsafe_b64encode(digest).rstrip(b'=').decode()}-v1"


def group_kind(key: ResourceKey) -> str:
    """``Kind.group`` as the ApplySet annotations write it (``Kind`` for the core group)."""
    return f"{key.kind}.{key.group}" if key.group else key.kind


@dataclass(frozen=True, slots=True)
class ApplySet:
    """One environment's set for one specs repo, with its parent in ``namespace``."""

    environment: str
    repository: str
    namespace: str

    @property
    def name(self) -> str:
        digest = hashlib.sha256(self.repository.encode()).hexdigest()[:12]
        return f"llmops-{self.environment}-{digest}"[:253]

    @property
    def key(self) -> ResourceKey:
        return ResourceKey("", PARENT_KIND, self.namespace, self.name)

    @property
    def id(self) -> str:
        return parent_id(self.name, self.namespace, PARENT_KIND, "")

    def parent(self, members: Iterable[ResourceKey]) -> KubeObject:
        """The parent object listing ``members``' group-kinds and namespaces."""
        keys = list(members)
        kinds = sorted({group_kind(k) for k in keys})
        spaces = sorted({k.namespace for k in keys if k.namespace} - {self.namespace})
        return {
            "apiVersion": "v1",
            "kind": PARENT_KIND,
            "type": "Opaque",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": {
                    ID_LABEL: self.id,
                    manifest.MANAGED_BY_LABEL: manifest.MANAGED_BY,
                    manifest.ENVIRONMENT_LABEL: self.environment,
                },
                "annotations": {
                    TOOLING_ANNOTATION: TOOLING,
                    GROUP_KINDS_ANNOTATION: ",".join(kinds),
                    NAMESPACES_ANNOTATION: ",".join(spaces),
                    REPOSITORY_ANNOTATION: redact.redact(self.repository),
                },
            },
        }

    def listed(self, parent: Mapping[str, Any] | None) -> tuple[set[str], set[str]]:
        """The group-kinds and additional namespaces a live parent lists."""
        notes = manifest.annotations_of(parent)

        def split(name: str) -> set[str]:
            return {v for v in str(notes.get(name) or "").split(",") if v}

        return split(GROUP_KINDS_ANNOTATION), split(NAMESPACES_ANNOTATION)

    def foreign_tooling(self, parent: Mapping[str, Any] | None) -> str:
        """The tooling of a live parent that another tool manages ('' when ours or absent)."""
        if parent is None:
            return ""
        tooling = str(manifest.annotations_of(parent).get(TOOLING_ANNOTATION) or "")
        return "" if tooling.split("/")[0] == TOOLING.split("/")[0] else (tooling or "none")

    def physical(self, obj: KubeObject) -> KubeObject:
        """``obj`` as written: this set's id as its ``part-of`` label."""
        meta = dict(obj.get("metadata") or {})
        meta["labels"] = {**(meta.get("labels") or {}), manifest.APPLYSET_LABEL: self.id}
        return {**obj, "metadata": meta}

    def logical(self, obj: KubeObject) -> KubeObject:
        """A live member as the renderers stamp it: the environment's logical id."""
        meta = dict(obj.get("metadata") or {})
        labels = dict(meta.get("labels") or {})
        if labels.get(manifest.APPLYSET_LABEL) == self.id:
            labels[manifest.APPLYSET_LABEL] = manifest.applyset_id(self.environment)
        meta["labels"] = labels
        return {**obj, "metadata": meta}


def managed_by(obj: Mapping[str, Any], field_manager: str) -> bool:
    """Whether ``field_manager`` applied (server-side) any field of ``obj``."""
    entries = (obj.get("metadata") or {}).get("managedFields") or []
    return any(
        isinstance(e, Mapping)
        and e.get("manager") == field_manager
        and e.get("operation") == "Apply"
        for e in entries
    )
