"""Keyed audit chain: ``audit_log.key_id``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07

- ``audit_log.key_id``: the fingerprint (16 hex digits) of the HMAC key an
  entry's ``hash`` was computed with (``llmops.engine.store.seal``); the key
  itself is never stored. Existing rows get ``""``: unkeyed SHA-256 links,
  which ``llmops audit verify`` accepts only before the first keyed entry.

A plain ``ADD COLUMN`` (no table copy), so the append-only triggers stay.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("audit_log", sa.Column("key_id", sa.String(16), nullable=False,
                                         server_default=""))


def downgrade() -> None:
    op.drop_column("audit_log", "key_id")
