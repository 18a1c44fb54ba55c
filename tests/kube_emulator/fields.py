"""Field paths and field sets: the data model of server-side apply ownership.

Input: plain JSON objects (dicts). Output: sets of field paths, merged objects,
and the `fieldsV1` encoding that appears in `metadata.managedFields`.
Called by `ssa` (apply and update ownership). A simplified structured-merge-diff
without schemas: maps are granular, lists named in `MERGE_KEYS` whose items all
carry the key merge by key (`k:{"name":"app"}`), every other list is atomic.
"""

from __future__ import annotations

import copy
import json
from typing import Any, TypeAlias

Key: TypeAlias = tuple[tuple[str, Any], ...]
Element: TypeAlias = str | Key
Path: TypeAlias = tuple[Element, ...]
FieldSet: TypeAlias = frozenset[Path]

# List fields that merge by key (patchMergeKey / listMapKeys in the real schemas).
MERGE_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "ports": ("name",),
    "imagePullSecrets": ("name",),
    "volumeMounts": ("mountPath",),
}

# Map fields the real schemas mark atomic (label selectors): owned and replaced whole.
ATOMIC_MAPS = frozenset({"selector", "podSelector", "namespaceSelector"})

# Top-level fields never owned through apply or update.
_UNOWNED_TOP = {"apiVersion", "kind", "status"}
# metadata fields that are user data; the rest is system-managed.
_OWNED_METADATA = {"labels", "annotations", "finalizers", "ownerReferences"}


def list_keys(field: Element, items: Any) -> tuple[str, ...] | None:
    """The merge key of a list field, or None when the list is atomic."""
    if not isinstance(field, str) or not isinstance(items, list):
        return None
    keys = MERGE_KEYS.get(field)
    if keys is None or not items:
        return None
    if all(isinstance(i, dict) and all(k in i for k in keys) for i in items):
        return keys
    return None


def item_key(item: dict[str, Any], keys: tuple[str, ...]) -> Key:
    return tuple((k, item[k]) for k in keys)


def _find_item(items: list[Any], key: Key) -> int | None:
    for i, item in enumerate(items):
        if isinstance(item, dict) and all(k in item and item[k] == v for k, v in key):
            return i
    return None


def strip_nulls(value: Any) -> Any:
    """Applied configurations treat `null` as "not specified"."""
    if isinstance(value, dict):
        return {k: strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [strip_nulls(v) for v in value]
    return value


def owned_view(obj: dict[str, Any]) -> dict[str, Any]:
    """The part of an object that field managers can own."""
    view = {k: v for k, v in obj.items() if k not in _UNOWNED_TOP and k != "metadata"}
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k in _OWNED_METADATA}
    if meta:
        view["metadata"] = meta
    return view


def field_set(obj: dict[str, Any]) -> FieldSet:
    """Every field an applied configuration specifies (leaves, plus keyed list items)."""
    out: set[Path] = set()
    _walk(owned_view(obj), (), out)
    return frozenset(out)


def _walk(value: dict[str, Any], prefix: Path, out: set[Path]) -> None:
    for name, child in value.items():
        path = (*prefix, name)
        keys = list_keys(name, child)
        if keys is not None:
            for item in child:
                item_path = (*path, item_key(item, keys))
                out.add(item_path)
                _walk(item, item_path, out)
        elif isinstance(child, dict) and child and name not in ATOMIC_MAPS:
            _walk(child, path, out)
        else:
            out.add(path)


def lookup(obj: Any, path: Path) -> tuple[bool, Any]:
    """(found, value) of `path` in `obj`."""
    cur = obj
    for el in path:
        if isinstance(el, str):
            if not isinstance(cur, dict) or el not in cur:
                return False, None
            cur = cur[el]
        else:
            if not isinstance(cur, list):
                return False, None
            idx = _find_item(cur, el)
            if idx is None:
                return False, None
            cur = cur[idx]
    return True, cur


def same_at(a: Any, b: Any, path: Path) -> bool:
    """Whether `path` holds the same thing in `a` and `b`.

    Maps and list items compare by presence (their children are fields of their
    own); leaves and atomic lists compare by value.
    """
    found_a, va = lookup(a, path)
    found_b, vb = lookup(b, path)
    if found_a != found_b:
        return False
    if not found_a:
        return True
    if isinstance(va, dict) and isinstance(vb, dict) and not (path and path[-1] in ATOMIC_MAPS):
        return True
    return bool(va == vb)


def changed_fields(old: dict[str, Any], new: dict[str, Any]) -> FieldSet:
    """Fields of `new` whose value differs from `old` (what an Update takes ownership of)."""
    return frozenset(p for p in field_set(new) if not same_at(old, new, p))


