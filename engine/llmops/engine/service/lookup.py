"""Finding catalog entries by what a caller sends: a UUID or a name.

Role: every spec is known by its stable UUID (``SpecKey.id``) and by its name
(a model version also as ``name@version``); this module turns either into the
``catalog.CatalogEntry`` or raises ``NoSuchSpec`` (a ``NotFound``) when nothing
of that kind matches, ``AmbiguousName`` (a ``Conflict``) when a name matches
several entries (the same endpoint name in several environments; its details
list their ids and environments, and ``environment`` narrows it). Input: the
store, a kind, the identifier, optionally an environment. Output: entries.
Callers: ``llmops.engine.service.writes`` and, through ``llmops.api.lookup``,
the REST API's resource routes.
"""

from __future__ import annotations

import uuid

from llmops.engine import errors
from llmops.engine.store import catalog
from llmops.engine.types import Kind


class NoSuchSpec(errors.NotFound):
    """No spec of the kind has this UUID or name."""


class AmbiguousName(errors.Conflict):
    """A name that matches several specs; ``details["candidates"]`` lists them."""


def as_uuid(ident: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(ident)
    except ValueError:
        return None


def matches(store: catalog.Db, kind: Kind, ident: str, *,
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


def one(store: catalog.Db, kind: Kind, ident: str, *,
        environment: str | None = None) -> catalog.CatalogEntry:
    """The single entry ``ident`` names, or ``NoSuchSpec`` / ``AmbiguousName``."""
    found = matches(store, kind, ident, environment=environment)
    if not found:
        where = f" in environment {environment}" if environment else ""
        raise NoSuchSpec(f"no {kind} {ident!r}{where}",
                         details={"kind": str(kind), "id": ident})
    if len(found) > 1:
        raise AmbiguousName(
            f"{kind} {ident!r} exists in several environments; use its id or environment=",
            details={"candidates": [{"id": e.id, "environment": e.environment}
                                    for e in found]})
    return found[0]
