"""Shared fixtures: fixture spec repos, the bundled template, and an in-process CLI runner.

Also the two test tiers. ``pytest -m "not slow"`` is the fast tier: every stage, no
services. A test is ``slow`` when it is marked so by hand (it spawns processes, waits
for seconds, serves or reaches HTTP on loopback, or takes over 0.5 s of CPU on its own,
measured on the shared 2-core machine), runs on the ``postgresql`` backend
(``store_fixtures``), or uses one of ``SERVICE_FIXTURES``
(``pytest_collection_modifyitems`` below adds the mark). Modules marked slow as a
whole (``pytestmark = pytest.mark.slow``) are not even imported under
``-m "not slow"``. The guard (``_fast_tier_guard``) fails a fast test that reaches a
service anyway.
"""

from __future__ import annotations

import gc
import ipaddress
import os
import re
import secrets
import shutil
import socket
import sys
import textwrap
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis
import uvicorn

from llmops.cli import main as cli_main
from llmops.engine.source import scaffold
from llmops.engine.store import db

pytest_plugins = ["store_fixtures", "realkube"]

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "specs_repo_template"

MINIMAL_CONFIG = """\
apiVersion: llmops.io/v1alpha1
kind: Repository
environments:
  dev: {namespace: "{team}-dev"}
  stg: {namespace: "{team}-stg"}
  prod: {namespace: "{team}-prod"}
promotionOrder: [dev, stg, prod]
"""

MINIMAL_MODEL = """\
apiVersion: llmops.io/v1alpha1
kind: Model
metadata: {name: chat-model}
spec:
  version: 1.2.0
  type: base
  ownerTeam: nlp
  storageUri: s3://models/models/chat-model/1.2.0/
  framework: transformers
  dataClassification: internal
  stage: approved
"""

MINIMAL_MODEL_FILES = """\
  files:
    - name: config.json
      sha256: 0b2f8a8ac1cc1a5a3e5b9e3c3a2c5e0d8f7b6a5c4d3e2f1a0b9c8d7e6f5a4b3c
      size: 654
"""
"""The files a model needs before an endpoint may serve it (appended to ``MINIMAL_MODEL``)."""

MINIMAL_ENDPOINT = """\
apiVersion: llmops.io/v1alpha1
kind: ServingEndpoint
metadata: {name: chat}
spec:
  environment: dev
  modelRef: {name: chat-model, version: 1.2.0}
  route: /v1/chat
  replicas: {min: 1, max: 2}
"""


def worker_redis_url() -> str:
    """``LLMOPS_TEST_REDIS_URL`` (default db 0 on 127.0.0.1:6379), but under pytest-xdist
    worker ``gwN`` on database ``1 + N % 15``: keys that a test cannot prefix (the API's
    own ``llmops:`` status keys) are then not shared between workers or with a serial run.
    """
    url = os.environ.get("LLMOPS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw"):
        return url
    parts = urllib.parse.urlsplit(url)
    return parts._replace(path=f"/{1 + int(worker[2:]) % 15}").geturl()


REDIS_URL = worker_redis_url()
"""The Redis the tests use: this worker's database (see ``worker_redis_url``)."""


@pytest.fixture
def raw() -> Iterator[redis.Redis]:
    """A plain client of the real Redis the tests need (fails, never skips, when down)."""
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as err:
        pytest.fail(f"Redis at {REDIS_URL} is unreachable (these tests need it): {err}",
                    pytrace=False)
    yield client
    client.close()


@pytest.fixture
def prefix(raw: redis.Redis) -> Iterator[str]:
    """A Redis key prefix of this test's own; every key under it is deleted afterwards."""
    value = f"llmops-test-{secrets.token_hex(6)}"
    yield value
    keys = list(raw.scan_iter(match=f"{value}:*"))
    if keys:
        raw.delete(*keys)


SERVER_START_SECONDS = 90
"""How long a server that a test spawns (``llmops serve``, the router) may take to answer:
importing llmops takes seconds on an idle machine and ten times that on a busy 2-core one
(the suite runs on every core, beside whatever else the machine runs)."""


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str


