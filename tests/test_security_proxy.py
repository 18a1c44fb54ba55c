"""The trusted-proxy check looks at the socket peer, under the uvicorn that ``llmops up``
and ``llmops serve`` really start.

uvicorn's ``--proxy-headers`` (on by default, trusting 127.0.0.1) used to rewrite the
client address to the ``X-Forwarded-For`` value before the app ran: a signed request
from a configured proxy then failed (its forwarded client is no proxy), and a local
process could pick the address the check looked at. Each test serves the API on
loopback exactly as the command does and calls it over HTTP.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from conftest import SERVER_START_SECONDS, failed, ok
from llmops.api.auth import proxy_signature
from llmops.cli import up_cmd
from llmops.engine import settings
from llmops.engine.service import compose
from llmops.engine.spec import validate
from llmops.engine.store import catalog

pytestmark = pytest.mark.slow  # every test serves the API over loopback

BASE = "/llm-ops/v1"
TEMPLATE = Path(__file__).resolve().parents[1] / "specs_repo_template"
SECRET = "proxy-secret-for-the-peer-tests"


def signed(user: str = "alice", roles: str = "admin") -> dict[str, str]:
    return {"X-User-Id": user, "X-User-Roles": roles,
            "X-Proxy-Signature": proxy_signature(user, roles, SECRET)}


@contextmanager
def up_api(tmp_path: Path, proxies: list[str]) -> Iterator[str]:
    """The API as ``llmops up`` starts it (``up_cmd._start_api``), over the template's
    catalog; yields its base URL."""
    cfg = settings.load(home=tmp_path / "home", api={
        "trusted_proxies": proxies, "proxy_secret": SECRET, "port": 0})
    services = compose.services(cfg)
    catalog.record(services.store, "a" * 40, validate.load_and_validate(TEMPLATE))
    loop = SimpleNamespace(trigger=lambda: None)
    server, port = up_cmd._start_api(services, loop, 0)  # type: ignore[arg-type]
    try:
        yield f"http://127.0.0.1:{port}{BASE}"
    finally:
        server.should_exit = True
        services.close()


def test_a_signed_request_from_the_proxy_is_believed_whatever_it_forwards(
        tmp_path: Path) -> None:
    with up_api(tmp_path, ["127.0.0.1"]) as base:
        forwarded = {**signed(), "X-Forwarded-For": "203.0.113.5"}
        assert ok(httpx.get(f"{base}/catalog/models", headers=forwarded))["items"]


def test_a_forwarded_address_never_makes_a_peer_trusted(tmp_path: Path) -> None:
    with up_api(tmp_path, ["10.0.0.0/8"]) as base:
        # 127.0.0.1 is no configured proxy; it claims to forward for one
        spoofed = {**signed(), "X-Forwarded-For": "10.1.2.3"}
        body = failed(httpx.get(f"{base}/catalog/models", headers=spoofed), 401)
        assert "trusted proxy" in body["message"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_pins_the_peer_too(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "LLMOPS_HOME": str(tmp_path / "home"),
           "LLMOPS_API__TRUSTED_PROXIES": '["127.0.0.1"]',
           "LLMOPS_API__PROXY_SECRET": SECRET}
    for name in ("LLMOPS_DATABASE_URL", "LLMOPS_REDIS_URL", "LLMOPS_CONFIG",
                 "FORWARDED_ALLOW_IPS"):
        env.pop(name, None)
    proc = subprocess.Popen(
        [sys.executable, "-c", "from llmops.cli.serve_cmd import serve; serve()",
         "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}{BASE}"
        deadline = time.monotonic() + SERVER_START_SECONDS
        while True:
            try:
                httpx.get(f"{base}/readyz", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None, "llmops serve exited"
                assert time.monotonic() < deadline, "llmops serve did not start"
                time.sleep(0.1)
        forwarded = {**signed(), "X-Forwarded-For": "203.0.113.5"}
        # an empty store grants no role anything: believed (403), not refused (401)
        body = failed(httpx.get(f"{base}/catalog/models", headers=forwarded), 403)
        assert "alice lacks the permission" in body["message"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
