"""ServingEndpoint and PromptExperiment specs -> the Kubernetes objects that serve a model.

Input: a ``Scope`` (spec set, environment, source commit) and one sourced
spec. Output: a list of stamped objects. Called by ``llmops.renderers.render``.

A ServingEndpoint renders to:

- ``Deployment`` ``<endpoint>``: the model server's pod as
  ``llmops.renderers.modelserver`` builds it (init containers running
  ``llmops fetch-model`` for the model, or an adapter's base and the adapter;
  the runtime's own arguments, ``/health`` probes with a startup allowance of
  ``startupSeconds``, placement and security), Prometheus scrape annotations,
  ``maxUnavailable: 0`` with one surge pod when the team's GPU budget leaves
  room for it (else ``maxSurge: 0, maxUnavailable: 1``) and a progress
  deadline ten minutes beyond the startup allowance. No prompt or experiment
  content, name or hash is in the pod template: the prompt router reads
  those ConfigMaps at runtime, so a prompt or weight change never restarts a
  GPU pod; a model, runtime or resource change does.
- ``Service`` ``<endpoint>`` (ClusterIP, port 80 -> ``http``).
- The autoscaler (``llmops.renderers.traffic``): a ``HorizontalPodAutoscaler``
  on the server's request queue (or CPU / a custom metric when asked), or a
  KEDA ``ScaledObject`` when the environment chooses KEDA. With the HPA,
  ``replicas.min: 0`` parks the endpoint (no HPA, 0 replicas); with KEDA it
  scales to zero. Otherwise the Deployment leaves ``spec.replicas`` unset, so
  the autoscaler owns the replica count.
- ``PodDisruptionBudget`` ``<endpoint>`` (one pod at a time) when
  ``replicas.min >= 2``.
- Routes: ingress-nginx ``Ingress`` ``<endpoint>`` and ``<endpoint>-chat``, or
  one Gateway API ``HTTPRoute`` (``llmops.renderers.traffic``).
- ``router.attach`` adds the prompt router (a sidecar, or its own Deployment)
  that mounts ``<endpoint>-prompt``, and routes the Service through it.
- ``ConfigMap`` ``<endpoint>-prompt``, always: the default prompt template
  (name, version, text, variables) when ``promptTemplateRef`` is set, and
  ``experiment.json``, the variant table of the experiment routing the
  endpoint's traffic, while there is one. Neither: no data, and the router
  passes requests through. What the pod mounts is the same either way, so a
  template or an experiment that comes or goes never restarts a pod.

A PromptExperiment renders to ``ConfigMap`` ``<experiment>-experiment`` in
its endpoint's namespace, key ``experiment.json``: state, metric, stickiness,
winner and every variant with its template text and effective weight (a
concluded experiment sends 100% to the winner). It is the experiment's own
record (its status comes from it); the router reads the same table from its
endpoint's ConfigMap.
"""

from __future__ import annotations

import json
from typing import Any, cast

from llmops.engine.spec import repoconfig, schema
from llmops.engine.spec.validate import SourcedSpec
from llmops.engine.types import KubeObject
from llmops.renderers import modelserver, objects, router, templating, traffic
from llmops.renderers.objects import Owner, Scope

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


