"""`meta.k8s.io/v1` Table responses, for clients that ask for them (`kubectl get`).

Input: a resource type and an object or list body. Output: a Table with Name and
Age columns (plus a few per kind). Called by `server` when `Accept` holds
`as=Table`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .catalog import ResourceType


def _age(stamp: str) -> str:
    try:
        then = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return "<unknown>"
    secs = max(0, int((datetime.now(UTC) - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs // size}{unit}"
    return f"{secs}s"


def _extra(rt: ResourceType) -> list[tuple[str, Any]]:
    if rt.kind == "Deployment":
        def ready(o: dict[str, Any]) -> str:
            st, sp = o.get("status") or {}, o.get("spec") or {}
            return f"{st.get('readyReplicas', 0)}/{sp.get('replicas', 1)}"
        return [("Ready", ready),
                ("Available", lambda o: (o.get("status") or {}).get("availableReplicas", 0))]
    if rt.kind == "Namespace":
        return [("Status", lambda o: (o.get("status") or {}).get("phase", ""))]
    if rt.kind == "Job":
        return [("Status", lambda o: next(
            (c["type"] for c in (o.get("status") or {}).get("conditions") or []
             if c.get("type") in ("Complete", "Failed") and c.get("status") == "True"),
            "Running"))]
    return []


def to_table(rt: ResourceType, body: dict[str, Any], include: str) -> dict[str, Any]:
    items = body["items"] if "items" in body else [body]
    extra = _extra(rt)
    columns = [{"name": "Name", "type": "string", "format": "name", "priority": 0,
                "description": "Name must be unique within a namespace."}]
    columns += [{"name": n, "type": "string", "format": "", "priority": 0, "description": n}
                for n, _ in extra]
    columns.append({"name": "Age", "type": "string", "format": "", "priority": 0,
                    "description": "CreationTimestamp of the object."})
    rows = []
    for item in items:
        meta = item.get("metadata") or {}
        cells = [meta.get("name", "")] + [f(item) for _, f in extra]
        cells.append(_age(meta.get("creationTimestamp", "")))
        row: dict[str, Any] = {"cells": cells}
        if include == "Object":
            row["object"] = {"apiVersion": rt.api_version, "kind": rt.kind, **item}
        elif include != "None":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": meta}
        rows.append(row)
    list_meta = body.get("metadata", {}) if "items" in body else {
        "resourceVersion": (body.get("metadata") or {}).get("resourceVersion", "")}
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta,
            "columnDefinitions": columns, "rows": rows}
