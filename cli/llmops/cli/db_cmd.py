"""`llmops db`: the state store's schema, upgraded or shown, as Alembic would.

Role: the operator's way to run the migrations ahead of a deployment or to
see where a database stands, without an ``alembic.ini`` (the project root's
``alembic.ini`` does the same for ``alembic upgrade head`` / ``alembic
current``). Input: the database URL from settings (``LLMOPS_DATABASE_URL``, a
config file, or the embedded SQLite file under ``LLMOPS_HOME``), or
``--url``. Output: one line, ``<revision> (head)`` or ``<revision> (head is
<head>)`` or ``none (not migrated; head is <head>)``. Caller: ``llmops.cli``
registers the ``db`` group; errors are mapped by ``llmops.cli.main``.

This module does not import ``llmops.cli`` (that module imports this one).
"""

from __future__ import annotations

import click
from alembic.script import ScriptDirectory

from llmops.engine import settings
from llmops.engine.service import compose
from llmops.engine.store import db

URL_OPTION = click.option("--url", default=None, metavar="URL",
                          help="Database URL (default: the settings' database).")


def _head() -> str:
    head = ScriptDirectory.from_config(db.alembic_config()).get_current_head()
    return head or "none"


def _store(url: str | None) -> db.Store:
    cfg = settings.load()
    return compose.store_at(url or cfg.effective_database_url, cfg)


def describe(revision: str | None) -> str:
    head = _head()
    if revision is None:
        return f"none (not migrated; head is {head})"
    return f"{revision} (head)" if revision == head else f"{revision} (head is {head})"


@click.group("db")
def db_group() -> None:
    """Upgrade or show the state store's schema (Alembic migrations)."""


@db_group.command("upgrade")
@URL_OPTION
def upgrade_cmd(url: str | None) -> None:
    """Migrate the database to the newest schema (a no-op when it is there)."""
    with _store(url) as store:
        click.echo(f"{store.display_url}: {describe(store.migrate())}")


@db_group.command("current")
@URL_OPTION
def current_cmd(url: str | None) -> None:
    """Print the schema revision the database is at."""
    cfg = settings.load()
    with compose.store_at(url or compose.existing_database_url(cfg), cfg) as store:
        click.echo(f"{store.display_url}: {describe(store.schema_revision())}")
