"""The seed's serving flow end to end, over real HTTP on loopback, as a user runs it.

A specs repo from ``llmops init`` (dev allows direct commits), ``llmops
serve`` as a child process with the repo configured for write-back, and
``llmops reconcile --once`` between steps (what the daemon of ``llmops up``
does on its own). The seed's ``ServingClient`` deploys, lists, gets, checks
and rolls back; ``examples/serving_client.py`` runs its ``deploy``, ``list``,
``rollback`` and ``workflow`` commands against the same server. The hydrate
actuator of the embedded default observes no cluster, so waiting for health
fails at once with ``HealthNotObservedError``; then health is set in the store
as a cluster-observing actuator would record it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from test_daemon import llmops_process

from conftest import SERVER_START_SECONDS
from llmops.client import HealthNotObservedError, LlmopsApiError, ServingClient
from llmops.engine.source import scaffold
from llmops.engine.store import Store, state
from llmops.engine.types import Kind, SpecKey

pytestmark = pytest.mark.slow  # child processes and a server on loopback

ROOT = Path(__file__).resolve().parents[1]
SECRET = "e2e-proxy-secret"
GIT_ENV = {"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "dev", "GIT_AUTHOR_EMAIL": "dev@example.com",
           "GIT_COMMITTER_NAME": "dev", "GIT_COMMITTER_EMAIL": "dev@example.com"}


@dataclass
class Server:
    url: str
    repo: Path
    env: dict[str, str]
    db: str

    def reconcile(self) -> None:
        done = subprocess.run([sys.executable, "-c", "from llmops.cli import main; main()",
                               "reconcile", "--once"], env=self.env, capture_output=True,
                              text=True, timeout=120, check=False)
        assert done.returncode in (0, 1), done.stderr  # 1: a blocked environment (prod)

    def healthy(self, environment: str, name: str) -> None:
        with Store(self.db) as store:
            state.put_spec_status(store, state.SpecStatus(
                SpecKey(Kind.SERVING_ENDPOINT, environment, name),
                self.head(), "Healthy"))

    def head(self) -> str:
        return subprocess.run(["git", "-C", str(self.repo), "rev-parse", "main"],
                              capture_output=True, text=True, check=True).stdout.strip()

    def spec(self, file: str) -> dict[str, object]:
        text = subprocess.run(["git", "-C", str(self.repo), "show", f"main:{file}"],
                              capture_output=True, text=True, check=True).stdout
        loaded: dict[str, object] = yaml.safe_load(text)
        return loaded

    def client(self) -> ServingClient:
        return ServingClient(self.url, user_id="ada", user_roles=["ml-engineer"],
                             user_teams=["nlp-platform"], proxy_secret=SECRET)

    def example(self, *args: str) -> subprocess.CompletedProcess[str]:
        # A team member, not an admin: the deploy and rollback need the team header.
        env = {**self.env, "LLMOPS_API_URL": self.url, "LLMOPS_USER_ID": "ada",
               "LLMOPS_USER_ROLES": "ml-engineer", "LLMOPS_USER_TEAMS": "nlp-platform",
               "LLMOPS_PROXY_SECRET": SECRET}
        return subprocess.run([sys.executable, str(ROOT / "examples/serving_client.py"), *args],
                              env=env, capture_output=True, text=True, timeout=120,
                              check=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _allow_direct_in_dev(repo: Path) -> None:
    path = repo / "llmops.yaml"
    path.write_text(path.read_text().replace(
        "      context: kind-llmops-dev\n",
        "      context: kind-llmops-dev\n    directCommits: true\n", 1))
    env = {"PATH": os.environ.get("PATH", ""), **GIT_ENV}
    subprocess.run(["git", "-C", str(repo), "commit", "-qam", "dev: direct commits",
                    "--no-verify"], check=True, env=env)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    repo = tmp_path / "specs"
    scaffold.init_repo(repo)
    _allow_direct_in_dev(repo)
    port = _free_port()
    db = f"sqlite:///{tmp_path / 'home' / 'llmops.db'}"
    env = {**os.environ, "LLMOPS_HOME": str(tmp_path / "home"), "LLMOPS_GIT__REPO": str(repo),
           "LLMOPS_API__TRUSTED_PROXIES": '["127.0.0.1"]',
           "LLMOPS_API__PROXY_SECRET": SECRET, "LLMOPS_API__PORT": str(port),
           "LLMOPS_DATABASE_URL": db}
    (tmp_path / "home").mkdir()
    live = Server(f"http://127.0.0.1:{port}", repo, env, db)
    live.reconcile()
    with llmops_process("serve", env=env) as proc:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while True:
            try:
                if httpx.get(f"{live.url}/llm-ops/v1/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "llmops serve did not start"
            time.sleep(0.1)
        yield live


def test_the_serving_client_deploys_lists_checks_and_rolls_back(server: Server) -> None:
    with server.client() as api:
        done = api.deploy_endpoint(model_id="support-chat@1.3.0", environment="dev",
                                   route="/v1/helper", min_replicas=1, max_replicas=2,
                                   name="helper")
        assert (done["direct"], done["branch"], done["created"]) == (True, "main", True)
        with pytest.raises(TimeoutError, match="not reconciled yet"):
            api.wait_for_healthy(done["id"], max_wait_seconds=0.5, poll_interval=0.1)
        server.reconcile()  # the hydrate actuator: published, health not observed
        started = time.monotonic()
        with pytest.raises(HealthNotObservedError, match="cannot observe a cluster"):
            api.wait_for_healthy(done["id"], max_wait_seconds=60, poll_interval=0.1)
        assert time.monotonic() - started < 5
        assert [e["name"] for e in api.list_endpoints(environment="dev", status="notobserved")
                if e["name"] == "helper"] == ["helper"]
        server.healthy("dev", "helper")
        assert api.wait_for_healthy(done["id"], max_wait_seconds=10)["name"] == "helper"
        listed = api.list_endpoints(environment="dev", status="healthy")
        assert [e["name"] for e in listed] == ["helper"]
        detail = api.get_endpoint(done["id"])
        assert (detail["route"], detail["replicas"]) == ("/v1/helper", {"min": 1, "max": 2})
        assert detail["modelMetadata"]["version"] == "1.3.0"
        assert api.check_health("helper", environment="dev")["health"] == "Healthy"

        moved = api.deploy_endpoint(model_id="support-chat@1.2.0", environment="dev",
                                    route="/v1/helper", name="helper")
        assert (moved["created"], moved["direct"]) == (False, True)
        server.reconcile()
        back = api.rollback_endpoint(done["id"])
        assert (back["direct"], back["branch"]) == (True, "main")
        spec = server.spec("endpoints/dev/helper.yaml")["spec"]
        assert spec["modelRef"] == {"name": "support-chat", "version": "1.3.0"}  # type: ignore[index]
        with pytest.raises(LlmopsApiError) as refused:
            api.deploy_endpoint(model_id="no-such-model@1.0.0", environment="dev",
                                route="/v1/x")
        assert refused.value.status == 404


def test_the_example_runs_the_seeds_commands(server: Server) -> None:
    deployed = server.example("deploy", "--model-id", "support-chat@1.3.0", "--environment",
                              "dev", "--route", "/v1/demo", "--name", "demo")
    assert deployed.returncode == 0, deployed.stderr
    assert "directly on main" in deployed.stdout
    server.reconcile()
    listed = server.example("list", "--environment", "dev")
    assert listed.returncode == 0, listed.stderr
    assert "demo" in listed.stdout
    again = server.example("deploy", "--model-id", "support-chat@1.2.0", "--environment",
                           "dev", "--route", "/v1/demo", "--name", "demo")
    assert again.returncode == 0, again.stderr
    server.reconcile()
    rolled = server.example("rollback", "demo", "--environment", "dev")
    assert rolled.returncode == 0, rolled.stderr
    assert "rollback of demo: commit" in rolled.stdout

    workflow = subprocess.Popen(
        [sys.executable, str(ROOT / "examples/serving_client.py"), "workflow", "--model-id",
         "support-chat@1.3.0", "--environment", "dev", "--route", "/v1/flow", "--name",
         "flow", "--wait", "60"],
        env={**server.env, "LLMOPS_API_URL": server.url, "LLMOPS_USER_ID": "ada",
             "LLMOPS_USER_ROLES": "admin", "LLMOPS_PROXY_SECRET": SECRET},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while "endpoints/dev/flow.yaml" not in subprocess.run(
                ["git", "-C", str(server.repo), "ls-tree", "-r", "--name-only", "main"],
                capture_output=True, text=True, check=True).stdout:
            assert time.monotonic() < deadline
            assert workflow.poll() is None
            time.sleep(0.2)
        server.reconcile()  # what the daemon of llmops up does on its own (hydrate)
        out, err = workflow.communicate(timeout=60)
    finally:
        if workflow.poll() is None:
            workflow.kill()
    # Health under the hydrate actuator is NotObserved: said at once, not waited on.
    assert workflow.returncode == 0, err
    assert "not waiting: endpoint" in err
    assert "health is NotObserved" in err
    assert "flow is Healthy" not in out
    assert "route /v1/flow" in out
