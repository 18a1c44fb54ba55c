"""ServingEndpoint and PromptExperiment specs -> the Kubernetes objects that serve a model.

Input: a ``Scope`` (spec set, environment, source commit) and one sourced
spec. Output: a list of stamped objects. Called by ``llmops.renderers.render``.

A ServingEndpoint renders to:

- ``Deployment`` ``<endpoint>``: the runtime image and args, container port
  ``http``, requests and limits (``nvidia.com/gpu`` when ``resources.gpu`` > 0,
  a node selector for ``gpuType`` and a toleration for tainted GPU nodes),
  startup/readiness/liveness probes on ``runtime.healthPath``, the model handed
  over as ``MODEL_NAME``/``MODEL_VERSION``/``MODEL_URI`` (plus ``BASE_MODEL_*``
  for adapters and fine-tunes), ``runtime.env``, and the prompt and experiment
  ConfigMaps mounted under ``/etc/llmops/``. The pod-template annotation
  ``llmops.io/config-checksum`` hashes both ConfigMaps' data. When either
  is mounted, ``router.attach`` then moves them to the prompt router sidecar
  (which reloads them in place: a prompt or weight change never restarts the
  pod) and routes the Service through it.
- ``Service`` ``<endpoint>`` (ClusterIP, port 80 -> ``http``), ``Ingress``
  ``<endpoint>`` on ``spec.route`` (``Prefix``, on ``spec.host`` if given).
- ``HorizontalPodAutoscaler`` ``<endpoint>`` (min/max; CPU utilisation or a
  per-pod custom metric). ``replicas.min: 0`` parks the endpoint: the HPA API
  needs ``minReplicas >= 1``, so no HPA is rendered and the Deployment runs 0
  replicas; raise ``min`` to serve again. Otherwise the Deployment leaves
  ``spec.replicas`` unset, so the HPA owns the replica count and an apply never
  resets what the autoscaler scaled to.
- ``ConfigMap`` ``<endpoint>-prompt`` with the default prompt template (name,
  version, text, variables) when ``promptTemplateRef`` is set.

A PromptExperiment renders to ``ConfigMap`` ``<experiment>-experiment`` in
its endpoint's namespace, key ``experiment.json``: state, metric, stickiness,
winner and every variant with its template text and effective weight (a
concluded experiment sends 100% to the winner). The endpoint mounts the
table of ``SpecSet.experiment_for(endpoint)`` (a running one wins).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, cast

from llmops.engine.spec import schema
from llmops.engine.spec.validate import SourcedSpec
from llmops.engine.types import KubeObject, content_hash
from llmops.renderers import objects, router, templating
from llmops.renderers.objects import Owner, Scope

PROMPT_DIR = "/etc/llmops/prompt"
EXPERIMENT_DIR = "/etc/llmops/experiment"
EXPERIMENT_FILE = "experiment.json"


def prompt_configmap_name(endpoint: str) -> str:
    return f"{endpoint}-prompt"


def experiment_configmap_name(experiment: str) -> str:
    return f"{experiment}-experiment"


def _emit(template: str, context: dict[str, Any], owner: Owner, scope: Scope, *, app: str,
          component: str, namespace: str) -> KubeObject:
    obj = templating.render_object(template, {"namespace": namespace, **context},
                                   file=owner.file, subject=owner.subject)
    return objects.stamp(obj, owner, app=app, component=component, namespace=namespace,
                         revision=scope.revision, template=template)


# --------------------------------------------------------------------------- experiments


def experiment_table(scope: Scope, experiment: schema.PromptExperimentSpec, owner: Owner
                     ) -> dict[str, Any]:
    """The variant table the prompt router reads (as plain data)."""
    body = experiment.spec
    weights = body.effective_weights()
    variants = []
    for variant in body.variants:
        template = scope.spec_set.template(variant.templateRef)
        if template is None:
            raise owner.error(f"prompt template {variant.templateRef} is not defined")
        variants.append({
            "template": variant.templateRef,
            "version": template.spec.version,
            "weight": weights[variant.templateRef],
            "declaredWeight": variant.weight,
            "variables": list(template.spec.variables),
            "text": template.spec.template,
        })
    stickiness: dict[str, str] | None = None
    if body.stickiness is not None:
        stickiness = ({"header": body.stickiness.header} if body.stickiness.header
                      else {"cookie": str(body.stickiness.cookie)})
    return {
        "experiment": experiment.name,
        "endpoint": body.endpointRef,
        "environment": body.environment,
        "state": str(body.state),
        "winner": body.winner,
        "metric": body.metric,
        "stickiness": stickiness,
        "variants": variants,
    }


def _experiment_endpoint(scope: Scope, experiment: schema.PromptExperimentSpec, owner: Owner
                         ) -> schema.ServingEndpointSpec:
    endpoint = scope.spec_set.endpoint(experiment.spec.environment, experiment.spec.endpointRef)
    if endpoint is None:
        raise owner.error(f"endpoint {experiment.spec.endpointRef} is not defined in "
                          f"environment {experiment.spec.environment}")
    return endpoint


def experiment_configmap(scope: Scope, item: SourcedSpec) -> KubeObject:
    """The variant-table ConfigMap of one experiment, in its endpoint's namespace."""
    experiment = cast(schema.PromptExperimentSpec, item.spec)
    probe = objects.owner_of(item, scope.environment)
    endpoint = _experiment_endpoint(scope, experiment, probe)
    team = scope.spec_set.team_of(endpoint)
    owner = objects.owner_of(item, scope.environment, team)
    table = experiment_table(scope, experiment, owner)
    text = json.dumps(table, indent=2, ensure_ascii=False) + "\n"
    return _emit("experiment-configmap.json.j2",
                 {"name": experiment_configmap_name(experiment.name), "file_name": EXPERIMENT_FILE,
                  "table": text},
                 owner, scope, app=endpoint.name, component="prompt-experiment",
                 namespace=scope.namespace_for(team))


