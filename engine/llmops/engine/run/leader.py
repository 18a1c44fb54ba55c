"""Leader election: at most one daemon acts on the clusters at a time.

Role: a ``Lease`` the daemon takes before a pass and re-checks before every
write; whoever does not hold it stands by. Input: the daemon's ``Store``
(its URL picks the mechanism) and, optionally, a Redis URL. Output: a
``Lease`` from ``lease_for``. Callers: the daemon at start-up and in its
loop (``acquire`` while standing by, ``held`` before acting, ``release`` at
shutdown); the reconciler through the daemon's lease check.

Mechanisms, by what the deployment already has. The daemon always takes the
store's (PostgreSQL or SQLite, below): the store is required anyway, Redis is
optional and its outage must not stop reconciling, and replicas that picked a
mechanism by what they could reach at the time could both lead.
- Redis (only when a caller passes a Redis URL): ``SET key token NX PX ttl``; ``held()``
  extends the expiry with a compare-and-set script (only while the value is
  still our token), ``release()`` deletes with a compare-and-delete script.
  The holder must call ``held()`` more often than ``ttl``, or the key expires
  and another replica may take it.
- PostgreSQL: a session-level ``pg_try_advisory_lock`` on a dedicated
  connection (never one from the store's pool), kept open while leading. The
  server drops the lock when that session ends, so a killed or partitioned
  leader loses it; ``held()`` asks the server whether our backend still
  holds it. TCP keep-alives and ``tcp_user_timeout`` bound how long a dead
  network can hide that; the session's ``idle_session_timeout`` (the ttl)
  ends it when a hung or stopped leader stops checking, so another replica
  takes over after the ttl; each lease query waits at most a few seconds.
- SQLite (one machine): an exclusive ``flock`` (``LOCK_NB``) on
  ``<database>.leader.lock``; the kernel drops it when the process dies. The
  lock file is never deleted (that would let two processes lock two different
  files); if someone else deletes or replaces it, ``held()`` sees the inode
  change and reports loss. It is opened by ``lockfile.open_regular`` (no
  link followed, never blocking, a regular file only): a symlink, FIFO or
  directory planted at the path means "not leading", never a hang or a write
  elsewhere.

Never act when unsure: every error while checking (connection gone, Redis
unreachable, lock file replaced) means "not held", and a lost lease stays
lost until ``acquire()`` wins it again. A check can pass just before the
holder stalls; the fencing token the daemon takes with each acquisition
(``Store.next_fence``) covers that window for the store's writes.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import secrets
import threading
from pathlib import Path
from typing import Protocol

import psycopg
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from llmops.engine import lockfile
from llmops.engine.redact import redact
from llmops.engine.store.db import DeadlineConnection, Store

log = logging.getLogger(__name__)

DEFAULT_NAME = "llmops-daemon"
REDIS_KEY_PREFIX = "llmops:leader:"
REDIS_TIMEOUT_SECONDS = 2.0
PG_CONNECT_TIMEOUT_SECONDS = 5
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
# A query to a peer that stopped acknowledging fails after this long (libpq, ms).
PG_TCP_USER_TIMEOUT_MS = 10_000
# A lease query the server does not answer within this (plus 5 s, client side) is a loss.
PG_REPLY_TIMEOUT_MS = 5_000

# KEYS[1] = lease key, ARGV[1] = our token, ARGV[2] = ttl in ms.
_RENEW_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Lease(Protocol):
    """Leadership, held by at most one process at a time."""

    name: str
    """What is led (``DEFAULT_NAME`` for the daemon); fencing tokens are numbered per name."""

    def acquire(self) -> bool:
        """Non-blocking try; True when this process is (now) the leader."""
        ...

    def held(self) -> bool:
        """Re-check for real (a round trip) that the lease is still ours."""
        ...

    def release(self) -> None:
        """Give the lease up (a no-op when not held); never raises."""
        ...


def advisory_key(name: str) -> int:
    """The PostgreSQL advisory-lock key (a signed bigint) for a lease name."""
    digest = hashlib.sha256(b"llmops-leader\0" + name.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def lock_path(database: str, name: str = DEFAULT_NAME) -> Path:
    """The lock file next to a SQLite database: ``<db>.leader.lock`` for the daemon's lease.

    Other lease names get ``<db>.<name>.leader.lock`` (a digest when the name
    is not a plain file-name word).
    """
    if database.startswith("file:"):
        database = database[len("file:"):].split("?", 1)[0]
    if name == DEFAULT_NAME:
        return Path(database + ".leader.lock")
    if not _PLAIN_NAME.fullmatch(name):
        name = hashlib.sha256(name.encode()).hexdigest()[:16]
    return Path(f"{database}.{name}.leader.lock")


def lease_for(store: Store, redis_url: str = "", *, name: str = DEFAULT_NAME,
              ttl: float = 30.0) -> Lease:
    """The lease that fits the deployment: Redis if given, else the store's database."""
    if not name:
        raise ValueError("lease name must not be empty")
    if ttl <= 0:
        raise ValueError(f"lease ttl must be positive, got {ttl}")
    if redis_url:
        return RedisLease(redis_url, name=name, ttl=ttl)
    if store.dialect == "postgresql":
        return PostgresLease(store, name=name, ttl=ttl)
    database = store.url.database or ""
    if database in ("", ":memory:") or database.startswith("file::memory:"):
        return ProcessLease(store, name=name)
    return FileLease(lock_path(database, name), name=name)


