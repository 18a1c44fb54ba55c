"""Faults of the store and of Redis: a hung PostgreSQL, Redis killed mid-pass, a hung leader.

Against the real services: a PostgreSQL database per test (``postgres_url``) reached
through ``StallingProxy``, a loopback TCP proxy that can stop answering (it keeps
accepting and holding connections, as a hung server does, and forwards nothing); a
``redis-server`` process of the test's own on a free port, killed mid-pass; the daemon
(``Daemon.run_once`` over a ``Reconciler``) and the API (``TestClient``) in-process.
"""

from __future__ import annotations

import contextlib
import selectors
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from test_api import client_for
from test_daemon import make_rec

from llmops.engine.run import daemon
from llmops.engine.store import audit, db, state
from llmops.engine.store.models import RunResult

pytestmark = pytest.mark.slow

STATEMENT_TIMEOUT = 1.0
CONNECT_TIMEOUT = 2.0
BOUND = CONNECT_TIMEOUT + STATEMENT_TIMEOUT + db.REPLY_GRACE_SECONDS + 5
"""A hung store must fail a pass or a request within this (seconds)."""


class StallingProxy:
    """A TCP proxy on 127.0.0.1 to ``target``; ``stall()`` makes it a hung server.

    Stalled, it still accepts connections (new and open ones) but forwards nothing
    either way, so a client sees TCP working and no answer. ``resume()`` drops the
    connections held while stalled (as a restarted server would) and forwards again.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stalled = threading.Event()
        self.closing = threading.Event()
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closing.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                self._held.append(client)
            if not self.stalled.is_set():
                threading.Thread(target=self._pipe, args=(client,), daemon=True).start()

    def _pipe(self, client: socket.socket) -> None:
        with contextlib.suppress(OSError), socket.create_connection(self.target) as server:
            sel = selectors.DefaultSelector()
            sel.register(client, selectors.EVENT_READ, server)
            sel.register(server, selectors.EVENT_READ, client)
            while not self.closing.is_set():
                for key, _ in sel.select(0.05):
                    if self.stalled.is_set():
                        continue
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)
                if self.stalled.is_set():
                    time.sleep(0.05)

    def stall(self) -> None:
        self.stalled.set()

    def resume(self) -> None:
        with self._lock:
            held, self._held = self._held, []
        for conn in held:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        self.stalled.clear()

    def close(self) -> None:
        self.closing.set()
        self.listener.close()
        self.resume()


@pytest.fixture
def proxied_store(postgres_url: str) -> Iterator[tuple[db.Store, StallingProxy]]:
    """A migrated store on a fresh PostgreSQL database, reached through a ``StallingProxy``."""
    url = db.normalise_url(postgres_url)
    proxy = StallingProxy((url.host or "127.0.0.1", url.port or 5432))
    store = db.Store(url.set(host="127.0.0.1", port=proxy.port),
                     connect_timeout=CONNECT_TIMEOUT, statement_timeout=STATEMENT_TIMEOUT)
    try:
        store.migrate()
        yield store, proxy
    finally:
        proxy.close()
        store.close()


def within(seconds: float, call: Callable[[], Any]) -> tuple[Any, float]:
    """``call()``'s result and how long it took; fails the test if it is still running
    after ``seconds`` (it is left behind, on a daemon thread)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = call()
        except BaseException as err:
            box["error"] = err

    started = time.monotonic()
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        pytest.fail(f"still waiting on the hung store after {seconds:g} s")
    if "error" in box:
        raise box["error"]
    return box.get("result"), time.monotonic() - started


# --------------------------------------------------------------------------- a hung store


def test_a_server_that_accepts_and_never_answers_fails_the_connect_in_time() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        held: list[socket.socket] = []
        threading.Thread(target=lambda: held.append(listener.accept()[0]), daemon=True).start()
        store = db.Store(f"postgresql://llmops:s3cret-pw@127.0.0.1:{port}/x",
                         connect_timeout=CONNECT_TIMEOUT)
        with pytest.raises(db.StoreUnavailable) as caught:
            within(BOUND, store.ping)
        assert "s3cret-pw" not in str(caught.value)
        store.close()


