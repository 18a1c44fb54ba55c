"""Write-back against a remote specs repo: commit in a private mirror, then push.

The remote is a bare repo in tmp_path reached through a ``file://`` URL; the
engine mirrors it under ``home/writeback`` and pushes the branch back.
"""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from llmops.api import errors as api_errors
from llmops.engine import lockfile, settings
from llmops.engine.source import gitcli, push, scaffold, specedits, writeback

GIT_ENV = {"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "dev", "GIT_AUTHOR_EMAIL": "dev@example.com",
           "GIT_COMMITTER_NAME": "dev", "GIT_COMMITTER_EMAIL": "dev@example.com"}
EXPERIMENT = "experiments/support-greeting-v2-vs-v3.yaml"
TARGET = writeback.Target(kind="PromptExperiment", name="support-greeting-v2-vs-v3",
                          file=EXPERIMENT, environment="prod")
USER = "Ada Lovelace"


def git(*args: str, cwd: Path | None = None) -> str:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **GIT_ENV}
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True,
                          env=env, cwd=cwd).stdout


def make_remote(tmp_path: Path, *, direct: bool = False) -> Path:
    work = tmp_path / "specs"
    scaffold.init_repo(work)
    if direct:
        path = work / "llmops.yaml"
        path.write_text(re.sub(r"(\n      context: kind-llmops-[a-z]+\n)",
                               r"\1    directCommits: true\n", path.read_text()))
        git("-C", str(work), "commit", "-q", "-a", "--no-verify", "-m", "direct commits")
    bare = tmp_path / "remote.git"
    git("clone", "-q", "--bare", str(work), str(bare))
    return bare


def conclude(repo: writeback.Repo, winner: str = "support-greeting-v3") -> writeback.WriteResult:
    return writeback.commit_edit(repo, "main", TARGET,
                                 specedits.conclude_experiment(TARGET.name, winner, None),
                                 action="conclude", author=writeback.Author(USER),
                                 message="Conclude\n")


def mirror_of(bare: Path, tmp_path: Path) -> writeback.Repo:
    repo = writeback.local_repo(bare.as_uri(), home=tmp_path / "home")
    assert isinstance(repo, push.Mirror)
    return repo


def test_review_branch_is_pushed_to_the_remote(tmp_path: Path) -> None:
    bare = make_remote(tmp_path)
    main = git("--git-dir", str(bare), "rev-parse", "refs/heads/main").strip()
    repo = mirror_of(bare, tmp_path)
    result = conclude(repo)
    assert not result.direct
    assert result.branch.startswith("llmops/conclude/")
    assert result.parent == main
    log = git("--git-dir", str(bare), "log", "-1", "--format=%H %an <%ae>",
              f"refs/heads/{result.branch}")
    assert log.strip() == f"{result.commit} {USER} <ada-lovelace@users.llmops>"
    assert git("--git-dir", str(bare), "rev-parse", "refs/heads/main").strip() == main
    text = git("--git-dir", str(bare), "show", f"{result.commit}:{EXPERIMENT}")
    assert "  state: concluded\n" in text
    assert (tmp_path / "home" / "writeback").is_dir()


def test_direct_commit_moves_the_remote_branch(tmp_path: Path) -> None:
    bare = make_remote(tmp_path, direct=True)
    main = git("--git-dir", str(bare), "rev-parse", "refs/heads/main").strip()
    result = conclude(mirror_of(bare, tmp_path))
    assert result.direct
    assert result.branch == "main"
    assert result.parent == main
    assert git("--git-dir", str(bare), "rev-parse", "refs/heads/main").strip() == result.commit
    assert git("--git-dir", str(bare), "log", "-1", "--format=%an",
               "refs/heads/main").strip() == USER


def _push_elsewhere(bare: Path, tmp_path: Path, name: str) -> str:
    other = tmp_path / name
    if not other.exists():
        git("clone", "-q", str(bare), str(other))
    else:
        git("-C", str(other), "pull", "-q", "--ff-only")
    note = other / f"{name}.txt"
    note.write_text((note.read_text() if note.exists() else "") + f"{name} was here\n")
    git("-C", str(other), "add", "-A")
    git("-C", str(other), "commit", "-q", "--no-verify", "-m", f"{name} was here")
    git("-C", str(other), "push", "-q", "origin", "main")
    return git("-C", str(other), "rev-parse", "HEAD").strip()


def test_push_race_is_retried_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bare = make_remote(tmp_path, direct=True)
    real_push = push.Mirror.push
    raced: list[str] = []

    def racing_push(self: push.Mirror, branch: str) -> None:
        if not raced:  # someone pushes between our fetch and our push
            raced.append(_push_elsewhere(bare, tmp_path, "other"))
        real_push(self, branch)

    monkeypatch.setattr(push.Mirror, "push", racing_push)
    result = conclude(mirror_of(bare, tmp_path))
    assert result.direct
    assert result.parent == raced[0]
    assert git("--git-dir", str(bare), "rev-parse", "refs/heads/main").strip() == result.commit
    files = git("--git-dir", str(bare), "ls-tree", "--name-only", result.commit)
    assert "other.txt" in files.split()


