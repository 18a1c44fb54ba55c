"""Has anything under a directory changed since we looked? (Linux inotify, no thread.)

Role: let the hydrate actuator skip re-reading an unchanged published set. A
``DirWatch`` is armed on a directory and its subdirectories *before* the set is
read; ``changed()`` then answers, without a single ``stat``, whether any file in
them was written, created, removed, renamed or had its attributes changed since.
Input: a directory. Output: ``changed()`` (True also when the kernel's event
queue overflowed, or the watched directory itself went away). Callers:
``actuate.hydrate.HydrateActuator.observe``.

Why not watchdog's observers: they deliver events on a thread, so an edit made
just before a pass could be reported after it. Here the inotify descriptor is
non-blocking and drained in ``changed()``: the kernel queues an event before the
writing system call returns, so every edit completed before ``changed()`` is
seen by it. Where inotify is missing (not Linux) or exhausted
(``max_user_instances``, ``max_user_watches``), ``arm`` returns None and the
caller reads the directory in full, as before.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import weakref
from pathlib import Path

_IN_MODIFY, _IN_ATTRIB, _IN_CLOSE_WRITE = 0x2, 0x4, 0x8
_IN_MOVED_FROM, _IN_MOVED_TO, _IN_CREATE, _IN_DELETE = 0x40, 0x80, 0x100, 0x200
_IN_DELETE_SELF, _IN_MOVE_SELF = 0x400, 0x800
_IN_ONLYDIR, _IN_DONT_FOLLOW = 0x1000000, 0x2000000
_MASK = (_IN_MODIFY | _IN_ATTRIB | _IN_CLOSE_WRITE | _IN_MOVED_FROM | _IN_MOVED_TO
         | _IN_CREATE | _IN_DELETE | _IN_DELETE_SELF | _IN_MOVE_SELF
         | _IN_ONLYDIR | _IN_DONT_FOLLOW)
_READ_SIZE = 64 * 1024


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()


class DirWatch:
    """An armed inotify watch on a directory tree; ``changed()`` drains its events."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._close = weakref.finalize(self, os.close, fd)
        self._changed = False

    @classmethod
    def arm(cls, root: Path) -> DirWatch | None:
        """Watch ``root`` and every directory below it, or None where that cannot be."""
        if _LIBC is None:
            return None
        fd = _LIBC.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            return None
        watch = cls(fd)
        dirs = [root, *(Path(d) / n for d, names, _ in os.walk(root) for n in names)]
        for directory in dirs:
            if _LIBC.inotify_add_watch(fd, os.fsencode(directory), _MASK) < 0:
                watch.close()
                return None
        return watch

    def changed(self) -> bool:
        """Whether anything happened in the tree since ``arm`` (stays True once it did)."""
        with contextlib.suppress(BlockingIOError):
            while os.read(self._fd, _READ_SIZE):
                self._changed = True
        return self._changed

    def close(self) -> None:
        self._close()
