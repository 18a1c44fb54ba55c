"""The source stage against real git repos: what is fetched, what is refused, what never runs."""

from __future__ import annotations

import fcntl
import os
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from llmops.engine import lockfile
from llmops.engine.source import scaffold, snapshots
from llmops.engine.spec import loader

AUTHOR = {"GIT_AUTHOR_NAME": "Ada Lovelace", "GIT_AUTHOR_EMAIL": "ada@example.com",
          "GIT_COMMITTER_NAME": "Ada Lovelace", "GIT_COMMITTER_EMAIL": "ada@example.com"}


def git(cwd: Path, *args: str, **env: str) -> str:
    full = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null",
            **AUTHOR, **env}
    done = subprocess.run(["git", *args], cwd=cwd, env=full, check=True, capture_output=True,
                          text=True)
    return done.stdout.strip()


def commit(repo: Path, files: dict[str, str | None], message: str, **env: str) -> str:
    """Write (or delete, for None) files, commit them, return the new HEAD."""
    for rel, text in files.items():
        path = repo / rel
        if text is None:
            path.unlink()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--no-verify", "-m", message, **env)
    return git(repo, "rev-parse", "HEAD")


def all_text(root: Path) -> Iterator[tuple[Path, bytes]]:
    """Every regular file under root, never following a link."""
    for dirpath, _, filenames in os.walk(root, followlinks=False):
        for name in filenames:
            path = Path(dirpath) / name
            if not path.is_symlink() and path.is_file():
                yield path, path.read_bytes()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    dest = tmp_path / "specs"
    scaffold.init_repo(dest)
    return dest


@pytest.fixture
def work(tmp_path: Path) -> Path:
    return tmp_path / "work"


# --------------------------------------------------------------------------- fetching


def exported(work: Path) -> list[str]:
    """The commits written out under ``work`` (content-addressed folders)."""
    return sorted(p.name for p in work.iterdir() if len(p.name) == 40)


def data_of(loaded: loader.Loaded) -> dict[str, object]:
    """{file: data of its first document} of a load, ``llmops.yaml`` included."""
    docs = (*loaded.documents, *([loaded.config] if loaded.config else []))
    return {d.file: d.data for d in reversed(docs)}


@pytest.mark.parametrize("form", ["path", "file-url"])
def test_fetch_reads_the_branch_head_without_writing_it_out(repo: Path, work: Path,
                                                            form: str) -> None:
    sha = commit(repo, {"models/extra.yaml": "a: 1\n"}, "Add extra model\n\nbody text",
                 GIT_COMMITTER_DATE="2024-05-01T12:00:00+02:00")
    url = str(repo) if form == "path" else f"file://{repo}"
    src = snapshots.GitSource(url, "main", work)
    snap = src.fetch()
    assert snap.revision == sha == git(repo, "rev-parse", "HEAD")
    assert snap.path is None
    assert exported(work) == []  # no file written: the blobs are read into memory
    loaded = src.load(snap, cache=None)
    assert loaded.issues == ()
    assert data_of(loaded) == data_of(loader.load_repo(repo, cache=None))
    assert data_of(loaded)["models/extra.yaml"] == {"a": 1}
    assert snap.author == "Ada Lovelace <ada@example.com>"
    assert snap.subject == "Add extra model"
    assert snap.committed_at == datetime(2024, 5, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    assert snap.repo_url == url
    assert snap.files_changed is None
    assert src.last_good == snap
    assert not list(work.glob("tmp-*"))
    assert not list(repo.glob(".git/worktrees"))  # nothing touched in the user's repo


def test_a_one_file_commit_reads_one_blob(repo: Path, work: Path) -> None:
    src = snapshots.GitSource(str(repo), "main", work)
    first = src.fetch()
    batches: list[bytes] = []
    real_run = src._git.run

    def run(*args: str, **kw: object) -> bytes:
        if args[:2] == ("cat-file", "--batch"):
            batches.append(kw["stdin"])  # type: ignore[arg-type]
        return real_run(*args, **kw)  # type: ignore[arg-type]

    src._git.run = run  # type: ignore[method-assign]
    commit(repo, {"prompts/n.yaml": "n: 1\n"}, "one file")
    second = src.fetch()
    assert [len(b.splitlines()) for b in batches] == [1]
    assert data_of(src.load(second, cache=None))["prompts/n.yaml"] == {"n": 1}
    assert "prompts/n.yaml" not in src.load(first, cache=None).files  # still readable
    assert exported(work) == []


def test_exported_tree_is_read_only(repo: Path, work: Path) -> None:
    os.symlink("llmops.yaml", repo / "link.yaml")  # a link: loaded from an export
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--no-verify", "-m", "link")
    snap = snapshots.GitSource(str(repo), "main", work).fetch()
    assert exported(work) == [snap.revision]
    root = work / snap.revision
    for path, _ in all_text(root):
        assert not path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH), path
    assert not root.stat().st_mode & stat.S_IWUSR


