"""Finished Jobs: what the reconciler saw finish, so the TTL controller's delete is not a re-run.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07

- ``finished_jobs``: one row per Job (environment + object identity) the
  reconciler saw Complete or Failed: the hash of the pod template it ran, its
  health (Healthy or Degraded), the condition that said so and when it was seen.
  A desired Job missing from the cluster with a row of the same hash is not
  created again (``llmops.engine.run.finished``).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "finished_jobs",
        sa.Column("environment", sa.String(63), nullable=False),
        sa.Column("api_group", sa.String(253), nullable=False),
        sa.Column("kind", sa.String(63), nullable=False),
        sa.Column("namespace", sa.String(253), nullable=False),
        sa.Column("name", sa.String(253), nullable=False),
        sa.Column("template_hash", sa.String(64), nullable=False),
        sa.Column("health", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("finished_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("environment", "api_group", "kind", "namespace", "name",
                                name="pk_finished_jobs"),
    )


def downgrade() -> None:
    op.drop_table("finished_jobs")
