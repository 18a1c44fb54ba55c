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
import re
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

_DUMP_OPTIONS: dict[str, Any] = {"Dumper": _Dumper, "sort_keys": False, "allow_unicode": True,
                                 "default_flow_style": False, "width": 1 << 30}
"""No folding of long lines: a value stays on its line, however long."""

# A string PyYAML writes plain (unquoted) in block context, unless a resolver reads it as
# another type: words of printable ASCII joined by single spaces or by ':' (never ': ',
# ' #' nor a trailing ':'), not starting with an indicator.
_WORD = r"[A-Za-z0-9_./$()=+~<>@%&*!?,;'\"\[\]{}^|\\-]"
_PLAIN = re.compile(rf"(?!\.\.\.)[A-Za-z0-9_./$(=+~<]{_WORD}*(?:[ :]{_WORD}+)*")
_BREAKS = re.compile("[\n\r\x85\u2028\u2029]")
_ODD_BREAKS = re.compile("[\r\x85\u2028\u2029]")
_RESOLVER = yaml.resolver.Resolver()  # the one yaml.CSafeDumper uses
_RESOLVED_FIRST = frozenset(_RESOLVER.yaml_implicit_resolvers)


class _Unusual(Exception):
    """The object holds something the fast writer leaves to PyYAML (see ``_Writer``)."""


class _Writer:
    """Block-style YAML text byte-identical to ``yaml.dump(obj, **_DUMP_OPTIONS)``, written
    without building PyYAML's node graph.

    Common strings are decided here; any other string (quoted, a literal block), and
    floats, are written by PyYAML. Every string's text is remembered (up to
    ``_MEMO_SIZE``, shared by all writers). Keys that are not short one-line strings
    and values other than dict, list, str, int, float, bool and None raise
    ``_Unusual``, and the caller dumps the whole object with PyYAML. One writer per
    document.
    """

    def __init__(self) -> None:
        self.open_ended = False
        self.out: list[str] = []

    @staticmethod
    def scalar(value: Any) -> tuple[str, bool]:
        """``(text, open_ended)``: the scalar as PyYAML writes it at the top level, its
        continuation lines indented by two, and whether it is a ``|+`` block."""
        if value is None:
            return "null", False
        if value is True or value is False:
            return ("true" if value else "false"), False
        kind = type(value)
        if kind is int:
            return str(value), False
        found = None
        if kind is str:
            found = _scalars.get(value)
            if found is not None:
                return found
            if _ODD_BREAKS.search(value):
                raise _Unusual("line break")
            if _PLAIN.fullmatch(value) and (
                    value[0] not in _RESOLVED_FIRST
                    or _RESOLVER.resolve(yaml.ScalarNode, value, (True, False))  # type: ignore[no-untyped-call]
                    == "tag:yaml.org,2002:str"):
                found = value, False
        elif kind is not float:
            raise _Unusual(kind.__name__)
        if found is None:
            text = yaml.dump(value, **_DUMP_OPTIONS)
            open_ended = text.endswith("\n...\n")
            found = (text[:-5] if open_ended else text[:-1]), open_ended and text[0] == "|"
            if kind is float:  # not remembered: 0.0 == -0.0
                return found
        if len(_scalars) >= _MEMO_SIZE:
            _scalars.clear()
        _scalars[value] = found
        return found

    @staticmethod
    def key(key: Any) -> str:
        text = _keys.get(key)
        if text is None:
            # PyYAML writes an empty, long or multi-line key as a complex key ("? key").
            if type(key) is not str or not key or len(key) > 100 or _BREAKS.search(key):
                raise _Unusual("key")
            text = _Writer.scalar(key)[0]
            if len(_keys) >= _MEMO_SIZE:
                _keys.clear()
            _keys[key] = text
        return text

    def value(self, prefix: str, value: Any, column: int) -> bool:
        """Append ``prefix`` + ``value`` (a scalar, {} or []) as lines; False for a
        non-empty dict or list, which the caller writes below ``prefix``."""
        kind = type(value)
        if kind is dict or kind is list:
            if value:
                return False
            self.out.append(prefix + ("{}" if kind is dict else "[]"))
            return True
        text, open_ended = (_scalars.get(value) if kind is str else None) or self.scalar(value)
        if "\n" in text:
            if text[0] == "|":  # libyaml ends the document with "..." if its last block is "|+"
                self.open_ended = open_ended
            pad = "\n" + " " * column
            first, *rest = text.split("\n")
            text = first + "".join(pad + line if line else "\n" for line in rest)
        self.out.append(prefix + text)
        return True

    def mapping(self, mapping: dict[Any, Any], indent: int, first: str) -> None:
        pad = " " * indent
        for key, value in mapping.items():
            prefix = f"{first}{_keys.get(key) or self.key(key)}: "
            first = pad
            if self.value(prefix, value, indent):
                continue
            self.out.append(prefix[:-1])
            if type(value) is dict:
                self.mapping(value, indent + 2, " " * (indent + 2))
            else:
                self.sequence(value, indent, pad)

    def sequence(self, items: list[Any], indent: int, first: str) -> None:
        pad = " " * indent
        for item in items:
            prefix = f"{first}- "
            first = pad
            if self.value(prefix, item, indent):
                continue
            if type(item) is dict:
                self.mapping(item, indent + 2, prefix)
            else:
                self.sequence(item, indent + 2, prefix)

    def document(self, obj: dict[str, Any]) -> str:
        if not obj:
            raise _Unusual("empty")
        self.mapping(obj, 0, "")
        if self.open_ended:
            self.out.append("...")
        self.out.append("")
        return "\n".join(self.out)


_MEMO_SIZE = 50_000
_scalars: dict[str, tuple[str, bool]] = {}
"""A string -> its text and whether it is open-ended."""
_keys: dict[str, str] = {}
"""A mapping key -> its text."""


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


def _dump(obj: dict[str, Any]) -> str:
    try:
        return _Writer().document(obj)
    except _Unusual:
        text: str = yaml.dump(obj, **_DUMP_OPTIONS)
        return text


def dump_object(obj: KubeObject) -> str:
    """One object as one YAML document (no ``---``)."""
    return _dump(ordered(obj))


def to_yaml(objects: Iterable[KubeObject]) -> str:
    """Objects as a YAML stream, each document starting with ``---``; "" for none."""
    return "".join(f"---\n{dump_object(obj)}" for obj in objects)