def test_second_commit_lists_exactly_the_changed_files(repo: Path, work: Path) -> None:
    src = snapshots.GitSource(str(repo), "main", work)
    first = src.fetch()
    model = next(p for p in sorted((repo / "models").iterdir()))
    removed = next(p for p in sorted((repo / "datasets").iterdir()))
    sha = commit(repo, {
        f"models/{model.name}": model.read_text() + "# touched\n",
        "prompts/new.yaml": "x: 1\n",
        f"datasets/{removed.name}": None,
    }, "Second")
    second = src.fetch()
    assert second.revision == sha != first.revision
    assert second.files_changed == {f"models/{model.name}", "prompts/new.yaml",
                                    f"datasets/{removed.name}"}
    assert f"datasets/{removed.name}" not in src.load(second).files
    assert f"datasets/{removed.name}" in src.load(first).files  # old snapshot untouched


def test_fetch_without_new_commit_reuses_the_snapshot(repo: Path, work: Path) -> None:
    src = snapshots.GitSource(str(repo), "main", work)
    first = src.fetch()
    commands: list[str] = []
    real_run = src._git.run
    src._git.run = lambda *a, **k: commands.append(a[0]) or real_run(*a, **k)  # type: ignore[method-assign]
    again = src.fetch()
    assert commands == ["fetch", "rev-parse"]  # no commit read, no prune, no gc
    assert again.revision == first.revision
    assert again.files_changed == frozenset()
    assert src.load(again).files == src.load(first).files
    assert commands == ["fetch", "rev-parse"]  # loaded from memory: no git run


def test_old_snapshots_are_pruned_but_last_good_kept(repo: Path, work: Path) -> None:
    os.symlink("llmops.yaml", repo / "link.yaml")  # every commit is written out
    src = snapshots.GitSource(str(repo), "main", work, keep=2)
    seen = []
    for i in range(5):
        commit(repo, {"prompts/n.yaml": f"n: {i}\n"}, f"c{i}")
        seen.append(src.fetch())
    dirs = [p.name for p in work.iterdir() if len(p.name) == 40]
    assert len(dirs) <= 2
    assert src.last_good is not None
    assert seen[-1].revision in dirs
    for snap in seen:  # a pruned snapshot is read (and written out) again
        assert "prompts/n.yaml" in src.load(snap, cache=None).files


