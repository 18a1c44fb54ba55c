"""The prompt router beside a ServingEndpoint's model server: a sidecar, and the Service through it.

Input: the objects ``llmops.renderers.serving`` rendered for one endpoint
(its Deployment and Service among them), the endpoint's spec body and
``Where`` its objects are stamped (owner, namespace, revision). Output: the
same list, changed in place (and extended) when the endpoint has a prompt
template or an experiment (the Deployment mounts a ``prompt`` and/or
``experiment`` ConfigMap volume); otherwise untouched.

- The pod gets a ``router`` container (the llmops image, ``llmops router``)
  listening on port ``router`` (8080), forwarding to the model server on
  ``127.0.0.1:<port>``, with the prompt and experiment ConfigMaps mounted
  where the model server had them, and the endpoint's environment variables
  (``LLMOPS_ENDPOINT``, ``LLMOPS_ENVIRONMENT``, ``LLMOPS_PROMPT_DIR``,
  ``LLMOPS_EXPERIMENT_FILE``). The model server keeps serving on ``http``;
  it no longer mounts the prompt files (it never read them).
- The Service's port 80 targets ``router`` instead of ``http``.
- The pod template annotation ``llmops.io/config-checksum`` no longer hashes
  the prompt and experiment ConfigMaps: the router reloads them in place, so a
  prompt edit or a weight change never restarts the (GPU) pod.
- ``prometheus.io/scrape|port|path`` annotations point a Prometheus that uses
  the common pod-annotation discovery at the router's ``/metrics``.

With ``spec.router.placement: deployment`` the router runs instead as its own
Deployment ``<endpoint>-router`` (``spec.router.replicas`` pods, the
ConfigMap volumes moved to it) forwarding to a new Service
``<endpoint>-model`` in front of the model server pods, and the Service
``<endpoint>`` selects the router pods. Router replicas then scale apart from
the GPU pods.

Caller: ``llmops.renderers.serving`` (one call at the end of an endpoint's render).
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from typing import Any

from llmops.engine import manifest
from llmops.engine.spec import schema
from llmops.engine.types import KubeObject, content_hash
from llmops.renderers import objects
from llmops.renderers.objects import Owner

IMAGE = "ghcr.io/llmops/llmops:0.1.0"
PORT = 8080
PORT_NAME = "router"
ROUTER_VOLUMES = ("prompt", "experiment")
ROUTER_ENV = (
    "LLMOPS_ENDPOINT",
    "LLMOPS_ENVIRONMENT",
    "LLMOPS_PROMPT_TEMPLATE",
    "LLMOPS_PROMPT_DIR",
    "LLMOPS_EXPERIMENT",
    "LLMOPS_EXPERIMENT_FILE",
)
SCRAPE = {
    "prometheus.io/scrape": "true",
    "prometheus.io/port": str(PORT),
    "prometheus.io/path": "/metrics",
}
RESOURCES = {
    "requests": {"cpu": "250m", "memory": "128Mi"},
    "limits": {"cpu": "2", "memory": "512Mi"},
}


def _find(objs: list[KubeObject], kind: str) -> KubeObject | None:
    return next((o for o in objs if o.get("kind") == kind), None)


def container(
    env: list[dict[str, Any]], mounts: list[dict[str, Any]], upstream: str
) -> dict[str, Any]:
    """The ``router`` container: ``llmops router`` in front of the model server."""
    probe = {
        "httpGet": {"path": "/healthz", "port": PORT_NAME},
        "periodSeconds": 10,
        "timeoutSeconds": 2,
        "failureThreshold": 3,
    }
    return {
        "name": "router",
        "image": IMAGE,
        "args": ["router", "--host", "0.0.0.0", "--port", str(PORT)],
        "ports": [{"name": PORT_NAME, "containerPort": PORT, "protocol": "TCP"}],
        "env": [*env, {"name": "LLMOPS_ROUTER_UPSTREAM", "value": upstream}],
        "resources": RESOURCES,
        "readinessProbe": probe,
        "livenessProbe": {**probe, "periodSeconds": 15, "failureThreshold": 4},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": mounts,
    }


@dataclass(frozen=True)
class Where:
    """What new objects need to be stamped like the endpoint's own."""

    owner: Owner
    namespace: str
    revision: str


def attach(
    objs: list[KubeObject], body: schema.ServingEndpointBody, where: Where
) -> list[KubeObject]:
    """Put the router in front of the model server when the endpoint has prompts to route."""
    deployment, service = _find(objs, "Deployment"), _find(objs, "Service")
    if deployment is None or service is None:
        return objs
    template = deployment["spec"]["template"]
    server = template["spec"]["containers"][0]
    mounts = [m for m in server.get("volumeMounts", []) if m["name"] in ROUTER_VOLUMES]
    if not mounts:
        return objs
    env = [e for e in server.get("env", []) if e.get("name") in ROUTER_ENV]
    server["volumeMounts"] = [m for m in server["volumeMounts"] if m not in mounts]
    server["env"] = [e for e in server["env"] if e.get("name") not in ROUTER_ENV[2:]]
    annotations = template["metadata"].setdefault("annotations", {})
    annotations[manifest.CONFIG_CHECKSUM_ANNOTATION] = content_hash(
        {"prompt": None, "experiment": None}
    )
    if body.router.placement == schema.RouterPlacement.DEPLOYMENT:
        objs += _separate(
            deployment,
            service,
            container(env, mounts, f"http://{_model(service)}"),
            body.router.replicas,
            where,
        )
    else:
        template["spec"]["containers"].append(
            container(env, mounts, f"http://127.0.0.1:{body.runtime.port}")
        )
        annotations.update(SCRAPE)
    for port in service["spec"]["ports"]:
        if port.get("targetPort") == "http":
            port["targetPort"] = PORT_NAME
    return objs


def _model(service: KubeObject) -> str:
    return f"{service['metadata']['name']}-model"


def _separate(
    server: KubeObject, service: KubeObject, router: dict[str, Any], replicas: int, where: Where
) -> list[KubeObject]:
    """The router's own Deployment, and a Service ``<endpoint>-model`` for it to reach."""
    name = service["metadata"]["name"]
    server_pod = server["spec"]["template"]
    volumes = [v for v in server_pod["spec"]["volumes"] if v["name"] in ROUTER_VOLUMES]
    server_pod["spec"]["volumes"] = [v for v in server_pod["spec"]["volumes"] if v not in volumes]
    model = copy.deepcopy(service)
    model["metadata"] = {"name": _model(service), "namespace": where.namespace}
    instance = f"{name}-router-{where.owner.environment}"
    selector = {**service["spec"]["selector"], manifest.INSTANCE_LABEL: instance}
    labels = {**server_pod["metadata"]["labels"], **selector, manifest.COMPONENT_LABEL: "router"}
    service["spec"]["selector"] = selector
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"{name}-router", "namespace": where.namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": labels, "annotations": dict(SCRAPE)},
                "spec": {
                    "automountServiceAccountToken": False,
                    "containers": [router],
                    "volumes": volumes,
                },
            },
        },
    }
    stamp = functools.partial(
        objects.stamp,
        owner=where.owner,
        app=name,
        namespace=where.namespace,
        revision=where.revision,
    )
    return [
        stamp(model, component="server"),
        stamp(deployment, component="router", instance=instance),
    ]
