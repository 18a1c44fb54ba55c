"""The model server's pod: model download, runtime arguments, probes, placement and security.

Input: the endpoint (or training job) being rendered, the models it loads
and its environment's ``repoconfig.Serving``. Output: plain pod-spec parts
(``PodParts``: init containers, containers, volumes, pod-level fields) that
``llmops.renderers.serving`` and ``llmops.renderers.training`` place into
their Deployment and Job. Pure functions.

How a model reaches the server: an init container of the llmops image runs
``llmops fetch-model``, which copies ``<storageUri><file>`` for every file
the Model spec lists into ``/models/<name>/<version>/<digest>/`` (the digest
is taken over the file list) and verifies each sha256; the server starts
with that directory as its model. An adapter fetches its base model too and
is loaded by the server as a LoRA module named after the endpoint. The
volume is an emptyDir sized from the files (plus 10% and 1 GiB of head
room), or the environment's cache PVC, in which the digest keeps versions
apart. Credentials come from the Secret the environment names (``envFrom``:
no value in the pod spec) or from the pod's workload identity.

Runtimes (``spec.runtime.kind``):

- ``vllm``: ``--model``, ``--served-model-name <endpoint>``, ``--port``,
  ``--tensor-parallel-size`` for ``gpu > 1``, and for an adapter
  ``--enable-lora --lora-modules <endpoint>=<path> --max-lora-rank`` (the base
  is then served as ``<endpoint>-base``); health ``/health``, metrics
  ``/metrics`` on the same port.
- ``tgi`` (Hugging Face Text Generation Inference): ``--model-id``,
  ``--port``, ``--num-shard`` for ``gpu > 1``, ``--lora-adapters
  <endpoint>=<path>``; health ``/health``, metrics ``/metrics``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from llmops.engine.spec import placement, repoconfig, schema
from llmops.engine.types import content_hash
from llmops.renderers import objects
from llmops.renderers.objects import Owner

MODELS_DIR = "/models"
DATA_DIR = "/data"
PRESTOP_SECONDS = 15
"""The load balancer's time to stop sending new requests before the server gets SIGTERM."""
RUN_AS = 1000
QUEUE_METRIC = {schema.RuntimeKind.VLLM: "vllm:num_requests_waiting",
                schema.RuntimeKind.TGI: "tgi_queue_size"}
"""The model server's own gauge of requests waiting for a batch slot (Prometheus name)."""
GIB = 1024**3


@dataclass
class PodParts:
    """A pod spec in the making. A sidecar joins with one ``add_container`` call."""

    containers: list[dict[str, Any]] = field(default_factory=list)
    init_containers: list[dict[str, Any]] = field(default_factory=list)
    volumes: list[dict[str, Any]] = field(default_factory=list)
    fields: dict[str, Any] = field(default_factory=dict)
    """Pod-level fields (securityContext, nodeSelector, tolerations, ...)."""

    def add_container(self, container: dict[str, Any],
                      volumes: list[dict[str, Any]] | None = None) -> None:
        self.containers.append(container)
        self.volumes.extend(volumes or [])

    def spec(self) -> dict[str, Any]:
        out: dict[str, Any] = {"automountServiceAccountToken": False, **self.fields}
        if self.init_containers:
            out["initContainers"] = self.init_containers
        out["containers"] = self.containers
        out["volumes"] = self.volumes
        return out


# --------------------------------------------------------------------------- model files


