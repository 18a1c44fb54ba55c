"""The diff stage: Kubernetes objects on two sides -> a ``ChangeSet`` keyed by ``ResourceKey``.

Input: desired objects and either the live objects of a cluster (``diff_live``)
or the desired objects of another revision (``diff_revisions``). Output: a
``ChangeSet`` of ``ChangeSetEntry`` values (``llmops.engine.plan.changeset``,
re-exported here), each with a past-tense action (created, configured,
deleted, unchanged) and the field-level changes. Called by
``llmops.engine.plan.decide`` (for ``llmops plan``, revision against revision,
and for the reconciler, desired against live) and by the kubernetes actuator
(live against its server-side dry run).

Normalisation: what a server sets (status, uid, resourceVersion, generation,
managedFields, timestamps, the last-applied annotation) is dropped from both
sides. Against a live object only the fields the desired object sets are
compared, as server-side apply treats them: server defaults
(``progressDeadlineSeconds``, ``clusterIP``, ``protocol: TCP``...) and fields
of other field managers never count as drift, and items another manager added
to a list keyed by ``name`` (an injected sidecar) are ignored. Between two
revisions the comparison is symmetric, so removed fields show up, and the
bookkeeping annotations ``llmops.io/source-commit`` (different on every
commit) and ``llmops.io/spec-hash`` (different whenever the spec is) are
ignored: an object counts as changed only when its content does.

Secrets: no secret value leaves this module. The values under ``data`` and
``stringData`` of a ``Secret``, and every field an object lists in its
``llmops.io/sensitive-fields`` annotation, are replaced by ``***`` in every
entry; a change to one is reported as a change, never with its value. The
annotation holds comma-separated field paths in the notation of
``format_path`` (``spec.template.spec.containers[0].env[2].value``); ``*``
stands for any key or list index (``...containers[*].env[*].value``) and a
path naming a map or list covers everything under it. As a safety net, the
``value`` of any ``{name, value}`` item whose name reads like a credential
(``API_TOKEN``, ``DB_PASSWORD``: ``llmops.engine.redact.is_secret_key``), such
as a container env var, is masked too.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from llmops.engine import manifest, redact
from llmops.engine.errors import LlmopsError
from llmops.engine.plan.changeset import Action, ChangeSet, ChangeSetEntry, FieldChange, FieldOp
from llmops.engine.spec import quantity
from llmops.engine.types import FieldPath, KubeObject, ResourceKey, format_path

MASK = "***"
LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"

SERVER_METADATA = ("managedFields", "resourceVersion", "uid", "generation",
                   "creationTimestamp", "selfLink", "deletionTimestamp",
                   "deletionGracePeriodSeconds")
SECRET_PATHS: tuple[tuple[str, ...], ...] = (("data",), ("stringData",))

_ABSENT: Any = object()
_TOKEN_RE = re.compile(r"([^.\[\]]+)|\[(\d+|\*)\]")


# --------------------------------------------------------------------------- normalise


def normalize(obj: Mapping[str, Any], *, ignore_annotations: Iterable[str] = ()) -> KubeObject:
    """A copy without what a server sets, without last-applied and ``ignore_annotations``."""
    out: KubeObject = _copy(obj)
    out.pop("status", None)
    meta = out.get("metadata")
    if isinstance(meta, dict):
        for name in SERVER_METADATA:
            meta.pop(name, None)
        annotations = meta.get("annotations")
        if isinstance(annotations, dict):
            for name in (LAST_APPLIED_ANNOTATION, *ignore_annotations):
                annotations.pop(name, None)
            if not annotations:
                meta.pop("annotations")
        if meta.get("labels") == {}:
            meta.pop("labels")
    return out


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_copy(v) for v in value]
    return value


# --------------------------------------------------------------------------- masking


def _secret_named_values(value: Any, path: tuple[str, ...], out: set[tuple[str, ...]]) -> None:
    """Paths of ``value`` in ``{name, value}`` items whose name reads like a secret (env vars)."""
    if isinstance(value, dict):
        for k, v in value.items():
            _secret_named_values(v, (*path, str(k)), out)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if (isinstance(item, dict) and "value" in item
                    and isinstance(item.get("name"), str) and redact.is_secret_key(item["name"])):
                out.add((*path, str(i), "value"))
            else:
                _secret_named_values(item, (*path, str(i)), out)


def sensitive_patterns(*objects: Mapping[str, Any] | None) -> tuple[tuple[str, ...], ...]:
    """Field-path patterns to mask for these objects (the two sides of one entry)."""
    patterns: set[tuple[str, ...]] = set()
    for obj in objects:
        if not obj:
            continue
        _secret_named_values(obj, (), patterns)
        if obj.get("kind") == "Secret" and str(obj.get("apiVersion", "")) == "v1":
            patterns.update(SECRET_PATHS)
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        raw = annotations.get(manifest.SENSITIVE_ANNOTATION)
        if isinstance(raw, str):
            for item in raw.split(","):
                parsed = parse_path(item.strip())
                if parsed:
                    patterns.add(parsed)
    return tuple(sorted(patterns))


def parse_path(text: str) -> tuple[str, ...]:
    """``a.b[0].c`` -> ("a", "b", "0", "c"); ``()`` when the text is not a path."""
    parts: list[str] = []
    pos = 0
    while pos < len(text):
        if text[pos] == "." and parts:
            pos += 1
        match = _TOKEN_RE.match(text, pos)
        if not match:
            return ()
        parts.append(match.group(1) if match.group(1) is not None else match.group(2))
        pos = match.end()
    return tuple(parts)


def _covered(path: FieldPath, patterns: tuple[tuple[str, ...], ...]) -> bool:
    """Whether ``path`` is at or under one of ``patterns``."""
    for pattern in patterns:
        if len(path) >= len(pattern) and all(
            p == "*" or p == str(s) for p, s in zip(pattern, path, strict=False)
        ):
            return True
    return False


def _mask_value(value: Any, path: FieldPath, patterns: tuple[tuple[str, ...], ...]) -> Any:
    """``value`` (found at ``path``) with every sensitive leaf replaced by the mask."""
    if value is None or value is _ABSENT:
        return value
    if isinstance(value, dict):
        return {k: _mask_value(v, (*path, k), patterns) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_value(v, (*path, i), patterns) for i, v in enumerate(value)]
    return MASK if _covered(path, patterns) else value


def mask(obj: Mapping[str, Any]) -> KubeObject:
    """A copy of ``obj`` with Secret data and annotated sensitive fields masked."""
    patterns = sensitive_patterns(obj)
    copied: KubeObject = _copy(obj)
    if not patterns:
        return copied
    masked: KubeObject = _mask_value(copied, (), patterns)
    return masked


# --------------------------------------------------------------------------- comparison


def _scalar_equal(a: Any, b: Any) -> bool:
    if a == b and type(a) is type(b):
        return True
    if isinstance(a, bool) or isinstance(b, bool):
        return False
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, (int, float)) and isinstance(b, str):
        return str(a) == b
    if isinstance(b, (int, float)) and isinstance(a, str):
        return str(b) == a
    return False


QUANTITY_PARENTS = frozenset({"requests", "limits", "hard", "capacity", "allocatable"})
"""Maps whose values are quantities (container resources, ResourceQuota, PVC)."""


def _quantity_path(path: FieldPath) -> bool:
    """Whether the field at ``path`` holds a quantity, which the API server stores in
    canonical form (``4000m`` reads back as ``4``): compare values, not spellings."""
    if len(path) >= 2 and path[-2] in QUANTITY_PARENTS:
        return True
    return len(path) >= 2 and path[-2] == "target" and path[-1] in ("averageValue", "value")


def _empty(value: Any) -> bool:
    return value is _ABSENT or value is None or value == {} or value == []


def _named(items: list[Any]) -> dict[str, int] | None:
    """name -> index when every item is a map with a distinct string ``name``."""
    index: dict[str, int] = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            return None
        index[item["name"]] = i
    return index if len(index) == len(items) else None


class _Comparer:
    """Collects field changes between ``before`` and ``after`` (one entry's two sides)."""

    def __init__(self, *, subset: bool) -> None:
        # subset: compare only what ``after`` (the desired side) sets.
        self.subset = subset
        self.changes: list[tuple[FieldPath, Any, Any]] = []

    def compare(self, before: Any, after: Any, path: FieldPath) -> None:
        if self.subset and after is _ABSENT:
            return
        if _empty(before) and _empty(after):
            return
        if isinstance(before, dict) and isinstance(after, dict):
            keys = list(after) if self.subset else list(dict.fromkeys([*before, *after]))
            for k in keys:
                self.compare(before.get(k, _ABSENT), after.get(k, _ABSENT), (*path, k))
            return
        if isinstance(before, list) and isinstance(after, list):
            self._compare_lists(before, after, path)
            return
        if isinstance(before, (dict, list)) or isinstance(after, (dict, list)):
            if before != after:
                self.changes.append((path, before, after))
            return
        if not _scalar_equal(before, after) and not (
                _quantity_path(path) and quantity.same(before, after)):
            self.changes.append((path, before, after))

    def _compare_lists(self, before: list[Any], after: list[Any], path: FieldPath) -> None:
        if self.subset:
            # A list keyed by name merges like server-side apply: items another
            # field manager added stay and are not drift.
            by_name_before, by_name_after = _named(before), _named(after)
            if by_name_before is not None and by_name_after is not None:
                for name, i in by_name_after.items():
                    j = by_name_before.get(name)
                    self.compare(before[j] if j is not None else _ABSENT, after[i], (*path, i))
                return
        if len(before) == len(after):
            for i, (b, a) in enumerate(zip(before, after, strict=True)):
                self.compare(b, a, (*path, i))
        else:
            self.changes.append((path, before, after))


def _field_changes(before: KubeObject, after: KubeObject, *, subset: bool,
                   patterns: tuple[tuple[str, ...], ...]) -> tuple[FieldChange, ...]:
    comparer = _Comparer(subset=subset)
    comparer.compare(before, after, ())
    out: list[FieldChange] = []
    for path, b, a in comparer.changes:
        op = (FieldOp.ADDED if _empty(b) else FieldOp.REMOVED if _empty(a) else FieldOp.CHANGED)
        sensitive = _covered(path, patterns)
        masked_b = None if _empty(b) else _mask_value(b, path, patterns)
        masked_a = None if _empty(a) else _mask_value(a, path, patterns)
        out.append(FieldChange(format_path(path), op, masked_b, masked_a, sensitive))
    return tuple(out)


def _project(live: Any, desired: Any) -> Any:
    """``live`` cut down to the fields ``desired`` sets (for showing a subset diff)."""
    if isinstance(live, dict) and isinstance(desired, dict):
        return {k: _project(live[k], v) for k, v in desired.items() if k in live}
    if isinstance(live, list) and isinstance(desired, list):
        by_name_live, by_name_desired = _named(live), _named(desired)
        if by_name_live is not None and by_name_desired is not None:
            return [_project(live[by_name_live[n]], desired[i])
                    for n, i in by_name_desired.items() if n in by_name_live]
        if len(live) == len(desired):
            return [_project(a, b) for a, b in zip(live, desired, strict=True)]
    return live


def _entry(key: ResourceKey, before: KubeObject | None, after: KubeObject | None,
           *, subset: bool) -> ChangeSetEntry:
    patterns = sensitive_patterns(before, after)

    def shown(obj: KubeObject | None) -> KubeObject | None:
        return None if obj is None else _mask_value(obj, (), patterns) if patterns else obj

    if before is None:
        return ChangeSetEntry(key, Action.CREATED, (), None, shown(after))
    if after is None:
        return ChangeSetEntry(key, Action.DELETED, (), shown(before), None)
    changes = _field_changes(before, after, subset=subset, patterns=patterns)
    view = _project(before, after) if subset else before
    action = Action.CONFIGURED if changes else Action.UNCHANGED
    return ChangeSetEntry(key, action, changes, shown(view), shown(after))


def _index(objects: Iterable[Mapping[str, Any]], *, default_namespace: str,
           ignore_annotations: tuple[str, ...]) -> dict[ResourceKey, KubeObject]:
    out: dict[ResourceKey, KubeObject] = {}
    for obj in objects:
        norm = normalize(obj, ignore_annotations=ignore_annotations)
        meta = norm.setdefault("metadata", {})
        if (default_namespace and not meta.get("namespace")
                and norm.get("kind") not in manifest.CLUSTER_SCOPED):
            meta["namespace"] = default_namespace
        key = ResourceKey.of(norm)
        if key in out:
            raise LlmopsError(f"{key}: the same object appears twice on one side of a diff")
        out[key] = norm
    return out


def entry_order(key: ResourceKey) -> tuple[str, str, str, str]:
    """The renderers' (and Argo CD hydrator's) order: namespace, name, group, kind."""
    return (key.namespace, key.name, key.group, key.kind)


def _changeset(before: dict[ResourceKey, KubeObject], after: dict[ResourceKey, KubeObject],
               *, subset: bool) -> ChangeSet:
    keys = sorted(set(before) | set(after), key=entry_order)
    return ChangeSet(tuple(_entry(k, before.get(k), after.get(k), subset=subset)
                           for k in keys))


# --------------------------------------------------------------------------- entry points


@dataclass
class LiveMemo:
    """The ``unchanged`` entries of the last ``diff_live``, by key, each with the desired
    object it was computed from; kept by a caller that diffs the same objects again
    (the reconciler, one per environment).

    An entry is reused when the desired object is that very object (the render
    cache hands out the same object while the spec and what it depends on are
    unchanged) and the live object still equals it field for field: there is
    nothing to normalise, mask or compare. Holding the objects keeps their ids
    from being reused. Objects are never modified in place (the renderers'
    contract), so identity implies the same content.
    """

    entries: dict[ResourceKey, tuple[Mapping[str, Any], ChangeSetEntry]] = field(
        default_factory=dict)
    hashes: dict[ResourceKey, tuple[Mapping[str, Any], str]] = field(default_factory=dict)
    """Each desired object's inventory hash, with the object (``record.inventory_items``)."""


def diff_live(desired: Iterable[Mapping[str, Any]], live: Iterable[Mapping[str, Any]], *,
              default_namespace: str = "default",
              ignore_annotations: tuple[str, ...] = (),
              memo: LiveMemo | None = None) -> ChangeSet:
    """Desired objects against live ones: only fields the desired objects set count.

    ``live`` should hold the objects this tool owns (its inventory): a live
    object with no desired counterpart is reported ``deleted``. Pass
    ``manifest.REVISION_BOOKKEEPING`` as ``ignore_annotations`` to leave objects whose
    only difference is the commit stamp alone. With a ``memo`` (only with
    ``default_namespace=""`` and the same ``ignore_annotations`` every call) an
    object unchanged since the last call costs one equality test.
    """
    if memo is None:
        return _changeset(_index(live, default_namespace=default_namespace,
                                 ignore_annotations=ignore_annotations),
                          _index(desired, default_namespace=default_namespace,
                                 ignore_annotations=ignore_annotations),
                          subset=True)
    if default_namespace:
        raise ValueError("a LiveMemo keys objects as rendered: use default_namespace=''")
    wanted = {ResourceKey.of(o): o for o in desired}
    current = {ResourceKey.of(o): o for o in live}
    equal = {k for k, obj in wanted.items() if current.get(k) == obj}
    reused = {k: memo.entries[k][1] for k in equal
              if k in memo.entries and memo.entries[k][0] is wanted[k]}
    rest = _changeset(
        _index((o for k, o in current.items() if k not in reused), default_namespace="",
               ignore_annotations=ignore_annotations),
        _index((o for k, o in wanted.items() if k not in reused), default_namespace="",
               ignore_annotations=ignore_annotations),
        subset=True)
    entries = {e.key: e for e in rest.entries} | reused
    memo.entries = {k: (wanted[k], entries[k]) for k in equal
                    if entries[k].action is Action.UNCHANGED}
    return ChangeSet(tuple(entries[k] for k in sorted(entries, key=entry_order)))


def diff_revisions(base: Iterable[Mapping[str, Any]], head: Iterable[Mapping[str, Any]], *,
                   ignore_annotations: tuple[str, ...] = manifest.REVISION_BOOKKEEPING
                   ) -> ChangeSet:
    """Two desired revisions, compared field by field both ways (removals included)."""
    ignore = ignore_annotations
    base, head = list(base), list(head)
    # The very same object on both sides (a render cache shared by the two revisions) is
    # unchanged: normalised and masked once, never compared.
    before = {id(o): o for o in base}
    same = {id(o) for o in head if before.get(id(o)) is o}
    unchanged = [_unchanged(normalize(before[i], ignore_annotations=ignore)) for i in same]
    rest = _changeset(
        _index((o for o in base if id(o) not in same), default_namespace="",
               ignore_annotations=ignore),
        _index((o for o in head if id(o) not in same), default_namespace="",
               ignore_annotations=ignore),
        subset=False)
    entries = {e.key: e for e in rest.entries}
    for entry in unchanged:
        if entries.setdefault(entry.key, entry) is not entry:
            raise LlmopsError(f"{entry.key}: the same object appears twice on one side of a diff")
    return ChangeSet(tuple(entries[k] for k in sorted(entries, key=entry_order)))


def _unchanged(norm: KubeObject) -> ChangeSetEntry:
    """The entry of an object known to be the same on both sides."""
    patterns = sensitive_patterns(norm)
    shown = _mask_value(norm, (), patterns) if patterns else norm
    return ChangeSetEntry(ResourceKey.of(norm), Action.UNCHANGED, (), shown, shown)


# --------------------------------------------------------------------------- text


class _PyDumper(yaml.SafeDumper):
    """Safe YAML with multi-line strings as literal blocks, so a line diff reads well."""


def _str(dumper: yaml.SafeDumper | yaml.CSafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_PyDumper.add_representer(str, _str)
_Dumper: type[yaml.SafeDumper | yaml.CSafeDumper] = _PyDumper

if getattr(yaml, "__with_libyaml__", False):

    class _CDumper(yaml.CSafeDumper):
        """The same through libyaml's emitter: the same text, 10x faster (6 ms -> 0.5 ms
        for a Deployment), which keeps the reconciler's recorded diffs cheap."""

    _CDumper.add_representer(str, _str)
    _Dumper = _CDumper


def to_yaml(obj: KubeObject | None, *, pure: bool = False) -> str:
    """Block YAML of ``obj`` ("" for None), by libyaml when PyYAML has it (``pure``: by
    PyYAML's own emitter, which writes the same text)."""
    if obj is None:
        return ""
    return yaml.dump(obj, Dumper=_PyDumper if pure else _Dumper, sort_keys=False,
                     default_flow_style=False, width=100, allow_unicode=True)


def unified(entry: ChangeSetEntry) -> str:
    """A unified diff of the entry's masked sides, plus a note per sensitive change."""
    before, after = to_yaml(entry.before), to_yaml(entry.after)
    lines = list(difflib.unified_diff(
        before.splitlines(), after.splitlines(),
        fromfile=f"a/{entry.key}" if entry.before is not None else "/dev/null",
        tofile=f"b/{entry.key}" if entry.after is not None else "/dev/null",
        lineterm="", n=3))
    notes = [f"# {c.describe()}" for c in entry.changes if c.sensitive]
    if notes and not lines:
        lines = [f"--- a/{entry.key}", f"+++ b/{entry.key}"]
    return "\n".join(lines + notes)
