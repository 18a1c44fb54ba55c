"""Rendered objects as manifest text: YAML documents and a per-object file layout.

Input: objects from ``render_environment``. Output: text (a multi-document
YAML stream) or a mapping of relative file paths to text. Pure functions; the
callers write: ``llmops render`` (stdout or ``--out DIR``) and the hydrate
actuator.

Each document lists ``apiVersion``, ``kind`` and ``metadata`` first, then the
remaining fields in the order the template gave them; multi-line strings
(prompt texts, variant tables) are YAML literal blocks when YAML allows it.
The same objects always give byte-identical text.

File layout: ``<namespace>/<kind>-<name>.yaml``, cluster-scoped objects under
``_cluster/`` (``_`` cannot start a namespace name, so the two never clash).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from llmops.engine.types import KubeObject, ResourceKey
from llmops.renderers.templating import RenderError

CLUSTER_DIR = "_cluster"
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
        files[path] = dump_object(obj)
    return dict(sorted(files.items()))
