"""Fencing tokens for the leader lease.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07

- ``leader_epoch``: one row per lease name, its ``epoch`` incremented by every
  acquisition (``Store.next_fence``). The daemon's writes for a pass carry the
  epoch its acquisition took; the store refuses them once a newer one exists,
  so a leader that stalled past its lease cannot record after its successor.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "leader_epoch",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_leader_epoch"),
    )


def downgrade() -> None:
    op.drop_table("leader_epoch")
