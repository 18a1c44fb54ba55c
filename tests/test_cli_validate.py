"""`llmops validate` and `llmops init` as a user runs them: output formats and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import git
import pytest

from conftest import MINIMAL_ENDPOINT, TEMPLATE, CliResult, write_repo
from llmops.engine.spec import validate

LLMOPS = [sys.executable, "-c", "from llmops.cli import main; main()"]


def break_repo(repo: Path) -> None:
    write_repo(repo, {"endpoints/dev/chat.yaml": MINIMAL_ENDPOINT.replace("{min: 1", "{min: 9"),
                      "prompts/p.yaml": "kind: PromptTemplate\nkind: again\n"})


def test_valid_repo_exits_0(cli: Callable[..., CliResult]) -> None:
    result = cli("validate", TEMPLATE)
    assert result.code == 0, result.out + result.err
    assert result.out.startswith("valid: 22 specs")


def test_text_format_lists_every_error(minimal_repo: Path, cli: Callable[..., CliResult]) -> None:
    break_repo(minimal_repo)
    result = cli("validate", minimal_repo)
    assert result.code == 1
    lines = result.out.strip().splitlines()
    assert lines[0] == ("endpoints/dev/chat.yaml:8:13: ServingEndpoint/chat: spec.replicas: "
                        "min (9) is greater than max (2)")
    assert lines[1] == "prompts/p.yaml:2:1: duplicate key 'kind' (first defined at line 1)"
    assert lines[-1] == "2 errors in 2 files"


def test_json_format(minimal_repo: Path, cli: Callable[..., CliResult]) -> None:
    break_repo(minimal_repo)
    result = cli("validate", minimal_repo, "--format", "json")
    assert result.code == 1
    first = json.loads(result.out)[0]
    assert first == {"file": "endpoints/dev/chat.yaml", "line": 8, "column": 13,
                     "kind": "ServingEndpoint", "name": "chat", "field": "spec.replicas",
                     "message": "min (9) is greater than max (2)"}
    ok = cli("validate", TEMPLATE, "--format", "json")
    assert (ok.code, json.loads(ok.out)) == (0, [])


def test_github_format(minimal_repo: Path, cli: Callable[..., CliResult]) -> None:
    break_repo(minimal_repo)
    result = cli("validate", minimal_repo, "--format", "github")
    assert result.code == 1
    assert result.out.splitlines()[0] == (
        "::error file=endpoints/dev/chat.yaml,line=8,col=13,title=ServingEndpoint/chat::"
        "spec.replicas: min (9) is greater than max (2)")


def test_github_annotation_escapes_newlines(minimal_repo: Path,
                                            cli: Callable[..., CliResult]) -> None:
    write_repo(minimal_repo, {"x,y.yaml": "a: [\n"})
    out = cli("validate", minimal_repo, "--format", "github").out
    assert "file=x%2Cy.yaml" in out
    *annotations, summary = out.splitlines()
    assert all(line.startswith("::error ") for line in annotations)
    assert summary == "1 error in 1 file"


def test_usage_errors_exit_2(cli: Callable[..., CliResult], tmp_path: Path) -> None:
    assert cli("validate", "--format", "xml").code == 2
    assert cli("frobnicate").code == 2
    missing = cli("validate", tmp_path / "nowhere")
    assert missing.code == 1
    assert "nowhere: is not a directory" in missing.out


def test_internal_error_prints_one_line_and_a_report(
    cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def explode(*_: object, **__: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setenv("LLMOPS_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(validate, "load_and_validate", explode)
    result = cli("validate", TEMPLATE)
    assert result.code == 3
    assert "Traceback" not in result.err + result.out
    (line,) = result.err.strip().splitlines()
    assert line.startswith("internal error: RuntimeError; full report in ")
    report = Path(line.rsplit(" ", 1)[1])
    assert report.is_file()
    assert "boom" in report.read_text()
    assert report.is_relative_to(tmp_path / "home")


@pytest.mark.slow
def test_no_traceback_for_bad_input_as_a_process(minimal_repo: Path) -> None:
    (minimal_repo / "bad.yaml").write_bytes(b"\xff\xfe: [\n")
    proc = subprocess.run([*LLMOPS, "validate", str(minimal_repo)], capture_output=True,
                          text=True, check=False, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "bad.yaml:1:1: file is not valid UTF-8" in proc.stdout


def test_init_creates_a_committed_valid_repo(tmp_path: Path,
                                             cli: Callable[..., CliResult]) -> None:
    dest = tmp_path / "specs"
    result = cli("init", dest)
    assert result.code == 0, result.err
    repo = git.Repo(dest)
    assert not repo.is_dirty(untracked_files=True)
    assert len(list(repo.iter_commits())) == 1
    assert cli("validate", dest).code == 0
    assert (dest / ".github/workflows/llmops.yaml").is_file()


def test_init_refuses_a_non_empty_directory(tmp_path: Path,
                                            cli: Callable[..., CliResult]) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    result = cli("init", tmp_path)
    assert result.code == 1
    assert "not an empty directory" in result.err
    assert not (tmp_path / ".git").exists()


HEAVY = ("fastapi", "starlette", "uvicorn", "sqlalchemy", "alembic", "psycopg", "redis",
         "kubernetes", "boto3", "git", "jinja2")


@pytest.mark.slow
@pytest.mark.parametrize("argv", [["--version"], ["validate", str(TEMPLATE)]])
def test_version_and_validate_leave_the_web_stack_and_drivers_unimported(argv: list[str]) -> None:
    """`llmops --version` and `validate` stay quick: only the commands that need them import
    the web stack, the database drivers, the Kubernetes client, git or Jinja2."""
    probe = ("import sys\nfrom llmops.cli import main\ncode = 0\ntry:\n    main(sys.argv[1:])\n"
             "except SystemExit as exc:\n    code = exc.code\n"
             f"print(code, sorted(m for m in {HEAVY!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.stdout.splitlines()[-1] == "0 []", done.stdout + done.stderr


@pytest.mark.slow
def test_every_command_runs_with_the_collector_thresholds_raised() -> None:
    """The cyclic collector's default thresholds cost a big repo's render a tenth to a third
    of its CPU (docs/benchmarks.md); every command runs with ``GC_THRESHOLD``."""
    probe = ("import gc, sys\nfrom llmops.cli import GC_THRESHOLD, main\ntry:\n"
             "    main(['validate', sys.argv[1]])\nexcept SystemExit:\n    pass\n"
             "print(gc.get_threshold() == GC_THRESHOLD != (700, 10, 10))")
    done = subprocess.run([sys.executable, "-c", probe, str(TEMPLATE)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.stdout.splitlines()[-1] == "True", done.stdout + done.stderr
