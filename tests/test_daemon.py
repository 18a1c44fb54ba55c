"""The daemon: triggers, file watching, leader lease, metrics, clean shutdown, `llmops up`."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conftest import REDIS_URL
from llmops.engine.actuate.hydrate import HydrateActuator
from llmops.engine.run import daemon, reconciler
from llmops.engine.run.metrics import PrometheusMetrics
from llmops.engine.source import snapshots
from llmops.engine.store import audit, state
from llmops.engine.store.db import Store
from llmops.engine.store.models import RunResult

WEDNESDAY = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


@contextlib.contextmanager
def llmops_process(*argv: str, env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """``llmops ARGV...`` as a child process (pipes for its output) in a session of its own,
    killed with everything it started (``serve``'s workers) if still alive."""
    proc = subprocess.Popen([sys.executable, "-c", "from llmops.cli import main; main()", *argv],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def stop(proc: subprocess.Popen[str]) -> str:
    """SIGTERM, a clean exit within 30 s, and its stderr."""
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return err


def wait_until(check, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def make_rec(store: Store, repo: Path, tmp: Path, **kw: object) -> reconciler.Reconciler:
    return reconciler.Reconciler(store, snapshots.open_source(str(repo), "main", tmp / "work"),
                                 lambda env, cfg: HydrateActuator(tmp / "out"),
                                 clock=lambda: WEDNESDAY, **kw)  # type: ignore[arg-type]


class FlakyLease:
    """A lease we control: acquired once, then lost when told."""

    name = "flaky"

    def __init__(self) -> None:
        self.lost = False
        self.released = False

    def acquire(self) -> bool:
        return not self.lost

    def held(self) -> bool:
        return not self.lost

    def release(self) -> None:
        self.released = True


def test_trigger_wakes_the_loop_and_stop_ends_it(store: Store, template_git_repo: Path,
                                                 tmp_path: Path) -> None:
    loop = daemon.Daemon(make_rec(store, template_git_repo, tmp_path, environments=["dev"]),
                         interval=3600, jitter=0, debounce=0.01)
    thread = threading.Thread(target=loop.run, kwargs={"install_signals": False})
    thread.start()
    try:
        wait_until(lambda: loop.passes == 1)
        loop.trigger()
        wait_until(lambda: loop.passes == 2)
    finally:
        loop.stop()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_file_change_in_a_local_repo_wakes_the_daemon(store: Store, minimal_repo: Path,
                                                      tmp_path: Path) -> None:
    rec = make_rec(store, minimal_repo, tmp_path)
    loop = daemon.Daemon(rec, interval=3600, jitter=0, watch=minimal_repo, debounce=0.2)
    thread = threading.Thread(target=loop.run, kwargs={"install_signals": False})
    thread.start()
    try:
        wait_until(lambda: loop.passes == 1)
        first = state.get_environment_status(store, "dev")
        assert first is not None
        path = minimal_repo / "endpoints/dev/chat.yaml"
        path.write_text(path.read_text().replace("max: 2", "max: 3"))

        def applied_new() -> bool:
            now = state.get_environment_status(store, "dev")
            return now is not None and now.last_applied_revision != first.last_applied_revision

        wait_until(applied_new)
    finally:
        loop.stop()
        thread.join(timeout=10)


def test_only_the_leader_acts_and_a_lost_lease_stops_writes(
        store: Store, template_git_repo: Path, tmp_path: Path) -> None:
    lease = FlakyLease()
    rec = make_rec(store, template_git_repo, tmp_path)
    loop = daemon.Daemon(rec, lease=lease)
    lease.lost = True
    assert loop.run_once() is None
    assert audit.verify(store).entries == 0
    lease.lost = False
    results = loop.run_once()
    assert results is not None
    assert {r.result for r in results} == {RunResult.SUCCEEDED}
    entries = audit.verify(store).entries
    subprocess.run(["git", "-C", str(template_git_repo), "rm", "-q", "-r", "training"],
                   check=True)
    subprocess.run(["git", "-C", str(template_git_repo), "-c", "user.name=a", "-c",
                    "user.email=a@b", "commit", "-qm", "drop training"], check=True)
    lease.lost = True
    assert loop.run_once() is None
    assert audit.verify(store).entries == entries
    assert not loop.leading


@pytest.mark.slow
def test_metrics_are_served(store: Store, template_git_repo: Path, tmp_path: Path) -> None:
    metrics = PrometheusMetrics()
    port = metrics.serve(0)
    loop = daemon.Daemon(make_rec(store, template_git_repo, tmp_path, metrics=metrics))
    loop.run_once()
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'llmops_reconcile_runs_total{environment="dev",result="succeeded"} 1.0' in body
    assert 'llmops_objects_total{action="created",environment="dev"}' in body
    assert "llmops_last_success_timestamp_seconds" in body
    assert 'llmops_reconcile_stage_duration_seconds_count{environment="prod",stage="render"}' \
        in body
    assert "llmops_revision_info{environment=" in body


@pytest.mark.slow
def test_daemon_process_stops_cleanly_on_sigterm(template_git_repo: Path,
                                                 tmp_path: Path) -> None:
    env = {**os.environ, "LLMOPS_HOME": str(tmp_path / "home"),
           "LLMOPS_DAEMON__INTERVAL_SECONDS": "3600"}
    out = tmp_path / "out"
    with llmops_process("daemon", "--repo", str(template_git_repo), "--env", "dev",
                        "--out", str(out), "--metrics-port", "0", env=env) as proc:
        wait_until(lambda: (out / "dev" / "index.json").is_file(), timeout=60)
        err = stop(proc)
    assert "daemon stopped" in err


def test_up_once_runs_the_embedded_default(tmp_path: Path, cli,  # type: ignore[no-untyped-def]
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMOPS_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(reconciler, "datetime", _Wednesday)
    result = cli("up", "--once")
    assert result.code == 0, result.out + result.err
    assert "created specs repo" in result.out
    assert "dev: succeeded" in result.out
    for env in ("dev", "stg", "prod"):
        assert (tmp_path / "home" / "rendered" / env / "index.json").is_file()
    assert (tmp_path / "home" / "llmops.db").is_file()
    again = cli("up", "--once")
    assert "dev: noop" in again.out


class _Wednesday(datetime):
    @classmethod
    def now(cls, tz: object = None) -> _Wednesday:  # type: ignore[override]
        return cls(2026, 11, 25, 9, tzinfo=UTC)


@pytest.mark.slow  # over 0.5 s of CPU on its own
def test_two_daemons_on_one_database_only_one_acts(store: Store, template_git_repo: Path,
                                                   tmp_path: Path) -> None:
    from llmops.engine.run import leader

    first = daemon.Daemon(make_rec(store, template_git_repo, tmp_path / "a"),
                          lease=leader.lease_for(store))
    second = daemon.Daemon(make_rec(store, template_git_repo, tmp_path / "b"),
                           lease=leader.lease_for(store))
    try:
        assert first.run_once() is not None
        assert second.run_once() is None
        assert not (tmp_path / "b" / "out").exists()
        first.release()
        results = second.run_once()
        assert results is not None
        assert {r.result for r in results} == {RunResult.SUCCEEDED}
    finally:
        first.release()
        second.release()


def test_redis_down_never_stops_the_daemon(store: Store, template_git_repo: Path,
                                           tmp_path: Path) -> None:
    from llmops.cli.daemon_cmd import _publisher
    from llmops.engine.store.cache import StatusCache

    down = StatusCache("redis://127.0.0.1:1/0")
    loop = daemon.Daemon(make_rec(store, template_git_repo, tmp_path),
                         on_results=_publisher(down), wait_for_wake=down.listen_wake)
    results = loop.run_once()
    assert results is not None
    assert {r.result for r in results} == {RunResult.SUCCEEDED}
    assert down.get_environment("dev") is None


@pytest.mark.slow
def test_finished_runs_reach_redis(store: Store, template_git_repo: Path,
                                   tmp_path: Path) -> None:
    import secrets

    from llmops.cli.daemon_cmd import _publisher
    from llmops.engine.store.cache import StatusCache

    live = StatusCache(REDIS_URL, prefix=f"llmops-test-{secrets.token_hex(4)}")
    loop = daemon.Daemon(make_rec(store, template_git_repo, tmp_path, environments=["dev"]),
                         on_results=_publisher(live))
    loop.run_once()
    cached = live.get_environment("dev")
    assert cached is not None
    assert cached["result"] == "succeeded"
    runs = live.read_runs()
    assert [event["environment"] for _, event in runs] == ["dev"]


@pytest.mark.slow
def test_up_serves_the_api_and_the_trigger_wakes_the_daemon(tmp_path: Path) -> None:
    import json
    import re

    env = {**os.environ, "LLMOPS_HOME": str(tmp_path / "home"),
           "LLMOPS_DAEMON__INTERVAL_SECONDS": "3600", "LLMOPS_DAEMON__DEBOUNCE_SECONDS": "0.1"}
    with llmops_process("up", "--api-port", "0", env=env) as proc:
        assert proc.stdout is not None
        api = metrics = ""
        while not api:
            line = proc.stdout.readline()
            assert line, "llmops up ended early"
            found = re.search(r"API\s+(http://\S+)/llm-ops/v1/reconcile/status", line)
            api = found.group(1) if found else ""
            found = re.search(r"metrics\s+(http://\S+/metrics)", line)
            metrics = found.group(1) if found else metrics
        token = (tmp_path / "home" / "api-token").read_text().strip()
        auth = {"Authorization": f"Bearer {token}"}
        anonymous = urllib.request.Request(f"{api}/llm-ops/v1/reconcile/status")
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(anonymous, timeout=10)
        assert denied.value.code == 401
        status = json.load(urllib.request.urlopen(urllib.request.Request(
            f"{api}/llm-ops/v1/reconcile/status", headers=auth), timeout=10))
        assert status["status"] == "success"
        assert {e["environment"] for e in status["data"]["environments"]} == {"dev", "stg", "prod"}
        request = urllib.request.Request(f"{api}/llm-ops/v1/reconcile/trigger", data=b"{}",
                                         method="POST",
                                         headers={"Content-Type": "application/json", **auth})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 202
        noop = 'llmops_reconcile_runs_total{environment="dev",result="noop"} 1.0'
        wait_until(lambda: noop in urllib.request.urlopen(metrics, timeout=5).read().decode())
        stop(proc)


def test_gpu_allocation_is_exported(store: Store, template_git_repo: Path,
                                    tmp_path: Path) -> None:
    metrics = PrometheusMetrics()
    loop = daemon.Daemon(make_rec(store, template_git_repo, tmp_path, metrics=metrics))
    loop.run_once()
    sample = metrics.registry.get_sample_value
    chat = {"environment": "prod", "team": "nlp-platform", "endpoint": "support-chat"}
    sql = {"environment": "prod", "team": "data-science", "endpoint": "sql-assistant"}
    assert sample("llmops_endpoint_gpus", chat) == 2.0
    assert sample("llmops_endpoint_gpus", sql) == 1.0
    (template_git_repo / "endpoints/prod/sql-assistant.yaml").unlink()
    subprocess.run(["git", "-C", str(template_git_repo), "-c", "user.name=a", "-c",
                    "user.email=a@b", "commit", "-qam", "drop prod sql-assistant"], check=True)
    loop.rec.confirm_prune = True
    results = loop.run_once()
    assert results is not None
    assert {r.environment: r.result for r in results}["prod"] is RunResult.SUCCEEDED
    assert sample("llmops_endpoint_gpus", sql) is None
    assert sample("llmops_endpoint_gpus", chat) == 2.0
