"""TrainingJob specs -> batch/v1 Jobs; Policy GPU budgets -> ResourceQuotas.

Input: a ``Scope`` and the sourced specs. Output: stamped objects. Called by
``llmops.renderers.render``.

A TrainingJob renders to one ``Job`` named ``<job>-<hash>``, the hash taken
over everything that shapes its pods. A Job's pod template is immutable, so a
changed job (new hyperparameters, image or output version) is a new Job
object and the previous one leaves the inventory, rather than an apply the API
server would refuse. The trainer container gets:

- ``command`` as given and the hyperparameters as ``--key=value`` args (in
  spec order; booleans and numbers in JSON spelling), and again as JSON in
  ``HYPERPARAMETERS``;
- ``BASE_MODEL_NAME/VERSION/URI``, ``DATASET_NAME/URI`` and the output model
  ``OUTPUT_MODEL_NAME/VERSION/URI`` (``s3://<base model bucket>/models/<name>/
  <version>/``, the layout model uploads use);
- GPU requests/limits, node selector and toleration as serving pods get them.

``experimentUrl`` becomes the Job annotation ``llmops.io/experiment-url``
(metadata only: a new tracking link does not re-run the training).

``gpuBudgets`` of every Policy for the environment render to one
``ResourceQuota`` ``llmops-gpu-budget`` per team namespace with
``requests.nvidia.com/gpu``. Kubernetes quotas extended resources by requests
only (a ``limits.`` item is accepted but never enforced), and GPU requests
always equal limits. Teams that share a namespace share one quota: the sum of
their budgets.
"""

from __future__ import annotations

import json
from typing import Any, cast

from llmops.engine.spec import schema
from llmops.engine.spec.validate import SourcedSpec
from llmops.engine.types import Kind, KubeObject, content_hash
from llmops.renderers import objects, templating
from llmops.renderers.objects import Scope

EXPERIMENT_URL_ANNOTATION = "llmops.io/experiment-url"
GPU_QUOTA_NAME = "llmops-gpu-budget"
GPU_QUOTA_RESOURCE = f"requests.{objects.GPU_RESOURCE}"


def _flag_value(value: schema.HyperValue) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def job_name(name: str, pod_hash: str) -> str:
    """``<name>-<hash8>``, the name shortened so the whole stays a 63-character label."""
    return f"{name[:54].rstrip('-')}-{pod_hash[:8]}"


def output_uri(base: schema.ModelSpec, output: schema.ModelRef) -> str:
    bucket = base.spec.storageUri.removeprefix("s3://").split("/", 1)[0]
    return f"s3://{bucket}/models/{output.name}/{output.version}/"


def render_training_job(scope: Scope, item: SourcedSpec) -> list[KubeObject]:
    job = cast(schema.TrainingJobSpec, item.spec)
    body = job.spec
    team = scope.spec_set.team_of(job)
    owner = objects.owner_of(item, scope.environment, team)
    namespace = scope.namespace_for(team)
    base = scope.spec_set.model(body.baseModelRef)
    if base is None:
        raise owner.error(f"model {body.baseModelRef} is not defined")
    dataset = scope.spec_set.dataset(body.datasetRef)
    if dataset is None:
        raise owner.error(f"dataset {body.datasetRef} is not defined")

    fixed = [
        ("LLMOPS_TRAINING_JOB", job.name),
        ("LLMOPS_ENVIRONMENT", scope.environment),
        ("BASE_MODEL_NAME", base.name),
        ("BASE_MODEL_VERSION", base.spec.version),
        ("BASE_MODEL_URI", base.spec.storageUri),
        ("DATASET_NAME", dataset.name),
        ("DATASET_URI", dataset.spec.uri),
        ("OUTPUT_MODEL_NAME", body.outputModel.name),
        ("OUTPUT_MODEL_VERSION", body.outputModel.version),
        ("OUTPUT_MODEL_URI", output_uri(base, body.outputModel)),
        ("HYPERPARAMETERS", json.dumps(body.hyperparameters, sort_keys=True)),
    ]
    scheduling = objects.gpu_scheduling(owner, body.resources)
    pod: dict[str, Any] = {
        "namespace": namespace,
        "backoff_limit": body.backoffLimit,
        "pod_labels": objects.workload_labels(owner, job.name, "training"),
        "image": body.image,
        "command": list(body.command),
        "args": [f"--{k}={_flag_value(v)}" for k, v in body.hyperparameters.items()],
        "env": objects.env_list(owner, fixed, {}, "spec"),
        "resources": objects.container_resources(body.resources),
        "node_selector": scheduling.get("nodeSelector"),
        "tolerations": scheduling.get("tolerations"),
    }
    annotations = {EXPERIMENT_URL_ANNOTATION: body.experimentUrl} if body.experimentUrl else {}
    template = "job.json.j2"
    obj = templating.render_object(
        template, {**pod, "name": job_name(job.name, content_hash(pod)),
                   "annotations": annotations},
        file=owner.file, subject=owner.subject)
    return [objects.stamp(obj, owner, app=job.name, component="training",
                          namespace=namespace, revision=scope.revision,
                          template=template)]


def render_gpu_quotas(scope: Scope) -> list[KubeObject]:
    """One ResourceQuota per namespace that has a GPU budget in this environment."""
    by_namespace: dict[str, list[tuple[SourcedSpec, schema.GpuBudget]]] = {}
    for item in scope.spec_set.sourced(Kind.POLICY):
        policy = cast(schema.PolicySpec, item.spec)
        for budget in policy.spec.gpuBudgets:
            if budget.environment == scope.environment:
                namespace = scope.namespace_for(budget.team)
                by_namespace.setdefault(namespace, []).append((item, budget))
    out: list[KubeObject] = []
    template = "resourcequota.json.j2"
    for namespace, budgets in sorted(by_namespace.items()):
        budgets.sort(key=lambda pair: (pair[1].team, pair[0].spec.name))
        item = budgets[0][0]
        teams = sorted({b.team for _, b in budgets})
        owner = objects.owner_of(item, scope.environment, teams[0] if len(teams) == 1 else "")
        total = sum(b.gpus for _, b in budgets)
        obj = templating.render_object(
            template, {"name": GPU_QUOTA_NAME, "namespace": namespace,
                       "hard": {GPU_QUOTA_RESOURCE: str(total)}},
            file=owner.file, subject=owner.subject)
        out.append(objects.stamp(obj, owner, app=GPU_QUOTA_NAME, component="gpu-budget",
                                 namespace=namespace, revision=scope.revision,
                                 template=template))
    return out