@dataclass(frozen=True)
class Fetch:
    """One artifact the pod downloads, by the init container ``container``, into ``path``."""

    container: str
    uri: str
    files: tuple[schema.StoredFile, ...]
    directory: str
    """Under the volume's mount: ``<model>/<version>`` or ``<dataset>``."""
    volume: str = "models"
    mount: str = MODELS_DIR

    @classmethod
    def of_model(cls, container: str, model: schema.ModelSpec) -> Fetch:
        return cls(container, model.spec.storageUri, tuple(model.spec.files),
                   f"{model.name}/{model.spec.version}")

    @classmethod
    def of_dataset(cls, container: str, dataset: schema.DatasetSpec) -> Fetch:
        return cls(container, dataset.spec.uri, tuple(dataset.spec.files), dataset.name,
                   volume="data", mount=DATA_DIR)

    @property
    def digest(self) -> str:
        return content_hash([f.model_dump(mode="json") for f in self.files])[:12]

    @property
    def path(self) -> str:
        return f"{self.mount}/{self.directory}/{self.digest}"


@dataclass(frozen=True)
class Loaded:
    """What the server loads: the model directory and, for an adapter, the LoRA module."""

    fetches: tuple[Fetch, ...]
    model: schema.ModelSpec
    adapter: schema.ModelSpec | None = None

    @property
    def model_path(self) -> str:
        return self.fetches[0].path

    @property
    def adapter_path(self) -> str:
        return self.fetches[1].path


def loaded(owner: Owner, models: placement.ModelLookup, ref: schema.ModelRef) -> Loaded:
    """The fetches an endpoint's model needs: itself, or an adapter's base then the adapter."""
    model = models(ref)
    if model is None:
        raise owner.error(f"model {ref} is not defined")
    if model.spec.type != schema.ModelType.ADAPTER:
        return Loaded((Fetch.of_model("fetch-model", model),), model)
    base = models(model.spec.baseModel) if model.spec.baseModel else None
    if base is None:
        raise owner.error(f"adapter {ref} needs its base model {model.spec.baseModel}, "
                          "which is not defined")
    return Loaded((Fetch.of_model("fetch-base-model", base),
                   Fetch.of_model("fetch-adapter", model)), base, model)


def artifact_volume(fetches: tuple[Fetch, ...], serving: repoconfig.Serving,
                    name: str = "models") -> dict[str, Any]:
    """The volume ``fetches`` land in: the model cache PVC, or an emptyDir sized from them."""
    claim = serving.storage.cacheClaim
    if claim and name == "models":
        return {"name": name, "persistentVolumeClaim": {"claimName": claim}}
    total = sum(f.size for fetch in fetches for f in fetch.files)
    size = math.ceil((total * 1.1 + GIB) / GIB)
    return {"name": name, "emptyDir": {"sizeLimit": f"{size}Gi"}}


