"""Reconcile state: runs, inventory, finished Jobs, spec/object/environment status, GPU samples.

Role: the record stage's reads and writes of everything but the audit log,
as plain functions over frozen values (the ORM rows never leave this
module). Input: a ``Store`` (each call is its own transaction) or a
``Session`` from ``Store.session(write=True)`` (calls share the caller's
transaction, so a run, its inventory and its status can commit together).
Output: ``Run``, ``InventoryItem``, ``FinishedJob``, ``SpecStatus``, ``ObjectStatus``,
``EnvironmentStatus`` and ``GpuSample`` values. Callers: the reconciler's
record stage, the API's status and cost routes, the daemon's start-up.

Inventory is per environment and replaced as a whole in one transaction:
a failure midway leaves the previous inventory, never a partial one.
Status rows are upserts keyed by their identity.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, undefer

from llmops.engine.store import db
from llmops.engine.store.models import (
    EnvironmentStatusRow,
    FinishedJobRow,
    GpuSampleRow,
    InventoryEntry,
    ObjectStatusRow,
    ReconcileRun,
    RunResult,
    SourceState,
    SpecStatusRow,
)
from llmops.engine.types import ResourceKey, SpecKey

Db = db.Store | Session
COUNT_NAMES = ("created", "configured", "deleted", "unchanged", "failed")


def _now() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------- runs


@dataclass(frozen=True, slots=True)
class RunCounts:
    created: int = 0
    configured: int = 0
    deleted: int = 0
    unchanged: int = 0
    failed: int = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in COUNT_NAMES}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunCounts:
        return cls(**{name: int(data.get(name, 0)) for name in COUNT_NAMES})


@dataclass(frozen=True, slots=True)
class Run:
    """One reconcile of one environment at one revision.

    ``author`` and ``subject`` are the revision's commit ("" when unknown);
    ``plan_detail`` (semantic summary, per-object diffs) is read by ``get_run``
    only, ``None`` in listings and for runs that recorded none."""

    id: int
    environment: str
    revision: str
    started_at: datetime
    finished_at: datetime | None
    result: RunResult
    counts: RunCounts
    error: str
    plan: dict[str, Any]
    author: str = ""
    subject: str = ""
    plan_detail: dict[str, Any] | None = None


def _run(row: ReconcileRun, *, detail: bool = False) -> Run:
    return Run(id=row.id, environment=row.environment, revision=row.revision,
               started_at=row.started_at, finished_at=row.finished_at,
               result=RunResult(row.result), counts=RunCounts.from_dict(row.counts),
               error=row.error, plan=dict(row.plan), author=row.author or "",
               subject=row.subject or "",
               plan_detail=dict(row.plan_detail) if detail and row.plan_detail else None)


def start_run(database: Db, environment: str, revision: str, *,
              plan: Mapping[str, Any] | None = None, started_at: datetime | None = None,
              author: str = "", subject: str = "",
              plan_detail: Mapping[str, Any] | None = None) -> Run:
    """Record a run as ``running``; finish it with ``finish_run``."""
    row = ReconcileRun(environment=environment, revision=revision,
                       started_at=started_at or _now(), finished_at=None,
                       result=RunResult.RUNNING.value, counts=RunCounts().as_dict(), error="",
                       plan=dict(plan or {}), author=author[:255], subject=subject,
                       plan_detail=dict(plan_detail) if plan_detail is not None else None)
    with db.transaction(database, write=True) as session:
        session.add(row)
        session.flush()
        return _run(row)


def finish_run(database: Db, run_id: int, result: RunResult, *,
               counts: RunCounts | None = None, error: str = "",
               plan: Mapping[str, Any] | None = None,
               finished_at: datetime | None = None) -> Run:
    """Close a run with its result, counts, error text and (optionally) its plan."""
    if result is RunResult.RUNNING:
        raise ValueError("a finished run needs a final result")
    with db.transaction(database, write=True) as session:
        row = session.get(ReconcileRun, run_id)
        if row is None:
            raise KeyError(f"reconcile run {run_id} does not exist")
        row.result = result.value
        row.finished_at = finished_at or _now()
        row.counts = (counts or RunCounts()).as_dict()
        row.error = error
        if plan is not None:
            row.plan = dict(plan)
        session.flush()
        return _run(row)


def get_run(database: Db, run_id: int) -> Run | None:
    """One run with its ``plan_detail``."""
    with db.transaction(database) as session:
        row = session.get(ReconcileRun, run_id, options=[undefer(ReconcileRun.plan_detail)])
        return _run(row, detail=True) if row is not None else None


def list_runs(database: Db, *, environment: str | None = None,
              result: RunResult | None = None, before_id: int | None = None,
              limit: int = 50) -> list[Run]:
    """Runs newest first; ``before_id`` continues a listing below that id."""
    stmt = select(ReconcileRun).order_by(ReconcileRun.id.desc()).limit(max(1, min(limit, 1000)))
    if environment is not None:
        stmt = stmt.where(ReconcileRun.environment == environment)
    if result is not None:
        stmt = stmt.where(ReconcileRun.result == result.value)
    if before_id is not None:
        stmt = stmt.where(ReconcileRun.id < before_id)
    with db.transaction(database) as session:
        return [_run(row) for row in session.scalars(stmt)]


# --------------------------------------------------------------------------- inventory


@dataclass(frozen=True, slots=True)
class InventoryItem:
    """One applied object, the spec that owns it and the revision that applied it."""

    key: ResourceKey
    api_version: str
    content_hash: str
    spec_kind: str
    spec_name: str
    revision: str


def read_inventory(database: Db, environment: str) -> list[InventoryItem]:
    """The environment's applied objects, sorted by ``ResourceKey``."""
    e = InventoryEntry
    stmt = select(e.api_group, e.kind, e.namespace, e.name, e.api_version, e.content_hash,
                  e.spec_kind, e.spec_name, e.revision).where(e.environment == environment)
    with db.transaction(database) as session:  # plain rows: no ORM objects to build
        items = [InventoryItem(ResourceKey(*r[:4]), *r[4:]) for r in session.execute(stmt)]
    return sorted(items, key=lambda item: item.key)


