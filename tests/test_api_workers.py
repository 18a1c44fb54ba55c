"""``llmops serve`` with several worker processes: one socket, one set of metrics, one
dashboard key, a clean stop.

Starts the real command (two workers over a SQLite store under a temporary home) and talks
to it over loopback with fresh connections, so the kernel hands them to both workers.
"""

from __future__ import annotations

import os
import re
import socket
import time
from pathlib import Path

import httpx
import pytest
from test_daemon import llmops_process, stop

from conftest import SERVER_START_SECONDS
from llmops.cli import serve_cmd

pytestmark = pytest.mark.slow

REQUESTS = 40


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _csrf(base: str, cookie: str | None) -> tuple[str, str]:
    """The login form's CSRF token and the nonce cookie, on a new connection."""
    answer = httpx.get(f"{base}/login", cookies={"llmops_csrf": cookie} if cookie else None)
    token = re.search(r'name="csrf" value="([^"]+)"', answer.text)
    assert answer.status_code == 200, answer.text[:300]
    assert token is not None, answer.text[:300]
    return token.group(1), cookie or answer.cookies["llmops_csrf"]


def test_serve_workers_share_one_socket_their_metrics_and_the_dashboard_key(
        tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "LLMOPS_HOME": str(tmp_path / "home"),
           "LLMOPS_DATABASE_URL": f"sqlite:///{tmp_path / 'llmops.db'}",
           "TMPDIR": str(tmp_path)}
    base = f"http://127.0.0.1:{port}"
    with llmops_process("serve", "--workers", "2", "--port", str(port), env=env) as proc:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while True:
            try:
                if httpx.get(f"{base}/llm-ops/v1/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "llmops serve --workers 2 did not start"
            time.sleep(0.1)
        workers = _children(proc.pid)
        assert len(workers) >= 2
        before = _served(base)
        for _ in range(REQUESTS):  # a new connection each: either worker may take it
            assert httpx.get(f"{base}/llm-ops/v1/healthz").status_code == 200
        assert _served(base) - before == REQUESTS  # summed over the workers
        token, cookie = _csrf(base, None)
        assert {_csrf(base, cookie)[0] for _ in range(20)} == {token}
        assert list(tmp_path.glob("llmops-metrics-*"))  # the workers' samples live here
        err = stop(proc)
    assert "Started parent process" in err
    assert not list(tmp_path.glob("llmops-metrics-*"))  # removed with the server
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [pid for pid in workers if _alive(pid)] == []


def _alive(pid: int) -> bool:
    """Running (not gone, not a zombie awaiting its reaper)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status


def _served(base: str) -> float:
    text = httpx.get(f"{base}/metrics").text
    found = re.search(r'llmops_api_requests_total\{method="GET",route="/llm-ops/v1/healthz",'
                      r'status="200"\} ([0-9.e+]+)', text)
    return float(found.group(1)) if found else 0.0


def test_serve_defaults_to_a_worker_per_cpu_up_to_four(monkeypatch: pytest.MonkeyPatch) -> None:
    for cpus, workers in ((None, 1), (1, 1), (2, 2), (8, 4)):
        monkeypatch.setattr(os, "cpu_count", lambda cpus=cpus: cpus)
        assert serve_cmd.default_workers() == workers
