"""Conventions every rendered object follows: ownership stamps, valid labels, GPU resources.

Input: an object fresh from a template plus the ``Owner`` it was rendered for.
Output: the same object with its labels and annotations set. Called by the
per-kind renderers (``serving``, ``training``) and by ``render``.

Stamps (ours win over a spec's own labels and annotations):

- labels ``app.kubernetes.io/name`` (the application: the endpoint, the
  training job, ...), ``app.kubernetes.io/instance`` (``<name>-<env>``),
  ``app.kubernetes.io/component``, ``app.kubernetes.io/part-of`` (the owning
  team), ``app.kubernetes.io/managed-by: llmops``, ``llmops.io/kind`` and
  ``llmops.io/spec`` (the owning spec), ``llmops.io/environment`` and
  ``applyset.kubernetes.io/part-of`` (one ApplySet id per environment, the
  label kubectl's ApplySet pruning selects on);
- annotations ``llmops.io/source-commit`` (only when the commit is known) and
  ``llmops.io/spec-hash`` (sha256 of the owning spec's canonical JSON).

A spec's ``metadata.labels`` and ``metadata.annotations`` are copied onto its
objects; a key or value Kubernetes would reject is a ``RenderError`` here,
not a failed apply later.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from llmops.engine import manifest
from llmops.engine.spec import repoconfig, schema
from llmops.engine.spec.validate import SourcedSpec, SpecSet
from llmops.engine.types import KubeObject, content_hash
from llmops.renderers.templating import RenderError

GPU_RESOURCE = "nvidia.com/gpu"

MAX_ANNOTATIONS_BYTES = 256 * 1024

_LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_NAME_PART_RE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_PREFIX_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@dataclass(frozen=True, slots=True)
class Scope:
    """What one render pass targets: the spec set, one environment and the source commit."""

    spec_set: SpecSet
    environment: str
    config: repoconfig.Environment
    revision: str

    def namespace_for(self, team: str) -> str:
        return self.config.namespace_for(team)


def is_label_value(value: str) -> bool:
    return len(value) <= 63 and bool(_LABEL_VALUE_RE.match(value))


def is_qualified_name(key: str) -> bool:
    """A label or annotation key: ``[prefix/]name``, prefix a DNS subdomain."""
    prefix, _, name = key.rpartition("/")
    if "/" in key and (not prefix or len(prefix) > 253 or not _PREFIX_RE.match(prefix)):
        return False
    return len(name) <= 63 and bool(_NAME_PART_RE.match(name))


def label_value(text: str) -> str:
    """``text`` as a valid label value: kept when valid, else shortened with a hash suffix."""
    if is_label_value(text):
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    head = re.sub(r"[^-A-Za-z0-9_.]", "-", text)[:54].strip("-_.")
    return f"{head}-{digest}" if head else digest


@dataclass(frozen=True, slots=True)
class Owner:
    """The spec (or environment) an object is rendered for."""

    kind: str
    name: str
    environment: str
    file: str
    spec_hash: str
    team: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def subject(self) -> str:
        return f"{self.kind}/{self.name}"

    def error(self, message: str, template: str = "") -> RenderError:
        return RenderError(message, file=self.file, subject=self.subject, template=template)


def spec_hash(spec: schema.SpecBase) -> str:
    return content_hash(spec.model_dump(mode="json"))


def owner_of(item: SourcedSpec, environment: str, team: str = "") -> Owner:
    """The owner of the objects rendered from one spec; checks its labels and annotations."""
    spec = item.spec
    owner = Owner(kind=str(spec.kind), name=spec.name, environment=environment,
                  file=item.document.file, spec_hash=spec_hash(spec), team=team,
                  labels=dict(spec.metadata.labels), annotations=dict(spec.metadata.annotations))
    for key, value in owner.labels.items():
        if not is_qualified_name(key):
            raise owner.error(f"metadata.labels: {key[:80]!r} is not a valid Kubernetes label key")
        if not is_label_value(value):
            raise owner.error(f"metadata.labels.{key}: {value[:80]!r} is not a valid Kubernetes "
                              "label value (at most 63 letters, digits, '-', '_' or '.', "
                              "starting and ending with a letter or digit)")
    size = 0
    for key, value in owner.annotations.items():
        if not is_qualified_name(key):
            raise owner.error(f"metadata.annotations: {key[:80]!r} is not a valid Kubernetes "
                              "annotation key")
        size += len(key.encode()) + len(value.encode())
    if size > MAX_ANNOTATIONS_BYTES:
        raise owner.error(f"metadata.annotations: {size} bytes, more than Kubernetes allows "
                          f"({MAX_ANNOTATIONS_BYTES})")
    return owner


def workload_labels(owner: Owner, app: str, component: str, instance: str = ""
                    ) -> dict[str, str]:
    """Labels of an object and of the pods it runs (no ApplySet label: pods are not members).

    ``instance`` defaults to ``<app>-<environment>``.
    """
    return {
        manifest.NAME_LABEL: label_value(app),
        manifest.INSTANCE_LABEL: label_value(instance or f"{app}-{owner.environment}"),
        manifest.COMPONENT_LABEL: label_value(component),
        manifest.PART_OF_LABEL: label_value(owner.team or manifest.MANAGED_BY),
        manifest.MANAGED_BY_LABEL: manifest.MANAGED_BY,
        manifest.KIND_LABEL: label_value(owner.kind),
        manifest.SPEC_LABEL: label_value(owner.name),
        manifest.ENVIRONMENT_LABEL: label_value(owner.environment),
    }


def selector_labels(owner: Owner, app: str) -> dict[str, str]:
    """The immutable pod selector of a workload: name and instance only."""
    labels = workload_labels(owner, app, "")
    return {k: labels[k] for k in (manifest.NAME_LABEL, manifest.INSTANCE_LABEL)}


def stamp(obj: KubeObject, owner: Owner, *, app: str, component: str, namespace: str,
          revision: str, template: str = "", instance: str = "") -> KubeObject:
    """Set the ownership labels and annotations of ``obj`` (in place) and return it.

    Also checks that the object landed in ``namespace`` ("" for cluster-scoped
    objects): values are serialised, so a mismatch means a template bug.
    """
    meta: dict[str, Any] = obj["metadata"]
    if str(meta.get("namespace") or "") != namespace:
        raise owner.error(f"rendered {obj.get('kind')} {meta.get('name')!r} is in namespace "
                          f"{meta.get('namespace')!r}, expected {namespace!r}", template)
    labels: dict[str, str] = {**owner.labels, **(meta.get("labels") or {}),
                              **workload_labels(owner, app, component, instance),
                              manifest.APPLYSET_LABEL: manifest.applyset_id(owner.environment)}
    annotations: dict[str, str] = {**owner.annotations, **(meta.get("annotations") or {}),
                                   manifest.SPEC_HASH_ANNOTATION: owner.spec_hash}
    if revision:  # no commit, no stamp: an empty one would only be noise in every object
        annotations[manifest.SOURCE_COMMIT_ANNOTATION] = revision
    meta["labels"] = dict(sorted(labels.items()))
    meta["annotations"] = dict(sorted(annotations.items()))
    return obj


# --------------------------------------------------------------------------- pod helpers


def container_resources(res: schema.Resources) -> dict[str, dict[str, str]]:
    """Requests and limits of a container; GPUs as ``nvidia.com/gpu`` (requests == limits)."""
    amounts = {"cpu": res.cpu, "memory": res.memory}
    if res.gpu > 0:
        amounts[GPU_RESOURCE] = str(res.gpu)
    return {"requests": dict(amounts), "limits": dict(amounts)}


def env_list(owner: Owner, fixed: list[tuple[str, str]], user: Mapping[str, str],
             field_path: str) -> list[dict[str, str]]:
    """Container env: the variables llmops sets, then the spec's own; a clash is an error."""
    names = {name for name, _ in fixed}
    for name in user:
        if name in names:
            raise owner.error(f"{field_path}.{name}: this variable is set by llmops; "
                              "choose another name")
    return [{"name": k, "value": v} for k, v in fixed] + [
        {"name": k, "value": v} for k, v in user.items()]
