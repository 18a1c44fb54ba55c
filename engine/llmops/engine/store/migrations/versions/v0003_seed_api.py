"""Seed API: specs written but not yet reconciled, and training GPU samples.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07

- ``pending_specs``: one row per spec the API wrote (created, or edited on a
  review branch) that the catalog may not hold yet: where its last write
  went (branch, commit, file) and the spec as committed. Later writes of the
  same spec stack on that branch while it is open, and lookups by id find a
  spec created a moment ago (``llmops.engine.store.pending``).
- ``gpu_samples.workload``: ``serving`` (an endpoint's replicas) or
  ``training`` (a running training job's GPUs); existing rows are serving.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _pending_specs() -> None:
    op.create_table(
        "pending_specs",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(63), nullable=False),
        sa.Column("environment", sa.String(63), nullable=False),
        sa.Column("name", sa.String(253), nullable=False),
        sa.Column("file", sa.Text(), nullable=False),
        sa.Column("branch", sa.String(255), nullable=False),
        sa.Column("commit", sa.String(64), nullable=False),
        sa.Column("direct", sa.Boolean(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_pending_specs"),
    )
    op.create_index("ix_pending_specs_kind_name", "pending_specs", ["kind", "name"])


def upgrade() -> None:
    _pending_specs()
    with op.batch_alter_table("gpu_samples") as batch:
        batch.add_column(sa.Column("workload", sa.String(16), nullable=False,
                                   server_default="serving"))


def downgrade() -> None:
    with op.batch_alter_table("gpu_samples") as batch:
        batch.drop_column("workload")
    op.drop_index("ix_pending_specs_kind_name", table_name="pending_specs")
    op.drop_table("pending_specs")