def experiment_text(scope: Scope, experiment: schema.PromptExperimentSpec, owner: Owner
                    ) -> str:
    """The variant table as the file ``experiment.json`` holds it."""
    return json.dumps(experiment_table(scope, experiment, owner), indent=2,
                      ensure_ascii=False) + "\n"


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
    return _emit("experiment-configmap.json.j2",
                 {"name": experiment_configmap_name(experiment.name), "file_name": EXPERIMENT_FILE,
                  "table": experiment_text(scope, experiment, owner)},
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


def surge_fits(scope: Scope, endpoint: schema.ServingEndpointSpec) -> bool:
    """Whether one extra pod during a rollout stays inside the team's GPU budget.

    The team's endpoints in the environment at ``replicas.max``, plus one pod
    of this endpoint, against the sum of its ``gpuBudgets`` (no budget: fits).
    """
    gpu = endpoint.spec.resources.gpu
    if gpu == 0:
        return True
    team = scope.spec_set.team_of(endpoint)
    used, budgets = scope.spec_set.serving_gpus(scope.environment)
    return team not in budgets or used.get(team, 0) + gpu <= budgets[team]


class _Endpoint:
    """Renders one ServingEndpoint: prompt ConfigMap, Deployment, Service, autoscaler, routes."""

    def __init__(self, scope: Scope, item: SourcedSpec) -> None:
        self.scope, self.item = scope, item
        self.endpoint = cast(schema.ServingEndpointSpec, item.spec)
        self.name = self.endpoint.name
        team = scope.spec_set.team_of(self.endpoint)
        self.owner = objects.owner_of(item, scope.environment, team)
        self.namespace = scope.namespace_for(team)
        self.serving = scope.config.serving_config
        self.out: list[KubeObject] = []

    def emit(self, template: str, context: dict[str, Any], component: str,
             name: str = "") -> KubeObject:
        obj = _emit(template, {"name": name or self.name, **context}, self.owner, self.scope,
                    app=self.name, component=component, namespace=self.namespace)
        self.out.append(obj)
        return obj

    def render(self) -> list[KubeObject]:
        body = self.endpoint.spec
        self._prompt()
        pod = self.server_pod()
        keda = self.serving.autoscaler == repoconfig.Autoscaler.KEDA
        parked = body.replicas.min == 0 and not keda
        self._deployment(pod, parked)
        selector = objects.selector_labels(self.owner, self.name)
        self.emit("service.json.j2", {"selector": selector}, "server")
        if keda:
            self.emit("scaledobject.json.j2", traffic.scaledobject(
                self.name, self.namespace, body, self.serving), "server")
        elif not parked:
            self.emit("horizontalpodautoscaler.json.j2", traffic.hpa(body), "server")
        if body.replicas.min >= 2:
            self.emit("poddisruptionbudget.json.j2", {"selector": selector}, "server")
        self._routes()
        return router.attach(self.out, body, router.Where(
            self.owner, self.namespace, self.scope.revision), router.Wiring.of(
            self.name, self.scope.environment, prompt_configmap_name(self.name),
            EXPERIMENT_FILE))

    def _prompt(self) -> None:
        """The ConfigMap the prompt router reads at runtime: the default template and the
        routing experiment's table, each when there is one.

        Not mounted into the model server: a prompt change must not restart GPU pods.
        """
        data: dict[str, str] = {}
        ref = self.endpoint.spec.promptTemplateRef
        if ref:
            template = self.scope.spec_set.template(ref)
            if template is None:
                raise self.owner.error(f"prompt template {ref} is not defined")
            data.update(name=template.name, version=template.spec.version,
                        template=template.spec.template,
                        variables=json.dumps(list(template.spec.variables)))
        experiment = self.scope.spec_set.experiment_for(self.endpoint)
        if experiment is not None:
            data[EXPERIMENT_FILE] = experiment_text(self.scope, experiment, self.owner)
        self.emit("prompt-configmap.json.j2",
                  {"name": prompt_configmap_name(self.name), "data": data}, "prompt")

    def server_pod(self) -> modelserver.PodParts:
        """The model server's pod: fetch init containers, the server, placement, security."""
        body, serving = self.endpoint.spec, self.serving
        runtime = body.runtime
        model = modelserver.loaded(self.owner, self.scope.spec_set.model, body.modelRef)
        startup = runtime.startupSeconds or serving.startupSeconds
        fixed = [("LLMOPS_ENDPOINT", self.name), ("LLMOPS_ENVIRONMENT", self.scope.environment),
                 *model_env(self.owner, self.scope, body.modelRef), *modelserver.RUNTIME_ENV]
        server: dict[str, Any] = {
            "name": "server",
            "image": runtime.image_ref,
            "args": modelserver.runtime_args(self.name, runtime, model, body.resources.gpu),
            "ports": [{"name": "http", "containerPort": runtime.port, "protocol": "TCP"}],
            "env": objects.env_list(self.owner, fixed, runtime.env, "spec.runtime.env"),
            "resources": objects.container_resources(body.resources),
            **modelserver.probes(runtime, startup),
            "lifecycle": {"preStop": {"exec": {"command": [
                "sleep", str(modelserver.PRESTOP_SECONDS)]}}},
            "securityContext": modelserver.container_security(),
            "volumeMounts": [{"name": "models", "mountPath": modelserver.MODELS_DIR,
                              "readOnly": True}, *modelserver.work_mounts()],
        }
        pod = modelserver.PodParts(
            init_containers=[modelserver.fetch_container(f, serving) for f in model.fetches],
            volumes=[modelserver.artifact_volume(model.fetches, serving),
                     *modelserver.work_volumes(body.resources.gpu)])
        pod.add_container(server)
        pod.fields.update({
            "securityContext": modelserver.pod_security(),
            "terminationGracePeriodSeconds": serving.requestTimeoutSeconds
            + modelserver.PRESTOP_SECONDS,
            **modelserver.scheduling(self.owner, body.resources, serving,
                                     objects.selector_labels(self.owner, self.name))})
        if serving.storage.serviceAccountName:
            pod.fields["serviceAccountName"] = serving.storage.serviceAccountName
        return pod

    def _deployment(self, pod: modelserver.PodParts, parked: bool) -> None:
        body = self.endpoint.spec
        startup = body.runtime.startupSeconds or self.serving.startupSeconds
        surge = surge_fits(self.scope, self.endpoint)
        self.emit("deployment.json.j2", {
            "replicas": 0 if parked else None,
            "progress_deadline": startup + 600,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {
                "maxSurge": 1 if surge else 0, "maxUnavailable": 0 if surge else 1}},
            "selector": objects.selector_labels(self.owner, self.name),
            "pod_labels": objects.workload_labels(self.owner, self.name, "server"),
            "pod_annotations": {"prometheus.io/scrape": "true",
                                "prometheus.io/port": str(body.runtime.port),
                                "prometheus.io/path": "/metrics"},
            "pod": pod.spec(),
        }, "server")

    def _routes(self) -> None:
        body = self.endpoint.spec
        if self.serving.routing == repoconfig.Routing.GATEWAY_API:
            self.emit("httproute.json.j2", traffic.httproute(self.name, body, self.serving),
                      "route")
            return
        for name, context in traffic.ingresses(self.name, body, self.serving):
            self.emit("ingress.json.j2", context, "route", name=name)


def render_endpoint(scope: Scope, item: SourcedSpec) -> list[KubeObject]:
    """The objects of one ServingEndpoint, in the order they are emitted."""
    return _Endpoint(scope, item).render()
