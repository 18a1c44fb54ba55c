"""Finding catalog entries by what a client sends: a UUID or a name (the API's side).

Role: every resource route answers to the spec's stable UUID (``SpecKey.id``)
and to its name. The finding itself is the engine's
(``llmops.engine.service.lookup``: ``as_uuid``, ``matches``, ``one``, re-exported
here); its ``NotFound`` (404) and ``Conflict`` (409, the data lists the
candidates' ids and environments, and ``environment=`` narrows it) reach the
client through ``llmops.api.errors``. This module adds what only the API
needs: the longest identifier a path accepts and ``Ref`` values for
references between specs. Input: the store, a kind, the identifier. Output:
entries and refs. Callers: the resource routes.
"""

from __future__ import annotations

from llmops.api.resources import Ref
from llmops.engine.service.lookup import as_uuid, matches, one
from llmops.engine.types import Kind, SpecKey

__all__ = ["MAX_ID_CHARS", "as_uuid", "matches", "one", "ref"]

MAX_ID_CHARS = 300


def ref(kind: Kind, name: str, *, environment: str = "", version: str | None = None) -> Ref:
    key_name = f"{name}@{version}" if version is not None else name
    return Ref(id=str(SpecKey(kind, environment, key_name).id), name=name, version=version)
