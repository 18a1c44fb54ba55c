"""The state store: SQL persistence of the record stage, and the audit log.

Modules: ``db`` (``Store``: engine, transactions, migrations, readiness,
leader fencing tokens; ``StoreUnavailable``, ``FencedOut``), ``models`` (the
ORM schema), ``state`` (runs, inventory, status, GPU samples as frozen
values), ``audit`` (the append-only hash-chained log and its verifier);
``migrations/`` holds the Alembic environment and scripts, shipped in the
wheel. Callers import the modules, e.g. ``from llmops.engine.store import
audit, state``.
"""

from __future__ import annotations

from llmops.engine.store.db import Store, StoreError, StoreUnavailable

__all__ = ["Store", "StoreError", "StoreUnavailable"]