def existing(paths: FieldSet, obj: dict[str, Any]) -> FieldSet:
    view = owned_view(obj)
    return frozenset(p for p in paths if lookup(view, p)[0])


def merge(base: Any, applied: Any, field: Element = "") -> Any:
    """Apply `applied` onto `base`: maps merge, keyed lists merge by key, the rest replaces."""
    if isinstance(base, dict) and isinstance(applied, dict) and field not in ATOMIC_MAPS:
        out = dict(base)
        for k, v in applied.items():
            out[k] = merge(base[k], v, k) if k in base else copy.deepcopy(v)
        return out
    keys = list_keys(field, applied)
    if keys is not None and isinstance(base, list) and list_keys(field, base) == keys:
        out_list = list(base)
        for item in applied:
            idx = _find_item(out_list, item_key(item, keys))
            if idx is None:
                out_list.append(copy.deepcopy(item))
            else:
                out_list[idx] = merge(out_list[idx], item)
        return out_list
    return copy.deepcopy(applied)


def remove(obj: dict[str, Any], paths: FieldSet, keep: FieldSet) -> dict[str, Any]:
    """A copy of `obj` without `paths`, sparing any path that `keep` holds or reaches into.

    Maps emptied by a removal disappear too (Go's `omitempty` does that on a real
    server); top-level fields such as `spec` stay.
    """
    out = copy.deepcopy(obj)
    kept_prefixes = {p[:i] for p in keep for i in range(1, len(p) + 1)}
    for path in sorted(paths, key=len, reverse=True):
        if path in kept_prefixes:
            continue
        if len(path) > 1 and isinstance(path[-2], tuple) and path[-1] in dict(path[-2]):
            continue  # a key field goes with its item, never alone
        _remove_one(out, path)
    return out


def _remove_one(obj: dict[str, Any], path: Path) -> None:
    parents: list[tuple[Any, Element]] = []
    cur: Any = obj
    for el in path[:-1]:
        found, nxt = lookup(cur, (el,))
        if not found:
            return
        parents.append((cur, el))
        cur = nxt
    last = path[-1]
    if isinstance(last, str):
        if not isinstance(cur, dict) or last not in cur:
            return
        del cur[last]
    else:
        if not isinstance(cur, list):
            return
        idx = _find_item(cur, last)
        if idx is None:
            return
        del cur[idx]
    # Drop containers the removal emptied, but never a top-level field.
    while len(parents) > 1 and cur in ({}, []):
        parent, el = parents.pop()
        if isinstance(el, str):
            del parent[el]
        else:
            idx = _find_item(parent, el)
            if idx is not None:
                del parent[idx]
        cur = parent


def path_string(path: Path) -> str:
    """`.spec.template.spec.containers[name="app"].image`, as the apiserver prints it."""
    out = []
    for el in path:
        if isinstance(el, str):
            out.append(f".{el}")
        else:
            out.append("[" + ",".join(f"{k}={json.dumps(v)}" for k, v in el) + "]")
    return "".join(out)


def encode_fields_v1(paths: FieldSet) -> dict[str, Any]:
    """The `fieldsV1` tree: `f:<field>`, `k:{...}` for keyed items, `.` for a member
    that also has members of its own."""
    root: dict[str, Any] = {}
    for path in sorted(paths, key=lambda p: [_encode_el(e) for e in p]):
        node = root
        for el in path:
            node = node.setdefault(_encode_el(el), {})
    for path in paths:
        node = root
        for el in path:
            node = node[_encode_el(el)]
        if node:
            node["."] = {}
    return _sorted_tree(root)


def _encode_el(el: Element) -> str:
    if isinstance(el, str):
        return f"f:{el}"
    return "k:" + json.dumps(dict(el), separators=(",", ":"))


def _sorted_tree(node: dict[str, Any]) -> dict[str, Any]:
    return {k: _sorted_tree(node[k]) for k in sorted(node)}


def decode_fields_v1(tree: dict[str, Any], prefix: Path = ()) -> FieldSet:
    """The inverse of `encode_fields_v1` (for `f:` and `k:` entries)."""
    out: set[Path] = set()
    for name, child in tree.items():
        if name == ".":
            out.add(prefix)
            continue
        kind, _, rest = name.partition(":")
        el: Element
        if kind == "f":
            el = rest
        elif kind == "k":
            el = tuple(json.loads(rest).items())
        else:
            continue  # `v:` set members and `i:` indices are not modelled
        path = (*prefix, el)
        if child:
            out |= decode_fields_v1(child, path)
        else:
            out.add(path)
    return frozenset(out)
