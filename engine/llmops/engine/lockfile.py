"""Lock files: an exclusive ``flock`` on a regular file, never an unbounded wait.

Role: the one way llmops opens and takes a lock file. Input: the lock file's
path and how long to wait for it. Output: ``open_regular`` (a descriptor on
the regular file at the path, created if missing), ``try_lock``, ``acquire``
/ ``release`` and ``held`` (a context manager). Callers: the leader lease
(``run.leader``), the source mirror (``source.snapshots``), the write-back
mirror and branch locks (``source.push``, ``source.writelock``) and the
hydrate publisher (``actuate.hydrate``).

The open never blocks and never follows a link (``O_NONBLOCK | O_NOFOLLOW``):
a FIFO planted at the path would block a plain read-only open or pass for a
lock, and a symlink would have the lock created, taken (and, for the lease,
written) wherever it points. Only a regular file is a lock (``NotALockFile``
otherwise). Waiting polls ``LOCK_NB`` up to a deadline (``LockTimeout``): a
holder that is stopped (SIGSTOP, a debugger) or hung keeps its lock, and a
blocking ``flock`` would wait for it forever. The kernel drops a lock when its
holder dies. Lock files are never deleted: two processes could then each lock
a different file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

WAIT_SECONDS = 300.0
"""Default wait: longer than a holder making progress takes (a fetch, a publish),
short enough that a stopped holder costs a failed pass, never a hung process."""
_POLL_SECONDS = 0.02
_MAX_POLL_SECONDS = 0.25


class NotALockFile(OSError):
    """Something other than a regular file (a FIFO, a device) is at the lock path."""


class LockTimeout(TimeoutError):
    """Another holder kept the lock for longer than the wait."""


def open_regular(path: Path, mode: int = 0o600) -> int:
    """A descriptor on the regular file at ``path`` (created with ``mode`` if missing).

    Raises ``OSError``: ``ELOOP`` for a symlink, ``EISDIR`` for a directory,
    ``NotALockFile`` for anything else that is not a regular file."""
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
    fd = os.open(path, flags, mode)
    try:
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:  # pragma: no cover - fstat of a descriptor just opened
        os.close(fd)
        raise
    if not regular:
        os.close(fd)
        raise NotALockFile(errno.EINVAL, "not a regular file", str(path))
    return fd


def try_lock(fd: int) -> bool:
    """Take the exclusive lock on ``fd`` if it is free; False if another holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def acquire(path: Path, *, wait: float | None = None, mode: int = 0o600) -> int:
    """The lock on ``path``, waited for at most ``wait`` seconds (``WAIT_SECONDS``): its
    descriptor (give it back with ``release``). Raises ``LockTimeout`` once the wait is
    over, ``OSError`` when the path holds no regular file or cannot be opened."""
    wait = WAIT_SECONDS if wait is None else wait
    fd = open_regular(path, mode)
    try:
        deadline = time.monotonic() + wait
        pause = _POLL_SECONDS
        while not try_lock(fd):
            if time.monotonic() >= deadline:
                raise LockTimeout(errno.ETIMEDOUT,
                                  f"held by another process for over {wait:g} s", str(path))
            time.sleep(pause)
            pause = min(pause * 1.5, _MAX_POLL_SECONDS)
    except BaseException:
        os.close(fd)
        raise
    return fd


def release(fd: int) -> None:
    """Give a lock from ``acquire`` back and close its descriptor."""
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def held(path: Path, *, wait: float | None = None, mode: int = 0o600) -> Iterator[None]:
    """Hold the lock on ``path`` for the block (see ``acquire``)."""
    fd = acquire(path, wait=wait, mode=mode)
    try:
        yield
    finally:
        release(fd)