def write_repo(root: Path, files: dict[str, str]) -> Path:
    """Write a spec repo: {relative path: text}; text is dedented."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def edit(repo: Path, rel: str, old: str, new: str) -> None:
    """Replace the first ``old`` in the file ``rel`` of ``repo`` (which must contain it)."""
    path = repo / rel
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {rel}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def ok(response: httpx.Response, code: int = 200) -> Any:
    """The data of a success envelope (after checking the envelope)."""
    assert response.status_code == code, response.text
    body = response.json()
    assert set(body) == {"status", "message", "data"}
    assert body["status"] == "success"
    assert isinstance(body["message"], str)
    assert body["message"]
    return body["data"]


def failed(response: httpx.Response, code: int) -> dict[str, Any]:
    """The whole fail envelope (after checking its shape and the status code)."""
    assert response.status_code == code, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert set(body) == {"status", "message", "data"}
    assert body["status"] == "fail"
    assert isinstance(body["message"], str)
    assert body["message"]
    return body


@pytest.fixture
def minimal_repo(tmp_path: Path) -> Path:
    """A small valid repo: config, one model, one dev endpoint."""
    return write_repo(tmp_path / "repo", {
        "llmops.yaml": MINIMAL_CONFIG,
        "models/chat-model.yaml": MINIMAL_MODEL + MINIMAL_MODEL_FILES,
        "endpoints/dev/chat.yaml": MINIMAL_ENDPOINT,
    })


@pytest.fixture
def template_copy(tmp_path: Path) -> Path:
    """A writable copy of the bundled template (not a git repo)."""
    dest = tmp_path / "template"
    shutil.copytree(TEMPLATE, dest)
    return dest


@pytest.fixture
def template_git_repo(tmp_path: Path) -> Path:
    """The template as a fresh git repo with one commit, as `llmops init` makes it."""
    dest = tmp_path / "specs"
    scaffold.init_repo(dest)
    return dest


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Run `llmops ARGS...` in-process; returns exit code, stdout and stderr."""

    def run(*args: str | Path) -> CliResult:
        capsys.readouterr()
        try:
            cli_main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


# -- Test tiers -------------------------------------------------------------------------

# Fixtures that start or reach a service; every test using one (directly or through
# another fixture) is marked ``slow``. The ``postgresql`` store backend carries the mark
# itself (``store_fixtures.BACKENDS``).
SERVICE_FIXTURES = frozenset({
    "raw", "prefix",                            # Redis (above)
    "postgres_url", "make_postgres_database",   # PostgreSQL (store_fixtures)
    "module_postgres_url",
    "s3_server",                                # moto's S3 server (test_upload)
    "emulator", "kube",                         # the Kubernetes emulator over HTTP
    "live",                                     # the API under uvicorn (test_client)
    "argocd_server",                            # an Argo CD API over HTTP (test_argocd_status)
    "run_plugin",                               # the Argo CD plugin as processes
    "real_kube", "kube_namespace",              # a real API server (realkube)
})
REAL_KUBE_FIXTURES = frozenset({"real_kube", "kube_namespace"})


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``slow`` every test that uses a service fixture (before ``-m`` deselects)."""
    for item in items:
        used = SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ()))
        if used and item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.slow(reason=f"uses {', '.join(sorted(used))}"))
        if REAL_KUBE_FIXTURES.intersection(used) and item.get_closest_marker("realkube") is None:
            item.add_marker(pytest.mark.realkube)


_WHOLLY_SLOW = re.compile(r"^pytestmark = pytest\.mark\.slow$", re.MULTILINE)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Under exactly ``-m "not slow"``, do not import a module marked slow as a whole.

    Its tests would all be deselected anyway; importing them (moto, schemathesis
    building the app's schema, ...) costs seconds of the fast tier's budget.
    """
    if (" ".join(str(config.getoption("markexpr")).split()) == "not slow"
            and collection_path.suffix == ".py" and collection_path.name.startswith("test_")
            and _WHOLLY_SLOW.search(collection_path.read_text(encoding="utf-8"))):
        return True
    return None


def pytest_collection_finish(session: pytest.Session) -> None:
    """Move what imports and collection built into the GC's permanent generation.

    The hundreds of thousands of objects the imports leave (kubernetes models,
    pydantic, SQLAlchemy) are alive for the whole run; without this every full
    collection walks them again (~3 s of the fast tier's CPU).
    """
    gc.freeze()


