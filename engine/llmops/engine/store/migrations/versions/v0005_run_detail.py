"""Run detail: the commit's author and subject, and the plan's object diffs.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07

- ``reconcile_runs.author`` / ``reconcile_runs.subject``: who committed the
  run's revision and its subject line, as the reconciler read them from the
  source (the API process may not have the repo);
- ``reconcile_runs.plan_detail``: the run's semantic summary per spec and its
  per-object diffs (secret values masked, bounded in size:
  ``llmops.engine.run.record.MAX_DIFF_CHARS``), read by one run's page only;
- ``environment_status.observed_author`` / ``observed_subject``: the same for
  the revision each environment follows, which a pass that changes nothing
  records without a run.

Existing rows get empty values (an unknown author, no recorded diff).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("reconcile_runs") as batch:
        batch.add_column(sa.Column("author", sa.String(255), nullable=False,
                                   server_default=""))
        batch.add_column(sa.Column("subject", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("plan_detail", sa.JSON(), nullable=True))
    with op.batch_alter_table("environment_status") as batch:
        batch.add_column(sa.Column("observed_author", sa.String(255), nullable=False,
                                   server_default=""))
        batch.add_column(sa.Column("observed_subject", sa.Text(), nullable=False,
                                   server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("environment_status") as batch:
        batch.drop_column("observed_subject")
        batch.drop_column("observed_author")
    with op.batch_alter_table("reconcile_runs") as batch:
        batch.drop_column("plan_detail")
        batch.drop_column("subject")
        batch.drop_column("author")
