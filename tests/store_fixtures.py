"""Fixtures for tests of the state store: one fresh database per test, on both backends.

``store_url`` is parametrized over ``sqlite`` (a file under ``tmp_path``) and
``postgresql`` (a database ``llmops_t_<hex>`` created for the test on the
local server and dropped after it with ``WITH (FORCE)``); ``store`` is a
migrated ``Store`` on that URL (on SQLite, a copy of a database migrated once
per session). PostgreSQL is required, never skipped: when
it is unreachable the fixture fails the test. The server's admin URL can be
moved with ``LLMOPS_TEST_PG_URL`` (default
``postgresql://postgres@127.0.0.1:5432/test``). The ``postgresql`` parameter
is marked ``slow``: the fast tier (``-m "not slow"``) runs these tests on
SQLite only.

Use from a test module with ``pytest_plugins = ["store_fixtures"]`` (or
register it once in ``conftest.py``); import nothing from it directly, or
pytest cannot rewrite its asserts.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import make_url

from llmops.engine.store import db

PG_ADMIN_URL = os.environ.get("LLMOPS_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = ("sqlite", pytest.param("postgresql", marks=pytest.mark.slow))


def _admin() -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as err:
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is unreachable (the store tests need it; "
                    f"start it with .ci/services): {err}", pytrace=False)


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for the duration of the block; yields its URL."""
    name = f"llmops_t_{secrets.token_hex(6)}"
    with _admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(PG_ADMIN_URL).set(drivername="postgresql+psycopg", database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with _admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sqlite_url(directory: Path) -> str:
    return f"sqlite:///{directory / 'llmops.db'}"


@pytest.fixture
def make_postgres_database() -> Callable[[], AbstractContextManager[str]]:
    """``postgres_database`` itself, for tests that manage a database's lifetime."""
    return postgres_database


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """URL of a fresh, unmigrated PostgreSQL database."""
    with postgres_database() as url:
        yield url


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The name of the backend under test: ``sqlite`` or ``postgresql``."""
    return str(request.param)


@pytest.fixture
def store_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """URL of a fresh, unmigrated database on each backend."""
    if backend == "sqlite":
        yield sqlite_url(tmp_path)
    else:
        with postgres_database() as url:
            yield url


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once per session, closed (its WAL checkpointed)."""
    path = tmp_path_factory.mktemp("migrated") / "llmops.db"
    with db.Store(sqlite_url(path.parent)) as template:
        template.migrate()
    assert not path.with_name("llmops.db-wal").exists(), "the template's WAL was not folded in"
    return path


@pytest.fixture
def store(backend: str, store_url: str, migrated_sqlite: Path) -> Iterator[db.Store]:
    """A migrated ``Store`` on a fresh database, closed after the test.

    On SQLite the fresh file is a copy of ``migrated_sqlite`` (copying is cheaper than
    running the migrations for every test); ``migrate`` then finds it at head.
    """
    if backend == "sqlite":
        shutil.copyfile(migrated_sqlite, str(make_url(store_url).database))
    with db.Store(store_url) as opened:
        opened.migrate()
        yield opened


@pytest.fixture(scope="module")
def module_postgres_url() -> Iterator[str]:
    """URL of a fresh, unmigrated PostgreSQL database shared by one test module (for
    modules whose tests build one app over one store, e.g. the API contract run)."""
    with postgres_database() as url:
        yield url
