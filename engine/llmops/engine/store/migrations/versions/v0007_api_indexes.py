"""Indexes for the API's filtered lists, and the model an endpoint serves as a column.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

- ``spec_catalog.model``: ``name@version`` of the model a serving endpoint
  serves (``modelRef``) or a training job starts from (``baseModelRef``), ""
  for other kinds, so ``GET /serving/endpoints?modelId=`` filters in SQL;
  existing rows are filled from their spec; index ``(kind, model)``;
- ``spec_status (kind, health)``: the ``status`` filter;
- ``inventory (environment, spec_kind, spec_name)``: one endpoint's objects
  (its detail and health) without reading the environment's whole inventory;
- ``reconcile_runs (result, id)``: the runs list's ``result`` filter, newest first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REFS = {"ServingEndpoint": "modelRef", "TrainingJob": "baseModelRef"}


def model_of(kind: str, spec: Any) -> str:
    """``name@version`` of the model ``spec`` refers to, or ""."""
    body = spec.get("spec") if isinstance(spec, dict) else None
    ref = body.get(REFS.get(kind, "")) if isinstance(body, dict) else None
    if not isinstance(ref, dict) or not ref.get("name"):
        return ""
    return f"{ref.get('name')}@{ref.get('version', '')}"[:253]


def upgrade() -> None:
    with op.batch_alter_table("spec_catalog") as batch:
        batch.add_column(sa.Column("model", sa.String(253), nullable=False, server_default=""))
    catalog = sa.table("spec_catalog", sa.column("id", sa.String), sa.column("kind", sa.String),
                       sa.column("spec", sa.JSON), sa.column("model", sa.String))
    conn = op.get_bind()
    rows = conn.execute(sa.select(catalog.c.id, catalog.c.kind, catalog.c.spec)
                        .where(catalog.c.kind.in_(list(REFS)))).all()
    updates = [{"row_id": row.id, "model": model_of(row.kind, row.spec)} for row in rows]
    if updates:
        conn.execute(catalog.update().where(catalog.c.id == sa.bindparam("row_id"))
                     .values(model=sa.bindparam("model")), updates)
    op.create_index("ix_spec_catalog_kind_model", "spec_catalog", ["kind", "model"])
    op.create_index("ix_spec_status_kind_health", "spec_status", ["kind", "health"])
    op.create_index("ix_inventory_environment_spec", "inventory",
                    ["environment", "spec_kind", "spec_name"])
    op.create_index("ix_reconcile_runs_result_id", "reconcile_runs", ["result", "id"])


def downgrade() -> None:
    op.drop_index("ix_reconcile_runs_result_id", "reconcile_runs")
    op.drop_index("ix_inventory_environment_spec", "inventory")
    op.drop_index("ix_spec_status_kind_health", "spec_status")
    op.drop_index("ix_spec_catalog_kind_model", "spec_catalog")
    with op.batch_alter_table("spec_catalog") as batch:
        batch.drop_column("model")
