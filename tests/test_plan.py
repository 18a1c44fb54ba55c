"""`llmops plan` over real git repos: what a reviewer reads, and the exit codes CI acts on."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import CliResult, edit
from llmops.engine.plan import planner
from llmops.engine.source import scaffold
from llmops.engine.spec import validate

Cli = Callable[..., CliResult]

# A Wednesday, 10:00 in Berlin: inside the template's prod change window.
OPEN = "2026-01-14T10:00:00+01:00"
# A Saturday: outside it.
CLOSED = "2026-01-17T12:00:00+01:00"

PROD_CHAT = "endpoints/prod/support-chat.yaml"
STG_CHAT = "endpoints/stg/support-chat.yaml"
EXPERIMENT = "experiments/support-greeting-v2-vs-v3.yaml"
MODEL_130 = "models/support-chat-1.3.0.yaml"


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-c", "core.hooksPath=/dev/null", *args], cwd=repo,
                          check=True, capture_output=True, text=True)
    return done.stdout.strip()


def commit(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "--no-verify", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    dest = tmp_path / "specs"
    scaffold.init_repo(dest)
    return dest


def plan_json(cli: Cli, repo: Path, *extra: str) -> tuple[CliResult, dict[str, Any]]:
    result = cli("plan", repo, "--base", "HEAD~1", "--head", "HEAD", "--now", OPEN,
                 "--format", "json", *extra)
    return result, json.loads(result.out)


def summaries(data: dict[str, Any], env: str | None = None) -> list[str]:
    if env is None:
        return [c["summary"] for c in data["globalChanges"]]
    [found] = [e for e in data["environments"] if e["name"] == env]
    return [c["summary"] for c in found["specChanges"]]


def env_of(data: dict[str, Any], env: str) -> dict[str, Any]:
    [found] = [e for e in data["environments"] if e["name"] == env]
    return found


def promote_130(repo: Path) -> None:
    """support-chat 1.3.0 approved, in stg, then in prod: a compliant promotion."""
    edit(repo, MODEL_130, "stage: draft", "stage: approved")
    edit(repo, STG_CHAT, "version: 1.2.0", "version: 1.3.0")
    edit(repo, PROD_CHAT, "version: 1.2.0", "version: 1.3.0")


# --------------------------------------------------------------------------- semantic lines


def test_model_version_bump(repo: Path, cli: Cli) -> None:
    promote_130(repo)
    commit(repo, "Promote support-chat 1.3.0")
    result, data = plan_json(cli, repo)
    assert result.code == 0, result.err
    assert summaries(data, "prod") == [
        "ServingEndpoint prod/support-chat: model support-chat 1.2.0 -> 1.3.0"]
    assert summaries(data, "stg") == [
        "ServingEndpoint stg/support-chat: model support-chat 1.2.0 -> 1.3.0"]
    # A global kind is reported once, not per environment.
    assert summaries(data) == ["Model support-chat 1.3.0: stage draft -> approved"]
    deploy = [o for o in env_of(data, "prod")["objects"] if o["kind"] == "Deployment"]
    assert deploy[0]["action"] == "configured"
    assert "-          value: 1.2.0" in deploy[0]["diff"]
    assert "+          value: 1.3.0" in deploy[0]["diff"]
    assert not data["denied"]


def test_replica_change_with_gpu_and_cost(repo: Path, cli: Cli) -> None:
    edit(repo, PROD_CHAT, "    min: 2\n    max: 4", "    min: 3\n    max: 6")
    commit(repo, "Scale support-chat")
    result, data = plan_json(cli, repo)
    assert result.code == 0, result.err
    assert summaries(data, "prod") == [
        "ServingEndpoint prod/support-chat: replicas 2-4 -> 3-6; GPUs +2"]
    [row] = [r for r in data["cost"]["rows"] if r["gpusMax"]["delta"]]
    assert (row["team"], row["environment"]) == ("nlp-platform", "prod")
    assert row["gpusMax"] == {"base": 4, "head": 6, "delta": 2}
    assert row["gpusMin"]["delta"] == 1
    # 2 GPUs x 730 h x 0.85 per GPU-hour (policies/governance.yaml).
    assert row["monthlyMax"]["delta"] == pytest.approx(1241.0)
    prod = env_of(data, "prod")
    hpa = next(o for o in prod["objects"] if o["kind"] == "HorizontalPodAutoscaler")
    assert {c["path"]: (c["before"], c["after"]) for c in hpa["changes"]} == {
        "spec.minReplicas": (2, 3), "spec.maxReplicas": (4, 6)}
    text = cli("plan", repo, "--base", "HEAD~1", "--head", "HEAD", "--now", OPEN)
    assert "replicas 2-4 -> 3-6; GPUs +2" in text.out
    assert "nlp-platform in prod: GPUs 4 -> 6 (+2" in text.out


def test_new_endpoint(repo: Path, cli: Cli) -> None:
    new = (repo / "endpoints/dev/support-chat.yaml").read_text(encoding="utf-8")
    new = new.replace("name: support-chat\n  labels", "name: support-chat-canary\n  labels", 1)
    new = new.replace("route: /v1/support-chat", "route: /v1/support-chat-canary")
    (repo / "endpoints/dev/support-chat-canary.yaml").write_text(new, encoding="utf-8")
    commit(repo, "Add a canary endpoint")
    result, data = plan_json(cli, repo)
    assert result.code == 0, result.err
    assert summaries(data, "dev") == [
        "ServingEndpoint dev/support-chat-canary: created (model support-chat 1.3.0, "
        "replicas 1-1, 1 GPU at max)"]
    dev = env_of(data, "dev")
    assert dev["counts"]["created"] >= 4
    assert {o["kind"] for o in dev["objects"] if o["action"] == "created"} >= {
        "Deployment", "Service", "HorizontalPodAutoscaler", "Ingress"}
    assert summaries(data, "prod") == []


def test_deleted_endpoint(repo: Path, cli: Cli) -> None:
    git(repo, "rm", "-q", "endpoints/dev/sql-assistant.yaml")
    commit(repo, "Retire sql-assistant in dev")
    result, data = plan_json(cli, repo)
    assert result.code == 0, result.err
    [line] = summaries(data, "dev")
    assert line.startswith("ServingEndpoint dev/sql-assistant: deleted (model sql-adapter 1.0.0")
    dev = env_of(data, "dev")
    deleted = {o["kind"] for o in dev["objects"] if o["action"] == "deleted"}
    assert {"Deployment", "Service", "Ingress"} <= deleted
    assert dev["counts"]["deleted"] == len([o for o in dev["objects"]
                                            if o["action"] == "deleted"])
    [row] = [r for r in data["cost"]["rows"] if r["gpusMax"]["delta"]]
    assert (row["team"], row["environment"], row["gpusMax"]["delta"]) == (
        "data-science", "dev", -2)


def test_experiment_reweighting(repo: Path, cli: Cli) -> None:
    edit(repo, EXPERIMENT, "weight: 80", "weight: 20")
    edit(repo, EXPERIMENT, "weight: 20\n  # What", "weight: 80\n  # What")
    commit(repo, "Shift traffic to v3")
    result, data = plan_json(cli, repo)
    assert result.code == 0, result.err
    [line] = summaries(data, "prod")
    assert line.startswith("PromptExperiment prod/support-greeting-v2-vs-v3: "
                           "weights 80/20 -> 20/80")
    objects = {o["id"]: o for o in env_of(data, "prod")["objects"]}
    table = objects["ConfigMap/nlp-platform-prod/support-greeting-v2-vs-v3-experiment"]
    assert table["action"] == "configured"
    lines = [line.replace(" ", "") for line in table["diff"].splitlines()]
    assert '-"weight":80,' in lines
    assert '+"weight":20,' in lines


# --------------------------------------------------------------------------- policy and exit codes


def test_policy_deny_fails_the_plan(repo: Path, cli: Cli) -> None:
    edit(repo, PROD_CHAT, "version: 1.2.0", "version: 1.3.0")  # a draft, never in stg
    commit(repo, "Ship 1.3.0 straight to prod")
    result = cli("plan", repo, "--base", "HEAD~1", "--head", "HEAD", "--now", OPEN)
    assert result.code == 1
    assert "DENY  promotion: ServingEndpoint prod/support-chat: model support-chat 1.3.0 " \
           "is draft, prod requires approved" in result.out
    assert "Plan failed: 1 policy denial." in result.out


def test_a_denial_gates_only_its_own_environment(repo: Path, cli: Cli) -> None:
    """The template's walkthrough step 2: stg moves to 1.3.0, so prod's 1.2.0 no longer
    runs in stg. prod changes nothing, so its denial is shown but fails nothing; a
    change to prod itself is then blocked by it."""
    edit(repo, "endpoints/stg/support-chat.yaml", "version: 1.2.0", "version: 1.3.0")
    commit(repo, "support-chat 1.3.0 in stg")
    every = cli("plan", repo, "--base", "HEAD~1", "--head", "HEAD", "--now", OPEN)
    assert every.code == 0, every.out
    assert "DENY  promotion: ServingEndpoint prod/support-chat" in every.out
    assert "nothing changes in prod, so this plan is not blocked there" in every.out
    only_stg = cli("plan", repo, "--base", "HEAD~1", "--head", "HEAD", "--env", "stg",
                   "--now", OPEN, "--format", "json")
    assert only_stg.code == 0
    assert [e["name"] for e in json.loads(only_stg.out)["environments"]] == ["stg"]
    edit(repo, PROD_CHAT, "    min: 2\n", "    min: 3\n")
    commit(repo, "prod scales while stg runs another version")
    prod = cli("plan", repo, "--base", "HEAD~1", "--head", "HEAD", "--env", "prod",
               "--now", OPEN, "--format", "json")
    assert prod.code == 1
    assert env_of(json.loads(prod.out), "prod")["blocked"] is True


def test_change_outside_window_fails_the_plan(repo: Path, cli: Cli) -> None:
    edit(repo, PROD_CHAT, "    min: 2\n", "    min: 3\n")
    commit(repo, "Weekend scaling")
    closed = cli("plan", repo, "--base", "HEAD~1", "--head", "HEAD", "--now", CLOSED,
                 "--format", "json")
    assert closed.code == 1
    denied = [v for v in env_of(json.loads(closed.out), "prod")["verdicts"]
              if v["decision"] == "deny"]
    assert [(v["rule"], v["target"]) for v in denied] == [
        ("change-window", "ServingEndpoint prod/support-chat")]
    assert cli("plan", repo, "--base", "HEAD~1", "--head", "HEAD", "--now", OPEN).code == 0


def test_noop_commit_has_no_changes(repo: Path, cli: Cli) -> None:
    edit(repo, PROD_CHAT, "# ServingEndpoint (prod)", "# ServingEndpoint (production)")
    commit(repo, "Reword a comment")
    for extra in ((), ("--detailed-exitcode",)):
        result = cli("plan", repo, "--base", "HEAD~1", "--head", "HEAD", "--now", CLOSED,
                     *extra)
        assert result.code == 0, result.err
        assert "No changes." in result.out
    _, data = plan_json(cli, repo)
    assert data["hasChanges"] is False
    assert all(e["objects"] == [] and e["specChanges"] == [] for e in data["environments"])


def test_detailed_exitcode_with_changes(repo: Path, cli: Cli) -> None:
    edit(repo, "endpoints/dev/sql-assistant.yaml", "max: 2", "max: 3")
    commit(repo, "More dev capacity")
    args = ("plan", repo, "--base", "HEAD~1", "--head", "HEAD", "--now", OPEN)
    assert cli(*args).code == 0
    assert cli(*args, "--detailed-exitcode").code == 2


def test_working_tree_against_head_by_default(repo: Path, cli: Cli) -> None:
    edit(repo, "endpoints/dev/sql-assistant.yaml", "max: 2", "max: 3")  # not committed
    result = cli("plan", repo, "--now", OPEN, "--env", "dev")
    assert result.code == 0, result.err
    assert "ServingEndpoint dev/sql-assistant: replicas 1-2 -> 1-3; GPUs +1" in result.out
    assert "-> head working tree" in result.out
    assert "Environment stg" not in result.out


def test_invalid_head_is_an_error_with_file_and_line(repo: Path, cli: Cli) -> None:
    edit(repo, PROD_CHAT, "    max: 4", "    max: 1")  # min 2 > max 1
    commit(repo, "Broken replicas")
    result = cli("plan", repo, "--base", "HEAD~1", "--head", "HEAD")
    assert result.code == 1
    assert re.search(r"endpoints/prod/support-chat\.yaml:\d+:\d+: ServingEndpoint/support-chat"
                     r": spec\.replicas: min \(2\) is greater than max \(1\)", result.err)
    assert result.out == ""


def test_bad_revisions_are_errors(repo: Path, cli: Cli) -> None:
    for rev in ("--output=/tmp/pwned", "no-such-branch"):
        result = cli("plan", repo, "--base", rev)
        assert result.code == 1
        assert "revision" in result.err
        assert "Traceback" not in result.err
    assert not Path("/tmp/pwned").exists()


# --------------------------------------------------------------------------- formats


def test_markdown_and_json_carry_the_same_facts(repo: Path, cli: Cli) -> None:
    edit(repo, PROD_CHAT, "version: 1.2.0", "version: 1.3.0")
    edit(repo, PROD_CHAT, "    min: 2\n    max: 4", "    min: 3\n    max: 6")
    edit(repo, EXPERIMENT, "weight: 80", "weight: 50")
    edit(repo, EXPERIMENT, "weight: 20\n", "weight: 50\n")
    commit(repo, "Several changes")
    args = ("plan", repo, "--base", "HEAD~1", "--head", "HEAD", "--now", OPEN)
    md = cli(*args, "--format", "markdown")
    js = cli(*args, "--format", "json")
    assert md.code == js.code == 1
    data = json.loads(js.out)
    prod = env_of(data, "prod")
    for change in prod["specChanges"]:
        assert change["title"] in md.out
        assert "; ".join(change["details"]) in md.out
    c = prod["counts"]
    assert (f"| prod | {c['created']} | {c['configured']} | {c['deleted']} | "
            f"{c['unchanged']} | ❌ 1 denied |") in md.out
    [deny] = [v for v in prod["verdicts"] if v["decision"] == "deny"]
    assert f"| ❌ **deny** | {deny['rule']} | {deny['target']} | {deny['reason']} |" in md.out
    for obj in prod["objects"]:
        assert f"{obj['id']} ({obj['action']})</summary>" in md.out
    assert md.out.count("```diff") == len(prod["objects"])
    assert "| nlp-platform | prod | 4 → 6 | +2 | +1 |" in md.out
    assert "<details>" in md.out


# --------------------------------------------------------------------------- engine level


def test_build_plan_from_nothing_creates_everything(repo: Path) -> None:
    head = validate.load_and_validate(repo)
    result = planner.build_plan(None, head, ["prod"])
    [prod] = result.environments
    counts = prod.changes.counts()
    assert counts["created"] == len(prod.changes.entries) > 0
    assert {c.action for c in prod.specs} == {"created"}
    assert any(c.title == "Model support-chat 1.3.0" for c in result.global_specs)


def test_unknown_environment_is_an_error(repo: Path, cli: Cli) -> None:
    result = cli("plan", repo, "--env", "qa")
    assert result.code == 1
    assert "unknown environment qa" in result.err