class _Guard:
    """What a fast test did that only slow tests may: reach a service or spawn llmops.

    TCP connections are seen through an audit hook (``socket.connect``) and, for libpq,
    a wrapper around ``psycopg.connect``; processes through ``subprocess.Popen``. Allowed
    in a fast test: loopback ports below 1024, where tests stand in a service that is
    down (``127.0.0.1:1``); git and other tools as processes. Events from threads that
    were already running when the test started are not the test's and are ignored.
    """

    SPAWN_NAMES = ("python", "llmops", "uvicorn")

    def __init__(self) -> None:
        self.active = False
        self.old_threads: frozenset[int] = frozenset()
        self.found: list[str] = []

    def start(self) -> None:
        main = threading.main_thread().ident
        self.old_threads = frozenset(t.ident for t in threading.enumerate()
                                     if t.ident is not None and t.ident != main)
        self.found = []
        self.active = True

    def stop(self) -> list[str]:
        self.active = False
        return self.found

    def _mine(self) -> bool:
        return self.active and threading.get_ident() not in self.old_threads

    def connect(self, host: str, port: int, how: str) -> None:
        try:
            loopback = ipaddress.ip_address(host.split("%")[0]).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not (loopback and 0 < port < 1024):
            self.found.append(f"{how} to {host}:{port}")

    def audit(self, event: str, args: tuple[Any, ...]) -> None:
        if event == "socket.connect":
            if not self._mine():
                return
            sock, address = args
            if sock.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple):
                self.connect(str(address[0]), int(address[1]), "a TCP connection")
        elif event == "subprocess.Popen" and self._mine():
            executable, argv = args[0], args[1]
            words = [argv] if isinstance(argv, str | bytes) else list(argv)
            program = os.fsdecode(executable or words[0]) if words or executable else ""
            name = os.path.basename(program.split()[0]) if program else ""
            if program == sys.executable or name.startswith(self.SPAWN_NAMES):
                self.found.append(f"a process: {' '.join(map(os.fsdecode, words))[:120]}")

    def pg_connect(self, conninfo: str, kwargs: dict[str, Any]) -> None:
        if not self._mine():
            return
        params = psycopg.conninfo.conninfo_to_dict(conninfo, **kwargs)
        host = str(params.get("host") or "localhost").split(",")[0]
        port = int(str(params.get("port") or 5432).split(",")[0])
        if host.startswith("/"):
            self.found.append(f"a PostgreSQL connection to {host}")
        else:
            self.connect(host, port, "a PostgreSQL connection")


_GUARD = _Guard()


def _guarded_pg_connect(original: Callable[..., Any]) -> Callable[..., Any]:
    def connect(conninfo: str = "", **kwargs: Any) -> Any:
        _GUARD.pg_connect(conninfo, kwargs)
        return original(conninfo, **kwargs)
    return connect


def pytest_configure(config: pytest.Config) -> None:
    sys.addaudithook(_GUARD.audit)
    # libpq opens its sockets in C, out of the audit hook's sight; the store's and the
    # leader's connections are ``DeadlineConnection``s, made by its own ``connect``.
    psycopg.connect = _guarded_pg_connect(psycopg.connect)  # type: ignore[assignment]
    deadline_connect = _guarded_pg_connect(db.DeadlineConnection.connect)
    db.DeadlineConnection.connect = staticmethod(deadline_connect)  # type: ignore[assignment,method-assign]


@pytest.fixture(autouse=True)
def _fast_tier_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test of the fast tier that reached a service or spawned llmops."""
    if request.node.get_closest_marker("slow") is not None:
        yield
        return
    _GUARD.start()
    try:
        yield
    finally:
        found = _GUARD.stop()
    if found:
        pytest.fail("a fast-tier test (not marked slow) used a service: "
                    + "; ".join(dict.fromkeys(found))
                    + ". Mark it @pytest.mark.slow or use a fixture from SERVICE_FIXTURES.",
                    pytrace=False)


@contextmanager
def moto_s3(bucket: str, env: dict[str, str]) -> Iterator[str]:
    """moto's S3 server on loopback holding ``bucket``, with ``env`` (dummy AWS
    credentials and the like) set while it runs; yields its URL. moto is imported here,
    not at module level: the fast tier never loads it."""
    import boto3
    from moto.server import ThreadedMotoServer

    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        boto3.client("s3", endpoint_url=url, region_name="us-east-1").create_bucket(
            Bucket=bucket)
        try:
            yield url
        finally:
            server.stop()


@contextmanager
def serving_app(app: Any) -> Iterator[str]:
    """``app`` served by uvicorn in a thread on a free loopback port; yields its base URL
    and stops the server afterwards."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
