"""Rendered branches in Argo CD's Source Hydrator format (`llmops hydrate`), on real git repos.

What a user (or Argo CD) sees: the branch layout (``<path>/manifest.yaml``,
``<path>/README.md``, root ``hydrator.metadata``), provenance in the metadata
and in ``Argocd-reference-commit-*`` trailers, no commit when nothing
changed, their own HEAD, index and work tree untouched, and a reader of the
branch that never catches a half-written manifest.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from conftest import CliResult
from llmops.cli import main
from llmops.cli.render_cmd import render
from llmops.engine.source import branches, scaffold
from llmops.engine.types import KubeObject

BRANCH = "environments/prod"


def git(repo: Path, *args: str, check: bool = True) -> str:
    done = subprocess.run(["git", "-c", "core.hooksPath=/dev/null", *args], cwd=repo,
                          capture_output=True, text=True, check=False, timeout=60)
    if check:
        assert done.returncode == 0, done.stderr
    return done.stdout


def run(*args: str) -> CliResult:
    """`llmops hydrate ARGS...` through the entry point (which reports errors), in-process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(["hydrate", *args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return CliResult(code, out.getvalue(), err.getvalue())


@pytest.fixture
def specs(tmp_path: Path) -> Path:
    repo = tmp_path / "specs"
    scaffold.init_repo(repo)
    return repo


def commits(repo: Path, ref: str = BRANCH) -> list[str]:
    return git(repo, "rev-list", ref, "--").split()


def edit_and_commit(repo: Path, message: str, old: str, new: str,
                    rel: str = "endpoints/prod/support-chat.yaml") -> str:
    path = repo / rel
    text = path.read_text()
    assert old in text, f"{old!r} not in {rel}"
    path.write_text(text.replace(old, new, 1))
    git(repo, "commit", "-qam", message)
    return git(repo, "rev-parse", "HEAD").strip()


def test_branch_layout_and_manifest_order(specs: Path) -> None:
    result = run(str(specs), "--env", "prod", "--branch", BRANCH, "--path", "prod")
    assert result.code == 0, result.err
    files = sorted(git(specs, "ls-tree", "-r", "--name-only", BRANCH).split())
    assert files == ["hydrator.metadata", "prod/README.md", "prod/manifest.yaml"]
    text = git(specs, "show", f"{BRANCH}:prod/manifest.yaml")
    assert text.startswith("---\n")
    docs: list[KubeObject] = list(yaml.safe_load_all(text))
    assert len(docs) > 5
    keys = [(d["metadata"].get("namespace", ""), d["metadata"]["name"],
             d["apiVersion"].rpartition("/")[0], d["kind"]) for d in docs]
    assert keys == sorted(keys)
    head = git(specs, "rev-parse", "main").strip()
    # no per-object stamp of the dry commit: it is named once, in hydrator.metadata
    assert not [d for d in docs if "llmops.io/source-commit" in d["metadata"]["annotations"]]
    readme = git(specs, "show", f"{BRANCH}:prod/README.md")
    assert f"git checkout {head}" in readme
    assert "llmops render . --env prod\n" in readme
    # what the README says reproduces the manifest byte for byte
    rendered = CliRunner().invoke(render, [str(specs), "--env", "prod"],
                                  env={"ARGOCD_APP_REVISION": ""})
    assert (rendered.exit_code, rendered.stdout) == (0, text)


def test_metadata_and_trailers_name_the_dry_commit(specs: Path) -> None:
    dry = edit_and_commit(specs, "Scale support-chat\n\nMore traffic expected.\n\n"
                          "Argocd-reference-commit-sha: " + "ab" * 20 + "\n"
                          "Argocd-reference-commit-author: Dev One <dev@example.com>\n"
                          "Argocd-reference-commit-subject: build image 1.4\n"
                          "Argocd-reference-commit-repourl: https://git.example.com/app.git\n",
                          "    max: 4", "    max: 3")
    assert run(str(specs), "--env", "prod", "--branch", BRANCH).code == 0
    meta: dict[str, Any] = json.loads(git(specs, "show", f"{BRANCH}:hydrator.metadata"))
    assert meta["drySha"] == dry
    assert meta["subject"] == "Scale support-chat"
    assert meta["body"].startswith("More traffic expected.")
    assert meta["repoURL"] == specs.resolve().as_uri()
    assert meta["author"].endswith(">")
    assert "<" in meta["author"]
    assert meta["date"][:4].isdigit()
    assert "T" in meta["date"]
    assert meta["references"] == [{"commit": {
        "author": {"name": "Dev One", "email": "dev@example.com"}, "sha": "ab" * 20,
        "subject": "build image 1.4", "body": "", "repoURL": "https://git.example.com/app.git",
        "date": ""}}]
    message = git(specs, "show", "-s", "--format=%B", BRANCH)
    trailers = subprocess.run(["git", "interpret-trailers", "--parse"], input=message,
                              capture_output=True, text=True, check=True).stdout
    found = dict(line.split(": ", 1) for line in trailers.splitlines())
    assert found["Argocd-reference-commit-sha"] == dry
    assert found["Argocd-reference-commit-subject"] == "Scale support-chat"
    assert found["Argocd-reference-commit-repourl"] == specs.resolve().as_uri()
    assert found["Argocd-reference-commit-author"] == meta["author"]
    assert found["Argocd-reference-commit-date"] == meta["date"]
    assert json.loads(found["Argocd-reference-commit-body"]) == meta["body"]


def test_metadata_leaves_out_what_is_empty(specs: Path) -> None:
    """As Argo CD's omitempty fields: a one-line dry commit has no body and no references."""
    dry = edit_and_commit(specs, "Scale support-chat", "    max: 4", "    max: 3")
    assert run(str(specs), "--env", "prod", "--branch", BRANCH, "--path", ".").code == 0
    meta: dict[str, Any] = json.loads(git(specs, "show", f"{BRANCH}:hydrator.metadata"))
    assert set(meta) == {"author", "subject", "date", "drySha", "repoURL"}
    assert meta["drySha"] == dry
    assert re.fullmatch(r".+ <[^<>]+>", meta["author"])
    files = sorted(git(specs, "ls-tree", "-r", "--name-only", BRANCH).split())
    assert files == ["README.md", "hydrator.metadata", "manifest.yaml"]  # --path . = root


def test_second_run_commits_nothing(specs: Path) -> None:
    assert run(str(specs), "--env", "prod", "--branch", BRANCH).code == 0
    first = commits(specs)
    again = run(str(specs), "--env", "prod", "--branch", BRANCH)
    assert again.code == 0
    assert "nothing to commit" in again.err
    assert commits(specs) == first
    # a new dry commit is a new hydrated commit (every object names its source commit) ...
    edit_and_commit(specs, "scale", "    max: 4", "    max: 3")
    assert run(str(specs), "--env", "prod", "--branch", BRANCH).code == 0
    second = commits(specs)
    assert len(second) == 2
    assert second[1:] == first
    # ... once: hydrating it again, or hydrating an older commit's identical output, is not
    assert run(str(specs), "--env", "prod", "--branch", BRANCH).code == 0
    assert commits(specs) == second


def test_users_head_index_and_work_tree_are_untouched(specs: Path) -> None:
    endpoint = specs / "endpoints/prod/support-chat.yaml"
    endpoint.write_text(endpoint.read_text().replace("    max: 4", "    max: 3", 1))  # uncommitted
    (specs / "scratch.txt").write_text("mine\n")
    before = (git(specs, "symbolic-ref", "HEAD"), git(specs, "rev-parse", "HEAD"),
              git(specs, "status", "--porcelain"), (specs / ".git/index").read_bytes(),
              endpoint.read_text())
    assert run(str(specs), "--env", "prod", "--branch", BRANCH, "--path", "prod").code == 0
    after = (git(specs, "symbolic-ref", "HEAD"), git(specs, "rev-parse", "HEAD"),
             git(specs, "status", "--porcelain"), (specs / ".git/index").read_bytes(),
             endpoint.read_text())
    assert after == before
    # the branch holds the committed specs, not the uncommitted edit
    docs = yaml.safe_load_all(git(specs, "show", f"{BRANCH}:prod/manifest.yaml"))
    hpa = next(d for d in docs if d["kind"] == "HorizontalPodAutoscaler"
               and d["metadata"]["name"].startswith("support-chat"))
    assert hpa["spec"]["maxReplicas"] == 4


def test_another_repo_receives_the_branch(specs: Path, tmp_path: Path) -> None:
    target = tmp_path / "rendered"
    target.mkdir()
    git(target, "init", "-q", "-b", "main")
    result = run(str(specs), "--env", "dev", "--branch", "environments/dev", "--repo",
                 str(target), "--path", "dev")
    assert result.code == 0, result.err
    assert "dev/manifest.yaml" in git(target, "ls-tree", "-r", "--name-only", "environments/dev")
    assert git(specs, "branch", "--list", "environments/*") == ""


@pytest.mark.parametrize(("option", "value"), [
    ("--branch", "-delete"), ("--branch", "a..b"), ("--branch", "x y"),
    ("--path", "../escape"), ("--path", "a/.git/b"), ("--path", "-x"),
])
def test_unsafe_branch_or_path_is_refused(specs: Path, option: str, value: str) -> None:
    args = {"--branch": BRANCH, "--path": "prod"} | {option: value}
    result = run(str(specs), "--env", "prod", *[x for kv in args.items() for x in kv])
    assert result.code == 1
    assert git(specs, "for-each-ref", "refs/heads/").count("refs/heads/") == 1


def test_unknown_environment(specs: Path) -> None:
    result = run(str(specs), "--env", "qa", "--branch", BRANCH)
    assert result.code == 2
    assert "unknown environment 'qa'" in result.err
    assert git(specs, "branch", "--list", BRANCH) == ""


def _objects(generation: int, count: int = 150) -> list[KubeObject]:
    return [{"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": f"cm-{i:03d}", "namespace": "team-prod",
                          "labels": {"generation": str(generation)}},
             "data": {"payload": f"{generation}-{i}-" + "x" * 400}} for i in range(count)]


@pytest.mark.slow
def test_a_concurrent_reader_always_sees_a_complete_manifest(specs: Path) -> None:
    dry = branches.dry_commit(specs)
    branches.hydrate_branch(specs, BRANCH, _objects(0), dry, path="prod")
    stop = threading.Event()
    seen: list[int] = []
    problems: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            text = git(specs, "show", f"{BRANCH}:prod/manifest.yaml")
            docs = list(yaml.safe_load_all(text))
            generations = {d["metadata"]["labels"]["generation"] for d in docs}
            if len(docs) != 150 or len(generations) != 1:
                problems.append(f"{len(docs)} documents, generations {sorted(generations)}")
            seen.append(int(generations.pop()))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for generation in range(1, 16):
            done = branches.hydrate_branch(specs, BRANCH, _objects(generation), dry,
                                            path="prod")
            assert done.changed
    finally:
        stop.set()
        thread.join(timeout=60)
    assert problems == []
    assert len(seen) > 5
    assert seen == sorted(seen)
    assert len(commits(specs)) == 16
    assert git(specs, "rev-parse", "HEAD").strip() == dry.sha
