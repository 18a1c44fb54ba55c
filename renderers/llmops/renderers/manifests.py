"""Rendered objects as files: one YAML file per object (``llmops render --out``).

Input: objects from ``render_environment``. Output: a mapping of relative file
paths to text (``llmops.engine.manifest.dump_object``). Pure functions; the
caller writes.

File layout: ``<namespace>/<kind>-<name>.yaml``, cluster-scoped objects under
``_cluster/`` (``_`` cannot start a namespace name, so the two never clash).
"""

from __future__ import annotations

from collections.abc import Iterable

from llmops.engine import manifest
from llmops.engine.types import KubeObject, ResourceKey
from llmops.renderers.templating import RenderError

CLUSTER_DIR = "_cluster"


def relative_path(obj: KubeObject) -> str:
    """``<namespace>/<kind>-<name>.yaml`` or ``_cluster/<kind>-<name>.yaml``."""
    key = ResourceKey.of(obj)
    for part in (key.namespace, key.kind, key.name):
        if "/" in part or "\\" in part or part in (".", "..") or "\0" in part:
            raise RenderError(f"{key}: cannot be written to a file: {part!r} is not a safe "
                              "path segment")
    if not key.kind or not key.name:
        raise RenderError(f"{key}: an object needs a kind and a name to be written to a file")
    return f"{key.namespace or CLUSTER_DIR}/{key.kind.lower()}-{key.name}.yaml"


def layout(objects: Iterable[KubeObject]) -> dict[str, str]:
    """Relative path -> YAML text, one file per object, sorted by path."""
    files: dict[str, str] = {}
    for obj in objects:
        path = relative_path(obj)
        if path in files:
            raise RenderError(f"{ResourceKey.of(obj)}: two objects map to the file {path}")
        files[path] = manifest.dump_object(obj)
    return dict(sorted(files.items()))
