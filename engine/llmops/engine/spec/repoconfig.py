"""``llmops.yaml``: the repo's environments, where each is applied and its safety settings.

Input: the parsed ``llmops.yaml`` document. Output: a ``RepoConfig`` (validated
by ``llmops.engine.spec.validate.parse_config``). Read by every stage that
needs an environment's namespace, actuator, cluster or prune limits.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    model_serializer,
    model_validator,
)

from llmops.engine.spec.schema import DnsLabel, ImageRef, Strict

DEFAULT_PRUNE_PERCENT = 30


class ActuatorName(StrEnum):
    HYDRATE = "hydrate"
    HYDRATE_BRANCH = "hydrate-branch"
    NONE = "none"
    KUBERNETES = "kubernetes"


NAMESPACE_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class Cluster(Strict):
    context: Annotated[str, StringConstraints(min_length=1, max_length=253)] | None = None
    kubeconfig: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = None
    inCluster: bool = False

    @model_validator(mode="after")
    def _one(self) -> Cluster:
        if self.inCluster and (self.context or self.kubeconfig):
            raise ValueError("inCluster excludes context and kubeconfig")
        return self


class Safety(Strict):
    allowEmpty: bool = False
    maxPrunePercent: Annotated[int, Field(ge=0, le=100)] = DEFAULT_PRUNE_PERCENT


GIT_SEGMENT_RE = r"[A-Za-z0-9_][A-Za-z0-9_.-]*"
BRANCH_NAME_RE = rf"^{GIT_SEGMENT_RE}(/{GIT_SEGMENT_RE})*$"
BRANCH_DIR_RE = rf"^(\.|{GIT_SEGMENT_RE}(/{GIT_SEGMENT_RE})*)?$"


class HydrateBranch(Strict):
    """Where the ``hydrate-branch`` actuator commits an environment in the specs repo."""

    branch: Annotated[str, StringConstraints(pattern=BRANCH_NAME_RE, max_length=200)] | None \
        = None
    """Default ``environments/<env>``."""
    path: Annotated[str, StringConstraints(pattern=BRANCH_DIR_RE, max_length=200)] | None = None
    """Directory inside the branch; default ``<env>``; ``"."`` or ``""`` is the branch root."""

    @model_validator(mode="after")
    def _git_names(self) -> HydrateBranch:
        if self.branch is not None and (".." in self.branch or self.branch.endswith(
                (".lock", ".")) or any(p.endswith(".lock") for p in self.branch.split("/"))):
            raise ValueError(f"branch {self.branch!r} is not a valid git branch name")
        return self


LABEL_KEY_RE = (r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
LABEL_VALUE_RE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$"
LabelKey = Annotated[str, StringConstraints(pattern=LABEL_KEY_RE, max_length=317)]
LabelValue = Annotated[str, StringConstraints(pattern=LABEL_VALUE_RE, max_length=63)]
DEFAULT_GPU_NODE_LABEL = "nvidia.com/gpu.product"
"""The node label GPU Feature Discovery (NVIDIA GPU operator) sets to the GPU model."""
DEFAULT_LLMOPS_IMAGE = "ghcr.io/llmops/llmops:0.1.0"
DEFAULT_TRAINING_TTL_SECONDS = 7 * 24 * 3600
"""How long a finished training Job (and its pods' logs) stays before Kubernetes'
TTL-after-finished controller deletes it: a week to read its logs and outcome, and a week
of reconciler downtime before a finished Job could go unseen (and so run again)."""
MIN_TRAINING_TTL_SECONDS = 600
MAX_TRAINING_TTL_SECONDS = 2**31 - 1


class GpuType(Strict):
    """One GPU model of an environment's node pools, named as specs name it (``gpuType``)."""

    nodeSelector: dict[LabelKey, LabelValue]
    """Labels of the nodes that carry it, e.g. ``nvidia.com/gpu.product: NVIDIA-L4``."""
    gpusPerNode: Annotated[int, Field(ge=1, le=64)] = 8
    """GPUs per node: a pod (tensor parallelism) can use at most this many."""


class ModelStorage(Strict):
    """Where init containers fetch model files from, and with which identity."""

    endpointUrl: Annotated[str, StringConstraints(pattern=r"^https?://[^\s]+$",
                                                  max_length=2048)] | None = None
    """S3 endpoint (MinIO, Ceph, ...); unset: AWS S3 of ``region``."""
    region: Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]{1,32}$")] = "us-east-1"
    secretName: DnsLabel | None = None
    """A Secret with ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, read by reference
    (``envFrom``); unset: the pod's workload identity (IRSA, GKE/Azure workload identity)."""
    serviceAccountName: DnsLabel | None = None
    """The service account of model-fetching pods (the one bound to the cloud role)."""
    cacheClaim: DnsLabel | None = None
    """A ReadWriteMany PVC that keeps fetched models across restarts, one directory per
    model digest; unset: an emptyDir sized from the model's files."""


class Autoscaler(StrEnum):
    HPA = "hpa"
    KEDA = "keda"


class Routing(StrEnum):
    INGRESS_NGINX = "ingress-nginx"
    GATEWAY_API = "gateway-api"


class Gateway(Strict):
    name: DnsLabel
    namespace: DnsLabel | None = None