def test_a_hung_postgres_fails_a_pass_in_time_and_the_daemon_recovers(
        proxied_store: tuple[db.Store, StallingProxy], template_git_repo: Path,
        tmp_path: Path) -> None:
    store, proxy = proxied_store
    seen: list[bool] = []
    loop = daemon.Daemon(make_rec(store, template_git_repo, tmp_path, environments=["dev"]),
                         on_store=seen.append)
    first, _ = within(60, loop.run_once)
    assert first is not None
    assert first[0].result == RunResult.SUCCEEDED
    assert loop.store_available is True

    proxy.stall()  # the pool's open connections and every new one now go unanswered
    during, took = within(BOUND, loop.run_once)
    assert during is None, "a pass with no store acts on nothing"
    assert loop.store_available is False
    assert seen[-1] is False
    assert took < BOUND

    proxy.resume()
    after, _ = within(60, loop.run_once)
    assert after is not None, "the daemon recovers when the store returns"
    assert loop.store_available is True
    assert seen[-1] is True
    assert [r.revision for r in after] == [first[0].revision]


def test_a_pooled_connection_to_a_hung_server_is_dropped_after_the_ping_deadline(
        postgres_url: str) -> None:
    url = db.normalise_url(postgres_url)
    proxy = StallingProxy((url.host or "127.0.0.1", url.port or 5432))
    # A long statement timeout: only the checkout's ping deadline (the connect
    # timeout) can end the wait on the pooled connection in time.
    store = db.Store(url.set(host="127.0.0.1", port=proxy.port),
                     connect_timeout=CONNECT_TIMEOUT, statement_timeout=120)
    try:
        store.migrate()
        proxy.stall()
        with pytest.raises(db.StoreUnavailable):
            _, _took = within(3 * CONNECT_TIMEOUT + 2, store.ping)
        proxy.resume()
        store.ping()
    finally:
        proxy.close()
        store.close()


def test_a_hung_postgres_is_a_503_envelope_in_time_and_the_api_recovers(
        proxied_store: tuple[db.Store, StallingProxy]) -> None:
    store, proxy = proxied_store
    client = client_for(store)
    assert client.get("/llm-ops/v1/reconcile/status").status_code == 200

    proxy.stall()
    for path in ("/llm-ops/v1/reconcile/status", "/llm-ops/v1/readyz"):
        response, took = within(BOUND, lambda p=path: client.get(p))  # type: ignore[misc]
        assert response.status_code == 503, response.text
        body = response.json()
        assert body["status"] == "fail"
        assert body["data"] == {"retryable": True}
        assert took < BOUND

    proxy.resume()
    assert client.get("/llm-ops/v1/reconcile/status").status_code == 200
    assert client.get("/llm-ops/v1/readyz").status_code == 200


def test_the_store_sets_statement_lock_and_idle_timeouts_on_postgres(postgres_url: str) -> None:
    with db.Store(postgres_url, statement_timeout=7, lock_timeout=3,
                  idle_in_transaction_timeout=11) as store:
        store.migrate()
        with store.connection() as conn:
            got = {name: conn.exec_driver_sql(f"SHOW {name}").scalar_one() for name in (
                "statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout")}
    assert got == {"statement_timeout": "7s", "lock_timeout": "3s",
                   "idle_in_transaction_session_timeout": "11s"}


