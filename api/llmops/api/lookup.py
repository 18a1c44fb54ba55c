"""Finding catalog entries by what a client sends: a UUID or a name.

Role: every resource route answers to the spec's stable UUID (``SpecKey.id``)
and to its name; this module turns either into the ``catalog.CatalogEntry``
or raises the API error a client should see: ``NotFound`` (404) when nothing
of that kind matches, ``Conflict`` (409) when a name matches several entries
(the same endpoint name in several environments; the data lists their ids
and environments, and ``environment=`` narrows it). Also builds ``Ref``
values for references between specs. Input: the store, a kind, the
identifier. Output: entries and refs. Callers: the resource routes.
"""

from __future__ import annotations

import uuid

from llmops.api import errors
from llmops.api.resources import Ref
from llmops.engine.store import catalog, db
from llmops.engine.types import Kind, SpecKey

MAX_ID_CHARS = 300


def as_uuid(ident: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(ident)
    except ValueError:
        return None


def matches(store: db.Store, kind: Kind, ident: str, *,
            environment: str | None = None) -> list[catalog.CatalogEntry]:
    """Entries of ``kind`` whose UUID or name is ``ident`` (a model's ``name@version`` too)."""
    parsed = as_uuid(ident)
    if parsed is not None:
        entry = catalog.get(store, str(parsed))
        return [entry] if entry is not None and entry.kind == kind else []
    if "@" in ident:
        found = catalog.list_entries(store, kind=kind, environment=environment,
                                     name=ident.split("@", 1)[0])
        return [e for e in found if e.name == ident]
    return catalog.list_entries(store, kind=kind, environment=environment, name=ident)


def one(store: db.Store, kind: Kind, ident: str, *,
        environment: str | None = None) -> catalog.CatalogEntry:
    """The single entry ``ident`` names, or 404 / 409."""
    found = matches(store, kind, ident, environment=environment)
    if not found:
        where = f" in environment {environment}" if environment else ""
        raise errors.NotFound(f"no {kind} {ident!r}{where}", {"kind": str(kind), "id": ident})
    if len(found) > 1:
        raise errors.Conflict(
            f"{kind} {ident!r} exists in several environments; use its id or environment=",
            {"candidates": [{"id": e.id, "environment": e.environment} for e in found]})
    return found[0]


def ref(kind: Kind, name: str, *, environment: str = "", version: str | None = None) -> Ref:
    key_name = f"{name}@{version}" if version is not None else name
    return Ref(id=str(SpecKey(kind, environment, key_name).id), name=name, version=version)
