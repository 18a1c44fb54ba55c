"""Leader election: only one daemon acts, and a lost lease is noticed before acting.

Against the real services: SQLite files and PostgreSQL databases from the
``store`` fixtures, Redis on 127.0.0.1:6379 (``LLMOPS_TEST_REDIS_URL``),
and real processes for the cross-process cases.
"""

from __future__ import annotations

import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
import redis

from conftest import REDIS_URL
from llmops.engine.run import leader
from llmops.engine.store import audit, db, models, state

PG_ADMIN_URL = os.environ.get("LLMOPS_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")

CONTENDER = """
import sys, time
from llmops.engine.run import leader
from llmops.engine.store.db import Store

lease = leader.lease_for(Store(sys.argv[1]), name=sys.argv[2])
leading = lease.acquire()
print("leader" if leading else "follower", flush=True)
while True:
    time.sleep(0.05)
    if leading:
        if not lease.held():
            print("lost", flush=True)
            leading = False
    elif lease.acquire():
        print("leader", flush=True)
        leading = True
"""


@pytest.fixture
def lease_name(raw: redis.Redis) -> Iterator[str]:
    """A lease name no other test uses; its Redis key is deleted afterwards."""
    name = f"test-{secrets.token_hex(6)}"
    yield name
    raw.delete(leader.REDIS_KEY_PREFIX + name)


# --------------------------------------------------------------------------- store leases


def test_only_one_lease_on_a_database_acquires_until_it_is_released(store: db.Store) -> None:
    first, second = leader.lease_for(store), leader.lease_for(store)

    assert first.acquire()
    assert first.acquire(), "acquiring again while leading stays leader"
    assert not second.acquire()
    assert first.held()
    assert not second.held()

    first.release()
    assert not first.held()
    assert second.acquire()
    assert second.held()
    assert not first.acquire()

    second.release()
    assert first.acquire(), "a lease taken twice is given up by one release"
    first.release()
    assert second.acquire()
    second.release()


def test_leases_with_different_names_do_not_exclude_each_other(store: db.Store) -> None:
    daemon = leader.lease_for(store, name="llmops-daemon")
    other = leader.lease_for(store, name="llmops-router")
    assert daemon.acquire()
    assert other.acquire()
    daemon.release()
    other.release()


def test_a_killed_postgres_session_loses_the_lease_to_the_other(postgres_url: str) -> None:
    store = db.Store(postgres_url)
    first, second = leader.lease_for(store), leader.lease_for(store)
    assert first.acquire()
    assert not second.acquire()

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        pids = [row[0] for row in admin.execute(
            "SELECT l.pid FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
            " WHERE l.locktype = 'advisory' AND d.datname = %s", (store.url.database,))]
        assert len(pids) == 1
        admin.execute("SELECT pg_terminate_backend(%s)", (pids[0],))

    assert _eventually(second.acquire)
    assert not first.held()
    assert not first.acquire(), "the lost lease must not come back while the other leads"
    second.release()
    store.close()


def test_a_removed_lock_file_is_noticed_by_its_holder(tmp_path: Path) -> None:
    store = db.Store(f"sqlite:///{tmp_path / 'llmops.db'}")
    first, second = leader.lease_for(store), leader.lease_for(store)
    assert first.acquire()
    lock_file = Path(f"{store.url.database}.leader.lock")
    assert lock_file.exists()

    lock_file.unlink()  # e.g. a clean-up job; the next contender locks a new file
    assert second.acquire()
    assert not first.held()
    assert not first.acquire()
    second.release()
    assert lock_file.exists(), "release never deletes the lock file"