def test_the_store_timeouts_come_from_the_settings(postgres_url: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from llmops.engine import settings
    from llmops.engine.service import compose

    monkeypatch.setenv("LLMOPS_DB__STATEMENT_TIMEOUT_SECONDS", "12.5")
    monkeypatch.setenv("LLMOPS_DB__LOCK_TIMEOUT_SECONDS", "4")
    monkeypatch.setenv("LLMOPS_DB__IDLE_IN_TRANSACTION_TIMEOUT_SECONDS", "90")
    with compose.store_at(postgres_url, settings.load()) as store, \
            store.connection() as conn:
        got = [conn.exec_driver_sql(f"SHOW {name}").scalar_one() for name in (
            "statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout")]
    assert got == ["12500ms", "4s", "90s"]


def test_a_lock_held_by_someone_else_is_store_unavailable_after_the_lock_timeout(
        postgres_url: str) -> None:
    with db.Store(postgres_url, lock_timeout=0.5) as store, \
            db.Store(postgres_url) as other:
        store.migrate()
        with other.connection(write=True) as holder:
            holder.exec_driver_sql("LOCK TABLE alembic_version IN ACCESS EXCLUSIVE MODE")
            started = time.monotonic()
            with pytest.raises(db.StoreUnavailable, match="lock timeout"), \
                    store.connection() as conn:
                conn.exec_driver_sql("SELECT * FROM alembic_version").all()
            assert time.monotonic() - started < 5


def redis_server_path() -> str:
    path = shutil.which("redis-server")
    if path is None:
        pytest.fail("redis-server is not installed (the Redis fault tests need a real one)",
                    pytrace=False)
    return path


@contextlib.contextmanager
def own_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A ``redis-server`` of this test's own on a free port: its URL and its process."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    proc = subprocess.Popen([redis_server_path(), "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if time.monotonic() > deadline:
                pytest.fail("redis-server did not start")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0", proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


# --------------------------------------------------------------------------- leadership


def test_redis_killed_mid_pass_never_stops_reconciling(template_git_repo: Path,
                                                       tmp_path: Path) -> None:
    from llmops.cli import daemon_cmd
    from llmops.engine import settings
    from llmops.engine.service import compose

    with own_redis(tmp_path) as (redis_url, redis_proc):
        cfg = settings.Settings(home=tmp_path / "home", redis_url=redis_url,
                                git={"repo": str(template_git_repo), "branch": "main"})
        services = compose.services(cfg)
        loop, _ = daemon_cmd.build(services, str(template_git_repo), "main", ("dev",),
                                   tmp_path / "out", 0)
        check = loop.rec.lease_check
        assert check is not None

        def kill_redis_then_check() -> bool:
            if redis_proc.poll() is None:
                redis_proc.kill()
                redis_proc.wait(10)
            return check()

        loop.rec.lease_check = kill_redis_then_check  # the pass's first write kills Redis
        try:
            first = loop.run_once()
            assert redis_proc.poll() is not None, "Redis was killed during the pass"
            assert first is not None, "the pass went on without Redis"
            assert [r.result for r in first] == [RunResult.SUCCEEDED]
            assert loop.leading
            (template_git_repo / "README.md").write_text("changed\n")
            subprocess.run(["git", "-C", str(template_git_repo), "commit", "-qam", "next"],
                           check=True)
            second = loop.run_once()
            assert second is not None, "later passes run with Redis still down"
            assert second[0].revision != first[0].revision
        finally:
            loop.release()
            services.close()


def test_two_daemons_on_postgres_without_redis_one_leads_and_takes_over_a_hung_leader(
        postgres_url: str, template_git_repo: Path, tmp_path: Path) -> None:
    from llmops.engine.run import leader

    ttl = 2.0
    with db.Store(postgres_url) as store:
        store.migrate()
        first = daemon.Daemon(make_rec(store, template_git_repo, tmp_path / "a",
                                       environments=["dev"]),
                              lease=leader.lease_for(store, ttl=ttl))
        second = daemon.Daemon(make_rec(store, template_git_repo, tmp_path / "b",
                                        environments=["dev"]),
                               lease=leader.lease_for(store, ttl=ttl))
        try:
            assert first.run_once() is not None
            assert second.run_once() is None, "exactly one leads"
            assert not (tmp_path / "b" / "out").exists()
            # The leader hangs: it stops checking its lease (its session stays open).
            started = time.monotonic()
            while second.run_once() is None:
                assert time.monotonic() - started < ttl + 10, "no takeover after the ttl"
                time.sleep(0.2)
            assert time.monotonic() - started >= ttl - 0.5, "taken over only after the ttl"
            assert second.leading
            assert first.run_once() is None, "the old leader, back, sees the loss"
            assert not first.leading
        finally:
            first.release()
            second.release()


def test_a_leader_that_stalls_after_its_check_cannot_record_after_its_successor(
        store: db.Store, template_git_repo: Path, tmp_path: Path) -> None:
    """The window ``held()`` leaves: the check passes, the leader stalls (a GC pause,
    SIGSTOP) past its lease, another replica takes over and records its pass; the old
    leader wakes and goes on writing. The store refuses it (its fencing token is older),
    the pass is reported as a lost lease, and nothing of it is written."""
    from llmops.engine.run import leader

    leases = leader.lease_for(store), leader.lease_for(store)
    first, second = (daemon.Daemon(make_rec(store, template_git_repo, tmp_path / name,
                                            environments=["dev"]), lease=lease)
                     for name, lease in zip("ab", leases, strict=True))
    check = first.rec.lease_check
    assert check is not None
    checks: list[bool] = []
    entries: list[int] = []

    def check_then_stall() -> bool:
        checks.append(check())
        if len(checks) == 2:  # the check before acting (the first is the pass's start)
            leases[0].release()  # stalled past the lease: it is gone (expired, ended)
            assert second.run_once() is not None, "another replica took over and recorded"
            entries.append(audit.verify(store).entries)
        return checks[-1]  # what the check said, before the stall

    first.rec.lease_check = check_then_stall
    try:
        assert first.run_once() is None, "the stalled leader's pass is a lost lease"
        assert checks == [True, True]
        assert not first.leading
        assert second.leading
        assert (first.fence, second.fence) == (db.Fence(leader.DEFAULT_NAME, 1),
                                               db.Fence(leader.DEFAULT_NAME, 2))
        runs = state.list_runs(store)
        assert [r.result for r in runs] == [RunResult.SUCCEEDED], "only the successor's run"
        verified = audit.verify(store)
        assert verified.ok
        assert [verified.entries] == entries, "no audit entry of the old leader's pass"
        assert any((tmp_path / "b" / "out").rglob("*.yaml"))
        assert not any((tmp_path / "a" / "out").rglob("*.yaml")), "the old leader applied"

        second.release()
        first.rec.lease_check = check
        assert first.run_once() is not None, "back as leader, with a new token, it writes"
        assert first.fence == db.Fence(leader.DEFAULT_NAME, 3)
    finally:
        first.release()
        second.release()


def test_a_server_without_idle_session_timeout_still_gets_a_leader(
        postgres_url: str, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    from llmops.engine.run import leader

    real = db.DeadlineConnection.connect
    tried: list[str] = []

    def old_server(conninfo: str = "", **kwargs: Any) -> Any:
        tried.append(kwargs["options"])
        if "idle_session_timeout" in kwargs["options"]:  # what PostgreSQL 13 answers
            raise psycopg.OperationalError(
                'FATAL:  unrecognized configuration parameter "idle_session_timeout"')
        return real(conninfo, **kwargs)

    monkeypatch.setattr(db.DeadlineConnection, "connect", staticmethod(old_server))
    with db.Store(postgres_url) as store:
        lease = leader.lease_for(store, name=f"old-{time.monotonic_ns()}", ttl=2)
        assert lease.acquire()
        assert lease.held()
        lease.release()
    assert len(tried) == 2
    assert "PostgreSQL < 14" in caplog.text