class Serving(Strict):
    """How an environment's endpoints and training jobs meet its cluster."""

    llmopsImage: ImageRef = DEFAULT_LLMOPS_IMAGE
    """The image of the ``llmops fetch-model`` init container."""
    gpuNodeLabel: LabelKey = DEFAULT_GPU_NODE_LABEL
    """For a ``gpuType`` not listed in ``gpuTypes``: the node label whose value it is."""
    gpuTypes: dict[Annotated[str, StringConstraints(pattern=LABEL_VALUE_RE, min_length=1)],
                   GpuType] = Field(default_factory=dict)
    """When not empty, the only GPU types specs may ask for in this environment."""
    storage: ModelStorage = ModelStorage()
    autoscaler: Autoscaler = Autoscaler.HPA
    prometheusUrl: Annotated[str, StringConstraints(pattern=r"^https?://[^\s]+$",
                                                    max_length=2048)] | None = None
    """Prometheus that KEDA's prometheus trigger queries (needed with autoscaler keda)."""
    routing: Routing = Routing.INGRESS_NGINX
    ingressClassName: DnsLabel | None = None
    gateway: Gateway | None = None
    """The Gateway HTTPRoutes attach to (needed with routing gateway-api)."""
    startupSeconds: Annotated[int, Field(ge=60, le=6 * 3600)] = 1800
    """How long a model server may take to download and load its model (startupProbe)."""
    requestTimeoutSeconds: Annotated[int, Field(ge=10, le=24 * 3600)] = 600
    """Longest generation a client may stream; the proxy timeouts and pod drain follow it."""
    maxBodySize: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,6}[kmg]?$")] = "8m"
    """Largest request body the ingress accepts (nginx size syntax)."""
    trainingTtlSecondsAfterFinished: Annotated[int, Field(
        ge=MIN_TRAINING_TTL_SECONDS, le=MAX_TRAINING_TTL_SECONDS)] | None = \
        DEFAULT_TRAINING_TTL_SECONDS
    """``ttlSecondsAfterFinished`` of training Jobs; ``null``: finished Jobs stay until
    their TrainingJob is removed. At least ten minutes: the reconciler has to see a Job
    finished before it goes, or it would run it again."""

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # At its default the TTL is left out, so the environment's config hash (stamped
        # on its Namespaces) is what it was before the field existed.
        data: dict[str, Any] = handler(self)
        if self.trainingTtlSecondsAfterFinished == DEFAULT_TRAINING_TTL_SECONDS:
            data.pop("trainingTtlSecondsAfterFinished", None)
        return data

    @model_validator(mode="after")
    def _needs(self) -> Serving:
        if self.autoscaler == Autoscaler.KEDA and self.prometheusUrl is None:
            raise ValueError("autoscaler keda needs prometheusUrl (KEDA's prometheus trigger "
                             "queries it)")
        if self.routing == Routing.GATEWAY_API and self.gateway is None:
            raise ValueError("routing gateway-api needs gateway (the Gateway routes attach to)")
        return self


DEFAULT_SERVING = Serving()


class Environment(Strict):
    namespace: Annotated[str, StringConstraints(min_length=1, max_length=63)]
    cluster: Cluster = Cluster()
    actuator: ActuatorName = ActuatorName.HYDRATE
    hydrateBranch: HydrateBranch | None = None
    allowEmpty: bool | None = None
    maxPrunePercent: Annotated[int, Field(ge=0, le=100)] | None = None
    forceConflicts: bool = False
    directCommits: bool = False
    serving: Serving | None = None
    """Cluster facts the serving and training renderers need; unset: ``DEFAULT_SERVING``."""

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Unset, hydrateBranch is left out, so the dump (and the hash of an environment's
        # config stamped on its Namespaces) is what it was before the field existed.
        data: dict[str, Any] = handler(self)
        if self.hydrateBranch is None:
            data.pop("hydrateBranch", None)
        if self.serving is None:
            data.pop("serving", None)
        return data

    @model_validator(mode="after")
    def _hydrate_branch(self) -> Environment:
        if self.hydrateBranch is not None and self.actuator != ActuatorName.HYDRATE_BRANCH:
            raise ValueError(f"hydrateBranch applies only to actuator "
                             f"{ActuatorName.HYDRATE_BRANCH.value} (this environment uses "
                             f"{self.actuator.value})")
        return self

    @model_validator(mode="after")
    def _namespace(self) -> Environment:
        probe = self.namespace.replace("{team}", "team")
        if self.namespace.replace("{team}", "").count("{") or not NAMESPACE_RE.match(probe):
            raise ValueError(
                f"namespace {self.namespace!r} is not a DNS-1123 label "
                "(it may contain the placeholder {team})"
            )
        return self

    def namespace_for(self, team: str) -> str:
        return self.namespace.replace("{team}", team)

    @property
    def serving_config(self) -> Serving:
        return self.serving or DEFAULT_SERVING


class RepoConfig(Strict):
    """``llmops.yaml`` at the root of a specs repo."""

    apiVersion: Literal["llmops.io/v1alpha1"] = "llmops.io/v1alpha1"
    kind: Literal["Repository"] = "Repository"
    environments: dict[DnsLabel, Environment]
    promotionOrder: list[DnsLabel] = Field(default_factory=list)
    safety: Safety = Safety()

    @model_validator(mode="after")
    def _rules(self) -> RepoConfig:
        if not self.environments:
            raise ValueError("declare at least one environment")
        unknown = [e for e in self.promotionOrder if e not in self.environments]
        if unknown:
            raise ValueError(f"promotionOrder names undeclared environments: {', '.join(unknown)}")
        return self

    def allow_empty(self, env: str) -> bool:
        value = self.environments[env].allowEmpty
        return self.safety.allowEmpty if value is None else value

    def max_prune_percent(self, env: str) -> int:
        value = self.environments[env].maxPrunePercent
        return self.safety.maxPrunePercent if value is None else value