def replace_inventory(database: Db, environment: str, items: Iterable[InventoryItem], *,
                      current: Mapping[ResourceKey, InventoryItem] | None = None) -> int:
    """Make ``items`` the environment's whole inventory, atomically; returns their number.

    With ``current``, the inventory as the caller read it in this pass (the leader, the
    only writer), only the difference is written: rows removed, added or changed, and
    a new revision on every kept row in one statement. Without it every row is deleted
    and written again. A duplicate key raises ``ValueError`` before anything is
    written; any error rolls the whole replacement back (with a ``Session``, rolling
    back is the caller's transaction's job).
    """
    new: dict[ResourceKey, InventoryItem] = {}
    for item in items:
        if item.key in new:
            raise ValueError(f"inventory of {environment}: {item.key} listed twice")
        new[item.key] = item
    with db.transaction(database, write=True) as session:
        if current is None:
            session.execute(delete(InventoryEntry).where(
                InventoryEntry.environment == environment))
            _insert_inventory(session, environment, list(new.values()))
        else:
            _update_inventory(session, environment, current, new)
    return len(new)


def _inventory_row(environment: str, item: InventoryItem) -> dict[str, str]:
    return {"environment": environment, "api_group": item.key.group, "kind": item.key.kind,
            "namespace": item.key.namespace, "name": item.key.name,
            "api_version": item.api_version, "content_hash": item.content_hash,
            "spec_kind": item.spec_kind, "spec_name": item.spec_name,
            "revision": item.revision}


def _insert_inventory(session: Session, environment: str, items: list[InventoryItem]) -> None:
    for at in range(0, len(items), 1000):
        session.execute(insert(InventoryEntry), [_inventory_row(environment, item)
                                                 for item in items[at:at + 1000]])