def test_a_push_race_on_every_attempt_is_a_conflict(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    bare = make_remote(tmp_path, direct=True)
    real_push = push.Mirror.push
    pushed: list[str] = []

    def racing_push(self: push.Mirror, branch: str) -> None:
        pushed.append(_push_elsewhere(bare, tmp_path, "other"))
        real_push(self, branch)

    monkeypatch.setattr(push.Mirror, "push", racing_push)
    monkeypatch.setattr(writeback.time, "sleep", lambda _s: None)
    with pytest.raises(writeback.Conflicted, match=r"\(6 pushes rejected\)"):
        conclude(mirror_of(bare, tmp_path))
    assert len(pushed) == writeback.PUSH_ATTEMPTS == 6
    assert git("--git-dir", str(bare), "rev-parse", "refs/heads/main").strip() == pushed[-1]
    response = api_errors.category_response(writeback.Conflicted("x"))
    assert response is not None
    assert response.status_code == 409


def test_a_ref_update_race_on_the_remote_is_a_rejection_and_retried(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two pushes landing at once: the remote fails to lock the branch for the loser
    ("cannot lock ref ... but expected", "[remote rejected] (failed to update ref)").
    That is someone else's push, redone on the new tip, not a broken remote (a 503)."""
    bare = make_remote(tmp_path, direct=True)
    real_run = gitcli.Git.run
    raced: list[str] = []

    def run(self: gitcli.Git, *argv: str, **kw: Any) -> bytes:
        if argv[0] == "push" and not raced:
            raced.append(_push_elsewhere(bare, tmp_path, "other"))
            raise gitcli.GitFailed("git push failed", returncode=1, verb="push", stderr=(
                "remote: error: cannot lock ref 'refs/heads/main': is at 1111 but expected "
                "2222\n ! [remote rejected] main -> main (failed to update ref)\n"
                "error: failed to push some refs to 'file:///remote.git'\n"))
        return real_run(self, *argv, **kw)

    monkeypatch.setattr(gitcli.Git, "run", run)
    result = conclude(mirror_of(bare, tmp_path))
    assert result.direct
    assert result.parent == raced[0]
    assert git("--git-dir", str(bare), "rev-parse", "refs/heads/main").strip() == result.commit


def test_stale_mirror_is_refreshed_before_each_write(tmp_path: Path) -> None:
    bare = make_remote(tmp_path, direct=True)
    repo = mirror_of(bare, tmp_path)
    first = conclude(repo)
    other = _push_elsewhere(bare, tmp_path, "other")
    second = conclude(repo, "support-greeting-v2")
    assert first.commit != other
    assert second.parent == other
    assert git("--git-dir", str(bare), "rev-parse", "refs/heads/main").strip() == second.commit


def test_credentials_never_leak(tmp_path: Path) -> None:
    cfg = settings.load(home=tmp_path / "home",
                        git={"repo": "https://user:s3cret@127.0.0.1:1/x.git", "branch": "main",
                             "timeout_seconds": 10})
    repo = writeback.repo_for(cfg)
    with pytest.raises(writeback.RepoUnavailable) as caught:
        conclude(repo)
    assert "s3cret" not in str(caught.value)
    error = api_errors.category_response(caught.value)
    assert error is not None
    assert error.status_code == 503
    assert "s3cret" not in bytes(error.body).decode()
    assert "s3cret" not in repr(vars(error))
    assert "s3cret" not in "".join(str(p) for p in (tmp_path / "home").rglob("*"))


def test_local_repo_without_home_is_unchanged(tmp_path: Path) -> None:
    with pytest.raises(writeback.RepoNotConfigured, match="remote") as caught:
        writeback.local_repo("https://user:s3cret@example.com/x.git")
    assert "s3cret" not in str(caught.value)
    bare = make_remote(tmp_path)
    assert writeback.local_repo(bare.as_uri()) == bare.resolve()


def test_a_stopped_writer_holding_the_mirror_makes_the_write_unavailable_not_hung(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another writer sharing the mirror was stopped (SIGSTOP) while holding it: this
    write gives up after the wait with a retryable error, and goes through once free."""
    monkeypatch.setattr(lockfile, "WAIT_SECONDS", 0.2)
    repo = mirror_of(make_remote(tmp_path), tmp_path)
    assert isinstance(repo, push.Mirror)
    repo.work_dir.mkdir(parents=True)
    stopped = os.open(repo.work_dir / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(stopped, fcntl.LOCK_EX)  # another open file: as another process holds it
    try:
        with pytest.raises(writeback.RepoUnavailable, match="held by another process"):
            conclude(repo)
    finally:
        os.close(stopped)
    assert conclude(repo).branch.startswith("llmops/conclude/")