def render_experiment(scope: Scope, item: SourcedSpec) -> list[KubeObject]:
    return [experiment_configmap(scope, item)]


# --------------------------------------------------------------------------- endpoints


def _model_env(owner: Owner, scope: Scope, ref: schema.ModelRef, prefix: str
               ) -> tuple[schema.ModelSpec, list[tuple[str, str]]]:
    model = scope.spec_set.model(ref)
    if model is None:
        raise owner.error(f"model {ref} is not defined")
    return model, [(f"{prefix}NAME", model.name), (f"{prefix}VERSION", model.spec.version),
                   (f"{prefix}URI", model.spec.storageUri)]


def model_env(owner: Owner, scope: Scope, ref: schema.ModelRef, prefix: str = "MODEL_"
              ) -> list[tuple[str, str]]:
    """``<prefix>NAME/VERSION/URI`` of a model, then ``BASE_<prefix>*`` of its base model."""
    model, env = _model_env(owner, scope, ref, prefix)
    if model.spec.baseModel is not None:
        env += _model_env(owner, scope, model.spec.baseModel, f"BASE_{prefix}")[1]
    return env


@dataclass
class _Pod:
    """What the model server's pod gets beside its image: env, volumes and their mounts."""

    env: list[tuple[str, str]]
    volumes: list[dict[str, Any]] = field(default_factory=lambda: [
        {"name": "dshm", "emptyDir": {"medium": "Memory"}}])
    mounts: list[dict[str, Any]] = field(default_factory=lambda: [
        {"name": "dshm", "mountPath": "/dev/shm"}])
    config: dict[str, dict[str, str] | None] = field(default_factory=lambda: {
        "prompt": None, "experiment": None})
    """The data of the ConfigMaps the pod reads, hashed into the pod template."""

    def mount(self, volume: str, configmap: str, path: str) -> None:
        self.volumes.append({"name": volume, "configMap": {"name": configmap}})
        self.mounts.append({"name": volume, "mountPath": path, "readOnly": True})


