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
- the base model's files under ``BASE_MODEL_PATH``, fetched and verified by an
  init container running ``llmops fetch-model`` exactly as serving pods get
  theirs (``llmops.renderers.modelserver``), and the dataset's under
  ``DATASET_PATH`` when the Dataset lists its files (else the trainer reads
  ``DATASET_URI`` itself);
- the environment's model storage settings: the credentials Secret by
  reference (``envFrom``), ``AWS_ENDPOINT_URL``/``AWS_REGION`` for the
  trainer's own S3 client (it reads the dataset and writes the output model),
  the service account for workload identity;
- GPU requests/limits, the GPU type's node selector and toleration as serving
  pods get them, ``/dev/shm`` sized by GPU count, no privilege escalation;
- ``backoffLimit`` retries and ``activeDeadlineSeconds`` for the whole Job;
- ``ttlSecondsAfterFinished`` from the environment's
  ``serving.trainingTtlSecondsAfterFinished`` (default a week; ``null``: none), so
  Kubernetes deletes a finished Job and its pods. It is left out of the name's hash
  (a changed TTL configures the Job, it does not run it again), and the reconciler
  remembers a Job it saw finished, so it does not create it again once it is gone
  (``llmops.engine.run.finished``).

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
from llmops.renderers import modelserver, objects, templating
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


def _trainer_env(scope: Scope, job: schema.TrainingJobSpec, base: schema.ModelSpec,
                 dataset: schema.DatasetSpec, fetches: list[modelserver.Fetch]
                 ) -> list[tuple[str, str]]:
    body, storage = job.spec, scope.config.serving_config.storage
    base_path = fetches[0].path
    env = [
        ("LLMOPS_TRAINING_JOB", job.name),
        ("LLMOPS_ENVIRONMENT", scope.environment),
        ("BASE_MODEL_NAME", base.name),
        ("BASE_MODEL_VERSION", base.spec.version),
        ("BASE_MODEL_URI", base.spec.storageUri),
        ("BASE_MODEL_PATH", base_path),
        ("DATASET_NAME", dataset.name),
        ("DATASET_URI", dataset.spec.uri),
        ("OUTPUT_MODEL_NAME", body.outputModel.name),
        ("OUTPUT_MODEL_VERSION", body.outputModel.version),
        ("OUTPUT_MODEL_URI", output_uri(base, body.outputModel)),
        ("HYPERPARAMETERS", json.dumps(body.hyperparameters, sort_keys=True)),
        ("AWS_REGION", storage.region),
    ]
    if len(fetches) > 1:
        env.append(("DATASET_PATH", fetches[1].path))
    if storage.endpointUrl:
        env.append(("AWS_ENDPOINT_URL", storage.endpointUrl))
    return env


def _fetches(base: schema.ModelSpec, dataset: schema.DatasetSpec) -> list[modelserver.Fetch]:
    """The base model, then the dataset when it lists its files (else the trainer reads it)."""
    fetches = [modelserver.Fetch.of_model("fetch-base-model", base)]
    if dataset.spec.files:
        fetches.append(modelserver.Fetch.of_dataset("fetch-dataset", dataset))
    return fetches


def _pod(scope: Scope, owner: objects.Owner, job: schema.TrainingJobSpec,
         base: schema.ModelSpec, dataset: schema.DatasetSpec) -> dict[str, Any]:
    body, serving = job.spec, scope.config.serving_config
    fetches = _fetches(base, dataset)
    trainer: dict[str, Any] = {
        "name": "trainer", "image": body.image,
        "env": objects.env_list(owner, _trainer_env(scope, job, base, dataset, fetches), {},
                                "spec"),
        "resources": objects.container_resources(body.resources),
        "securityContext": {"allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [*({"name": f.volume, "mountPath": f.mount} for f in fetches),
                         *modelserver.work_mounts()],
    }
    if body.command:
        trainer["command"] = list(body.command)
    if body.hyperparameters:
        trainer["args"] = [f"--{k}={_flag_value(v)}" for k, v in body.hyperparameters.items()]
    env_from = modelserver.storage_env(serving)[1]
    if env_from:
        trainer["envFrom"] = env_from
    pod = modelserver.PodParts(
        init_containers=[modelserver.fetch_container(f, serving) for f in fetches],
        volumes=[*(modelserver.artifact_volume((f,), serving, f.volume) for f in fetches),
                 *modelserver.work_volumes(body.resources.gpu)])
    pod.add_container(trainer)
    pod.fields.update({"restartPolicy": "Never",
                       "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                       **modelserver.scheduling(owner, body.resources, serving)})
    if serving.storage.serviceAccountName:
        pod.fields["serviceAccountName"] = serving.storage.serviceAccountName
    return pod.spec()


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
    shape: dict[str, Any] = {
        "namespace": namespace,
        "backoff_limit": body.backoffLimit,
        "active_deadline": body.activeDeadlineSeconds,
        "pod_labels": objects.workload_labels(owner, job.name, "training"),
        "pod": _pod(scope, owner, job, base, dataset),
    }
    annotations = {EXPERIMENT_URL_ANNOTATION: body.experimentUrl} if body.experimentUrl else {}
    template = "job.json.j2"
    obj = templating.render_object(
        template, {**shape, "name": job_name(job.name, content_hash(shape)),
                   "annotations": annotations,
                   "ttl": scope.config.serving_config.trainingTtlSecondsAfterFinished},
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

