"""Server-side apply and field ownership (`metadata.managedFields`).

Input: the live object with its managers, and either an applied configuration
(Apply) or a new full object (Update: create, PUT, merge/JSON patch). Output: the
merged object and the new managers, or a 409 apply-conflict `ApiError`.
Called by `store`. Semantics follow the apiserver's structured-merge-diff:

- Apply sets the fields in the applied config and owns exactly those; fields the
  same manager applied before and omits now are removed, unless another manager
  also owns them.
- A field owned by another manager (through Apply or Update) whose value the
  apply would change is a conflict; `force` moves ownership instead.
- An Update takes ownership of the fields it changed, from whoever held them.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from . import errors, fields
from .fields import FieldSet


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Manager:
    manager: str
    operation: str  # "Apply" | "Update"
    api_version: str
    fields: FieldSet
    time: str
    subresource: str = ""

    def same_slot(self, other: Manager) -> bool:
        return (self.manager, self.operation, self.subresource) == (
            other.manager, other.operation, other.subresource)

    def printed(self) -> str:
        """How conflict messages name this manager (apiserver `printManager`)."""
        if self.operation == "Update":
            return f'"{self.manager}" using {self.api_version} at {self.time}'
        return json.dumps(self.manager)

    def entry(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "manager": self.manager, "operation": self.operation,
            "apiVersion": self.api_version, "time": self.time, "fieldsType": "FieldsV1",
            "fieldsV1": fields.encode_fields_v1(self.fields),
        }
        if self.subresource:
            out["subresource"] = self.subresource
        return out


def render(managers: list[Manager]) -> list[dict[str, Any]]:
    return [m.entry() for m in managers]


def _settle(managers: list[Manager], previous: list[Manager],
            obj: dict[str, Any]) -> list[Manager]:
    """Drop fields that no longer exist and empty entries; keep the old `time` of an
    entry whose fields did not change (so an unchanged request changes nothing)."""
    out = []
    for m in managers:
        kept = fields.existing(m.fields, obj)
        if not kept:
            continue
        old = next((p for p in previous if p.same_slot(m)), None)
        if old is not None and old.fields == kept:
            out.append(old)
        else:
            out.append(replace(m, fields=kept))
    return out


def apply(live: dict[str, Any], managers: list[Manager], applied: dict[str, Any],
          manager: str, api_version: str, force: bool,
          finish: Any) -> tuple[dict[str, Any], list[Manager]]:
    """Merge `applied` into `live` for `manager`.

    `finish(obj)` runs admission (defaults) on the merged object before ownership
    is settled. `live` is `{}` plus metadata for a create.
    """
    applied = fields.strip_nulls(applied)
    applied_fields = fields.field_set(applied)
    mine = next((m for m in managers if m.manager == manager and m.operation == "Apply"
                 and not m.subresource), None)
    others = [m for m in managers if m is not mine]
    others_fields: FieldSet = frozenset().union(*(m.fields for m in others))

    dropped = (mine.fields if mine else frozenset()) - applied_fields - others_fields
    base = fields.remove(live, dropped, keep=others_fields | applied_fields)
    merged = fields.merge(base, fields.owned_view(applied))

    conflicts: list[tuple[Manager, fields.Path]] = [
        (m, p) for m in others if not m.subresource
        for p in sorted(m.fields, key=fields.path_string)
        if not fields.same_at(live, merged, p)
    ]
    if conflicts and not force:
        raise errors.apply_conflict([(m.printed(), fields.path_string(p)) for m, p in conflicts])
    taken: dict[int, set[fields.Path]] = {}
    for m, p in conflicts:
        taken.setdefault(id(m), set()).add(p)

    result = finish(merged)
    stamp = now()
    new_managers: list[Manager] = []
    placed = False
    for m in managers:
        if m is mine:
            new_managers.append(replace(m, fields=applied_fields, time=stamp,
                                        api_version=api_version))
            placed = True
        else:
            new_managers.append(replace(m, fields=m.fields - taken.get(id(m), set())))
    if not placed:
        new_managers.append(Manager(manager, "Apply", api_version, applied_fields, stamp))
    return result, _settle(new_managers, managers, result)


def update(old: dict[str, Any] | None, managers: list[Manager], new: dict[str, Any],
           manager: str, api_version: str, subresource: str = "") -> list[Manager]:
    """Ownership after a non-apply write of `new` over `old` (None for a create)."""
    if subresource:
        return managers  # status writes are not tracked
    changed = fields.changed_fields(old or {}, new)
    stamp = now()
    new_managers: list[Manager] = []
    placed = False
    for m in managers:
        if m.manager == manager and m.operation == "Update" and not m.subresource:
            new_managers.append(replace(m, fields=m.fields | changed, time=stamp,
                                        api_version=api_version))
            placed = True
        else:
            new_managers.append(replace(m, fields=m.fields - changed))
    if not placed and changed:
        new_managers.append(Manager(manager, "Update", api_version, changed, stamp))
    return _settle(new_managers, managers, new)


def decode(entries: list[dict[str, Any]]) -> list[Manager]:
    """Managers from stored `managedFields` entries (used when seeding objects)."""
    return [Manager(e["manager"], e.get("operation", "Update"), e.get("apiVersion", ""),
                    fields.decode_fields_v1(copy.deepcopy(e.get("fieldsV1") or {})),
                    e.get("time", now()), e.get("subresource", "")) for e in entries]
