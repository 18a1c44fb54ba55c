"""The SQL schema of the state store, as typed SQLAlchemy 2 ORM models.

Role: one declarative class per table, plus the column types both backends
share (``UtcDateTime`` stores aware UTC timestamps on SQLite and PostgreSQL
alike, ``BigId`` is a 64-bit id that stays a rowid alias on SQLite). Input:
nothing; output: ``Base.metadata``. Callers: the Alembic environment
(``migrations/env.py``, as the autogenerate target), ``store.state`` and
``store.audit``, which turn rows into the frozen values they return. The
migration in ``migrations/versions`` creates exactly these tables; a test
compares the two.

Closed vocabularies (run results, source state) are stored as short strings
and converted to their ``StrEnum`` when rows become values, so the schema
does not depend on enum machinery that differs between backends.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

BigId = BigInteger().with_variant(Integer(), "sqlite")
"""A 64-bit id; on SQLite an INTEGER PRIMARY KEY (the rowid) so it autoincrements."""

AUDIT_TABLE = "audit_log"


class RunResult(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    BLOCKED = "blocked"
    NOOP = "noop"


class SourceState(StrEnum):
    AVAILABLE = "available"
    UNAVAILABLE = "unavailable"
    UNKNOWN = "unknown"


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every backend.

    Binds refuse naive datetimes (a naive time has no meaning in an audit
    log) and store UTC; results come back aware in UTC, also from SQLite,
    which keeps no zone.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} (give a UTC time)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UtcDateTime(), dict[str, Any]: JSON()}


class ReconcileRun(Base):
    """One reconcile of one environment at one revision."""

    __tablename__ = "reconcile_runs"
    __table_args__ = (Index("ix_reconcile_runs_environment_id", "environment", "id"),
                      Index("ix_reconcile_runs_result_id", "result", "id"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    environment: Mapped[str] = mapped_column(String(63))
    revision: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    result: Mapped[str] = mapped_column(String(16))
    counts: Mapped[dict[str, Any]]
    error: Mapped[str] = mapped_column(Text, default="")
    plan: Mapped[dict[str, Any]]
    author: Mapped[str] = mapped_column(String(255), server_default="")
    """``Name <email>`` of the revision's commit ("" when unknown)."""
    subject: Mapped[str] = mapped_column(Text, server_default="")
    plan_detail: Mapped[dict[str, Any] | None] = mapped_column(JSON, deferred=True)
    """Semantic summary and per-object diffs (``record.plan_detail``); loaded by one
    run's read only, never by a listing."""


class InventoryEntry(Base):
    """One object applied to an environment, as of the last successful apply."""

    __tablename__ = "inventory"
    __table_args__ = (
        UniqueConstraint("environment", "api_group", "kind", "namespace", "name",
                         name="uq_inventory_object"),
        Index("ix_inventory_environment_spec", "environment", "spec_kind", "spec_name"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    environment: Mapped[str] = mapped_column(String(63))
    api_group: Mapped[str] = mapped_column(String(253))
    kind: Mapped[str] = mapped_column(String(63))
    namespace: Mapped[str] = mapped_column(String(253))
    name: Mapped[str] = mapped_column(String(253))
    api_version: Mapped[str] = mapped_column(String(253))
    content_hash: Mapped[str] = mapped_column(String(64))
    spec_kind: Mapped[str] = mapped_column(String(63))
    spec_name: Mapped[str] = mapped_column(String(253))
    revision: Mapped[str] = mapped_column(String(64))


class SpecStatusRow(Base):
    """Status of one spec in one environment ("" for global kinds)."""

    __tablename__ = "spec_status"
    __table_args__ = (Index("ix_spec_status_kind_health", "kind", "health"),)

    kind: Mapped[str] = mapped_column(String(63), primary_key=True)
    environment: Mapped[str] = mapped_column(String(63), primary_key=True)
    name: Mapped[str] = mapped_column(String(253), primary_key=True)
    revision: Mapped[str] = mapped_column(String(64))
    health: Mapped[str] = mapped_column(String(16))
    drift: Mapped[bool] = mapped_column(Boolean)
    last_error: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime]


class ObjectStatusRow(Base):
    """Status of one Kubernetes object in one environment."""

    __tablename__ = "object_status"

    environment: Mapped[str] = mapped_column(String(63), primary_key=True)
    api_group: Mapped[str] = mapped_column(String(253), primary_key=True)
    kind: Mapped[str] = mapped_column(String(63), primary_key=True)
    namespace: Mapped[str] = mapped_column(String(253), primary_key=True)
    name: Mapped[str] = mapped_column(String(253), primary_key=True)
    health: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    drift: Mapped[bool] = mapped_column(Boolean)
    last_error: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime]