def test_snapshot_at_reads_older_commits_and_branches(repo: Path, work: Path) -> None:
    first = git(repo, "rev-parse", "HEAD")
    second = commit(repo, {"prompts/n.yaml": "n: 1\n"}, "second")
    src = snapshots.GitSource(str(repo), "main", work)
    assert src.fetch().revision == second
    old = src.snapshot_at(first, against=second)
    assert old.revision == first
    assert "prompts/n.yaml" not in src.load(old).files
    assert old.files_changed == {"prompts/n.yaml"}
    assert src.snapshot_at(first[:10]).revision == first
    assert src.last_good is not None
    assert src.last_good.revision == second
    git(repo, "checkout", "-q", "-b", "feature")
    feature = commit(repo, {"prompts/f.yaml": "f: 1\n"}, "feature work")
    snap = src.snapshot_at("feature")  # never fetched before: fetched now
    assert snap.revision == feature
    assert snap.files_changed is None
    with pytest.raises(snapshots.RevisionNotFound):
        src.snapshot_at("0" * 40)
    with pytest.raises(snapshots.RevisionNotFound):
        src.snapshot_at("no-such-branch")


def test_force_push_is_fetched_and_detectable(repo: Path, work: Path) -> None:
    src = snapshots.GitSource(str(repo), "main", work)
    before = src.fetch()
    git(repo, "checkout", "-q", "--orphan", "rewrite")
    unrelated = commit(repo, {"llmops.yaml": (repo / "llmops.yaml").read_text()}, "rewritten")
    git(repo, "branch", "-f", "main", "rewrite")
    after = src.fetch()
    assert after.revision == unrelated
    assert not src.is_ancestor(before.revision, after.revision)
    assert src.is_ancestor(before.revision, before.revision)
    with pytest.raises(snapshots.SourceUnavailable):
        src.is_ancestor("0" * 40, after.revision)  # unknown is not "no"


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize("url", ["file:///nonexistent", "https://127.0.0.1:1/x.git"])
def test_unreachable_remote_is_unavailable_not_empty(url: str, work: Path) -> None:
    src = snapshots.GitSource(url, "main", work)
    with pytest.raises(snapshots.SourceUnavailable):
        src.fetch()
    assert src.last_good is None


def test_failed_fetch_keeps_last_good(repo: Path, work: Path, tmp_path: Path) -> None:
    src = snapshots.GitSource(f"file://{repo}", "main", work)
    good = src.fetch()
    repo.rename(tmp_path / "moved")
    with pytest.raises(snapshots.SourceUnavailable, match="fetch failed"):
        src.fetch()
    assert src.last_good == good
    assert src.load(good).config is not None  # read from memory: no remote needed
    (tmp_path / "moved").rename(repo)
    git(repo, "checkout", "-q", "-b", "other")
    git(repo, "branch", "-q", "-D", "main")
    with pytest.raises(snapshots.SourceUnavailable, match="main"):
        src.fetch()  # the branch vanished: unknown, not empty
    assert src.last_good == good
    assert src.load(good).config is not None


