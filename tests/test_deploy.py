"""The deployment files under ``deploy/`` and the Dockerfile, checked the way a cluster would.

Every manifest parses; every object of a core kind validates strictly against
the newest Kubernetes schema kubernetes-validate ships (Argo CD and Prometheus
Operator kinds are parsed and checked for their key fields); each overlay
builds with real ``kubectl kustomize`` and its output validates too, with
the security settings users rely on; the dashboard and the alert rules name
only metrics llmops exports; the Dockerfile runs as a non-root user from a
pinned base.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import peers
import pytest
import yaml
from realkube import RealKube
from test_render import KubeSchemas

from conftest import ROOT

DEPLOY = ROOT / "deploy"
OVERLAYS = ("dev", "stg", "prod")
NON_CORE_GROUPS = ("argoproj.io/", "monitoring.coreos.com/", "kustomize.config.k8s.io/")
METRIC_SOURCES = (ROOT / "engine/llmops/engine/run/metrics.py", ROOT / "api/llmops/api/metrics.py")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
MANAGED = {"": {"namespaces", "resourcequotas", "configmaps", "secrets", "services"},
           "apps": {"deployments"}, "batch": {"jobs"},
           "autoscaling": {"horizontalpodautoscalers"}, "networking.k8s.io": {"ingresses"},
           "policy": {"poddisruptionbudgets"}, "keda.sh": {"scaledobjects"},
           "gateway.networking.k8s.io": {"httproutes"}}


@pytest.fixture(scope="module")
def kube_schemas() -> KubeSchemas:
    return KubeSchemas()


@pytest.fixture(scope="module")
def kubectl() -> Path:
    return peers.tool("kubectl")


def manifest_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*.yaml") if p.is_file())


def documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d is not None]


def is_core(obj: dict[str, Any]) -> bool:
    return not str(obj.get("apiVersion", "")).startswith(NON_CORE_GROUPS)


def exported_metrics() -> set[str]:
    names = set()
    for source in METRIC_SOURCES:
        names |= set(re.findall(r'"(llmops_[a-z_]+)"', source.read_text()))
    return names | {n + s for n in names for s in HISTOGRAM_SUFFIXES}


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\bllmops_[a-z_]+", expr))


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_manifest_parses_and_core_objects_validate(path: Path,
                                                         kube_schemas: KubeSchemas) -> None:
    docs = documents(path.read_text())
    assert docs, f"{path} holds no document"
    for obj in docs:
        assert obj.get("apiVersion"), path
        assert obj.get("kind"), path
        if path.name.endswith("-patch.yaml"):  # a strategic-merge patch: complete it first
            obj = {**obj, "spec": {**obj["spec"], "selector": {"matchLabels": {"a": "b"}}}}
            obj["spec"]["template"] = {**obj["spec"]["template"],
                                       "metadata": {"labels": {"a": "b"}}}
        if is_core(obj):
            assert kube_schemas.errors(obj) == [], f"{path}: {obj['kind']}"


def _by_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


@pytest.mark.slow
@pytest.mark.parametrize("env", OVERLAYS)
def test_overlay_builds_and_validates(env: str, kubectl: Path, kube_schemas: KubeSchemas,
                                      tmp_path: Path) -> None:
    done = subprocess.run([str(kubectl), "kustomize", str(DEPLOY / "k8s/overlays" / env)],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    objs = documents(done.stdout)
    for obj in objs:
        if is_core(obj):
            assert kube_schemas.errors(obj) == [], f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
            assert obj["metadata"]["namespace"] == f"llmops-{env}", obj["metadata"]["name"]
    assert {"NetworkPolicy", "PodDisruptionBudget", "ConfigMap",
            "HorizontalPodAutoscaler", "ServiceAccount"} <= {o["kind"] for o in objs}
    # The ServiceMonitor needs the Prometheus Operator's CRDs: an optional component
    # that stg and prod include and dev leaves out.
    monitors = _by_kind(objs, "ServiceMonitor")
    assert len(monitors) == (0 if env == "dev" else 1)
    for monitor in monitors:
        assert monitor["metadata"]["labels"]["app.kubernetes.io/part-of"] == "llmops"
    deployments = {d["metadata"]["name"]: d for d in _by_kind(objs, "Deployment")}
    daemon, api = deployments["llmops-daemon"], deployments["llmops-api"]
    assert daemon["spec"]["replicas"] == (2 if env == "prod" else 1)
    assert daemon["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "daemon", "--env", env]
    assert api["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "serve", "--host", "0.0.0.0"]
    api_probe = api["spec"]["template"]["spec"]["containers"][0]
    assert api_probe["livenessProbe"]["httpGet"]["path"] == "/llm-ops/v1/healthz"
    assert api_probe["readinessProbe"]["httpGet"]["path"] == "/llm-ops/v1/readyz"
    for deployment in deployments.values():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        mounts = set()
        for container in pod["containers"]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert container["resources"]["requests"]
            assert container["resources"]["limits"]
            assert container["livenessProbe"]
            assert container["readinessProbe"]
            mounts |= {m["mountPath"] for m in container["volumeMounts"]}
            secret_refs = [e for e in container.get("env", []) if "valueFrom" in e]
            assert all(e["valueFrom"]["secretKeyRef"]["name"] == "llmops-secrets"
                       for e in secret_refs)
        assert {"/var/lib/llmops", "/tmp"} <= mounts
    assert not _by_kind(objs, "Secret"), "secret values are never shipped"
    binding = _by_kind(objs, "ClusterRoleBinding")[0]
    assert binding["subjects"][0]["namespace"] == f"llmops-{env}"
    (role,) = _by_kind(objs, "ClusterRole")
    granted: dict[str, set[str]] = {}
    for rule in role["rules"]:
        assert set(rule["verbs"]) == {"get", "list", "watch", "create", "patch", "delete"}
        for group in rule["apiGroups"]:
            granted.setdefault(group, set()).update(rule["resources"])
    assert granted == MANAGED


def test_dev_overlay_passes_a_server_side_dry_run_on_a_cluster_without_crds(
        kubectl: Path, real_kube: RealKube, tmp_path: Path) -> None:
    """`kubectl apply -k deploy/k8s/overlays/dev` on a plain cluster (no Prometheus
    Operator): the real API server accepts every object (dry run, nothing stored)."""
    env = real_kube.kubectl_env(tmp_path)
    # A dry run creates no namespace, so the overlay's must exist for its objects.
    real_kube.create_namespace("llmops-dev")
    try:
        done = subprocess.run(
            [str(kubectl), "apply", "-k", str(DEPLOY / "k8s/overlays/dev"), "--server-side",
             "--dry-run=server", "--field-manager=llmops-test"],
            capture_output=True, text=True, timeout=120, check=False, env=env)
    finally:
        real_kube.delete_namespace("llmops-dev")
    assert done.returncode == 0, done.stderr
    assert "deployment.apps/llmops-daemon serverside-applied (server dry run)" in done.stdout
    assert "servicemonitor" not in done.stdout.lower()


@pytest.mark.slow
def test_argocd_kustomization_ships_the_plugin_file(kubectl: Path, tmp_path: Path) -> None:
    done = subprocess.run([str(kubectl), "kustomize", str(DEPLOY / "argocd")],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    (configmap,) = documents(done.stdout)
    assert configmap["metadata"]["name"] == "llmops-cmp-plugin"
    assert configmap["data"]["plugin.yaml"] == (DEPLOY / "argocd/plugin.yaml").read_text()
    patch = documents((DEPLOY / "argocd/repo-server-patch.yaml").read_text())[0]
    pod = patch["spec"]["template"]["spec"]
    (sidecar,) = pod["containers"]
    assert sidecar["command"] == ["/var/run/argocd/argocd-cmp-server"]
    assert sidecar["securityContext"]["runAsUser"] == 999
    mounts = {m["mountPath"]: m["name"] for m in sidecar["volumeMounts"]}
    assert mounts["/var/run/argocd"] == "var-files"
    assert mounts["/home/argocd/cmp-server/plugins"] == "plugins"
    assert mounts["/home/argocd/cmp-server/config/plugin.yaml"] == "llmops-cmp-plugin"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


def test_argocd_objects_name_the_plugin_and_environments() -> None:
    plugin_app = documents((DEPLOY / "argocd/application-plugin.yaml").read_text())[0]
    assert plugin_app["spec"]["source"]["plugin"]["name"] == "llmops-v1alpha1"
    rendered = documents((DEPLOY / "argocd/application-rendered.yaml").read_text())[0]
    assert rendered["spec"]["source"]["targetRevision"] == "environments/prod"
    appset = documents((DEPLOY / "argocd/applicationset.yaml").read_text())[0]
    elements = appset["spec"]["generators"][0]["list"]["elements"]
    assert [e["env"] for e in elements] == list(OVERLAYS)
    project = documents((DEPLOY / "argocd/appproject.yaml").read_text())[0]
    assert project["spec"]["clusterResourceWhitelist"] == [{"group": "", "kind": "Namespace"}]
    assert any("prod" in "".join(w["applications"]) for w in project["spec"]["syncWindows"])


def test_dashboard_and_alerts_use_only_exported_metrics() -> None:
    exported = exported_metrics()
    assert "llmops_reconcile_duration_seconds" in exported
    dashboard = json.loads((DEPLOY / "grafana/llmops-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    rules = documents((DEPLOY / "prometheus/llmops-rules.yaml").read_text())[0]
    alerts = [r for g in rules["spec"]["groups"] for r in g["rules"]]
    exprs += [str(r["expr"]) for r in alerts]
    assert {"LlmopsReconcileFailing", "LlmopsReconcileStalled", "LlmopsDriftNotCorrected",
            "LlmopsSourceUnavailable", "LlmopsStoreUnavailable"} <= {r["alert"] for r in alerts}
    used: set[str] = set()
    for expr in exprs:
        names = metric_names(expr)
        assert names, f"no llmops metric in {expr!r}"
        used |= names
    assert used <= exported, sorted(used - exported)


def test_dockerfile_is_non_root_pinned_and_runs_llmops() -> None:
    text = (ROOT / "Dockerfile").read_text()
    bases = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert len(bases) >= 2, "multi-stage"
    for base in bases:
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base)
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users
    assert users[-1].split(":")[0] not in ("0", "root")
    assert re.search(r'^ENTRYPOINT \["llmops"\]$', text, re.M)
    assert "git" in re.findall(r"apt-get install[^\n]*", text)[0]
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignored
    # Everything the build stage copies is let into the build context.
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M)
    sources = {s for line in copied for s in line.split()}
    assert sources >= {"pyproject.toml", "engine/", "cli/", "router/"}
    assert {f"!{s}" for s in sources} <= set(ignored), sources - {i[1:] for i in ignored}
