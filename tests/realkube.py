"""The real-server tier: a real Kubernetes API server (kube-apiserver + etcd +
kube-controller-manager) for tests, started once per session.

Fixtures (loaded from ``tests/conftest.py``; every test using one is marked ``slow`` and
``realkube``, so ``pytest -m realkube`` runs just this tier):

- ``real_kube`` (session): a :class:`RealKube`. Where it comes from, first match wins:

  1. ``LLMOPS_TEST_KUBECONFIG=/path/kubeconfig``: an existing cluster (its current
     context). Optionally ``LLMOPS_TEST_KUBECONFIG_LIMITED`` names a kubeconfig of a user
     with no rights of its own (for RBAC-denial tests; those skip without it).
  2. ``start.sh`` of the control-plane bundle in ``shared/kube`` (looked for next to the
     repository, ``<repo>/../shared/kube``, which also holds from a worktree
     ``/work/wt-x``, then ``/work/shared/kube``): started at first use, stopped
     (``stop.sh --rm``) when the session ends. v1.28, no kubelet: Pods stay Pending.

  Neither available: the tests skip with one line saying so, unless
  ``LLMOPS_REQUIRE_KUBE=1`` (``.ci/run`` sets it), where they fail instead.

- ``kube_namespace`` (per test): the name of a fresh namespace on ``real_kube``, deleted
  (in the background) after the test.

:class:`RealKube` gives ``kubeconfig`` / ``limited_kubeconfig`` paths,
``api_client(limited=False)`` (a fresh ``ApiClient`` that verifies the server with the
kubeconfig's CA), ``dynamic(cache_dir)`` (a ``DynamicClient``), ``core()`` (``CoreV1Api``),
``kubectl_env(home)`` (an environment for a kubectl child process) and
``create_namespace(name)`` / ``delete_namespace(name)``.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient

ROOT = Path(__file__).resolve().parents[1]
SHARED_CANDIDATES = (ROOT.parent / "shared", Path("/work/shared"))
"""Where the workplace's shared folder is: next to the repository, else /work/shared."""
BUNDLE_CANDIDATES = tuple(d / "kube" for d in SHARED_CANDIDATES)


def shared(relative: str) -> Path:
    """``relative`` under the first shared folder that has it (else under the first)."""
    return next((d / relative for d in SHARED_CANDIDATES if (d / relative).exists()),
                SHARED_CANDIDATES[0] / relative)
START_TIMEOUT = 180
REQUEST_TIMEOUT = 30


@dataclass(frozen=True)
class RealKube:
    """One reachable cluster; ``directory`` is set when this session started it."""

    kubeconfig: Path
    limited_kubeconfig: Path | None = None
    directory: Path | None = None

    def api_client(self, *, limited: bool = False) -> k8s_client.ApiClient:
        """A fresh client (never the process-wide default) of the admin or limited user."""
        path = self.kubeconfig
        if limited:
            if self.limited_kubeconfig is None:
                pytest.skip(
                    "real Kubernetes tier: no limited user's kubeconfig "
                    "(set LLMOPS_TEST_KUBECONFIG_LIMITED)"
                )
            path = self.limited_kubeconfig
        cfg = k8s_client.Configuration()
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(path), client_configuration=cfg, persist_config=False
        )
        return k8s_client.ApiClient(cfg)

    def dynamic(self, cache_dir: Path, *, limited: bool = False) -> DynamicClient:
        return DynamicClient(
            self.api_client(limited=limited),  # type: ignore[no-untyped-call]
            cache_file=str(cache_dir / "discovery.json"),
        )

    def core(self) -> k8s_client.CoreV1Api:
        return k8s_client.CoreV1Api(self.api_client())

    def kubectl_env(self, home: Path) -> dict[str, str]:
        return dict(os.environ, KUBECONFIG=str(self.kubeconfig), HOME=str(home))

    def create_namespace(self, name: str) -> None:
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        self.core().create_namespace(body, _request_timeout=REQUEST_TIMEOUT)

    def delete_namespace(self, name: str) -> None:
        try:
            self.core().delete_namespace(name, _request_timeout=REQUEST_TIMEOUT)
        except ApiException as exc:
            if exc.status != 404:
                raise


def _unavailable(why: str) -> None:
    if os.environ.get("LLMOPS_REQUIRE_KUBE") == "1":
        pytest.fail(f"real Kubernetes tier required (LLMOPS_REQUIRE_KUBE=1): {why}", pytrace=False)
    pytest.skip(f"real Kubernetes tier: {why}")


def _bundle() -> Path | None:
    return next((d for d in BUNDLE_CANDIDATES if (d / "start.sh").is_file()), None)


def _start(bundle: Path) -> Path:
    try:
        done = subprocess.run(
            ["bash", str(bundle / "start.sh")],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{bundle}/start.sh did not finish in {START_TIMEOUT} s", pytrace=False)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        pytest.fail(
            f"{bundle}/start.sh failed ({done.returncode}): {done.stderr[-2000:]}", pytrace=False
        )
    return Path(lines[-1])


@pytest.fixture(scope="session")
def real_kube() -> Iterator[RealKube]:
    """A real API server for the session (see the module docstring)."""
    given = os.environ.get("LLMOPS_TEST_KUBECONFIG")
    if given:
        path = Path(given).expanduser()
        if not path.is_file():
            _unavailable(f"LLMOPS_TEST_KUBECONFIG={given} is not a file")
        limited = os.environ.get("LLMOPS_TEST_KUBECONFIG_LIMITED")
        yield RealKube(path, Path(limited).expanduser() if limited else None)
        return
    bundle = _bundle()
    if bundle is None:
        _unavailable(
            "no LLMOPS_TEST_KUBECONFIG and no control plane at "
            + " or ".join(str(d / "start.sh") for d in BUNDLE_CANDIDATES)
        )
        return
    directory = _start(bundle)
    try:
        yield RealKube(directory / "kubeconfig", directory / "kubeconfig-limited", directory)
    finally:
        subprocess.run(
            ["bash", str(bundle / "stop.sh"), "--rm", str(directory)],
            capture_output=True,
            timeout=60,
            check=False,
        )


@pytest.fixture
def kube_namespace(real_kube: RealKube) -> Iterator[str]:
    """A fresh namespace of this test's own on the real server, deleted afterwards."""
    name = f"t-{secrets.token_hex(5)}"
    real_kube.create_namespace(name)
    yield name
    real_kube.delete_namespace(name)
