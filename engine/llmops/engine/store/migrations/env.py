"""Alembic environment of the state store, shipped inside the package.

Role: run the migration scripts in ``versions/`` against one connection.
Input: the Alembic ``Config``; ``Store.migrate`` puts an open connection, already
inside a transaction (and, on PostgreSQL, holding the migration advisory
lock), in ``config.attributes["connection"]``. Without one (a developer
running ``alembic`` by hand with ``-x url=...`` or ``sqlalchemy.url``, or
offline ``--sql`` mode) it opens a ``Store`` for that URL, or for the
settings' database URL. Output: the schema at the requested revision.
Caller: Alembic, invoked by ``llmops.engine.store.db.Store.migrate``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from llmops.engine.store import models

target_metadata = models.Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      compare_type=True, render_as_batch=connection.dialect.name == "sqlite")


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or \
        context.config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from llmops.engine import settings

    return settings.load().effective_database_url


def run_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        context.run_migrations()
        return
    from llmops.engine.store.db import Store

    with Store(_url()) as store, store.connection(write=True) as conn:
        _configure(conn)
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
