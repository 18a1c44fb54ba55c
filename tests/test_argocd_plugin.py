"""The Argo CD Config Management Plugin, run the way the argocd-cmp-server sidecar runs it.

``deploy/argocd/plugin.yaml``'s generate command is taken from the file and
run with ``bash`` in a read-only copy of a specs repo, as uid 999 (when the
tests run as root), with the build environment Argo CD passes
(``ARGOCD_ENV_*``, ``PARAM_*``, ``ARGOCD_APP_*``, ``KUBE_VERSION``) and a
private ``HOME``/``TMPDIR``. What Argo CD relies on: stdout is only
Kubernetes objects, valid for the API and stamped with the revision; any
failure exits non-zero with NOTHING on stdout (an empty manifest with
automated prune would delete the whole application).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_render import KubeSchemas

from conftest import ROOT, TEMPLATE

PLUGIN = ROOT / "deploy" / "argocd" / "plugin.yaml"
SIDECAR_UID = 999
REVISION = "0123456789abcdef0123456789abcdef01234567"
BROKEN_ENDPOINT = """\
apiVersion: llmops.io/v1alpha1
kind: ServingEndpoint
metadata: {name: broken}
spec:
  environment: prod
  modelRef: {name: support-chat, version: 1.3.0}
  route: /v1/broken
  replicas: {min: 1, max: 2}
  notAField: true
"""


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


def _drop_privileges() -> None:
    os.setgroups([])
    os.setgid(SIDECAR_UID)
    os.setuid(SIDECAR_UID)


def _sidecar_user() -> tuple[list[str], Callable[[], None] | None]:
    """(argv prefix, preexec_fn) that run a command as uid 999 like the sidecar.

    Non-root already: run as is. Root: ``setuid(999)`` when uid 999 can start
    this interpreter; if it cannot (the interpreter lives under a 0700
    ``/root``, as on the development machines), ``setpriv`` to uid 999 keeping
    only CAP_DAC_READ_SEARCH, so files stay unwritable but the interpreter is
    reachable.
    """
    if os.geteuid() != 0:
        return [], None
    try:
        probe = subprocess.run([sys.executable, "-c", "import llmops.cli"], cwd="/",
                               capture_output=True, preexec_fn=_drop_privileges, check=False,
                               timeout=60)
    except PermissionError:
        probe = None
    if probe is not None and probe.returncode == 0:
        return [], _drop_privileges
    setpriv = shutil.which("setpriv")
    assert setpriv, "running as root and uid 999 cannot reach the interpreter: need setpriv"
    return [setpriv, f"--reuid={SIDECAR_UID}", f"--regid={SIDECAR_UID}", "--clear-groups",
            "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"], None


def _read_only(root: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o444)
        for name in dirnames:
            os.chmod(os.path.join(dirpath, name), 0o555)
    os.chmod(root, 0o555)


def _writable(root: Path) -> None:
    for dirpath, dirnames, _ in os.walk(root):
        for name in dirnames:
            os.chmod(os.path.join(dirpath, name), 0o755)
    os.chmod(root, 0o755)


def generate_argv() -> list[str]:
    plugin = yaml.safe_load(PLUGIN.read_text())
    generate = plugin["spec"]["generate"]
    return [*generate["command"], *generate.get("args", [])]


@pytest.fixture
def sandbox() -> Iterator[Path]:
    """A directory outside pytest's 0700 tmp tree, so uid 999 can reach it."""
    base = Path(tempfile.mkdtemp(prefix="llmops-cmp-"))
    os.chmod(base, 0o755)
    try:
        yield base
    finally:
        _writable(base)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def run_plugin(sandbox: Path) -> Callable[..., Run]:
    prefix, preexec = _sidecar_user()
    counter = iter(range(1000))

    def run(repo: Path, **env: str) -> Run:
        private = sandbox / f"home-{next(counter)}"
        private.mkdir(mode=0o700)
        if os.geteuid() == 0:
            os.chown(private, SIDECAR_UID, SIDECAR_UID)
        base_env = {
            "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(private), "TMPDIR": str(private), "LANG": "C.UTF-8",
            "ARGOCD_APP_NAME": "llmops-prod", "ARGOCD_APP_NAMESPACE": "argocd",
            "ARGOCD_APP_PROJECT_NAME": "llmops", "ARGOCD_APP_REVISION": REVISION,
            "ARGOCD_APP_REVISION_SHORT": REVISION[:7], "ARGOCD_APP_SOURCE_PATH": ".",
            "ARGOCD_APP_SOURCE_REPO_URL": "https://git.example.com/platform/llm-specs.git",
            "KUBE_VERSION": "1.33.1",
        }
        done = subprocess.run([*prefix, *generate_argv()], cwd=repo, env=base_env | env,
                              capture_output=True, text=True, preexec_fn=preexec, check=False,
                              timeout=180)
        leftovers = sorted(p.name for p in private.iterdir())
        assert not [p for p in leftovers if p.startswith("llmops-render.")], leftovers
        return Run(done.returncode, done.stdout, done.stderr)

    return run


def specs_copy(sandbox: Path, edit: Callable[[Path], None] | None = None) -> Path:
    repo = sandbox / "repo"
    shutil.copytree(TEMPLATE, repo)
    if edit is not None:
        edit(repo)
    _read_only(repo)
    return repo


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture(scope="module")
def kube_schemas() -> KubeSchemas:
    return KubeSchemas()