@pytest.mark.parametrize("planted", ["fifo", "symlink", "directory"])
def test_something_planted_at_the_lock_path_is_never_a_lock_nor_a_hang(
        tmp_path: Path, planted: str) -> None:
    """A FIFO must not block the open (nor pass for a lock), a symlink must not have the
    lease lock and truncate the file it points to, a directory is no lock either."""
    store = db.Store(f"sqlite:///{tmp_path / 'llmops.db'}")
    lease = leader.lease_for(store)
    lock_file = leader.lock_path(str(store.url.database))
    precious = tmp_path / "precious"
    precious.write_text("not yours\n")
    if planted == "fifo":
        os.mkfifo(lock_file)
    elif planted == "symlink":
        lock_file.symlink_to(precious)
    else:
        lock_file.mkdir()
    answers: list[bool] = []
    worker = threading.Thread(target=lambda: answers.extend([lease.acquire(), lease.held()]),
                              daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "acquire() blocked on what was planted at the lock path"
    assert answers == [False, False]
    assert precious.read_text() == "not yours\n"

    if planted == "directory":
        lock_file.rmdir()
    else:
        lock_file.unlink()
    assert lease.acquire(), "once the path is free again, the lease is taken as usual"
    lease.release()
    store.close()


def test_a_lock_file_replaced_by_a_symlink_to_itself_is_noticed(tmp_path: Path) -> None:
    store = db.Store(f"sqlite:///{tmp_path / 'llmops.db'}")
    lease = leader.lease_for(store)
    assert lease.acquire()
    lock_file = leader.lock_path(str(store.url.database))
    moved = lock_file.with_name("moved.lock")
    lock_file.rename(moved)
    lock_file.symlink_to(moved)  # the path resolves to our very file, through a link
    assert not lease.held()
    store.close()


# --------------------------------------------------------------------------- fencing tokens


def test_each_acquisition_takes_a_newer_epoch_and_an_older_one_writes_nothing(
        store: db.Store) -> None:
    first = store.next_fence("llmops-daemon")
    second = store.next_fence("llmops-daemon")
    other = store.next_fence("llmops-router")
    assert (first.epoch, second.epoch, other.epoch) == (1, 2, 1)

    with store.fenced(second):
        state.start_run(store, "dev", "a" * 40)
        audit.AuditLog(store).append(audit.AuditEntry("ci", "apply", "x", "intent"))
    with store.fenced(first):
        with pytest.raises(db.FencedOut, match="epoch 1 is stale"):
            state.start_run(store, "dev", "b" * 40)
        with pytest.raises(db.FencedOut):
            audit.AuditLog(store).append(audit.AuditEntry("ci", "apply", "y", "intent"))
        with pytest.raises(db.FencedOut), store.session(write=True) as session:
            session.add(models.ReconcileRun(
                environment="dev", revision="c" * 40, started_at=datetime.now(UTC),
                finished_at=None, result="running", counts={}, error="", plan={}))
        # Reads go on, and other threads (the API's) never carry the daemon's fence.
        assert [r.revision for r in state.list_runs(store)] == ["a" * 40]
        elsewhere = threading.Thread(target=state.start_run, args=(store, "dev", "d" * 40))
        elsewhere.start()
        elsewhere.join()
    assert sorted(r.revision for r in state.list_runs(store)) == ["a" * 40, "d" * 40]
    assert audit.verify(store).entries == 1


@pytest.mark.slow
def test_two_processes_only_one_leads_and_the_other_takes_over_when_it_dies(
        store_url: str) -> None:
    name = f"test-{secrets.token_hex(4)}"
    procs = [_contender(store_url, name) for _ in range(2)]
    try:
        lines = [proc.lines.get(timeout=30) for proc in procs]
        assert sorted(lines) == ["follower", "leader"]
        holder = procs[lines.index("leader")]
        waiting = procs[lines.index("follower")]
        time.sleep(0.3)
        assert waiting.lines.empty(), "the follower must not lead while the leader lives"

        holder.process.send_signal(signal.SIGKILL)
        holder.process.wait(timeout=10)
        assert waiting.lines.get(timeout=15) == "leader"
    finally:
        for proc in procs:
            proc.process.kill()
            proc.process.wait(timeout=10)


# --------------------------------------------------------------------------- Redis leases


def test_redis_only_one_lease_wins_and_renewal_keeps_it(store: db.Store, lease_name: str,
                                                        raw: redis.Redis) -> None:
    first = leader.lease_for(store, REDIS_URL, name=lease_name, ttl=0.5)
    second = leader.lease_for(store, REDIS_URL, name=lease_name, ttl=0.5)
    assert first.acquire()
    assert not second.acquire()

    for _ in range(8):  # 1.2 s, more than twice the ttl: held() renews it
        time.sleep(0.15)
        assert first.held()
        assert not second.acquire()
    assert 0 < raw.pttl(leader.REDIS_KEY_PREFIX + lease_name) <= 500

    first.release()
    assert not first.held()
    assert raw.get(leader.REDIS_KEY_PREFIX + lease_name) is None
    assert second.acquire()
    second.release()


def test_redis_expiry_hands_the_lease_over_and_the_first_sees_it_lost(
        store: db.Store, lease_name: str, raw: redis.Redis) -> None:
    first = leader.lease_for(store, REDIS_URL, name=lease_name, ttl=0.3)
    second = leader.lease_for(store, REDIS_URL, name=lease_name, ttl=30)
    assert first.acquire()
    time.sleep(0.5)  # the holder stalled past its ttl

    assert second.acquire()
    assert not first.held()
    first.release()  # a stale holder's release must not delete the new holder's key
    assert second.held()
    assert not first.acquire()
    second.release()


def test_redis_key_overwritten_by_someone_else_means_lost(
        store: db.Store, lease_name: str, raw: redis.Redis) -> None:
    lease = leader.lease_for(store, REDIS_URL, name=lease_name)
    assert lease.acquire()
    raw.set(leader.REDIS_KEY_PREFIX + lease_name, "someone-else")
    assert not lease.held()
    lease.release()
    assert raw.get(leader.REDIS_KEY_PREFIX + lease_name) == b"someone-else"


def test_redis_down_means_never_leader_and_nothing_raises(store: db.Store) -> None:
    lease = leader.lease_for(store, "redis://127.0.0.1:1/0", name="down")
    started = time.monotonic()
    assert not lease.acquire()
    assert not lease.held()
    lease.release()
    assert time.monotonic() - started < 5


def test_redis_outage_while_leading_means_lost(lease_name: str,
                                               raw: redis.Redis) -> None:
    lease = leader.RedisLease(REDIS_URL, name=lease_name, ttl=30)
    assert lease.acquire()
    lease._client.connection_pool.reset()
    lease._client.connection_pool.connection_kwargs["port"] = 1  # Redis "goes away"
    assert not lease.held()
    assert not lease.held(), "a lost lease stays lost"


def test_lease_for_rejects_nonsense(store: db.Store) -> None:
    with pytest.raises(ValueError, match="name"):
        leader.lease_for(store, name="")
    with pytest.raises(ValueError, match="ttl"):
        leader.lease_for(store, REDIS_URL, ttl=0)


def test_in_memory_sqlite_store_leases_within_the_process() -> None:
    with db.Store("sqlite://") as store:
        first, second = leader.lease_for(store), leader.lease_for(store)
        assert first.acquire()
        assert not second.acquire()
        first.release()
        assert second.acquire()
        second.release()


# --------------------------------------------------------------------------- helpers


class _Contender:
    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.strip())


def _contender(url: str, name: str) -> _Contender:
    return _Contender(subprocess.Popen(
        [sys.executable, "-c", CONTENDER, url, name], stdout=subprocess.PIPE, text=True))


def _eventually(check: object, timeout: float = 10.0) -> bool:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False
