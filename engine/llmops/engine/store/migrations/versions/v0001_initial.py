"""Initial schema: runs, inventory, status, GPU samples and the append-only audit log.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

The audit log refuses UPDATE and DELETE (and TRUNCATE on PostgreSQL) with
triggers, so rows can only be appended; ``llmops audit verify`` catches what
a superuser does with the triggers disabled.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION llmops_audit_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$
"""
PG_TRIGGERS = (
    "CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON audit_log "
    "FOR EACH ROW EXECUTE FUNCTION llmops_audit_append_only()",
    "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
    "FOR EACH STATEMENT EXECUTE FUNCTION llmops_audit_append_only()",
)
SQLITE_TRIGGERS = (
    "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE refused'); END",
    "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: DELETE refused'); END",
)


def upgrade() -> None:
    _reconcile_runs()
    _inventory()
    _spec_status()
    _object_status()
    _environment_status()
    _gpu_samples()
    _audit_log()


def _reconcile_runs() -> None:
    op.create_table(
        "reconcile_runs",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("environment", sa.String(63), nullable=False),
        sa.Column("revision", sa.String(64), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("result", sa.String(16), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_reconcile_runs"),
    )
    op.create_index("ix_reconcile_runs_environment_id", "reconcile_runs", ["environment", "id"])


def _inventory() -> None:
    op.create_table(
        "inventory",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("environment", sa.String(63), nullable=False),
        sa.Column("api_group", sa.String(253), nullable=False),
        sa.Column("kind", sa.String(63), nullable=False),
        sa.Column("namespace", sa.String(253), nullable=False),
        sa.Column("name", sa.String(253), nullable=False),
        sa.Column("api_version", sa.String(253), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("spec_kind", sa.String(63), nullable=False),
        sa.Column("spec_name", sa.String(253), nullable=False),
        sa.Column("revision", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_inventory"),
        sa.UniqueConstraint("environment", "api_group", "kind", "namespace", "name",
                            name="uq_inventory_object"),
    )


def _spec_status() -> None:
    op.create_table(
        "spec_status",
        sa.Column("kind", sa.String(63), nullable=False),
        sa.Column("environment", sa.String(63), nullable=False),
        sa.Column("name", sa.String(253), nullable=False),
        sa.Column("revision", sa.String(64), nullable=False),
        sa.Column("health", sa.String(16), nullable=False),
        sa.Column("drift", sa.Boolean(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("kind", "environment", "name", name="pk_spec_status"),
    )


def _object_status() -> None:
    op.create_table(
        "object_status",
        sa.Column("environment", sa.String(63), nullable=False),
        sa.Column("api_group", sa.String(253), nullable=False),
        sa.Column("kind", sa.String(63), nullable=False),
        sa.Column("namespace", sa.String(253), nullable=False),
        sa.Column("name", sa.String(253), nullable=False),
        sa.Column("health", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("drift", sa.Boolean(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("environment", "api_group", "kind", "namespace", "name",
                                name="pk_object_status"),
    )


def _environment_status() -> None:
    op.create_table(
        "environment_status",
        sa.Column("environment", sa.String(63), nullable=False),
        sa.Column("observed_revision", sa.String(64), nullable=False),
        sa.Column("last_applied_revision", sa.String(64), nullable=False),
        sa.Column("last_attempted_revision", sa.String(64), nullable=False),
        sa.Column("conditions", sa.JSON(), nullable=False),
        sa.Column("last_success_at", TS, nullable=True),
        sa.Column("source_state", sa.String(16), nullable=False),
        sa.Column("source_message", sa.Text(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("environment", name="pk_environment_status"),
    )


def _gpu_samples() -> None:
    op.create_table(
        "gpu_samples",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("environment", sa.String(63), nullable=False),
        sa.Column("team", sa.String(63), nullable=False),
        sa.Column("endpoint", sa.String(253), nullable=False),
        sa.Column("gpus", sa.Integer(), nullable=False),
        sa.Column("replicas", sa.Integer(), nullable=False),
        sa.Column("recorded_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_gpu_samples"),
    )
    op.create_index("ix_gpu_samples_environment_recorded_at", "gpu_samples",
                    ["environment", "recorded_at"])
    op.create_index("ix_gpu_samples_team_recorded_at", "gpu_samples", ["team", "recorded_at"])


def _audit_log() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("source_commit", sa.String(64), nullable=False),
        sa.Column("environment", sa.String(63), nullable=False),
        sa.Column("action", sa.String(63), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("result", sa.String(63), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
        sa.UniqueConstraint("hash", name="uq_audit_log_hash"),
    )
    for column in ("actor", "action", "result", "environment"):
        op.create_index(f"ix_audit_log_{column}_id", "audit_log", [column, "id"])
    op.create_index("ix_audit_log_at", "audit_log", ["at"])

    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        for statement in PG_TRIGGERS:
            op.execute(statement)
    else:
        for statement in SQLITE_TRIGGERS:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log")
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_update_delete ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS llmops_audit_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
    for table in ("audit_log", "gpu_samples", "environment_status", "object_status",
                  "spec_status", "inventory", "reconcile_runs"):
        op.drop_table(table)