def storage_env(serving: repoconfig.Serving) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``env`` and ``envFrom`` that point ``llmops fetch-model`` at the model storage."""
    storage = serving.storage
    env = [{"name": "LLMOPS_S3__REGION", "value": storage.region}]
    if storage.endpointUrl:
        env.append({"name": "LLMOPS_S3__ENDPOINT_URL", "value": storage.endpointUrl})
    env_from = ([{"secretRef": {"name": storage.secretName}}] if storage.secretName else [])
    return env, env_from


def fetch_container(fetch: Fetch, serving: repoconfig.Serving) -> dict[str, Any]:
    files = json.dumps([f.model_dump(mode="json") for f in fetch.files],
                       separators=(",", ":"))
    env, env_from = storage_env(serving)
    container: dict[str, Any] = {
        "name": fetch.container,
        "image": serving.llmopsImage,
        "command": ["llmops", "fetch-model", "--dest", fetch.path],
        "env": [{"name": "LLMOPS_MODEL_URI", "value": fetch.uri},
                {"name": "LLMOPS_MODEL_FILES", "value": files}, *env],
        "resources": {"requests": {"cpu": "500m", "memory": "512Mi"},
                      "limits": {"memory": "1Gi"}},
        "securityContext": container_security(),
        "volumeMounts": [{"name": fetch.volume, "mountPath": fetch.mount},
                         {"name": "tmp", "mountPath": "/tmp"}],
    }
    if env_from:
        container["envFrom"] = env_from
    return container


# --------------------------------------------------------------------------- runtime


def runtime_args(name: str, runtime: schema.Runtime, model: Loaded, gpu: int) -> list[str]:
    """The arguments llmops sets, then ``runtime.args`` (which may not repeat them)."""
    if runtime.kind == schema.RuntimeKind.TGI:
        args = ["--model-id", model.model_path, "--port", str(runtime.port)]
        if gpu > 1:
            args += ["--num-shard", str(gpu)]
        if model.adapter is not None:
            args += ["--lora-adapters", f"{name}={model.adapter_path}"]
        return args + list(runtime.args)
    served = f"{name}-base" if model.adapter is not None else name
    args = ["--model", model.model_path, "--served-model-name", served,
            "--port", str(runtime.port)]
    if gpu > 1:
        args += ["--tensor-parallel-size", str(gpu)]
    if model.adapter is not None:
        args += ["--enable-lora", "--lora-modules", f"{name}={model.adapter_path}",
                 "--max-lora-rank", str(placement.lora_rank_for(model.adapter, runtime))]
    return args + list(runtime.args)


def probes(runtime: schema.Runtime, startup_seconds: int) -> dict[str, Any]:
    """Startup (the whole download and load), readiness and liveness on the health path."""
    get = {"httpGet": {"path": runtime.healthPath, "port": "http"}}
    return {
        "startupProbe": {**get, "periodSeconds": 10, "timeoutSeconds": 5,
                         "failureThreshold": math.ceil(startup_seconds / 10)},
        "readinessProbe": {**get, "periodSeconds": 10, "timeoutSeconds": 5,
                           "failureThreshold": 3},
        "livenessProbe": {**get, "periodSeconds": 15, "timeoutSeconds": 10,
                          "failureThreshold": 4},
    }


def container_security() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}


def pod_security() -> dict[str, Any]:
    return {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS, "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"}}


def shm_size(gpu: int) -> str:
    """``/dev/shm`` for NCCL and the server's worker processes: 2 GiB per GPU, at least 1."""
    return f"{max(1, 2 * gpu)}Gi"


def work_volumes(gpu: int) -> list[dict[str, Any]]:
    """Shared memory and a writable /tmp (the root filesystem is read-only)."""
    return [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": shm_size(gpu)}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "10Gi"}}]


def work_mounts() -> list[dict[str, Any]]:
    return [{"name": "dshm", "mountPath": "/dev/shm"}, {"name": "tmp", "mountPath": "/tmp"}]


RUNTIME_ENV = [("HOME", "/tmp"), ("HF_HOME", "/tmp/hf"), ("HF_HUB_OFFLINE", "1")]
"""Writable homes for caches (the root filesystem is read-only; TGI's image points HF_HOME
at /data), and no Hugging Face Hub lookups: the model is on disk."""


# --------------------------------------------------------------------------- placement


def scheduling(owner: Owner, res: schema.Resources, serving: repoconfig.Serving,
               selector: dict[str, str] | None = None) -> dict[str, Any]:
    """Node selection for the GPU type, the GPU toleration, spreading over nodes and zones."""
    out: dict[str, Any] = {}
    nodes = placement.node_selector(serving, res.gpuType)
    for value in nodes.values():
        if not objects.is_label_value(value):
            raise owner.error(f"resources.gpuType: {value!r} is not a valid node label value")
    if nodes:
        out["nodeSelector"] = nodes
    if res.gpu > 0:
        out["tolerations"] = [{"key": objects.GPU_RESOURCE, "operator": "Exists",
                               "effect": "NoSchedule"}]
    if selector:
        out["topologySpreadConstraints"] = [
            {"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "ScheduleAnyway",
             "labelSelector": {"matchLabels": selector}, "matchLabelKeys": ["pod-template-hash"]}
            for key in ("kubernetes.io/hostname", "topology.kubernetes.io/zone")]
    return out
