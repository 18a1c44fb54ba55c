"""The prompt router beside a ServingEndpoint's model server: a sidecar, and the Service through it.

Input: the objects ``llmops.renderers.serving`` rendered for one endpoint
(its Deployment and Service among them), the endpoint's spec body, ``Where``
its objects are stamped (owner, namespace, revision) and the ``Wiring`` of
its prompt ConfigMap. Output: the same list, changed in place (and extended).

- The pod gets a ``router`` container (the llmops image, ``llmops router``)
  listening on port ``router`` (8081), forwarding to the model server on
  ``127.0.0.1:<port>``, with the endpoint's prompt ConfigMap mounted read-only
  at ``/etc/llmops/prompt`` and the endpoint's environment variables
  (``LLMOPS_ENDPOINT``, ``LLMOPS_ENVIRONMENT``, ``LLMOPS_PROMPT_DIR``,
  ``LLMOPS_EXPERIMENT_FILE``). Every endpoint has it: the ConfigMap is always
  there, holding the template and the experiment's table when there are
  some (none: the router passes requests through), and nothing in the pod
  template names a template or an experiment. The model server never mounts
  it: the router reloads it in place, so a prompt edit, a weight change, or a
  template or experiment that comes or goes never restarts the (GPU) pod.
- The Service's port 80 targets ``router`` instead of ``http``.
- ``prometheus.io/scrape|port|path`` point at the router's ``/metrics``, which
  as a sidecar also carries the model server's own metrics
  (``LLMOPS_ROUTER_MERGE_METRICS``: one scrape target per pod, as
  annotation-based discovery has, holds the router's series and the queue the
  autoscaler reads).

With ``spec.router.placement: deployment`` the router runs instead as its own
Deployment ``<endpoint>-router`` (``spec.router.replicas`` pods, the
ConfigMap volumes on it) forwarding to a new Service ``<endpoint>-model`` in
front of the model server pods, and the Service ``<endpoint>`` selects the
router pods. Router replicas then scale apart from the GPU pods.

Caller: ``llmops.renderers.serving`` (one call at the end of an endpoint's render).
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field
from typing import Any

from llmops.engine import manifest
from llmops.engine.spec import schema
from llmops.engine.types import KubeObject
from llmops.renderers import objects
from llmops.renderers.objects import Owner

IMAGE = "ghcr.io/llmops/llmops:0.1.0"
PORT = 8081
"""The router's port in the pod: not the API's 8080 nor a model server's usual 8000, and
``llmops router``'s default ``--port``."""
PORT_NAME = "router"
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


PROMPT_DIR = "/etc/llmops/prompt"
PROMPT_VOLUME = "prompt"


@dataclass
class Wiring:
    """What the router reads: env, and the ConfigMap volumes with their mounts."""

    env: list[dict[str, Any]]
    volumes: list[dict[str, Any]] = field(default_factory=list)
    mounts: list[dict[str, Any]] = field(default_factory=list)

    def mount(self, volume: str, configmap: str, path: str) -> None:
        self.volumes.append({"name": volume, "configMap": {"name": configmap}})
        self.mounts.append({"name": volume, "mountPath": path, "readOnly": True})

    @classmethod
    def of(cls, endpoint: str, environment: str, configmap: str, experiment_file: str
           ) -> Wiring:
        """The endpoint's prompt ConfigMap, mounted whatever it holds: the same wiring
        with or without a template or an experiment."""
        wiring = cls([{"name": "LLMOPS_ENDPOINT", "value": endpoint},
                      {"name": "LLMOPS_ENVIRONMENT", "value": environment},
                      {"name": "LLMOPS_PROMPT_DIR", "value": PROMPT_DIR},
                      {"name": "LLMOPS_EXPERIMENT_FILE",
                       "value": f"{PROMPT_DIR}/{experiment_file}"}])
        wiring.mount(PROMPT_VOLUME, configmap, PROMPT_DIR)
        return wiring


def attach(objs: list[KubeObject], body: schema.ServingEndpointBody, where: Where,
           wiring: Wiring) -> list[KubeObject]:
    """Put the router in front of the model server."""
    deployment, service = _find(objs, "Deployment"), _find(objs, "Service")
    if deployment is None or service is None:
        return objs
    if body.router.placement == schema.RouterPlacement.DEPLOYMENT:
        objs += _separate(service, container(wiring.env, wiring.mounts,
                                             f"http://{_model(service)}"),
                          wiring.volumes, body.router.replicas, where)
    else:
        template = deployment["spec"]["template"]
        merged = [*wiring.env, {"name": "LLMOPS_ROUTER_MERGE_METRICS", "value": "true"}]
        template["spec"]["containers"].append(container(
            merged, wiring.mounts, f"http://127.0.0.1:{body.runtime.port}"))
        template["spec"]["volumes"] = [*template["spec"].get("volumes", []), *wiring.volumes]
        template["metadata"].setdefault("annotations", {}).update(SCRAPE)
    for port in service["spec"]["ports"]:
        if port.get("targetPort") == "http":
            port["targetPort"] = PORT_NAME
    return objs


def _model(service: KubeObject) -> str:
    return f"{service['metadata']['name']}-model"


def _separate(service: KubeObject, router: dict[str, Any], volumes: list[dict[str, Any]],
              replicas: int, where: Where) -> list[KubeObject]:
    """The router's own Deployment, and a Service ``<endpoint>-model`` for it to reach."""
    name = service["metadata"]["name"]
    model = copy.deepcopy(service)
    model["metadata"] = {"name": _model(service), "namespace": where.namespace}
    instance = f"{name}-router-{where.owner.environment}"
    selector = {**service["spec"]["selector"], manifest.INSTANCE_LABEL: instance}
    labels = {**service["metadata"].get("labels", {}), **selector,
              manifest.COMPONENT_LABEL: "router"}
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
