"""The Kubernetes API emulator, seen only through the official `kubernetes` client.

These tests pin down the behaviour other tests (and the `kubernetes` actuator)
rely on: discovery, CRUD with selectors, server-side apply ownership and
no-op semantics, deletion, simulated controllers and injected faults.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import peers
import pytest
import urllib3
from kube_emulator import RunningEmulator, running_emulator
from kubernetes import client, config, dynamic
from kubernetes.client.rest import ApiException

# Slow tier: every test serves the emulator over HTTP (or runs it as a process).
pytestmark = pytest.mark.slow

TESTS = Path(__file__).resolve().parent


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[RunningEmulator]:
    with running_emulator(tmp_path) as emulator:
        yield emulator


@pytest.fixture
def api(kube: RunningEmulator) -> Iterator[client.ApiClient]:
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(kube.kubeconfig), client_configuration=cfg)
    api_client = client.ApiClient(cfg)
    yield api_client
    api_client.close()


@pytest.fixture
def dyn(api: client.ApiClient, tmp_path: Path) -> dynamic.DynamicClient:
    return dynamic.DynamicClient(api, cache_file=str(tmp_path / "discovery.json"))


def deployment(name: str = "web", replicas: int | None = 2, ns: str = "default",
               **labels: str) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}},
                     "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]}},
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns, "labels": {"app": name, **labels}},
            "spec": spec}


def configmap(name: str, ns: str = "default", **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "data": {"k": "v"}}


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def managers(obj: Any) -> dict[str, str]:
    return {m["manager"]: m["operation"] for m in obj.to_dict()["metadata"]["managedFields"]}


def error_body(exc: ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(exc.body)
    return body


# ---- discovery -------------------------------------------------------------------------


def test_discovery_finds_resources_with_their_scope(dyn: dynamic.DynamicClient) -> None:
    assert dyn.resources.get(api_version="apps/v1", kind="Deployment").namespaced
    assert not dyn.resources.get(api_version="v1", kind="Namespace").namespaced
    assert not dyn.resources.get(api_version="rbac.authorization.k8s.io/v1",
                                 kind="ClusterRole").namespaced
    for api_version, kind in [
        ("v1", "ConfigMap"), ("v1", "Secret"), ("v1", "Service"), ("v1", "ResourceQuota"),
        ("v1", "ServiceAccount"), ("v1", "Pod"), ("batch/v1", "Job"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"), ("networking.k8s.io/v1", "Ingress"),
        ("networking.k8s.io/v1", "NetworkPolicy"), ("policy/v1", "PodDisruptionBudget"),
        ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ]:
        assert dyn.resources.get(api_version=api_version, kind=kind).namespaced
    assert dyn.version["kubernetes"]["minor"] == "33"


# ---- create, get, list, update ---------------------------------------------------------


def test_create_get_and_list_with_selectors(dyn: dynamic.DynamicClient,
                                            api: client.ApiClient) -> None:
    cms = dyn.resources.get(api_version="v1", kind="ConfigMap")
    dyn.create(cms, configmap("a", tier="web", env="prod"))
    dyn.create(cms, configmap("b", tier="db", env="prod"))
    dyn.create(dyn.resources.get(api_version="v1", kind="Namespace"), namespace("team-a"))
    dyn.create(cms, configmap("c", ns="team-a", tier="web", env="dev"))

    def names(**kw: Any) -> list[str]:
        return [i.metadata.name for i in cms.get(**kw).items]

    assert names(namespace="default", label_selector="tier=web") == ["a"]
    assert names(label_selector="env=prod,tier!=db") == ["a"]
    assert names(label_selector="tier in (web,db),env") == ["a", "b", "c"]
    assert names(label_selector="env notin (prod),!missing") == ["c"]
    assert names(field_selector="metadata.namespace=team-a") == ["c"]
    assert names(namespace="default", field_selector="metadata.name=b") == ["b"]
    got = dyn.get(cms, "a", "default")
    assert got.metadata.uid
    assert got.metadata.creationTimestamp
    assert got.data.k == "v"
    # The typed client deserializes the same objects.
    typed = client.CoreV1Api(api).list_config_map_for_all_namespaces(label_selector="tier=web")
    assert [i.metadata.name for i in typed.items] == ["a", "c"]


def test_errors_are_shaped_like_the_apiservers(dyn: dynamic.DynamicClient,
                                               api: client.ApiClient) -> None:
    cms = dyn.resources.get(api_version="v1", kind="ConfigMap")
    dyn.create(cms, configmap("a"))
    with pytest.raises(ApiException) as exists:
        dyn.create(cms, configmap("a"))
    assert exists.value.status == 409
    assert error_body(exists.value)["reason"] == "AlreadyExists"
    with pytest.raises(ApiException) as missing:
        dyn.get(cms, "nope", "default")
    body = error_body(missing.value)
    assert (missing.value.status, body["kind"], body["status"], body["reason"]) == (
        404, "Status", "Failure", "NotFound")
    assert body["message"] == 'configmaps "nope" not found'
    with pytest.raises(ApiException) as invalid:
        dyn.create(cms, configmap("Bad_Name"))
    body = error_body(invalid.value)
    assert (invalid.value.status, body["reason"]) == (422, "Invalid")
    assert body["details"]["causes"][0]["field"] == "metadata.name"
    with pytest.raises(ApiException) as wrong_kind:
        dyn.create(cms, deployment())
    assert wrong_kind.value.status == 400
    with pytest.raises(ApiException) as no_ns:
        dyn.create(cms, configmap("x", ns="ghost"))
    assert error_body(no_ns.value)["message"] == 'namespaces "ghost" not found'
    undecodable = api.call_api(
        "POST", f"{api.configuration.host}/api/v1/namespaces/default/configmaps",
        header_params={"Content-Type": "application/yaml"}, body="{not: [yaml")
    undecodable.read()
    assert undecodable.status == 400
    with pytest.raises(ApiException) as media:
        dyn.patch(cms, json.dumps({"data": {"k": "w"}}), name="a", namespace="default",
                  content_type="application/x-unknown-patch")
    assert media.value.status == 415


def test_replace_checks_resource_version(dyn: dynamic.DynamicClient) -> None:
    cms = dyn.resources.get(api_version="v1", kind="ConfigMap")
    created = dyn.create(cms, configmap("a")).to_dict()
    updated = dict(created, data={"k": "new"})
    dyn.replace(cms, updated)
    with pytest.raises(ApiException) as stale:
        dyn.replace(cms, dict(created, data={"k": "stale"}))  # old resourceVersion
    assert stale.value.status == 409
    assert "the object has been modified" in error_body(stale.value)["message"]
    assert dyn.get(cms, "a", "default").data.k == "new"


# ---- server-side apply -------------------------------------------------------------------


def test_unchanged_apply_is_a_no_op(kube: RunningEmulator, dyn: dynamic.DynamicClient) -> None:
    deps = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    first = dyn.server_side_apply(deps, deployment(), field_manager="llmops")
    assert first.metadata.generation == 1
    assert managers(first) == {"llmops": "Apply"}
    entry = first.to_dict()["metadata"]["managedFields"][0]
    assert entry["fieldsType"] == "FieldsV1"
    assert "f:replicas" in entry["fieldsV1"]["f:spec"]
    assert 'k:{"name":"app"}' in entry["fieldsV1"]["f:spec"]["f:template"]["f:spec"][
        "f:containers"]
    live_rv = dyn.get(deps, "web", "default").metadata.resourceVersion
    kube.server.reset_counters()

    again = dyn.server_side_apply(deps, deployment(), field_manager="llmops")

    assert again.metadata.resourceVersion == live_rv
    assert kube.server.write_count() == 0
    assert kube.server.stats.matching("PATCH") == 1


def test_spec_change_bumps_generation_metadata_change_does_not(
        dyn: dynamic.DynamicClient) -> None:
    deps = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    first = dyn.server_side_apply(deps, deployment(replicas=2), field_manager="llmops")
    relabelled = dyn.server_side_apply(deps, deployment(replicas=2, team="nlp"),
                                       field_manager="llmops")
    assert relabelled.metadata.generation == 1
    assert int(relabelled.metadata.resourceVersion) > int(first.metadata.resourceVersion)
    scaled = dyn.server_side_apply(deps, deployment(replicas=3, team="nlp"),
                                   field_manager="llmops")
    assert (scaled.metadata.generation, scaled.spec.replicas) == (2, 3)


def test_conflicting_managers_and_force(dyn: dynamic.DynamicClient) -> None:
    deps = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    dyn.server_side_apply(deps, deployment(replicas=2), field_manager="llmops")
    # Same value: no conflict, both own the field.
    dyn.server_side_apply(deps, deployment(replicas=2), field_manager="helm")

    with pytest.raises(ApiException) as conflict:
        dyn.server_side_apply(deps, deployment(replicas=5), field_manager="helm")

    body = error_body(conflict.value)
    assert (conflict.value.status, body["reason"]) == (409, "Conflict")
    assert body["message"] == 'Apply failed with 1 conflict: conflict with "llmops": .spec.replicas'
    assert body["details"]["causes"] == [{"reason": "FieldManagerConflict",
                                          "message": 'conflict with "llmops"',
                                          "field": ".spec.replicas"}]
    forced = dyn.server_side_apply(deps, deployment(replicas=5), field_manager="helm",
                                   force_conflicts=True)
    assert forced.spec.replicas == 5
    llmops = next(m for m in forced.to_dict()["metadata"]["managedFields"]
                  if m["manager"] == "llmops")
    assert "f:replicas" not in llmops["fieldsV1"]["f:spec"]
    # The old owner's apply now conflicts the other way round.
    with pytest.raises(ApiException, match='conflict with \\\\"helm\\\\"'):
        dyn.server_side_apply(deps, deployment(replicas=2), field_manager="llmops")


def test_hand_edit_drift_conflicts_until_forced_back(kube: RunningEmulator,
                                                     dyn: dynamic.DynamicClient) -> None:
    deps = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    dyn.server_side_apply(deps, deployment(replicas=2), field_manager="llmops")
    dyn.patch(deps, {"spec": {"replicas": 7}}, name="web", namespace="default",
              content_type="application/merge-patch+json", field_manager="kubectl-edit")
    drifted = dyn.get(deps, "web", "default")
    assert managers(drifted) == {"llmops": "Apply", "kubectl-edit": "Update"}

    with pytest.raises(ApiException) as conflict:
        dyn.server_side_apply(deps, deployment(replicas=2), field_manager="llmops")
    assert 'conflict with "kubectl-edit" using apps/v1' in error_body(conflict.value)["message"]
    dry = dyn.server_side_apply(deps, deployment(replicas=2), field_manager="llmops",
                                force_conflicts=True, dry_run="All")
    assert dry.spec.replicas == 2
    assert dyn.get(deps, "web", "default").spec.replicas == 7
    kube.server.reset_counters()
    back = dyn.server_side_apply(deps, deployment(replicas=2), field_manager="llmops",
                                 force_conflicts=True)
    assert back.spec.replicas == 2
    assert managers(back) == {"llmops": "Apply"}  # the edit owned nothing else
    assert kube.server.write_count() == 1


def test_dry_run_stores_nothing(kube: RunningEmulator, dyn: dynamic.DynamicClient) -> None:
    deps = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    planned = dyn.server_side_apply(deps, deployment(), field_manager="llmops", dry_run="All")
    assert (planned.spec.replicas, planned.spec.revisionHistoryLimit) == (2, 10)
    with pytest.raises(ApiException) as missing:
        dyn.get(deps, "web", "default")
    assert missing.value.status == 404
    dyn.server_side_apply(deps, deployment(), field_manager="llmops")
    live = dyn.get(deps, "web", "default")
    kube.server.reset_counters()
    dyn.server_side_apply(deps, deployment(replicas=9), field_manager="llmops", dry_run="All")
    after = dyn.get(deps, "web", "default")
    assert (after.spec.replicas, after.metadata.resourceVersion) == (
        2, live.metadata.resourceVersion)
    assert kube.server.write_count() == 0


def test_fields_dropped_from_the_applied_config_are_removed(
        dyn: dynamic.DynamicClient) -> None:
    deps = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    with_env = deployment(team="nlp")
    with_env["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    dyn.server_side_apply(deps, with_env, field_manager="llmops")
    # Another manager adds its own env var to the same container (merge by name).
    sidecar_env = {"apiVersion": "apps/v1", "kind": "Deployment",
                   "metadata": {"name": "web", "namespace": "default"},
                   "spec": {"template": {"spec": {"containers": [
                       {"name": "app", "env": [{"name": "C", "value": "3"}]}]}}}}
    dyn.server_side_apply(deps, sidecar_env, field_manager="injector")
    env = dyn.get(deps, "web", "default").spec.template.spec.containers[0].env
    assert [e.name for e in env] == ["A", "B", "C"]

    without = deployment(replicas=None)  # no team label, no env B, no replicas
    without["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "A", "value": "1"}]
    after = dyn.server_side_apply(deps, without, field_manager="llmops")

    assert "team" not in after.metadata.labels
    assert [e.name for e in after.spec.template.spec.containers[0].env] == ["A", "C"]
    assert after.spec.replicas == 1  # removed, then defaulted like a real apiserver


# ---- delete ---------------------------------------------------------------------------------


def test_delete_propagation(dyn: dynamic.DynamicClient) -> None:
    deps = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    cms = dyn.resources.get(api_version="v1", kind="ConfigMap")

    def owned_configmap(name: str, owner: Any) -> dict[str, Any]:
        cm = configmap(name)
        cm["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "Deployment",
                                              "name": owner.metadata.name,
                                              "uid": owner.metadata.uid}]
        return cm

    web = dyn.create(deps, deployment("web"))
    dyn.create(cms, owned_configmap("web-cfg", web))
    status = dyn.delete(deps, "web", "default", propagation_policy="Foreground")
    assert (status.kind, status.status, status.details.uid) == ("Status", "Success",
                                                                web.metadata.uid)
    assert [i.metadata.name for i in cms.get(namespace="default").items] == []

    api = dyn.create(deps, deployment("api"))
    dyn.create(cms, owned_configmap("api-cfg", api))
    dyn.delete(deps, "api", "default", body={"propagationPolicy": "Orphan"})
    orphan = dyn.get(cms, "api-cfg", "default")
    assert orphan.metadata.ownerReferences is None
    with pytest.raises(ApiException):
        dyn.get(deps, "api", "default")


def test_namespace_delete_cascades(kube: RunningEmulator, dyn: dynamic.DynamicClient) -> None:
    nss = dyn.resources.get(api_version="v1", kind="Namespace")
    deps = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    created = dyn.server_side_apply(nss, namespace("team-a"), field_manager="llmops")
    assert created.status.phase == "Active"
    dyn.server_side_apply(deps, deployment(ns="team-a"), field_manager="llmops")
    dyn.create(dyn.resources.get(api_version="v1", kind="ConfigMap"), configmap("c", "team-a"))

    gone = dyn.delete(nss, "team-a")

    assert gone.status.phase == "Terminating"
    assert deps.get(namespace="team-a").items == []
    assert kube.server.objects("ConfigMap") == []
    with pytest.raises(ApiException) as missing:
        dyn.get(nss, "team-a")
    assert missing.value.status == 404


# ---- controllers ------------------------------------------------------------------------------


def test_controllers_make_deployments_available_and_jobs_complete(
        kube: RunningEmulator, dyn: dynamic.DynamicClient) -> None:
    deps = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    jobs = dyn.resources.get(api_version="batch/v1", kind="Job")
    dyn.server_side_apply(deps, deployment(replicas=3), field_manager="llmops")
    kube.server.controllers.stall_deployment("default", "stuck")
    dyn.server_side_apply(deps, deployment("stuck"), field_manager="llmops")
    job = {"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {"name": "migrate", "namespace": "default"},
           "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
               {"name": "m", "image": "busybox:1.36"}]}}}}
    dyn.server_side_apply(jobs, job, field_manager="llmops")
    kube.server.controllers.fail_job("default", "broken")
    job["metadata"]["name"] = "broken"
    dyn.server_side_apply(jobs, job, field_manager="llmops")

    web = dyn.get(deps, "web", "default")
    assert web.status.observedGeneration == web.metadata.generation
    assert (web.status.readyReplicas, web.status.availableReplicas) == (3, 3)
    assert {c.type: c.status for c in web.status.conditions}["Available"] == "True"
    stuck = dyn.get(deps, "stuck", "default")
    progressing = next(c for c in stuck.status.conditions if c.type == "Progressing")
    assert (progressing.status, progressing.reason) == ("False", "ProgressDeadlineExceeded")
    done = dyn.get(jobs, "migrate", "default")
    assert done.status.succeeded == 1
    assert any(c.type == "Complete" and c.status == "True" for c in done.status.conditions)
    broken = dyn.get(jobs, "broken", "default")
    assert any(c.type == "Failed" and c.status == "True" for c in broken.status.conditions)
    # Status writes are the controllers', not the client's, and never bump generation.
    assert {w.actor for w in kube.server.writes(None) if w.kind == "Deployment"} == {
        "client", "controller"}
    assert web.metadata.generation == 1


def test_controllers_can_be_off_and_services_get_a_cluster_ip(tmp_path: Path) -> None:
    with running_emulator(tmp_path, controllers=False) as kube:
        api_client = kube.api_client()
        apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
        apps.create_namespaced_deployment("default", deployment())
        assert apps.read_namespaced_deployment("web", "default").status.conditions is None
        svc = core.create_namespaced_service("default", {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})
        assert svc.spec.cluster_ip.startswith("10.96.")
        assert svc.spec.ports[0].target_port == 80
        kube.server.controllers.enabled = True
        kube.server.controllers.reconcile_all()
        assert apps.read_namespaced_deployment("web", "default").status.available_replicas == 2
        api_client.close()


# ---- faults and counters ----------------------------------------------------------------


def test_injected_errors_reach_the_client(kube: RunningEmulator, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    faults = kube.server.faults
    faults.error(500, method="POST", path="/configmaps$")
    with pytest.raises(ApiException) as internal:
        core.create_namespaced_config_map("default", configmap("a"))
    assert (internal.value.status, error_body(internal.value)["reason"]) == (500, "InternalError")
    faults.error(503)
    with pytest.raises(ApiException) as unavailable:
        core.list_namespace()
    assert unavailable.value.status == 503
    # GETs with Retry-After are retried by urllib3 itself; a write is not.
    faults.throttle(retry_after=7, method="POST")
    with pytest.raises(ApiException) as throttled:
        core.create_namespaced_config_map("default", configmap("a"))
    assert (throttled.value.status, throttled.value.headers["Retry-After"]) == (429, "7")
    assert error_body(throttled.value)["details"]["retryAfterSeconds"] == 7
    assert kube.server.write_count() == 0
    core.create_namespaced_config_map("default", configmap("a"))
    assert kube.server.write_count() == 1
    assert kube.server.stats.matching("POST", "/configmaps$") == 3
    assert faults.pending() == []


def test_hang_and_dropped_connections(kube: RunningEmulator, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    kube.server.faults.hang(5, method="POST")
    started = time.monotonic()
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        core.create_namespaced_config_map("default", configmap("a"), _request_timeout=0.3)
    assert time.monotonic() - started < 2
    kube.server.faults.drop(method="POST")
    with pytest.raises(urllib3.exceptions.ProtocolError):
        core.create_namespaced_config_map("default", configmap("b"))
    # GETs are retried by urllib3 (3 times): more drops than retries reach the caller.
    kube.server.faults.drop(times=4, method="GET")
    with pytest.raises(urllib3.exceptions.MaxRetryError):
        core.list_namespace()
    assert [c.metadata.name for c in core.list_namespaced_config_map("default").items] == []


def test_admin_endpoint_injects_faults_and_reports_counts(kube: RunningEmulator,
                                                          api: client.ApiClient) -> None:
    request = urllib.request.Request(
        f"{kube.url}/__emulator/faults", method="POST",
        data=json.dumps({"action": "status", "status": 500, "method": "GET"}).encode())
    with urllib.request.urlopen(request) as resp:
        assert resp.status == 201
    with pytest.raises(ApiException) as failed:
        client.CoreV1Api(api).list_namespace()
    assert failed.value.status == 500
    with urllib.request.urlopen(f"{kube.url}/__emulator/stats") as resp:
        stats = json.load(resp)
    assert stats["clientWrites"] == 0
    assert {"method": "GET", "path": "/api/v1/namespaces", "count": 1} in stats["requests"]


# ---- standalone --------------------------------------------------------------------------


def test_standalone_server_writes_a_usable_kubeconfig(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "emulator.kubeconfig"
    env = dict(os.environ, PYTHONPATH=str(TESTS))
    proc = subprocess.Popen(
        [sys.executable, "-m", "kube_emulator", "--port", "0", "--kubeconfig", str(kubeconfig)],
        stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        cfg = client.Configuration()
        config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
        assert cfg.host == url
        with client.ApiClient(cfg) as api_client:
            names = [n.metadata.name for n in client.CoreV1Api(api_client).list_namespace().items]
        assert "default" in names
    finally:
        proc.terminate()
        proc.wait(timeout=5)


@pytest.mark.slow
def test_real_kubectl_applies_gets_and_deletes(kube: RunningEmulator, tmp_path: Path) -> None:
    kubectl = peers.tool("kubectl")
    manifest = tmp_path / "app.yaml"
    manifest.write_text(json.dumps(namespace("team-a")) + "\n---\n"
                        + json.dumps(deployment(ns="team-a")))
    env = dict(os.environ, KUBECONFIG=str(kube.kubeconfig), HOME=str(tmp_path))

    def run(*args: str) -> str:
        done = subprocess.run([str(kubectl), *args], env=env, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "serverside-applied" in run("apply", "--server-side", "--field-manager=llmops",
                                       "-f", str(manifest))
    kube.server.reset_counters()
    run("apply", "--server-side", "--field-manager=llmops", "-f", str(manifest))
    assert kube.server.write_count() == 0
    assert run("get", "deployment", "web", "-n", "team-a", "-o",
               "jsonpath={.status.availableReplicas}") == "2"
    assert "web" in run("get", "deployments", "-n", "team-a")
    run("delete", "namespace", "team-a")
    assert kube.server.objects("Deployment") == []
