"""Spec catalog: one row per spec of the latest validated revision, read by the API.

Revision ID: 0002
Revises: 0001
Create Date: 2025-02-01

The reconciler replaces the whole table in one transaction each time a new
revision validates (``llmops.engine.store.catalog.record``); the API's
catalog, serving, prompt, training, governance and RBAC reads come from it,
never from git.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "spec_catalog",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(63), nullable=False),
        sa.Column("environment", sa.String(63), nullable=False),
        sa.Column("name", sa.String(253), nullable=False),
        sa.Column("revision", sa.String(64), nullable=False),
        sa.Column("file", sa.Text(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_spec_catalog"),
        sa.UniqueConstraint("kind", "environment", "name", name="uq_spec_catalog_key"),
    )
    op.create_index("ix_spec_catalog_kind_name", "spec_catalog", ["kind", "name"])


def downgrade() -> None:
    op.drop_index("ix_spec_catalog_kind_name", table_name="spec_catalog")
    op.drop_table("spec_catalog")
