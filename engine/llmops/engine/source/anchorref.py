"""The audit chain's anchors in the specs repo: commits on ``refs/llmops/audit-anchors``.

Role: keep anchors of the audit chain where someone who holds this machine (its
database, its anchor file, even its audit key) cannot rewrite them: a ref of
the specs repo, pushed to the remote when the repo is one. The ref is never a
branch, so it triggers no reconcile, no webhook branch filter matches it, and
the followed branch's history stays as the team wrote it. Input: the specs repo
(``writeback.Repo``: a local git directory, or a remote's ``push.Mirror``, the
one write-back uses) and an anchor's commit message (its trailers come from
``store.seal``). Output: the commit made (``append``), and the commits on the
ref, oldest first (``read``). Callers: ``llmops.engine.run.anchoring``.

How: each anchor is a commit of the empty tree on the ref's previous tip, made
with git plumbing (``gitcommit``) through ``gitcli.Git`` and moved by
compare-and-swap under the ref's ``writelock`` (as write-back moves a branch).
For a remote, under the mirror's lock: the ref is fetched (a remote without it
starts a new one), the commit made in the mirror and pushed, never forced; a
rejected push (another writer's anchor got there first) is redone on the
fetched tip, ``ATTEMPTS`` times in all. Make the ref append-only on the remote
(a protected ref: no force push, no deletion) and a rewrite there shows too.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from llmops.engine.errors import Unavailable
from llmops.engine.source import gitcli, gitcommit, gitobjects, push, writeback, writelock

REF = "refs/llmops/audit-anchors"
ATTEMPTS = 3
COMMITTER = gitcommit.Identity("llmops", "llmops@localhost")


class AnchorRefError(Unavailable):
    """git failed on the specs repo or its remote; the message is redacted."""


@contextlib.contextmanager
def _git_errors(shown: str) -> Iterator[None]:
    try:
        yield
    except gitcli.GitFailed as exc:
        raise AnchorRefError(gitcli.redact(f"{shown}: {REF}: {exc.detail()}")) from None
    except (push.MirrorError, writelock.Busy, gitobjects.UnsafeTree,
            gitcli.SourceConfigError) as exc:
        raise AnchorRefError(gitcli.redact(f"{REF}: {exc}")) from None
    except OSError as exc:
        raise AnchorRefError(f"{shown}: {REF}: {exc.strerror or exc}") from None


def append(repo: writeback.Repo, message: str) -> str:
    """Commit ``message`` on the ref (and push it to a remote); the new commit's id."""
    if isinstance(repo, Path):
        return _append_local(repo, message, str(repo))
    with _git_errors(repo.url), repo.locked():
        for attempt in range(ATTEMPTS):
            repo.fetch_ref(REF, missing_ok=True)
            commit = _append_local(repo.path, message, repo.url)
            try:
                repo.push_ref(REF)
            except push.PushRejected:
                if attempt + 1 < ATTEMPTS:
                    continue
                raise
            return commit
    raise AnchorRefError(f"{repo.url}: {REF} kept moving")  # pragma: no cover


def _append_local(path: Path, message: str, shown: str) -> str:
    with tempfile.TemporaryDirectory(prefix="llmops-anchor-") as tmp, _git_errors(shown):
        git = gitcli.Git.open(path, Path(tmp))
        with writelock.branch_locked(writeback.common_dir(git), REF, shown=shown):
            empty_tree = git.text("mktree", stdin=b"").strip()
            for _ in range(ATTEMPTS):
                tip = git.resolve(REF)
                commit = gitcommit.commit_tree(git, empty_tree, [tip] if tip else [], message,
                                               author=COMMITTER, committer=COMMITTER)
                if gitcommit.swap_ref(git, REF, commit, tip, "llmops: audit anchor"):
                    return commit
    raise AnchorRefError(f"{shown}: {REF} kept moving while adding an anchor")


def read(repo: writeback.Repo) -> list[gitobjects.Commit]:
    """The commits on the ref, oldest first ([] when there is no ref); for a remote, the
    ref as fetched from it now."""
    if isinstance(repo, Path):
        return _read_local(repo, str(repo))
    with _git_errors(repo.url), repo.locked():
        if not repo.fetch_ref(REF, missing_ok=True):
            return []
        return _read_local(repo.path, repo.url)


def _read_local(path: Path, shown: str) -> list[gitobjects.Commit]:
    with tempfile.TemporaryDirectory(prefix="llmops-anchor-") as tmp, _git_errors(shown):
        git = gitcli.Git.open(path, Path(tmp))
        tip = git.resolve(REF)
        if tip is None:
            return []
        shas = git.text("rev-list", "--reverse", "--end-of-options", tip).split()
        raws = gitobjects.read_blobs(git, shas, f"{shown} {REF}", kind="commit")
        return [gitobjects.parse_commit(sha, raw) for sha, raw in zip(shas, raws, strict=True)]
