"""Label and field selectors for list and delete-collection requests.

Input: the `labelSelector` / `fieldSelector` query strings. Output: predicates over
objects, or a 400 BadRequest `ApiError` for unparseable selectors. Called by `store`.
Supports `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x,y)`, `a`, `!a`; field
selectors on `metadata.name` and `metadata.namespace` with `=`, `==`, `!=`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from . import errors

Predicate = Callable[[dict[str, Any]], bool]

_SET = re.compile(r"^\s*([A-Za-z0-9._/-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_EQ = re.compile(r"^\s*([A-Za-z0-9._/-]+)\s*(==|=|!=)\s*([A-Za-z0-9._-]*)\s*$")
_EXISTS = re.compile(r"^\s*(!?)\s*([A-Za-z0-9._/-]+)\s*$")


def _split(selector: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts, depth, cur = [], 0, ""
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p for p in parts if p.strip()]


def _requirement(text: str) -> Predicate:
    if m := _SET.match(text):
        key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if m := _EQ.match(text):
        key, op, value = m.groups()
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if m := _EXISTS.match(text):
        neg, key = m.groups()
        if neg:
            return lambda labels: key not in labels
        return lambda labels: key in labels
    raise errors.bad_request(f"unable to parse requirement: {text.strip()!r}")


def label_selector(selector: str | None) -> Predicate:
    reqs = [_requirement(p) for p in _split(selector or "")]

    def match(obj: dict[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(r(labels) for r in reqs)
    return match


_FIELDS = {"metadata.name": "name", "metadata.namespace": "namespace"}


def _field_requirement(field: str, op: str, value: str) -> Predicate:
    def match(obj: dict[str, Any]) -> bool:
        equal = (obj.get("metadata") or {}).get(field, "") == value
        return not equal if op == "!=" else equal
    return match


def field_selector(selector: str | None) -> Predicate:
    reqs: list[Predicate] = []
    for part in _split(selector or ""):
        m = re.match(r"^\s*([A-Za-z0-9.]+)\s*(==|=|!=)\s*(.*?)\s*$", part)
        if not m or m.group(1) not in _FIELDS:
            raise errors.bad_request(
                f'"{part.strip()}" is not a known field selector: only "metadata.name", '
                '"metadata.namespace"')
        reqs.append(_field_requirement(_FIELDS[m.group(1)], m.group(2), m.group(3)))

    def match(obj: dict[str, Any]) -> bool:
        return all(r(obj) for r in reqs)
    return match
