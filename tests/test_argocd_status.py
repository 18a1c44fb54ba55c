"""Argo CD Application sync and health in `llmops status` and GET /reconcile/status.

Argo CD is a loopback HTTP server answering ``GET /api/v1/applications/{name}``
with responses recorded from a real server (``tests/data/argocd/``): prod
Synced/Healthy, stg OutOfSync/Progressing, dev missing (404), and 401 for a
wrong token. What a user sees: each environment's Application sync, health,
revision and last sync phase; ``unknown (<reason>)`` when Argo CD cannot say,
never a failed command or a 500; the token never printed or logged; nothing
asked of Argo CD unless ``LLMOPS_ARGOCD__URL`` is set.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from fastapi.testclient import TestClient

from conftest import CliResult
from llmops.api.app import create_app
from llmops.api.auth import proxy_signature
from llmops.engine import settings
from llmops.engine.actuate import argocd
from llmops.engine.settings import ArgoCdSettings
from llmops.engine.spec import validate
from llmops.engine.store import Store, catalog, state

# Slow tier: every test talks to an Argo CD API served over loopback HTTP (or a closed port).
pytestmark = pytest.mark.slow

DATA = Path(__file__).resolve().parent / "data" / "argocd"
TOKEN = "argocd-token-0123456789abcdef"
BAD_TOKEN = "not-the-token-9876543210"
PREFIX = "/api/v1/applications/"
BASE = "/llm-ops/v1"
PROXY_SECRET = "proxy-secret-for-tests"
T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
TEMPLATE = Path(__file__).resolve().parents[1] / "specs_repo_template"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    seen: list[tuple[str, str | None]]
    slow: dict[str, float]


class _Handler(BaseHTTPRequestHandler):
    """Argo CD's application endpoint, from the recorded files."""

    server: _Server

    def do_GET(self) -> None:
        auth = self.headers.get("Authorization")
        self.server.seen.append((self.path, auth))
        if auth != f"Bearer {TOKEN}":
            self._send(401, (DATA / "unauthenticated.json").read_bytes())
            return
        if not self.path.startswith(PREFIX):
            self._send(404, b'{"error":"Not Found","code":5,"message":"Not Found"}')
            return
        name = unquote(self.path[len(PREFIX):].split("?", 1)[0])
        time.sleep(self.server.slow.get(name, 0.0))
        recorded = DATA / f"{name}.json"
        if name.startswith("llmops-") and recorded.is_file():
            self._send(200, recorded.read_bytes())
        else:
            body = (DATA / "not-found.json").read_text().replace("llmops-dev", name)
            self._send(404, body.encode())

    def _send(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # a timed-out client
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def argocd_server() -> Iterator[_Server]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.seen = []
    server.slow = {}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def url_of(server: _Server) -> str:
    host, port = server.server_address[:2]
    return f"http://{host!s}:{port}"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[Store]:
    """A store in which the reconciler recorded dev, stg and prod."""
    with Store(f"sqlite:///{tmp_path / 'llmops.db'}") as store:
        store.migrate()
        ready = state.Condition(state.ConditionType.READY, state.ConditionStatus.TRUE,
                                "Applied", "", T0)
        for env in ("dev", "stg", "prod"):
            state.put_environment_status(store, state.EnvironmentStatus(
                environment=env, observed_revision="c" * 40, last_applied_revision="c" * 40,
                last_attempted_revision="c" * 40, conditions=(ready,), last_success_at=T0))
        yield store


@pytest.fixture
def status_cli(cli: Callable[..., CliResult], seeded: Store, tmp_path: Path,
               monkeypatch: pytest.MonkeyPatch) -> Callable[..., CliResult]:
    """`llmops status ARGS...` on the seeded store (Argo CD settings from the env)."""
    monkeypatch.setenv("LLMOPS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LLMOPS_DATABASE_URL", f"sqlite:///{tmp_path / 'llmops.db'}")

    def run(*args: str) -> CliResult:
        return cli("status", *args)

    return run


def configure(monkeypatch: pytest.MonkeyPatch, url: str, token: str = TOKEN) -> None:
    monkeypatch.setenv("LLMOPS_ARGOCD__URL", url)
    monkeypatch.setenv("LLMOPS_ARGOCD__TOKEN", token)


# --------------------------------------------------------------------------- the CLI


def test_status_shows_each_environments_application(
        status_cli: Callable[..., CliResult], argocd_server: _Server,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    configure(monkeypatch, url_of(argocd_server))
    caplog.set_level(logging.DEBUG)
    result = status_cli()
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert "  argocd llmops-prod: Synced, Healthy at 3f6c2b1a9e8d (last sync Succeeded)" \
        in lines
    assert "  argocd llmops-stg: OutOfSync, Progressing at 9a8b7c6d5e4f (last sync Running)" \
        in lines
    assert "  argocd llmops-dev: unknown (application llmops-dev not found (404))" in lines
    # each line follows its environment's line
    assert lines[lines.index(next(ln for ln in lines if ln.startswith("prod:"))) + 1] \
        .startswith("  argocd llmops-prod:")
    assert sorted(argocd_server.seen) == sorted(
        (f"{PREFIX}llmops-{env}", f"Bearer {TOKEN}") for env in ("dev", "stg", "prod"))
    assert TOKEN not in result.out + result.err + caplog.text

    data = json.loads(status_cli("--format", "json").out)
    by_env = {item["environment"]: item["argocd"] for item in data}
    assert by_env["prod"] == {"application": "llmops-prod", "sync": "Synced",
                              "health": "Healthy",
                              "revision": "3f6c2b1a9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b",
                              "operationPhase": "Succeeded", "error": ""}
    assert (by_env["stg"]["sync"], by_env["stg"]["health"],
            by_env["stg"]["operationPhase"]) == ("OutOfSync", "Progressing", "Running")
    assert by_env["dev"]["sync"] == by_env["dev"]["health"] == \
        "unknown (application llmops-dev not found (404))"


def test_a_wrong_token_is_unknown_and_asked_once(
        status_cli: Callable[..., CliResult], argocd_server: _Server,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    configure(monkeypatch, url_of(argocd_server), token=BAD_TOKEN)
    caplog.set_level(logging.DEBUG)
    result = status_cli()
    assert result.code == 0, result.err
    reason = "unknown (Argo CD rejected the token (401); check LLMOPS_ARGOCD__TOKEN)"
    for env in ("dev", "stg", "prod"):
        assert f"  argocd llmops-{env}: {reason}" in result.out.splitlines()
    assert len(argocd_server.seen) == 1  # the token is wrong for all: not asked again
    assert BAD_TOKEN not in result.out + result.err + caplog.text


def test_an_unreachable_argocd_is_unknown(status_cli: Callable[..., CliResult],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch, f"http://127.0.0.1:{closed_port()}")
    result = status_cli()
    assert result.code == 0, result.err
    assert result.out.count("unknown (cannot connect to Argo CD at http://127.0.0.1:") == 3
    assert "Ready" in result.out  # the store's status is still shown


def test_without_argocd_url_nothing_is_asked(status_cli: Callable[..., CliResult],
                                             argocd_server: _Server) -> None:
    result = status_cli()
    assert result.code == 0, result.err
    assert "argocd" not in result.out
    assert all("argocd" not in item for item in json.loads(status_cli("--format", "json").out))
    assert argocd_server.seen == []


# --------------------------------------------------------------------------- the client


def test_a_slow_argocd_costs_one_timeout(argocd_server: _Server) -> None:
    argocd_server.slow["llmops-dev"] = 2.0
    cfg = ArgoCdSettings(url=url_of(argocd_server), token=TOKEN, timeout=0.3)
    started = time.monotonic()
    found = argocd.statuses(cfg, ["dev", "stg", "prod"])
    assert time.monotonic() - started < 1.5
    assert {env: s.sync for env, s in found.items()} == dict.fromkeys(
        ("dev", "stg", "prod"), "unknown (Argo CD did not answer within 0.3s)")
    assert list(found) == ["dev", "stg", "prod"]


def test_app_name_template(argocd_server: _Server) -> None:
    cfg = ArgoCdSettings(url=url_of(argocd_server) + "/", token=TOKEN,
                         app_name_template="llmops-{env}")
    assert argocd.statuses(cfg, ["prod"])["prod"].health == "Healthy"
    other = ArgoCdSettings(url=url_of(argocd_server), token=TOKEN,
                           app_name_template="apps/{env}")
    assert argocd.statuses(other, ["prod"])["prod"].error == \
        "application apps/prod not found (404)"
    assert argocd_server.seen[-1][0] == f"{PREFIX}apps%2Fprod"  # one path segment
    seen = len(argocd_server.seen)
    for bad in ("llmops-{env.__class__}", "llmops-{environment}", "llmops-{0}", "{env"):
        wrong = ArgoCdSettings(url=url_of(argocd_server), token=TOKEN, app_name_template=bad)
        assert "app_name_template" in argocd.statuses(wrong, ["prod"])["prod"].error
    assert len(argocd_server.seen) == seen
    for url in ("ftp://argocd.example.com", "https://admin:pw@argocd.example.com", "argocd"):
        assert "LLMOPS_ARGOCD__URL" in argocd.statuses(
            ArgoCdSettings(url=url), ["prod"])["prod"].error
    assert TOKEN not in repr(cfg) + repr(argocd.ArgoCdClient(cfg))


# --------------------------------------------------------------------------- the API


def api_client(store: Store, argocd_cfg: dict[str, Any] | None = None) -> TestClient:
    overrides: dict[str, Any] = {"api": {"trusted_proxies": ["127.0.0.1/32"],
                                         "proxy_secret": PROXY_SECRET}}
    if argocd_cfg is not None:
        overrides["argocd"] = argocd_cfg
    catalog.record(store, "f" * 40, validate.load_and_validate(TEMPLATE))  # its RBAC Policy
    app = create_app(store, settings=settings.load(**overrides))
    return TestClient(app, client=("127.0.0.1", 50000), headers={
        "X-User-Id": "alice", "X-User-Roles": "admin",
        "X-Proxy-Signature": proxy_signature("alice", "admin", PROXY_SECRET)})


def api_status(client: TestClient, **params: str) -> dict[str, Any]:
    response = client.get(f"{BASE}/reconcile/status", params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "success"
    return {e["environment"]: e["argocd"] for e in body["data"]["environments"]}


def test_api_status_includes_the_application(seeded: Store, argocd_server: _Server) -> None:
    client = api_client(seeded, {"url": url_of(argocd_server), "token": TOKEN})
    apps = api_status(client)
    assert apps["prod"] == {"application": "llmops-prod", "sync": "Synced",
                            "health": "Healthy",
                            "revision": "3f6c2b1a9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b",
                            "operationPhase": "Succeeded", "error": ""}
    assert (apps["stg"]["sync"], apps["stg"]["health"]) == ("OutOfSync", "Progressing")
    assert apps["dev"]["sync"] == "unknown (application llmops-dev not found (404))"
    assert apps["dev"]["error"] == "application llmops-dev not found (404)"
    argocd_server.seen.clear()
    assert list(api_status(client, environment="stg")) == ["stg"]
    assert [path for path, _ in argocd_server.seen] == [f"{PREFIX}llmops-stg"]


def test_api_status_with_a_wrong_token_or_without_argocd(
        seeded: Store, argocd_server: _Server, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = api_client(seeded, {"url": url_of(argocd_server), "token": BAD_TOKEN})
    response = wrong.get(f"{BASE}/reconcile/status")
    assert response.status_code == 200
    apps = {e["environment"]: e["argocd"] for e in response.json()["data"]["environments"]}
    assert {a["health"] for a in apps.values()} == {
        "unknown (Argo CD rejected the token (401); check LLMOPS_ARGOCD__TOKEN)"}
    assert BAD_TOKEN not in response.text + caplog.text
    argocd_server.seen.clear()
    assert api_status(api_client(seeded)) == dict.fromkeys(("dev", "stg", "prod"))
    assert argocd_server.seen == []
