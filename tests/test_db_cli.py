"""Database migrations by hand: `llmops db upgrade|current` and `alembic` from the project root.

The seed's troubleshooting runs ``alembic upgrade head`` and ``alembic
current`` in the project root; llmops ships an ``alembic.ini`` there that
points at the packaged migrations and the same database llmops uses
(``-x url=``, else ``LLMOPS_DATABASE_URL``). Both paths are checked on SQLite
and on PostgreSQL, and must agree.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from conftest import CliResult
from llmops.engine.store import db

ROOT = Path(__file__).resolve().parents[1]
HEAD = ScriptDirectory.from_config(db.alembic_config()).get_current_head()


def alembic(*args: str, url: str) -> str:
    """``alembic ARGS`` as a user runs it in the project root, with LLMOPS_DATABASE_URL."""
    env = {**os.environ, "LLMOPS_DATABASE_URL": url}
    done = subprocess.run([sys.executable, "-m", "alembic", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=True)
    return done.stdout


def test_llmops_db_upgrade_then_current(tmp_path: Path, cli: Callable[..., CliResult],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMOPS_DATABASE_URL", f"sqlite:///{tmp_path}/state.db")
    before = cli("db", "current")
    assert (before.code, before.out.split(": ", 1)[1]) == (
        0, f"none (not migrated; head is {HEAD})\n")
    upgraded = cli("db", "upgrade")
    assert upgraded.out.endswith(f": {HEAD} (head)\n")
    assert cli("db", "current").out.endswith(f": {HEAD} (head)\n")


def test_a_database_that_cannot_be_reached_is_one_error_line(
        cli: Callable[..., CliResult]) -> None:
    result = cli("db", "current", "--url", "sqlite:////dev/null/x/state.db")
    assert result.code == 1
    assert result.err.startswith("error:")
    assert "Traceback" not in result.err


@pytest.mark.slow  # two Python processes
def test_alembic_from_the_project_root_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/state.db"
    alembic("upgrade", "head", url=url)
    assert alembic("current", url=url).strip() == f"{HEAD} (head)"


def test_both_ways_agree_on_postgresql(postgres_url: str,
                                       cli: Callable[..., CliResult]) -> None:
    assert alembic("current", url=postgres_url).strip() == ""
    alembic("upgrade", "head", url=postgres_url)
    assert cli("db", "current", "--url", postgres_url).out.endswith(f": {HEAD} (head)\n")
    assert alembic("-x", f"url={postgres_url}", "current",
                   url="sqlite:////nonexistent").strip() == f"{HEAD} (head)"


@pytest.mark.parametrize("argv", [("status",), ("db", "current"), ("audit", "verify"),
                                  ("prune", "confirm", "--env", "dev", "--revision", "a" * 40)])
def test_commands_on_recorded_state_say_there_is_none_and_create_nothing(
        argv: tuple[str, ...], tmp_path: Path, cli: Callable[..., CliResult],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside any folder `llmops up` set up, a command that reads its state says so
    instead of creating an empty .llmops/llmops.db where it stands."""
    for name in ("LLMOPS_HOME", "LLMOPS_CONFIG", "LLMOPS_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    result = cli(*argv)
    assert result.code == 1, result.out + result.err
    assert "no llmops state at" in result.err
    assert "run `llmops up`" in result.err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("LLMOPS_DB__CONNECT_TIMEOUT_SECONDS", "1", "greater than or equal to 2"),
    ("LLMOPS_DB__STATEMENT_TIMEOUT_SECONDS", "soon", "valid number"),
    ("LLMOPS_DB__LOCK_TIMEOUT_SECONDS", "-3", "greater than 0"),
])
def test_a_bad_store_timeout_setting_is_named_not_a_crash(
        cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        variable: str, value: str, message: str) -> None:
    monkeypatch.setenv(variable, value)
    monkeypatch.setenv("LLMOPS_API__JWT_SECRET", "a-secret-never-printed")
    result = cli("db", "upgrade", "--url", f"sqlite:///{tmp_path / 'x.db'}")
    assert result.code == 1, result.err
    assert f"{variable}: " in result.err
    assert message in result.err
    assert "internal error" not in result.err
    assert "a-secret-never-printed" not in result.err

