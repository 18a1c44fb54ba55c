"""Non-apply patch formats: JSON merge patch, a minimal strategic merge patch, JSON patch.

Input: the current object and a decoded patch body. Output: the patched object,
or a 422/400 `ApiError`. Called by `store.patch`.
"""

from __future__ import annotations

import copy
from typing import Any

from . import errors, fields

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY = "application/apply-patch+yaml"
KNOWN = (MERGE, STRATEGIC, JSON_PATCH, APPLY)


def merge_patch(target: Any, patch: Any, strategic: bool = False, field: str = "") -> Any:
    """RFC 7386; with `strategic`, lists in `fields.MERGE_KEYS` merge by key and items
    carrying `$patch: delete` are removed."""
    if strategic and isinstance(patch, list) and isinstance(target, list):
        keys = fields.MERGE_KEYS.get(field)
        if keys and all(isinstance(i, dict) and all(k in i for k in keys) for i in patch):
            return _merge_list(target, patch, keys)
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if strategic and key.startswith("$"):
            continue
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value, strategic, key)
    return out


def _merge_list(target: list[Any], patch: list[Any], keys: tuple[str, ...]) -> list[Any]:
    out = list(target)
    for item in patch:
        key = fields.item_key(item, keys)
        idx = next((i for i, t in enumerate(out) if isinstance(t, dict)
                    and all(t.get(k) == v for k, v in key)), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                del out[idx]
        elif idx is None:
            out.append(merge_patch({}, item, strategic=True))
        else:
            out[idx] = merge_patch(out[idx], item, strategic=True)
    return out


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise errors.bad_request(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc: Any, parts: list[str]) -> tuple[Any, str]:
    cur = doc
    for part in parts[:-1]:
        if isinstance(cur, list):
            cur = cur[int(part)]
        else:
            cur = cur[part]
    return cur, parts[-1]


def json_patch(doc: Any, ops: Any) -> Any:
    """RFC 6902 `add`, `remove`, `replace`, `test`."""
    if not isinstance(ops, list):
        raise errors.bad_request("json patch must be a list of operations")
    doc = copy.deepcopy(doc)
    for op in ops:
        kind, path = op.get("op"), op.get("path", "")
        try:
            parent, last = _parent(doc, _pointer(path))
            if kind == "test":
                cur = parent[int(last)] if isinstance(parent, list) else parent[last]
                if cur != op.get("value"):
                    raise errors.ApiError(422, "Invalid", f"testing value {path} failed")
            elif kind == "remove":
                del parent[int(last) if isinstance(parent, list) else last]
            elif kind in ("add", "replace"):
                value = copy.deepcopy(op.get("value"))
                if isinstance(parent, list):
                    if last == "-":
                        parent.append(value)
                    elif kind == "add":
                        parent.insert(int(last), value)
                    else:
                        parent[int(last)] = value
                else:
                    if kind == "replace" and last not in parent:
                        raise errors.ApiError(
                            422, "Invalid",
                            f"the server rejected our request due to an error in our request: "
                            f"replace operation does not apply: doc is missing key: {path}")
                    parent[last] = value
            else:
                raise errors.bad_request(f"unsupported json patch operation {kind!r}")
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise errors.ApiError(
                422, "Invalid", f"the server rejected our request due to an error in our "
                f"request: {kind} operation does not apply: doc is missing path: {path}") from exc
    return doc
