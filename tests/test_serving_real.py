"""Every object the serving and training renderers emit is accepted by a real kube-apiserver.

Server-side apply with ``dryRun=All`` and ``fieldValidation=Strict`` (an unknown or
misspelt field is an error, not a warning) against kube-apiserver v1.28 (``tests/realkube.py``):
the template repo's three environments, and the options the template does not use (TGI,
tensor parallelism, a model cache PVC, workload identity, an S3 endpoint, CPU autoscaling,
the seed route as ``spec.route``). Namespaced objects are sent into the test's own
namespace: a dry run stores nothing, so objects of several teams may share its names.
KEDA's ScaledObject and the Gateway API's HTTPRoute are custom resources this bare
server does not serve; their shape is checked in ``test_serving.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from realkube import REQUEST_TIMEOUT, RealKube
from test_serving import specs, write

from conftest import TEMPLATE
from llmops.engine.spec import validate
from llmops.engine.types import KubeObject
from llmops.renderers import render_environment

pytestmark = pytest.mark.slow

PLURALS = {"Namespace": "namespaces", "ConfigMap": "configmaps", "Service": "services",
           "ResourceQuota": "resourcequotas", "Deployment": "deployments", "Job": "jobs",
           "HorizontalPodAutoscaler": "horizontalpodautoscalers", "Ingress": "ingresses",
           "PodDisruptionBudget": "poddisruptionbudgets"}


def _path(obj: KubeObject, namespace: str) -> str:
    api = obj["apiVersion"]
    base = f"/api/{api}" if "/" not in api else f"/apis/{api}"
    plural, name = PLURALS[obj["kind"]], obj["metadata"]["name"]
    if obj["kind"] == "Namespace":
        return f"{base}/{plural}/{name}"
    return f"{base}/namespaces/{namespace}/{plural}/{name}"


def dry_run_apply(real_kube: RealKube, objs: list[KubeObject], namespace: str,
                  accepted: dict[str, Any] | None = None) -> dict[str, str]:
    """``{object: error}`` for every object the server refuses (empty when all pass);
    what it made of the others goes into ``accepted``."""
    api = real_kube.api_client()
    refused: dict[str, str] = {}
    for obj in objs:
        body: dict[str, Any] = {**obj, "metadata": dict(obj["metadata"])}
        if obj["kind"] != "Namespace":
            body["metadata"]["namespace"] = namespace
        request = api.param_serialize(
            "PATCH", _path(obj, namespace),
            query_params=[("dryRun", "All"), ("fieldManager", "llmops-test"),
                          ("fieldValidation", "Strict"), ("force", "true")],
            header_params={"Content-Type": "application/apply-patch+yaml",
                           "Accept": "application/json"},
            body=body, auth_settings=["BearerToken"])
        response = api.call_api(*request, _request_timeout=REQUEST_TIMEOUT)
        response.read()
        if response.status >= 300:
            refused[f"{obj['kind']}/{obj['metadata']['name']}"] = response.data[:500].decode()
        elif accepted is not None:
            accepted[f"{obj['kind']}/{obj['metadata']['name']}"] = json.loads(response.data)
    return refused


@pytest.mark.parametrize("env", ["dev", "stg", "prod"])
def test_template_objects_pass_a_strict_server_side_dry_run(
        real_kube: RealKube, kube_namespace: str, env: str) -> None:
    objs = list(render_environment(validate.load_and_validate(TEMPLATE), env, revision="r1"))
    kinds = {o["kind"] for o in objs}
    assert {"Deployment", "Service", "Ingress", "ConfigMap"} <= kinds
    assert dry_run_apply(real_kube, objs, kube_namespace) == {}


def test_options_the_template_does_not_use_pass_too(
        real_kube: RealKube, kube_namespace: str, tmp_path: Path) -> None:
    files = specs()
    dev = files["llmops.yaml"]["environments"]["dev"]["serving"]
    dev["storage"] = {"serviceAccountName": "model-reader", "cacheClaim": "model-cache",
                      "endpointUrl": "https://minio.internal:9000"}
    files["endpoints/dev/chat.yaml"]["spec"].update(
        runtime={"kind": "tgi", "port": 8080, "startupSeconds": 3600},
        resources={"gpu": 2, "gpuType": "l4", "cpu": "8", "memory": "64Gi"},
        autoscale={"cpuUtilization": 70}, route="/llm-ops/v1/serve/chat")
    objs = list(render_environment(validate.load_and_validate(write(tmp_path, files)), "dev"))
    assert {"PodDisruptionBudget", "Job", "HorizontalPodAutoscaler"} <= {o["kind"] for o in objs}
    assert dry_run_apply(real_kube, objs, kube_namespace) == {}


def test_the_training_ttl_is_a_field_the_server_keeps(
        real_kube: RealKube, kube_namespace: str, tmp_path: Path) -> None:
    files = specs()
    files["llmops.yaml"]["environments"]["dev"]["serving"][
        "trainingTtlSecondsAfterFinished"] = 3600
    objs = [o for o in render_environment(validate.load_and_validate(write(tmp_path, files)),
                                          "dev") if o["kind"] == "Job"]
    accepted: dict[str, Any] = {}
    assert dry_run_apply(real_kube, objs, kube_namespace, accepted) == {}
    (job,) = accepted.values()
    assert job["spec"]["ttlSecondsAfterFinished"] == 3600
