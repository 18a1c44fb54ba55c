"""Specs the API wrote that the catalog may not hold yet, and where their writes went.

Role: the catalog (``store.catalog``) holds the specs of the last validated
revision the reconciler saw; a spec created through the API a moment ago, or
edited on a review branch, is not in it until the branch is merged and
reconciled. This table remembers, per spec id, the branch and commit of its
last write and the spec as committed, so that

- the next write of the same spec (a second model file, a rollback after a
  deploy) is added to the same open review branch instead of a new one;
- a caller that just created a spec can address it by the id the create
  returned (``as_entry`` gives a ``catalog.CatalogEntry`` read from the
  pending row; the catalog wins once it holds the spec).

Input: ``Pending`` values from the write use cases. Output: ``Pending`` and
``catalog.CatalogEntry`` values. Callers: ``llmops.engine.service.writes``
and ``llmops.engine.service.creates``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from llmops.engine.store import catalog, db
from llmops.engine.store.models import PendingSpecRow
from llmops.engine.types import SpecKey


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Pending:
    """The last write of one spec: its key and file, branch and commit, the spec itself."""

    key: SpecKey
    file: str
    branch: str
    commit: str
    direct: bool
    spec: dict[str, Any]
    updated_at: datetime = field(default_factory=_now)

    def as_entry(self) -> catalog.CatalogEntry:
        return catalog.CatalogEntry(
            id=str(self.key.id), kind=self.key.kind, environment=self.key.environment,
            name=self.key.name, revision=self.commit, file=self.file, spec=dict(self.spec),
            updated_at=self.updated_at)


def _value(row: PendingSpecRow) -> Pending:
    return Pending(key=SpecKey(row.kind, row.environment, row.name), file=row.file,
                   branch=row.branch, commit=row.commit, direct=row.direct,
                   spec=dict(row.spec), updated_at=row.updated_at)


def put(store: db.Store, pending: Pending) -> None:
    """Record ``pending`` as the spec's last write (replacing an earlier one)."""
    key = pending.key
    with store.session(write=True) as session:
        row = session.get(PendingSpecRow, str(key.id))
        if row is None:
            row = PendingSpecRow(id=str(key.id))
            session.add(row)
        row.kind, row.environment, row.name = key.kind, key.environment, key.name
        row.file, row.branch, row.commit = pending.file, pending.branch, pending.commit
        row.direct, row.spec, row.updated_at = pending.direct, pending.spec, pending.updated_at


def get(store: db.Store, spec_id: str) -> Pending | None:
    with store.session() as session:
        row = session.get(PendingSpecRow, spec_id)
        return _value(row) if row is not None else None


def named(store: db.Store, kind: str, name: str,
          environment: str | None = None) -> list[Pending]:
    """Pending specs of ``kind`` called ``name`` (a model: ``name@version``)."""
    stmt = select(PendingSpecRow).where(PendingSpecRow.kind == kind,
                                        PendingSpecRow.name == name)
    if environment is not None:
        stmt = stmt.where(PendingSpecRow.environment == environment)
    with store.session() as session:
        return [_value(row) for row in session.scalars(stmt)]