# --------------------------------------------------------------------------- Redis


class RedisLease:
    """A Redis key holding a random token, with an expiry renewed by ``held()``."""

    def __init__(self, url: str, *, name: str, ttl: float) -> None:
        self.name = name
        self.key = REDIS_KEY_PREFIX + name
        self.ttl_ms = max(1, round(ttl * 1000))
        self._display = redact(url)
        self._client = redis.Redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS, retry=Retry(NoBackoff(), 0))
        self._renew = self._client.register_script(_RENEW_SCRIPT)
        self._release = self._client.register_script(_RELEASE_SCRIPT)
        self._token: str | None = None
        self._lock = threading.Lock()

    def acquire(self) -> bool:
        with self._lock:
            if self._token is not None:
                return self._check()
            token = secrets.token_hex(16)
            try:
                won = self._client.set(self.key, token, nx=True, px=self.ttl_ms)
            except redis.RedisError as err:
                log.warning("leader lease %s on %s: cannot acquire: %s",
                            self.key, self._display, err)
                return False
            if won:
                self._token = token
            return bool(won)

    def held(self) -> bool:
        with self._lock:
            return self._token is not None and self._check()

    def _check(self) -> bool:
        token = self._token
        assert token is not None
        try:
            renewed = self._renew(keys=[self.key], args=[token, self.ttl_ms])
        except redis.RedisError as err:
            log.warning("leader lease %s on %s: cannot renew (treated as lost): %s",
                        self.key, self._display, err)
            renewed = 0
        if not renewed:
            self._token = None
        return bool(renewed)

    def release(self) -> None:
        with self._lock:
            token, self._token = self._token, None
            if token is None:
                return
            try:
                self._release(keys=[self.key], args=[token])
            except redis.RedisError as err:
                log.warning("leader lease %s on %s: cannot release (it expires in %d ms): %s",
                            self.key, self._display, self.ttl_ms, err)

    def close(self) -> None:
        self.release()
        self._client.close()

    def __repr__(self) -> str:
        return f"RedisLease({self.key!r} on {self._display!r})"


# --------------------------------------------------------------------------- PostgreSQL