def _update_inventory(session: Session, environment: str,
                      current: Mapping[ResourceKey, InventoryItem],
                      new: Mapping[ResourceKey, InventoryItem]) -> None:
    """Write the difference between ``current`` (the rows there) and ``new``."""
    e = InventoryEntry
    table = cast(Table, e.__table__)  # Core statements: a WHERE by key, not by id
    same_key = and_(e.environment == environment, e.api_group == bindparam("k_group"),
                    e.kind == bindparam("k_kind"), e.namespace == bindparam("k_namespace"),
                    e.name == bindparam("k_name"))

    def key_of(key: ResourceKey) -> dict[str, str]:
        return {"k_group": key.group, "k_kind": key.kind, "k_namespace": key.namespace,
                "k_name": key.name}

    gone = [key_of(key) for key in current if key not in new]
    if gone:
        session.execute(delete(table).where(same_key), gone)
    kept = [(item, current[key]) for key, item in new.items() if key in current]
    moved = Counter(item.revision for item, old in kept if item.revision != old.revision)
    stamp = moved.most_common(1)[0][0] if moved else ""
    if stamp:  # the new revision on every kept row at once (the other rows follow)
        session.execute(update(table).where(e.environment == environment,
                                            e.revision != stamp).values(revision=stamp))
    changed = [key_of(item.key) | {"v_api_version": item.api_version,
                                   "v_content_hash": item.content_hash,
                                   "v_spec_kind": item.spec_kind,
                                   "v_spec_name": item.spec_name, "v_revision": item.revision}
               for item, old in kept
               if (item.api_version, item.content_hash, item.spec_kind, item.spec_name,
                   item.revision) != (old.api_version, old.content_hash, old.spec_kind,
                                      old.spec_name, stamp or old.revision)]
    if changed:
        session.execute(update(table).where(same_key).values(
            api_version=bindparam("v_api_version"), content_hash=bindparam("v_content_hash"),
            spec_kind=bindparam("v_spec_kind"), spec_name=bindparam("v_spec_name"),
            revision=bindparam("v_revision")), changed)
    _insert_inventory(session, environment,
                      [item for key, item in new.items() if key not in current])


# --------------------------------------------------------------------------- finished Jobs


@dataclass(frozen=True, slots=True)
class FinishedJob:
    """A Job seen finished: the pod template hash it ran, and how it ended."""

    key: ResourceKey
    template_hash: str
    health: str
    """``Healthy`` (Complete) or ``Degraded`` (Failed)."""
    reason: str
    """The condition that said so, e.g. ``Complete`` or ``Failed (BackoffLimitExceeded)``."""
    finished_at: datetime | None = None


def read_finished_jobs(database: Db, environment: str) -> dict[ResourceKey, FinishedJob]:
    """The environment's Jobs seen finished, by key."""
    stmt = select(FinishedJobRow).where(FinishedJobRow.environment == environment)
    with db.transaction(database) as session:
        out = {}
        for r in session.scalars(stmt):
            key = ResourceKey(r.api_group, r.kind, r.namespace, r.name)
            out[key] = FinishedJob(key, r.template_hash, r.health, r.reason, r.finished_at)
    return out


def put_finished_jobs(database: Db, environment: str, *jobs: FinishedJob) -> None:
    """Record each Job as finished (insert or update), all in one transaction."""
    rows = [{"environment": environment, "api_group": j.key.group, "kind": j.key.kind,
             "namespace": j.key.namespace, "name": j.key.name,
             "template_hash": j.template_hash, "health": j.health, "reason": j.reason,
             "finished_at": j.finished_at or _now()} for j in jobs]
    if not rows:
        return
    with db.transaction(database, write=True) as session:
        _upsert(session, FinishedJobRow, rows,
                ("environment", "api_group", "kind", "namespace", "name"))


def forget_finished_jobs(database: Db, environment: str, keys: Iterable[ResourceKey]) -> None:
    """Drop the records of ``keys`` (Jobs that left the inventory), in one transaction."""
    wanted = sorted(set(keys))
    if not wanted:
        return
    f = FinishedJobRow
    with db.transaction(database, write=True) as session:
        for key in wanted:
            session.execute(delete(f).where(
                f.environment == environment, f.api_group == key.group, f.kind == key.kind,
                f.namespace == key.namespace, f.name == key.name))


