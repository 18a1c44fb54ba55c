"""One write at a time per repo and branch: an ``flock`` in the repo's git directory.

Role: serialise write-back commits onto one branch of one specs repo across
threads *and* processes (several API workers, the CLI), so that concurrent
writes queue instead of racing each other's compare-and-swap of the branch
and giving up. Input: the repository's git directory (``git rev-parse
--git-common-dir``: shared by all its work trees), a branch name and how long
to wait. Output: a context manager that holds an exclusive ``flock`` on
``<git dir>/llmops/write-<sha256 of the branch>.lock`` (``llmops.engine.lockfile``:
a regular file, no link followed) while the caller commits, or raises ``Busy``
(a ``Conflict``: a 409) once the wait is over.
Called by ``llmops.engine.source.writeback``.

``flock`` locks belong to an open file description, so two threads of one
process, each opening the file, exclude each other as two processes do (an
``fcntl``/``lockf`` record lock would not: it is per process). The kernel drops
the lock when its holder dies, so a killed writer never leaves the branch
locked. The lock file stays (an empty file); git ignores unknown files in its
directory. Writers that do not take the lock (a ``git push`` into the repo, a
commit in its work tree) are still caught by the compare-and-swap of the
branch (``gitcommit.swap_ref``), which makes the writer redo its edit.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path

from llmops.engine import errors, lockfile

WAIT_SECONDS = 30.0
"""How long a write waits for the writes queued before it (a 409 after that)."""


class Busy(errors.Conflict):
    """Other writes to the same branch held the lock for longer than the wait."""


def lock_path(git_dir: Path, branch: str) -> Path:
    """``<git_dir>/llmops/write-<hash>.lock``: one file per branch (names with ``/`` too)."""
    digest = hashlib.sha256(branch.encode("utf-8")).hexdigest()[:32]
    return git_dir / "llmops" / f"write-{digest}.lock"


@contextlib.contextmanager
def branch_locked(git_dir: Path, branch: str, *, wait: float | None = None,
                  shown: str = "") -> Iterator[None]:
    """Hold the write lock of ``branch`` in the repo at ``git_dir`` (see the module doc).

    ``wait``: seconds (default ``WAIT_SECONDS``); ``shown``: how the repo is named in
    ``Busy``'s message (no credentials)."""
    wait = WAIT_SECONDS if wait is None else wait
    path = lock_path(git_dir, branch)
    path.parent.mkdir(mode=0o755, exist_ok=True)
    try:
        fd = lockfile.acquire(path, wait=wait, mode=0o644)
    except lockfile.LockTimeout:
        raise Busy(f"other writes to {branch}{' of ' + shown if shown else ''} "
                   f"kept it busy for {wait:g} s; nothing was written, retry",
                   details={"branch": branch, "retryable": True}) from None
    try:
        yield
    finally:
        lockfile.release(fd)
