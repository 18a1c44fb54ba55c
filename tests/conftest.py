"""Shared fixtures: fixture spec repos, the bundled template, and an in-process CLI runner.

Also the two test tiers. ``pytest -m "not slow"`` is the fast tier: every stage, no
services. A test is ``slow`` when it is marked so by hand (it spawns processes or waits
for seconds), runs on the ``postgresql`` backend (``store_fixtures``), or uses one of
``SERVICE_FIXTURES``; ``pytest_collection_modifyitems`` below adds the mark.
"""

from __future__ import annotations

import os
import secrets
import shutil
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from llmops.cli import main as cli_main
from llmops.engine.source import scaffold

pytest_plugins = ["store_fixtures"]

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


REDIS_URL = os.environ.get("LLMOPS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


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


@pytest.fixture
def minimal_repo(tmp_path: Path) -> Path:
    """A small valid repo: config, one model, one dev endpoint."""
    return write_repo(tmp_path / "repo", {
        "llmops.yaml": MINIMAL_CONFIG,
        "models/chat-model.yaml": MINIMAL_MODEL,
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
    "s3_server",                                # moto's S3 server (test_upload)
    "emulator", "kube",                         # the Kubernetes emulator over HTTP
    "live",                                     # the API under uvicorn (test_client)
    "argocd_server",                            # an Argo CD API over HTTP (test_argocd_status)
    "run_plugin",                               # the Argo CD plugin as processes
})


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``slow`` every test that uses a service fixture (before ``-m`` deselects)."""
    for item in items:
        used = SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ()))
        if used and item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.slow(reason=f"uses {', '.join(sorted(used))}"))