def test_a_stopped_process_holding_the_work_directory_makes_fetch_unavailable(
        repo: Path, work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process sharing the work directory was stopped mid-fetch (SIGSTOP): its
    lock is kept, and this fetch gives up after the wait instead of hanging the pass."""
    monkeypatch.setattr(lockfile, "WAIT_SECONDS", 0.2)
    src = snapshots.GitSource(str(repo), "main", work)
    good = src.fetch()
    stopped = os.open(work / ".lock", os.O_RDWR)  # another open file: another process
    fcntl.flock(stopped, fcntl.LOCK_EX)
    try:
        with pytest.raises(snapshots.SourceUnavailable, match="held by another process"):
            src.fetch()
    finally:
        os.close(stopped)
    assert src.last_good == good
    assert src.fetch().revision == good.revision, "the lock free again, fetches go on"


def test_snapshot_at_tells_missing_revisions_from_outages(repo: Path, work: Path,
                                                         tmp_path: Path) -> None:
    src = snapshots.GitSource(str(repo), "main", work)
    src.fetch()
    with pytest.raises(snapshots.RevisionNotFound):
        src.snapshot_at("no-such-branch")
    repo.rename(tmp_path / "moved")
    with pytest.raises(snapshots.SourceUnavailable) as info:
        src.snapshot_at("main")
    assert not isinstance(info.value, snapshots.RevisionNotFound)


@pytest.mark.slow
def test_fetch_times_out_and_kills_git(work: Path) -> None:
    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        src = snapshots.GitSource(f"https://127.0.0.1:{port}/x.git", "main", work, timeout=1.0)
        started = time.monotonic()
        with pytest.raises(snapshots.SourceUnavailable, match="timed out"):
            src.fetch()
        assert time.monotonic() - started < 15


def test_plain_http_only_when_allowed(work: Path) -> None:
    with pytest.raises(snapshots.SourceConfigError, match="http://"):
        snapshots.GitSource("http://127.0.0.1:1/x.git", "main", work)
    src = snapshots.GitSource("http://127.0.0.1:1/x.git", "main", work, allow_http=True)
    with pytest.raises(snapshots.SourceUnavailable):
        src.fetch()


# --------------------------------------------------------------------------- hostile input


@pytest.mark.parametrize("url", [
    "https://github.com/org/repo.git", "https://github.com:443/org/repo.git",
    "ssh://git@github.com/org/repo.git", "ssh://git@github.com:2222/org/repo.git",
    "git@github.com:org/repo.git", "github.com:org/repo.git",
    "https://x-access-token:tok123@github.com/org/repo.git",
])
def test_accepted_urls(url: str, work: Path) -> None:
    src = snapshots.GitSource(url, "feature/x-1.2", work, allowed_hosts=["GitHub.com"])
    assert src.branch == "feature/x-1.2"
    assert "tok123" not in repr(src)
    assert not work.exists()  # constructing runs nothing against the remote


def rejected_urls(canary: Path) -> list[tuple[str, tuple[str, ...]]]:
    touch = f"touch {canary}"
    return [
        (f"ext::sh -c touch% {canary}", ()),
        (f"ext::sh -c {touch.replace(' ', '%20')}", ()),
        (f"--upload-pack={touch}", ()),
        (f"-oProxyCommand={touch}", ()),
        (f"ssh://-oProxyCommand={touch.replace(' ', '%20')}/repo", ()),
        ("git@-oProxyCommand=sh:repo.git", ()),
        ("-oProxyCommand=sh:repo.git", ()),
        ("fd::17", ()),
        ("fd::17/foo", ()),
        ("http://example.com/org/repo.git", ()),
        ("gopher://example.com/repo", ()),
        ("https://evil.example/org/repo.git", ("github.com",)),
        ("git@evil.example:org/repo.git", ("github.com",)),
        ("file:///etc", ("github.com",)),
        ("/some/local/path", ("github.com",)),
        (f"https://github.com/org/repo.git\n--upload-pack={touch}", ()),
        ("https://github.com/org/repo.git\r", ()),
        ("https://169.254.169.254/latest/meta-data", ()),
        ("https://github.com:99999/org/repo.git", ()),
        ("", ()),
    ]


def test_rejected_urls_never_reach_git(tmp_path: Path, work: Path) -> None:
    canary = tmp_path / "pwned"
    for url, hosts in rejected_urls(canary):
        with pytest.raises(snapshots.SourceConfigError):
            snapshots.GitSource(url, "main", work, allowed_hosts=hosts)
        with pytest.raises(snapshots.SourceConfigError):
            snapshots.open_source(url, "main", work, allowed_hosts=hosts)
    assert not canary.exists()
    assert not work.exists()


def test_no_branch_follows_the_repos_default_branch(repo: Path, work: Path,
                                                    tmp_path: Path) -> None:
    """A repo whose HEAD is ``trunk`` is followed on ``trunk`` when no branch is set, by
    the reconciler's source and by the write-back (``tracked_branch``)."""
    from llmops.engine import settings
    from llmops.engine.source import writeback

    git(repo, "branch", "-m", "trunk")
    sha = git(repo, "rev-parse", "HEAD").strip()
    src = snapshots.GitSource(str(repo), "", work)
    assert src.fetch().revision == sha
    assert src.branch == "trunk"
    cfg = settings.load(home=tmp_path / "home")
    cfg.git.repo = str(repo)
    assert writeback.tracked_branch(cfg) == "trunk"
    assert cfg.git.branch == "trunk"


@pytest.mark.parametrize("branch", [
    "-delete", "--upload-pack=touch {canary}", "main..x", "a b", "x@{1}", "refs/heads/",
    "main\n", "HEAD", "a:b", "x~1", "ref*", "x" * 300, "main.lock", "/main",
])
def test_rejected_branches(branch: str, repo: Path, work: Path, tmp_path: Path) -> None:
    canary = tmp_path / "pwned"
    branch = branch.replace("{canary}", str(canary))
    with pytest.raises(snapshots.SourceConfigError, match="branch"):
        snapshots.GitSource(str(repo), branch, work)
    src = snapshots.GitSource(str(repo), "main", work)
    src.fetch()
    with pytest.raises(snapshots.SourceConfigError):
        src.snapshot_at(branch)
    assert not canary.exists()


def test_refs_heads_prefix_is_accepted(repo: Path, work: Path) -> None:
    assert snapshots.GitSource(str(repo), "refs/heads/main", work).branch == "main"


def hook_dir(path: Path, canary_dir: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name in ("post-checkout", "post-merge", "post-update", "reference-transaction",
                 "pre-receive", "update", "post-rewrite", "pre-auto-gc", "fsmonitor"):
        hook = path / name
        hook.write_text(f"#!/bin/sh\ntouch {canary_dir}/{name}\n")
        hook.chmod(0o755)
    return path


def test_hooks_and_fsmonitor_never_run(repo: Path, work: Path, tmp_path: Path) -> None:
    canaries = tmp_path / "canaries"
    canaries.mkdir()
    hooks = hook_dir(tmp_path / "evil-hooks", canaries)
    hook_dir(repo / ".git" / "hooks", canaries)
    git(repo, "config", "core.hooksPath", str(hooks))
    git(repo, "config", "core.fsmonitor", str(hooks / "fsmonitor"))
    git(repo, "config", "uploadpack.packObjectsHook", str(hooks / "update"))
    git(repo, "checkout", "-q", "-b", "probe")  # the hooks are live for a normal git...
    assert (canaries / "post-checkout").exists()
    for ran in canaries.iterdir():
        ran.unlink()
    src = snapshots.GitSource(str(repo), "main", work)
    src.fetch()
    hook_dir(work / "mirror.git" / "hooks", canaries)  # ...and planted in our mirror
    git(repo, "checkout", "-q", "main")
    for ran in canaries.iterdir():
        ran.unlink()
    commit(repo, {"prompts/n.yaml": "n: 1\n"}, "more")
    for ran in canaries.iterdir():
        ran.unlink()
    src.fetch()
    src.snapshot_at("probe")
    assert sorted(p.name for p in canaries.iterdir()) == []


def test_submodules_are_not_cloned(repo: Path, work: Path, tmp_path: Path) -> None:
    sub = tmp_path / "sub"
    sub.mkdir()
    git(sub, "init", "-q", "-b", "main")
    commit(sub, {"SUBMODULE_MARKER.yaml": "inside: submodule\n"}, "sub")
    git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(sub), "vendor")
    git(repo, "commit", "-q", "--no-verify", "-m", "add submodule")
    src = snapshots.GitSource(str(repo), "main", work)
    assert "vendor/SUBMODULE_MARKER.yaml" not in src.load(src.fetch()).files
    assert not any(p.name == "SUBMODULE_MARKER.yaml" for p in work.rglob("*"))
    assert not (work / "mirror.git" / "modules").exists()


def test_credentials_are_redacted_everywhere(work: Path) -> None:
    url = "https://user:s3cret@127.0.0.1:1/repo.git"
    src = snapshots.GitSource(url, "main", work)
    assert "s3cret" not in repr(src)
    assert "***" in repr(src)
    assert "s3cret" not in src.url
    with pytest.raises(snapshots.SourceUnavailable) as info:
        src.fetch()
    assert "***" in str(info.value)
    assert "s3cret" not in str(info.value)
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__
    context = info.value.__context__
    assert "s3cret" not in str(context) + str(getattr(context, "stderr", ""))
    for path, data in all_text(work):
        assert b"s3cret" not in data, path
    with pytest.raises(snapshots.SourceConfigError) as bad:
        snapshots.GitSource("https://user:s3cret@evil.example/x", "main", work,
                         allowed_hosts=["github.com"])
    assert "s3cret" not in str(bad.value)


def test_token_as_user_name_is_redacted(work: Path) -> None:
    src = snapshots.GitSource("https://ghp_abcdef123456@127.0.0.1:1/r.git", "main", work)
    with pytest.raises(snapshots.SourceUnavailable) as info:
        src.fetch()
    assert "ghp_abcdef123456" not in str(info.value) + repr(src)


@pytest.mark.parametrize(("text", "expected"), [
    ("https://user:token@host/x", "https://***@host/x"),
    ("ssh://user:pw@host:22/x", "ssh://***@host:22/x"),
    ("fatal: 'https://a@b:c@host/x' failed", "fatal: 'https://***@host/x' failed"),
    ("https://host/x", "https://host/x"),
    ("git@github.com:org/repo.git", "git@github.com:org/repo.git"),
])
def test_redact(text: str, expected: str) -> None:
    assert snapshots.redact(text) == expected


def test_symlinks_are_materialised_without_reading_their_target(repo: Path,
                                                                work: Path) -> None:
    secret = Path("/etc/passwd").read_bytes().splitlines()[0]
    os.symlink("/etc/passwd", repo / "models" / "evil.yaml")
    os.symlink("../../../../../../etc/passwd", repo / "prompts" / "escape.yaml")
    os.symlink("/etc", repo / "linkdir")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--no-verify", "-m", "links")
    src = snapshots.GitSource(str(repo), "main", work)
    snap = src.fetch()
    link = work / snap.revision / "models" / "evil.yaml"
    assert link.is_symlink()
    assert os.readlink(link) == "/etc/passwd"
    for path, data in all_text(work / snap.revision):
        assert secret not in data, path
    issues = src.load(snap).issues
    messages = {i.file: i.message for i in issues}
    assert "symbolic link" in messages["models/evil.yaml"]
    assert "symbolic link" in messages["prompts/escape.yaml"]
    assert all(secret.decode() not in str(i) for i in issues)


def evil_commit(git_dir: Path, outside: Path) -> dict[str, str]:
    """Commits whose trees git itself never writes, made with plumbing in ``git_dir``."""

    def run(*args: str, stdin: str = "") -> str:
        return subprocess.run(["git", *args], cwd=git_dir, check=True, capture_output=True,
                              text=True, input=stdin, env={**os.environ, **AUTHOR}).stdout.strip()

    blob = run("hash-object", "-w", "--stdin", stdin="owned\n")
    link = run("hash-object", "-w", "--stdin", stdin=str(outside))
    inner = run("mktree", stdin=f"100644 blob {blob}\tpwned\n")
    trees = {
        "dot-git": f"100644 blob {blob}\t.git\n",
        "dot-dot": f"100644 blob {blob}\t..\n",
        "upper-git": f"040000 tree {inner}\t.GIT\n",
        "duplicate": f"100644 blob {blob}\ta\n100644 blob {blob}\ta\n",
        # CVE-2024-32002 shape: a link and a directory of the same name
        "link-then-dir": f"120000 blob {link}\ta\n040000 tree {inner}\ta\n",
        "dir-then-link": f"040000 tree {inner}\ta\n120000 blob {link}\ta\n",
    }
    return {name: run("commit-tree", run("mktree", stdin=text), "-m", name)
            for name, text in trees.items()}


def test_unsafe_trees_are_refused_by_fsck_on_fetch(repo: Path, work: Path,
                                                   tmp_path: Path) -> None:
    src = snapshots.GitSource(str(repo), "main", work)
    good = src.fetch()
    for name, evil in evil_commit(repo, tmp_path / "outside").items():
        git(repo, "update-ref", "refs/heads/main", evil)
        with pytest.raises(snapshots.SourceUnavailable, match="fsck"):
            src.fetch()
        assert src.last_good == good, name
    assert not (tmp_path / "outside").exists()
    assert not list(work.glob("tmp-*"))


def test_unsafe_trees_already_in_the_mirror_are_refused(repo: Path, work: Path,
                                                        tmp_path: Path) -> None:
    # second layer: objects that reached the mirror without fsck are still never written
    outside = tmp_path / "outside"
    outside.mkdir()
    src = snapshots.GitSource(str(repo), "main", work)
    good = src.fetch()
    for name, evil in evil_commit(work / "mirror.git", outside).items():
        with pytest.raises(snapshots.SourceUnavailable, match=r"unsafe path|conflicting"):
            src.snapshot_at(evil)
        assert not (work / evil).exists(), name
        assert list(outside.iterdir()) == [], name
    assert src.last_good == good
    assert not list(work.glob("tmp-*"))


def test_hostile_parent_environment_is_ignored(repo: Path, work: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    canaries = tmp_path / "canaries"
    canaries.mkdir()
    hooks = hook_dir(tmp_path / "evil-hooks", canaries)
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "core.hooksPath")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", str(hooks))
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", f"'core.hookspath'='{hooks}'")
    src = snapshots.GitSource(str(repo), "main", work)
    assert src.load(src.fetch()).config is not None
    assert list(canaries.iterdir()) == []


# --------------------------------------------------------------------------- local folders


def test_local_source_hashes_the_yaml_files(template_copy: Path) -> None:
    src = snapshots.LocalSource(template_copy)
    first = src.fetch()
    assert first.revision.startswith("local-")
    assert len(first.revision) == 6 + 40
    assert first.path == template_copy.resolve()
    assert first.files_changed is None
    again = src.fetch()
    assert again.revision == first.revision
    assert again.files_changed == frozenset()
    (template_copy / "README.md").write_text("not a spec\n")
    assert src.fetch().revision == first.revision
    (template_copy / "prompts" / "new.yaml").write_text("a: 1\n")
    changed = src.fetch()
    assert changed.revision != first.revision
    assert changed.files_changed == {"prompts/new.yaml"}
    assert src.snapshot_at(changed.revision) == src.last_good
    with pytest.raises(snapshots.RevisionNotFound):
        src.snapshot_at(first.revision)


def test_local_source_of_a_missing_dir_is_unavailable(tmp_path: Path) -> None:
    src = snapshots.LocalSource(tmp_path / "gone")
    with pytest.raises(snapshots.SourceUnavailable):
        src.fetch()


def test_open_source_picks_the_right_source(repo: Path, template_copy: Path,
                                            work: Path, tmp_path: Path) -> None:
    assert isinstance(snapshots.open_source(str(repo), "main", work), snapshots.GitSource)
    assert isinstance(snapshots.open_source(f"file://{repo}", "main", work), snapshots.GitSource)
    local = snapshots.open_source(str(template_copy), "main", work)
    assert isinstance(local, snapshots.LocalSource)
    as_is = snapshots.open_source(str(repo), "main", work, work_tree=True)
    assert isinstance(as_is, snapshots.LocalSource)
    remote = snapshots.open_source("https://github.com/org/repo.git", "main", work,
                                allowed_hosts=["github.com"])
    assert isinstance(remote, snapshots.GitSource)
    with pytest.raises(snapshots.SourceConfigError, match="not a directory"):
        snapshots.open_source(str(tmp_path / "nothing"), "main", work)