class PostgresLease:
    """A session advisory lock on a connection of its own, open while leading."""

    def __init__(self, store: Store, *, name: str, ttl: float = 30.0) -> None:
        self.name = name
        self.key = advisory_key(name)
        self.ttl_ms = max(1000, round(ttl * 1000))
        self._conninfo = store.url.set(drivername="postgresql").render_as_string(
            hide_password=False)
        self._display = store.display_url
        self._conn: DeadlineConnection | None = None
        self._lock = threading.Lock()

    @property
    def backend_pid(self) -> int | None:
        """The server process of our session while leading (for diagnostics)."""
        conn = self._conn
        return None if conn is None or conn.closed else conn.info.backend_pid

    def acquire(self) -> bool:
        with self._lock:
            if self._conn is not None:
                return self._check()
            try:
                conn = self._connect()
            except psycopg.Error as err:
                log.warning("leader lease on %s: cannot connect: %s",
                            self._display, _first_line(err))
                return False
            try:
                row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
            except psycopg.Error as err:
                log.warning("leader lease on %s: cannot lock: %s",
                            self._display, _first_line(err))
                conn.close()
                return False
            if not (row and row[0]):
                conn.close()
                return False
            self._conn = conn
            return True

    def _connect(self) -> DeadlineConnection:
        """The lease's own session. Its ``idle_session_timeout`` (the ttl) has the server
        end it, and so the lock, when a hung or stopped leader stops checking; PostgreSQL
        before 14 does not know it, and leads without that bound (a warning says so)."""
        options = (f"-c statement_timeout={PG_REPLY_TIMEOUT_MS}"
                   f" -c lock_timeout={PG_REPLY_TIMEOUT_MS}")
        bounded = f"-c idle_session_timeout={self.ttl_ms} {options}"
        for attempt in (bounded, options):
            try:
                conn = DeadlineConnection.connect(
                    self._conninfo, autocommit=True, connect_timeout=PG_CONNECT_TIMEOUT_SECONDS,
                    application_name="llmops-leader", keepalives=1, keepalives_idle=5,
                    keepalives_interval=2, keepalives_count=3,
                    tcp_user_timeout=PG_TCP_USER_TIMEOUT_MS, options=attempt)
            except psycopg.Error as err:
                if attempt is options or "idle_session_timeout" not in str(err):
                    raise
                log.warning("leader lease on %s: the server has no idle_session_timeout "
                            "(PostgreSQL < 14): a hung leader keeps the lease until its "
                            "connection drops", self._display)
                continue
            conn.reply_timeout = PG_REPLY_TIMEOUT_MS / 1000 + 5
            return conn
        raise AssertionError("unreachable")  # pragma: no cover

    def held(self) -> bool:
        with self._lock:
            return self._conn is not None and self._check()

    def _check(self) -> bool:
        conn = self._conn
        assert conn is not None
        # A bigint advisory key shows in pg_locks as classid (high 32 bits),
        # objid (low 32 bits) and objsubid 1.
        unsigned = self.key & 0xFFFF_FFFF_FFFF_FFFF
        try:
            row = conn.execute(
                "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND pid = pg_backend_pid() AND classid::bigint = %s"
                " AND objid::bigint = %s AND objsubid = 1",
                (unsigned >> 32, unsigned & 0xFFFF_FFFF)).fetchone()
        except psycopg.Error as err:
            log.warning("leader lease on %s: session lost (treated as lost): %s",
                        self._display, _first_line(err))
            row = None
        if row is None:
            self._drop()
            return False
        return True

    def release(self) -> None:
        with self._lock:
            conn = self._conn
            if conn is None:
                return
            try:
                conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
            except psycopg.Error as err:
                # Closing the session below releases it on the server anyway.
                log.debug("leader lease on %s: unlock failed: %s", self._display,
                          _first_line(err))
            self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except psycopg.Error as err:  # pragma: no cover - close of a dead socket
                log.debug("leader lease on %s: close failed: %s", self._display, err)

    def close(self) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"PostgresLease({self.key} on {self._display!r})"


def _first_line(err: BaseException) -> str:
    lines = [line for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


# --------------------------------------------------------------------------- SQLite


class FileLease:
    """An exclusive ``flock`` on a lock file next to the SQLite database."""

    def __init__(self, path: Path, *, name: str = DEFAULT_NAME) -> None:
        self.name = name
        self.path = path
        self._fd: int | None = None
        self._lock = threading.Lock()

    def acquire(self) -> bool:
        with self._lock:
            if self._fd is not None:
                return self._check()
            try:
                fd = lockfile.open_regular(self.path)
            except OSError as err:  # a symlink, FIFO or directory planted at the path too
                log.warning("leader lease %s: cannot open: %s", self.path, err)
                return False
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                return False
            self._fd = fd
            if not self._check():  # the file was replaced between open and flock
                return False
            _write_owner(fd)
            return True

    def held(self) -> bool:
        with self._lock:
            return self._fd is not None and self._check()

    def _check(self) -> bool:
        fd = self._fd
        assert fd is not None
        try:
            ours = os.fstat(fd)
            current = os.lstat(self.path)  # a link planted at the path is a replacement
            same = ours.st_nlink > 0 and (ours.st_dev, ours.st_ino) == (
                current.st_dev, current.st_ino)
        except OSError as err:
            log.warning("leader lease %s: cannot check (treated as lost): %s", self.path, err)
            same = False
        if not same:
            log.warning("leader lease %s: lock file was removed or replaced", self.path)
            self._drop()
        return same

    def release(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor drops the flock

    def close(self) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"FileLease({str(self.path)!r})"


def _write_owner(fd: int) -> None:
    """Record who holds the lock (for people looking at the file; never read back)."""
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError as err:
        log.debug("leader lease: cannot record the owner: %s", err)


_PROCESS_HOLDERS: dict[tuple[int, str], object] = {}
_PROCESS_LOCK = threading.Lock()


class ProcessLease:
    """For an in-memory SQLite store, which only this process can see."""

    def __init__(self, store: Store, *, name: str) -> None:
        self.name = name
        self._slot = (id(store), name)
        self._store = store  # keeps id(store) from being reused while we exist

    def acquire(self) -> bool:
        with _PROCESS_LOCK:
            holder = _PROCESS_HOLDERS.setdefault(self._slot, self)
            return holder is self

    def held(self) -> bool:
        with _PROCESS_LOCK:
            return _PROCESS_HOLDERS.get(self._slot) is self

    def release(self) -> None:
        with _PROCESS_LOCK:
            if _PROCESS_HOLDERS.get(self._slot) is self:
                del _PROCESS_HOLDERS[self._slot]

    def close(self) -> None:
        self.release()