class FinishedJobRow(Base):
    """A Job the reconciler saw finished (Complete or Failed), so that once Kubernetes'
    TTL controller deletes it, it is not created, and run, again."""

    __tablename__ = "finished_jobs"

    environment: Mapped[str] = mapped_column(String(63), primary_key=True)
    api_group: Mapped[str] = mapped_column(String(253), primary_key=True)
    kind: Mapped[str] = mapped_column(String(63), primary_key=True)
    namespace: Mapped[str] = mapped_column(String(253), primary_key=True)
    name: Mapped[str] = mapped_column(String(253), primary_key=True)
    template_hash: Mapped[str] = mapped_column(String(64))
    """Content hash of the pod template it ran (``llmops.engine.plan.decide.run_hash``)."""
    health: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    finished_at: Mapped[datetime]


class EnvironmentStatusRow(Base):
    """Flux-style status of one environment: revisions, conditions, source state."""

    __tablename__ = "environment_status"

    environment: Mapped[str] = mapped_column(String(63), primary_key=True)
    observed_revision: Mapped[str] = mapped_column(String(64))
    last_applied_revision: Mapped[str] = mapped_column(String(64))
    last_attempted_revision: Mapped[str] = mapped_column(String(64))
    conditions: Mapped[dict[str, Any]]
    last_success_at: Mapped[datetime | None]
    source_state: Mapped[str] = mapped_column(String(16))
    source_message: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime]
    observed_author: Mapped[str] = mapped_column(String(255), server_default="")
    observed_subject: Mapped[str] = mapped_column(Text, server_default="")


class GpuSampleRow(Base):
    """GPUs one endpoint held at one moment; GPU hours are integrated from these."""

    __tablename__ = "gpu_samples"
    __table_args__ = (
        Index("ix_gpu_samples_environment_recorded_at", "environment", "recorded_at"),
        Index("ix_gpu_samples_team_recorded_at", "team", "recorded_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    environment: Mapped[str] = mapped_column(String(63))
    team: Mapped[str] = mapped_column(String(63))
    endpoint: Mapped[str] = mapped_column(String(253))
    gpus: Mapped[int] = mapped_column(Integer)
    replicas: Mapped[int] = mapped_column(Integer)
    recorded_at: Mapped[datetime]
    workload: Mapped[str] = mapped_column(String(16), server_default="serving")
    """``serving`` (an endpoint, ``endpoint`` its name) or ``training`` (a job's name)."""


class AuditRow(Base):
    """One append-only, hash-chained audit entry (ids are assigned gap-free)."""

    __tablename__ = AUDIT_TABLE
    __table_args__ = (
        Index("ix_audit_log_actor_id", "actor", "id"),
        Index("ix_audit_log_action_id", "action", "id"),
        Index("ix_audit_log_result_id", "result", "id"),
        Index("ix_audit_log_environment_id", "environment", "id"),
        Index("ix_audit_log_at", "at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(255))
    source_commit: Mapped[str] = mapped_column(String(64))
    environment: Mapped[str] = mapped_column(String(63))
    action: Mapped[str] = mapped_column(String(63))
    target: Mapped[str] = mapped_column(Text)
    result: Mapped[str] = mapped_column(String(63))
    reason: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]]
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    key_id: Mapped[str] = mapped_column(String(16), server_default="")
    """Fingerprint of the HMAC key of ``hash``; empty: an unkeyed SHA-256 link."""


class CatalogEntryRow(Base):
    """One spec of the latest validated revision (the API's catalog; replaced as a whole)."""

    __tablename__ = "spec_catalog"
    __table_args__ = (
        UniqueConstraint("kind", "environment", "name", name="uq_spec_catalog_key"),
        Index("ix_spec_catalog_kind_name", "kind", "name"),
        Index("ix_spec_catalog_kind_model", "kind", "model"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(63))
    environment: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(253))
    revision: Mapped[str] = mapped_column(String(64))
    file: Mapped[str] = mapped_column(Text)
    spec: Mapped[dict[str, Any]]
    updated_at: Mapped[datetime]
    model: Mapped[str] = mapped_column(String(253), server_default="")
    """``name@version`` of the model an endpoint serves (``modelRef``) or a training job
    starts from (``baseModelRef``); "" for other kinds. The endpoint list filters on it."""


class PendingSpecRow(Base):
    """A spec the API wrote, where its last write went and the spec as committed."""

    __tablename__ = "pending_specs"
    __table_args__ = (Index("ix_pending_specs_kind_name", "kind", "name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(63))
    environment: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(253))
    file: Mapped[str] = mapped_column(Text)
    branch: Mapped[str] = mapped_column(String(255))
    commit: Mapped[str] = mapped_column(String(64))
    direct: Mapped[bool] = mapped_column(Boolean)
    spec: Mapped[dict[str, Any]]
    updated_at: Mapped[datetime]


class LeaderEpochRow(Base):
    """The fencing token of one leader lease: how many times it was acquired.

    Each acquisition takes the next ``epoch`` (``Store.next_fence``); a leader's
    writes carry the epoch it got, and the store refuses them once a newer one
    exists (``Store.fenced``)."""

    __tablename__ = "leader_epoch"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    epoch: Mapped[int] = mapped_column(BigInteger)
    acquired_at: Mapped[datetime]