class _Endpoint:
    """Renders one ServingEndpoint: its ConfigMaps, Deployment, Service, autoscaler, Ingress."""

    def __init__(self, scope: Scope, item: SourcedSpec) -> None:
        self.scope, self.item = scope, item
        self.endpoint = cast(schema.ServingEndpointSpec, item.spec)
        self.name = self.endpoint.name
        team = scope.spec_set.team_of(self.endpoint)
        self.owner = objects.owner_of(item, scope.environment, team)
        self.namespace = scope.namespace_for(team)
        self.out: list[KubeObject] = []

    def emit(self, template: str, context: dict[str, Any], component: str) -> KubeObject:
        obj = _emit(template, {"name": self.name, **context}, self.owner, self.scope,
                    app=self.name, component=component, namespace=self.namespace)
        self.out.append(obj)
        return obj

    def render(self) -> list[KubeObject]:
        body = self.endpoint.spec
        pod = _Pod([("LLMOPS_ENDPOINT", self.name), ("LLMOPS_ENVIRONMENT", self.scope.environment),
                    *model_env(self.owner, self.scope, body.modelRef)])
        self._prompt(pod)
        self._experiment(pod)
        parked = body.replicas.min == 0
        self._deployment(pod, parked)
        self.emit("service.json.j2", {"selector": objects.selector_labels(self.owner, self.name)},
                  "server")
        if not parked:
            metric = body.autoscale.customMetric
            self.emit("horizontalpodautoscaler.json.j2", {
                "min_replicas": body.replicas.min,
                "max_replicas": body.replicas.max,
                "custom_metric": ({"name": metric.name, "target": metric.targetAverageValue}
                                  if metric else None),
                "cpu_utilization": body.autoscale.cpuUtilization,
            }, "server")
        self.emit("ingress.json.j2", {"host": body.host, "route": body.route,
                                      "service": self.name}, "route")
        return router.attach(self.out, body, router.Where(self.owner, self.namespace,
                                                           self.scope.revision))

    def _prompt(self, pod: _Pod) -> None:
        ref = self.endpoint.spec.promptTemplateRef
        if not ref:
            return
        template = self.scope.spec_set.template(ref)
        if template is None:
            raise self.owner.error(f"prompt template {ref} is not defined")
        configmap = self.emit("prompt-configmap.json.j2", {
            "name": prompt_configmap_name(self.name),
            "template_name": template.name,
            "version": template.spec.version,
            "text": template.spec.template,
            "variables": json.dumps(list(template.spec.variables)),
        }, "prompt")
        pod.config["prompt"] = configmap["data"]
        pod.env += [("LLMOPS_PROMPT_TEMPLATE", template.name), ("LLMOPS_PROMPT_DIR", PROMPT_DIR)]
        pod.mount("prompt", prompt_configmap_name(self.name), PROMPT_DIR)

    def _experiment(self, pod: _Pod) -> None:
        experiment = self.scope.spec_set.experiment_for(self.endpoint)
        experiment_item = self.scope.spec_set.get(experiment.key) if experiment else None
        if experiment is None or experiment_item is None:
            return
        pod.config["experiment"] = experiment_configmap(self.scope, experiment_item)["data"]
        pod.env += [("LLMOPS_EXPERIMENT", experiment.name),
                    ("LLMOPS_EXPERIMENT_FILE", f"{EXPERIMENT_DIR}/{EXPERIMENT_FILE}")]
        pod.mount("experiment", experiment_configmap_name(experiment.name), EXPERIMENT_DIR)

    def _deployment(self, pod: _Pod, parked: bool) -> None:
        body, owner = self.endpoint.spec, self.owner
        scheduling = objects.gpu_scheduling(owner, body.resources)
        self.emit("deployment.json.j2", {
            "replicas": 0 if parked else None,
            "selector": objects.selector_labels(owner, self.name),
            "pod_labels": objects.workload_labels(owner, self.name, "server"),
            "config_checksum": content_hash(pod.config),
            "image": body.runtime.image,
            "args": list(body.runtime.args),
            "port": body.runtime.port,
            "env": objects.env_list(owner, pod.env, body.runtime.env, "spec.runtime.env"),
            "resources": objects.container_resources(body.resources),
            "health_path": body.runtime.healthPath,
            "volume_mounts": pod.mounts,
            "node_selector": scheduling.get("nodeSelector"),
            "tolerations": scheduling.get("tolerations"),
            "volumes": pod.volumes,
        }, "server")


def render_endpoint(scope: Scope, item: SourcedSpec) -> list[KubeObject]:
    """The objects of one ServingEndpoint, in the order they are emitted."""
    return _Endpoint(scope, item).render()
