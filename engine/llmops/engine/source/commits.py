"""The source stage for plans: one commit of a local git repo -> a directory to load.

Input: a path inside a git work tree (the specs repo, or a folder of a larger
repo) and a revision the user typed (``HEAD~1``, a branch, a SHA). Output:
``load`` gives the resolved commit SHA and that commit's YAML files loaded
(``loader.Loaded``) straight from git objects, nothing written to disk, for
``llmops.engine.spec.validate.validate``; ``snapshot`` gives a temporary
directory holding the files as they are stored in git. Called by the ``llmops
plan`` command (``load``); the reconciler's source stage (``snapshots``) reads
remote repos itself.

Nothing here touches the user's work tree, index or refs. git runs through
``gitcli.Git`` (hooks and fsmonitor off, no prompts, none of the caller's
``GIT_*`` variables or global config); a revision is never passed where git
could read it as an option: it passes ``gitcli.check_expression`` (no leading
``-``) and is resolved with ``rev-parse --verify --end-of-options
REV^{commit}`` before anything uses it. The tree is written by
``gitobjects.export`` (``ls-tree`` and ``cat-file --batch``, not ``git
archive``, whose ``export-ignore``/``export-subst`` attributes would change
what is read), only YAML files outside dot-folders (the loader reads nothing
else); a blob over the loader's file cap is written as a sparse file of its
size, so the loader reports it exactly as it would in a checkout, and a
symbolic link becomes a link, which the loader refuses. ``load`` reads the same
blobs through one ``cat-file --batch`` (for a second revision only those the
first did not hold); a tree with a link or a file over a cap is exported and
loaded from disk instead, so every message stays the checkout's.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from llmops.engine.errors import LlmopsError
from llmops.engine.source import gitcli, gitobjects
from llmops.engine.source.snapshots import Snapshot
from llmops.engine.spec import loader

GIT_TIMEOUT = 300.0


class GitError(LlmopsError):
    """A git command failed, or a revision or path cannot be read."""


def _git(where: Path) -> gitcli.Git:
    """git in the work tree holding ``where`` (found from it, as git itself does)."""
    return gitcli.Git(cwd=where, timeout=GIT_TIMEOUT)


def _error(exc: gitcli.GitFailed, where: Path, verb: str) -> GitError:
    if exc.timed_out:
        return GitError(f"git {verb} timed out in {where}")
    if exc.returncode < 0:
        return GitError("git is not installed (needed to read commits)")
    lines = exc.stderr.strip().splitlines()
    return GitError(f"git {verb} failed in {where}: "
                    f"{lines[-1] if lines else f'exit {exc.returncode}'}")


def locate(path: str | os.PathLike[str]) -> tuple[Path, str]:
    """The work tree holding ``path`` and ``path`` relative to it ("" at its top)."""
    folder = Path(path).resolve()
    if not folder.is_dir():
        raise GitError(f"{path}: is not a directory")
    try:
        out = _git(folder).run("rev-parse", "--show-toplevel")
    except gitcli.GitFailed as exc:
        raise GitError(f"{path}: is not inside a git work tree "
                       f"({_error(exc, folder, 'rev-parse')})") from None
    top = Path(out.decode().strip()).resolve()
    rel = folder.relative_to(top).as_posix()
    return top, "" if rel == "." else rel


def resolve(repo: Path, rev: str) -> str:
    """The full SHA of the commit ``rev`` names in ``repo``."""
    try:
        gitcli.check_expression(rev)
    except gitcli.SourceConfigError as exc:
        raise GitError(str(exc)) from None
    sha = _git(repo).resolve(rev)
    if sha is None:
        raise GitError(f"revision {rev!r} does not name a commit in {repo}")
    return sha


def _yaml_entries(git: gitcli.Git, repo: Path, commit: str, prefix: str,
                  limits: loader.Limits) -> list[gitobjects.TreeEntry]:
    """The YAML files (and links) of ``commit`` under ``prefix``, as the loader would see."""
    treeish = f"{commit}:{prefix}" if prefix else f"{commit}^{{tree}}"
    try:
        return gitobjects.list_tree(git, treeish, label=f"commit {commit[:12]}",
                                    yaml_only=True, max_entries=limits.max_files)
    except gitcli.GitFailed as exc:
        raise GitError(f"{prefix or '.'} does not exist at commit {commit[:12]} "
                       f"({_error(exc, repo, 'ls-tree')})") from None
    except gitobjects.UnsafeTree as exc:
        raise GitError(str(exc)) from None


def _write(git: gitcli.Git, repo: Path, commit: str, entries: list[gitobjects.TreeEntry],
           dest: Path, limits: loader.Limits) -> Path:
    root = dest.resolve()
    try:
        gitobjects.export(git, entries, root, label=f"commit {commit[:12]}",
                          max_blob_bytes=limits.max_file_bytes)
    except gitcli.GitFailed as exc:
        raise _error(exc, repo, "cat-file") from None
    except gitobjects.UnsafeTree as exc:
        raise GitError(str(exc)) from None
    return root


def export(repo: Path, commit: str, prefix: str, dest: Path,
           limits: loader.Limits = loader.DEFAULT_LIMITS) -> Path:
    """Write the YAML files of ``commit`` under ``prefix`` into ``dest``; return ``dest``."""
    git = _git(repo)
    return _write(git, repo, commit, _yaml_entries(git, repo, commit, prefix, limits), dest,
                  limits)


@contextmanager
def snapshot(path: str | os.PathLike[str], rev: str,
             limits: loader.Limits = loader.DEFAULT_LIMITS) -> Iterator[Snapshot]:
    """The specs folder ``path`` as of commit ``rev``, in a temporary directory."""
    top, prefix = locate(path)
    revision = resolve(top, rev)
    try:
        commit = gitobjects.read_commit(_git(top), revision)
    except gitcli.GitFailed as exc:
        raise _error(exc, top, "cat-file") from None
    with tempfile.TemporaryDirectory(prefix=f"llmops-{revision[:12]}-") as tmp:
        yield Snapshot(revision=revision, path=export(top, revision, prefix, Path(tmp), limits),
                       author=commit.author, subject=commit.subject,
                       committed_at=commit.committed_at, repo_url=top.as_uri())


def load(path: str | os.PathLike[str], rev: str, *, limits: loader.Limits = loader.DEFAULT_LIMITS,
         cache: loader.ParseCache | None = loader.DEFAULT_CACHE,
         blobs: dict[str, bytes] | None = None) -> tuple[str, loader.Loaded]:
    """The commit SHA ``rev`` names and the YAML files of ``path`` at it, loaded.

    What ``loader.load_repo`` of a ``snapshot`` gives, without writing the tree
    out: the blobs come from one ``cat-file --batch``. ``blobs`` (blob SHA ->
    content) is shared by the reads of one repo, so a second revision reads only
    the files that differ from the first. A tree holding a link or a file over
    a cap is exported and loaded from disk, as before (rare; the messages match).
    """
    top, prefix = locate(path)
    revision = resolve(top, rev)
    git = _git(top)
    entries = _yaml_entries(git, top, revision, prefix, limits)
    if not gitobjects.loadable_in_memory(entries, limits):
        with tempfile.TemporaryDirectory(prefix=f"llmops-{revision[:12]}-") as tmp:
            root = _write(git, top, revision, entries, Path(tmp), limits)
            return revision, loader.load_repo(root, limits, cache)
    store = {} if blobs is None else blobs
    try:
        gitobjects.read_missing(git, entries, store, f"commit {revision[:12]}")
    except gitcli.GitFailed as exc:
        raise _error(exc, top, "cat-file") from None
    except gitobjects.UnsafeTree as exc:
        raise GitError(str(exc)) from None
    where = f"{(top / prefix).as_posix() if prefix else top.as_posix()}@{revision[:12]}"
    return revision, loader.load_contents(where, ((e.path, store[e.blob]) for e in entries),
                                          limits, cache)