# --------------------------------------------------------------------------- status


@dataclass(frozen=True, slots=True)
class SpecStatus:
    key: SpecKey
    revision: str
    health: str
    drift: bool = False
    last_error: str = ""
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ObjectStatus:
    environment: str
    key: ResourceKey
    health: str
    message: str = ""
    drift: bool = False
    last_error: str = ""
    updated_at: datetime | None = None


class ConditionType(StrEnum):
    READY = "Ready"
    RECONCILING = "Reconciling"
    STALLED = "Stalled"


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


@dataclass(frozen=True, slots=True)
class Condition:
    type: ConditionType
    status: ConditionStatus
    reason: str
    message: str = ""
    last_transition_at: datetime | None = None

    def as_dict(self) -> dict[str, str | None]:
        at = self.last_transition_at
        return {"type": self.type.value, "status": self.status.value, "reason": self.reason,
                "message": self.message, "lastTransitionTime": at.isoformat() if at else None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Condition:
        at = data.get("lastTransitionTime")
        return cls(ConditionType(data["type"]), ConditionStatus(data["status"]),
                   str(data.get("reason", "")), str(data.get("message", "")),
                   datetime.fromisoformat(at) if at else None)


@dataclass(frozen=True, slots=True)
class EnvironmentStatus:
    environment: str
    observed_revision: str = ""
    last_applied_revision: str = ""
    last_attempted_revision: str = ""
    conditions: tuple[Condition, ...] = ()
    last_success_at: datetime | None = None
    source_state: SourceState = SourceState.UNKNOWN
    source_message: str = ""
    updated_at: datetime | None = None
    observed_author: str = ""
    """``Name <email>`` of the observed revision's commit ("" when unknown)."""
    observed_subject: str = ""

    def condition(self, kind: ConditionType) -> Condition | None:
        return next((c for c in self.conditions if c.type is kind), None)


def _upsert(session: Session, model: type[Any], rows: list[dict[str, Any]],
            keys: tuple[str, ...]) -> None:
    """INSERT each row, or UPDATE the row with the same ``keys`` (one statement, race-free,
    executed once for all rows)."""
    dialect = session.get_bind().dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    stmt = module.insert(model)
    update = {name: stmt.excluded[name] for name in rows[0] if name not in keys}
    session.execute(stmt.on_conflict_do_update(index_elements=list(keys), set_=update), rows)


def put_spec_status(database: Db, *statuses: SpecStatus) -> None:
    """Write each spec's status (insert or update), all in one transaction."""
    rows = [{"kind": s.key.kind, "environment": s.key.environment, "name": s.key.name,
             "revision": s.revision, "health": s.health, "drift": s.drift,
             "last_error": s.last_error, "updated_at": s.updated_at or _now()}
            for s in statuses]
    if not rows:
        return
    with db.transaction(database, write=True) as session:
        _upsert(session, SpecStatusRow, rows, ("kind", "environment", "name"))


def list_spec_status(database: Db, *, environment: str | None = None,
                     kind: str | None = None) -> list[SpecStatus]:
    stmt = select(SpecStatusRow).order_by(SpecStatusRow.kind, SpecStatusRow.environment,
                                          SpecStatusRow.name)
    if environment is not None:
        stmt = stmt.where(SpecStatusRow.environment == environment)
    if kind is not None:
        stmt = stmt.where(SpecStatusRow.kind == kind)
    with db.transaction(database) as session:
        return [spec_status_of(r) for r in session.scalars(stmt)]


def spec_status_of(row: SpecStatusRow) -> SpecStatus:
    """A status row as its value."""
    return SpecStatus(SpecKey(row.kind, row.environment, row.name), row.revision, row.health,
                      row.drift, row.last_error, row.updated_at)


_SPEC_STATUS = SpecStatusRow.__table__.c
_SPEC_STATUS_BY_KEY = select(_SPEC_STATUS.revision, _SPEC_STATUS.health, _SPEC_STATUS.drift,
                             _SPEC_STATUS.last_error, _SPEC_STATUS.updated_at).where(
    _SPEC_STATUS.kind == bindparam("kind"), _SPEC_STATUS.environment == bindparam("env"),
    _SPEC_STATUS.name == bindparam("name"))


def get_spec_status(database: Db, key: SpecKey) -> SpecStatus | None:
    """One spec's status (by its primary key), or ``None`` when never assessed (a Core
    statement built once: the API reads it for every endpoint detail)."""
    with db.transaction(database) as session:
        row = session.connection().execute(_SPEC_STATUS_BY_KEY, {
            "kind": key.kind, "env": key.environment, "name": key.name}).first()
        return SpecStatus(key, *row) if row is not None else None


def _object_status_of(row: ObjectStatusRow) -> ObjectStatus:
    return ObjectStatus(row.environment, ResourceKey(row.api_group, row.kind, row.namespace,
                                                     row.name),
                        row.health, row.message, row.drift, row.last_error, row.updated_at)


_INVENTORY, _OBJECT_STATUS = InventoryEntry.__table__.c, ObjectStatusRow.__table__.c
_OWNED = (select(_INVENTORY.api_group, _INVENTORY.kind, _INVENTORY.namespace,
                 _INVENTORY.name, _INVENTORY.api_version, _INVENTORY.content_hash,
                 _INVENTORY.revision, _OBJECT_STATUS.health, _OBJECT_STATUS.message,
                 _OBJECT_STATUS.drift, _OBJECT_STATUS.last_error, _OBJECT_STATUS.updated_at)
          .select_from(InventoryEntry.__table__.outerjoin(ObjectStatusRow.__table__, and_(
              _OBJECT_STATUS.environment == _INVENTORY.environment,
              _OBJECT_STATUS.api_group == _INVENTORY.api_group,
              _OBJECT_STATUS.kind == _INVENTORY.kind,
              _OBJECT_STATUS.namespace == _INVENTORY.namespace,
              _OBJECT_STATUS.name == _INVENTORY.name)))
          .where(_INVENTORY.environment == bindparam("env"),
                 _INVENTORY.spec_kind == bindparam("spec_kind"),
                 _INVENTORY.spec_name == bindparam("spec_name")))


def owned_objects(database: Db, environment: str, spec_kind: str,
                  spec_name: str) -> list[tuple[InventoryItem, ObjectStatus | None]]:
    """The inventory entries of one spec in ``environment``, each with its object's status
    (``None`` when none was recorded), sorted by ``ResourceKey``: one indexed query
    (``inventory (environment, spec_kind, spec_name)``), never the whole inventory."""
    out: list[tuple[InventoryItem, ObjectStatus | None]] = []
    with db.transaction(database) as session:  # plain rows: no ORM objects to build
        for row in session.connection().execute(_OWNED, {
                "env": environment, "spec_kind": spec_kind, "spec_name": spec_name}).all():
            key = ResourceKey(*row[:4])
            status = (None if row.health is None else ObjectStatus(
                environment, key, row.health, row.message, row.drift, row.last_error,
                row.updated_at))
            out.append((InventoryItem(key, row.api_version, row.content_hash, spec_kind,
                                      spec_name, row.revision), status))
    return sorted(out, key=lambda pair: pair[0].key)


def put_object_status(database: Db, *statuses: ObjectStatus) -> None:
    """Write each object's status (insert or update), all in one transaction."""
    rows = [{"environment": s.environment, "api_group": s.key.group, "kind": s.key.kind,
             "namespace": s.key.namespace, "name": s.key.name, "health": s.health,
             "message": s.message, "drift": s.drift, "last_error": s.last_error,
             "updated_at": s.updated_at or _now()} for s in statuses]
    if not rows:
        return
    with db.transaction(database, write=True) as session:
        _upsert(session, ObjectStatusRow, rows,
                ("environment", "api_group", "kind", "namespace", "name"))


def list_object_status(database: Db, environment: str) -> list[ObjectStatus]:
    stmt = select(ObjectStatusRow).where(ObjectStatusRow.environment == environment)
    with db.transaction(database) as session:
        out = [_object_status_of(r) for r in session.scalars(stmt)]
    return sorted(out, key=lambda status: status.key)


def put_environment_status(database: Db, status: EnvironmentStatus) -> None:
    with db.transaction(database, write=True) as session:
        _upsert(session, EnvironmentStatusRow, [{
            "environment": status.environment,
            "observed_revision": status.observed_revision,
            "last_applied_revision": status.last_applied_revision,
            "last_attempted_revision": status.last_attempted_revision,
            "conditions": {"items": [c.as_dict() for c in status.conditions]},
            "last_success_at": status.last_success_at,
            "source_state": status.source_state.value,
            "source_message": status.source_message,
            "observed_author": status.observed_author[:255],
            "observed_subject": status.observed_subject,
            "updated_at": status.updated_at or _now()}], ("environment",))


def _environment_status(row: EnvironmentStatusRow) -> EnvironmentStatus:
    return EnvironmentStatus(
        environment=row.environment, observed_revision=row.observed_revision,
        last_applied_revision=row.last_applied_revision,
        last_attempted_revision=row.last_attempted_revision,
        conditions=tuple(Condition.from_dict(c) for c in row.conditions.get("items", [])),
        last_success_at=row.last_success_at, source_state=SourceState(row.source_state),
        source_message=row.source_message, updated_at=row.updated_at,
        observed_author=row.observed_author or "", observed_subject=row.observed_subject or "")


def get_environment_status(database: Db, environment: str) -> EnvironmentStatus | None:
    with db.transaction(database) as session:
        row = session.get(EnvironmentStatusRow, environment)
        return _environment_status(row) if row is not None else None


def list_environment_status(database: Db) -> list[EnvironmentStatus]:
    stmt = select(EnvironmentStatusRow).order_by(EnvironmentStatusRow.environment)
    with db.transaction(database) as session:
        return [_environment_status(row) for row in session.scalars(stmt)]


# --------------------------------------------------------------------------- GPU samples


@dataclass(frozen=True, slots=True)
class GpuSample:
    """GPUs an endpoint held (``gpus`` per replica x ``replicas``) at ``recorded_at``.

    ``workload`` is ``serving`` (``endpoint`` names an endpoint) or
    ``training`` (``endpoint`` names a running training job, ``replicas`` 1).
    """

    environment: str
    team: str
    endpoint: str
    gpus: int
    replicas: int
    recorded_at: datetime = field(default_factory=_now)
    workload: str = "serving"


def add_gpu_samples(database: Db, samples: Iterable[GpuSample]) -> int:
    rows = [{"environment": s.environment, "team": s.team, "endpoint": s.endpoint,
             "gpus": s.gpus, "replicas": s.replicas, "recorded_at": s.recorded_at,
             "workload": s.workload}
            for s in samples]
    if rows:
        with db.transaction(database, write=True) as session:
            session.execute(insert(GpuSampleRow), rows)
    return len(rows)


def gpu_samples(database: Db, *, environment: str | None = None, team: str | None = None,
                since: datetime | None = None, until: datetime | None = None) -> list[GpuSample]:
    """Samples in time order; ``since`` inclusive, ``until`` exclusive."""
    stmt = select(GpuSampleRow).order_by(GpuSampleRow.recorded_at, GpuSampleRow.id)
    if environment is not None:
        stmt = stmt.where(GpuSampleRow.environment == environment)
    if team is not None:
        stmt = stmt.where(GpuSampleRow.team == team)
    if since is not None:
        stmt = stmt.where(GpuSampleRow.recorded_at >= since)
    if until is not None:
        stmt = stmt.where(GpuSampleRow.recorded_at < until)
    with db.transaction(database) as session:
        return [GpuSample(r.environment, r.team, r.endpoint, r.gpus, r.replicas, r.recorded_at,
                          r.workload) for r in session.scalars(stmt)]
