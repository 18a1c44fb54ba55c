"""The first hour: `llmops up` as a newcomer meets it, in-process (fast tier).

What a user sees on the first run (one line per environment, a blocked prod as
one short line with when its change window next opens), where the state is
found from another folder, the token per role of the repo's RBAC policy, and a
write-back that fails for configuration not offered as retryable.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from llmops.api import tokens
from llmops.engine import settings
from llmops.engine.errors import Conflict
from llmops.engine.run import reconciler
from llmops.engine.source import writeback


class _WednesdayMorning(datetime):
    """Wed 2026-11-25 09:00 UTC: 10:00 in Berlin, inside the template's prod window."""

    @classmethod
    def now(cls, tz: object = None) -> _WednesdayMorning:  # type: ignore[override]
        return cls(2026, 11, 25, 9, tzinfo=UTC)


class _MondayEvening(datetime):
    """Mon 2026-11-23 20:00 UTC: 21:00 in Berlin, outside the template's prod window."""

    @classmethod
    def now(cls, tz: object = None) -> _MondayEvening:  # type: ignore[override]
        return cls(2026, 11, 23, 20, tzinfo=UTC)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LLMOPS_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_first_up_says_each_environment_once(home: Path, cli,  # type: ignore[no-untyped-def]
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reconciler, "datetime", _MondayEvening)
    result = cli("up", "--once")
    assert result.code == 0, result.out + result.err
    lines = result.out.splitlines()
    prod = [line for line in lines if line.startswith("prod:")]
    assert len(prod) == 1, result.out
    assert prod[0].startswith("prod: blocked at ")
    assert "outside every prod change window" in prod[0]
    assert "next opens Tue 2026-11-24 08:00 CET" in prod[0]
    assert len(prod[0]) < 260
    assert [line.split(":")[0] for line in lines if line.startswith(("dev:", "stg:"))] == [
        "dev", "stg"]
    assert "dev: succeeded" in result.out
    assert "Traceback" not in result.out + result.err
    # What README says a newcomer sees of prod in the evening.
    assert sorted(p.name for p in (home / "rendered").iterdir()
                  if not p.name.startswith(".")) == ["dev", "stg"]
    status = cli("status")
    assert "prod: NotReady (PolicyDenied)" in status.out, status.out
    assert "outside every prod change window" in status.out


def test_status_and_tokens_from_a_subfolder(tmp_path: Path, cli,  # type: ignore[no-untyped-def]
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLMOPS_HOME", raising=False)
    monkeypatch.delenv("LLMOPS_GIT__REPO", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(reconciler, "datetime", _WednesdayMorning)
    assert cli("up", "--once").code == 0
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    found = settings.load()
    assert found.home == tmp_path / ".llmops"
    assert found.git.repo == str(tmp_path / ".llmops" / "specs")
    status = cli("status")
    assert status.code == 0
    assert "dev: Ready" in status.out
    assert ("health: not observed (hydrate actuator: llmops publishes, Argo CD or Flux "
            f"applies); what it publishes: {tmp_path / '.llmops' / 'rendered' / 'dev'}/"
            in status.out), status.out
    assert "Unknown" not in status.out
    as_json = json.loads(cli("status", "--format", "json").out)
    assert {e["environment"]: e["health"].split(";")[0] for e in as_json} == dict.fromkeys(
        ("dev", "stg", "prod"),
        "not observed (hydrate actuator: llmops publishes, Argo CD or Flux applies)")
    # and a token per role of the repo's RBAC policy
    from llmops.cli import up_cmd
    from llmops.engine.service import compose

    services = compose.services(found)
    try:
        written = up_cmd.write_tokens(found, services.store)
    finally:
        services.close()
    assert set(written) == {"admin", "ml-engineer", "viewer", "auditor"}
    assert found.api.jwt_secret is not None
    secret = found.api.jwt_secret.get_secret_value()
    for role, path in written.items():
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        claims = tokens.verify(path.read_text().strip(), secret)
        assert claims.roles == (role,)
        assert set(claims.teams) == {"nlp-platform", "data-science"}
    assert (found.home / "api-token").read_text() == written["admin"].read_text()
    assert not (deep / ".llmops").exists()


def test_an_explicit_home_wins_over_discovery(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".llmops" / "specs" / ".git").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LLMOPS_HOME", str(tmp_path / "elsewhere"))
    assert settings.load().home == tmp_path / "elsewhere"
    assert settings.load().git.repo == ""


def test_a_write_back_without_a_repo_is_not_retryable(tmp_path: Path) -> None:
    cfg = settings.load(home=tmp_path / "home")
    cfg.git.repo = ""
    with pytest.raises(writeback.RepoNotConfigured) as caught:
        writeback.repo_for(cfg)
    assert isinstance(caught.value, Conflict)  # the API's 409 for an absent optional part
    assert caught.value.details == {"retryable": False, "setting": "LLMOPS_GIT__REPO"}
    assert "LLMOPS_GIT__REPO" in str(caught.value)
    assert os.environ.get("LLMOPS_GIT__REPO") is None