def test_plugin_file_is_a_v2_sidecar_plugin() -> None:
    plugin = yaml.safe_load(PLUGIN.read_text())
    assert plugin["apiVersion"] == "argoproj.io/v1alpha1"
    assert plugin["kind"] == "ConfigManagementPlugin"
    assert plugin["metadata"]["name"] == "llmops"
    assert plugin["spec"]["version"]
    assert list(TEMPLATE.glob(plugin["spec"]["discover"]["fileName"])), "discovery misses"
    assert [p["name"] for p in plugin["spec"]["parameters"]["static"]] == ["env"]
    script = plugin["spec"]["generate"]["args"][0]
    assert script.startswith("set -euo pipefail")


@pytest.mark.slow
def test_generate_prints_valid_objects_stamped_with_the_revision(
        sandbox: Path, run_plugin: Callable[..., Run], kube_schemas: KubeSchemas) -> None:
    repo = specs_copy(sandbox)
    before = listing(repo)
    result = run_plugin(repo, ARGOCD_ENV_LLMOPS_ENV="prod")
    assert result.code == 0, result.err
    objects: list[dict[str, Any]] = [d for d in yaml.safe_load_all(result.out) if d is not None]
    assert objects
    kinds = {o["kind"] for o in objects}
    assert {"Namespace", "Deployment", "Service"} <= kinds
    for obj in objects:
        assert kube_schemas.errors(obj) == [], f"{obj['kind']}/{obj['metadata']['name']}"
        assert obj["metadata"]["annotations"]["llmops.io/source-commit"] == REVISION
    namespaces = {o["metadata"].get("namespace") for o in objects} - {None}
    assert namespaces
    assert all(ns.endswith("-prod") for ns in namespaces)
    assert "llmops-prod" in result.err  # the application is named in the log
    assert listing(repo) == before


@pytest.mark.slow
def test_the_parameter_selects_the_environment_too(
        sandbox: Path, run_plugin: Callable[..., Run]) -> None:
    repo = specs_copy(sandbox)
    result = run_plugin(repo, PARAM_ENV="dev")
    assert result.code == 0, result.err
    namespaces = {d["metadata"].get("namespace") for d in yaml.safe_load_all(result.out)} - {None}
    assert namespaces
    assert all(ns.endswith("-dev") for ns in namespaces)
    clash = run_plugin(repo, PARAM_ENV="dev", ARGOCD_ENV_LLMOPS_ENV="prod")
    assert (clash.code, clash.out) == (2, "")
    assert "disagree" in clash.err
    missing = run_plugin(repo)
    assert (missing.code, missing.out) == (2, "")
    assert "no environment" in missing.err


@pytest.mark.slow
def test_a_broken_spec_fails_with_an_empty_stdout(
        sandbox: Path, run_plugin: Callable[..., Run]) -> None:
    repo = specs_copy(sandbox, lambda r: (r / "endpoints" / "prod" / "broken.yaml")
                      .write_text(BROKEN_ENDPOINT))
    result = run_plugin(repo, ARGOCD_ENV_LLMOPS_ENV="prod")
    assert result.code != 0
    assert result.out == ""
    assert "broken.yaml" in result.err
    assert "notAField" in result.err


@pytest.mark.slow
def test_an_unknown_environment_fails_with_an_empty_stdout(
        sandbox: Path, run_plugin: Callable[..., Run]) -> None:
    repo = specs_copy(sandbox)
    result = run_plugin(repo, ARGOCD_ENV_LLMOPS_ENV="qa")
    assert result.code != 0
    assert result.out == ""
    assert "unknown environment 'qa'" in result.err


def test_a_cluster_too_old_for_the_rendered_apis_fails_with_an_empty_stdout(
        sandbox: Path, run_plugin: Callable[..., Run]) -> None:
    repo = specs_copy(sandbox)
    result = run_plugin(repo, ARGOCD_ENV_LLMOPS_ENV="prod", KUBE_VERSION="v1.22.17")
    assert result.code != 0
    assert result.out == ""
    assert "needs 1.23 or newer" in result.err
    newer = run_plugin(repo, ARGOCD_ENV_LLMOPS_ENV="prod", KUBE_VERSION="1.23")
    assert newer.code == 0, newer.err


@pytest.mark.slow
def test_an_empty_render_is_refused_unless_allowed(
        sandbox: Path, run_plugin: Callable[..., Run]) -> None:
    def empty_qa(repo: Path) -> None:
        config = (repo / "llmops.yaml").read_text()
        (repo / "llmops.yaml").write_text(config.replace(
            "environments:\n", 'environments:\n  qa:\n    namespace: "{team}-qa"\n', 1))

    repo = specs_copy(sandbox, empty_qa)
    refused = run_plugin(repo, ARGOCD_ENV_LLMOPS_ENV="qa")
    assert (refused.code, refused.out) == (1, "")
    assert "renders no objects" in refused.err
    allowed = run_plugin(repo, ARGOCD_ENV_LLMOPS_ENV="qa", ARGOCD_ENV_LLMOPS_ALLOW_EMPTY="true")
    assert (allowed.code, allowed.out) == (0, ""), allowed.err
