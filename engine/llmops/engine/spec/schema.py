"""The spec model: one pydantic model per kind (``llmops.yaml``'s is in ``repoconfig``).

Input: the plain data of one YAML document. Output: a frozen, typed spec. Field rules
that need only the document itself live here; rules across specs (references,
duplicates, environments) live in ``llmops.engine.spec.validate``, the only caller of
these models on the load path. Renderers, the planner and the API read them.
"""

from __future__ import annotations

from datetime import time
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from llmops.engine.spec import quantity
from llmops.engine.types import Kind, SpecKey

DNS_LABEL_RE = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
SEMVER_RE = (
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
S3_URI_RE = r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/([A-Za-z0-9!_.*'()@=+-]+/)*$"
QUANTITY_RE = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"
ROUTE_RE = r"^/([A-Za-z0-9._~-]+/?)*$"
IMAGE_RE = r"^[a-z0-9]+([._/:@-][A-Za-z0-9_.-]+)*$"
METRIC_NAME_RE = r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"
HYPERPARAMETER_RE = r"^[A-Za-z_][A-Za-z0-9_.-]*$"
HTTP_URL_RE = r"^https?://[^\s]+$"
HEADER_RE = r"^[A-Za-z0-9-]{1,64}$"
_DNS_PART = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
HOST_RE = rf"^(\*\.)?{_DNS_PART}(\.{_DNS_PART})*$"
"""An Ingress host: an RFC 1123 subdomain (labels of 1-63, no empty label), ``*.`` allowed."""
LABEL_VALUE_RE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
LABEL_KEY_RE = rf"^({_DNS_PART}(\.{_DNS_PART})*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{{0,61}}[A-Za-z0-9])?$"
"""A label key as Kubernetes takes it: an optional DNS-subdomain prefix and a name of <= 63."""

DnsLabel = Annotated[str, StringConstraints(pattern=DNS_LABEL_RE)]
Semver = Annotated[str, StringConstraints(pattern=SEMVER_RE)]
S3Uri = Annotated[str, StringConstraints(pattern=S3_URI_RE, max_length=1024)]
Quantity = Annotated[str, BeforeValidator(quantity.from_number),
                     StringConstraints(pattern=QUANTITY_RE)]
"""A quantity as text; a YAML number (``cpu: 0.5``) is taken as Kubernetes takes it."""
ImageRef = Annotated[str, StringConstraints(pattern=IMAGE_RE, max_length=512)]
LabelValue = Annotated[str, StringConstraints(pattern=LABEL_VALUE_RE, max_length=63)]
LabelKey = Annotated[str, StringConstraints(pattern=LABEL_KEY_RE, max_length=317)]
Text = Annotated[str, StringConstraints(max_length=65536)]
ShortText = Annotated[str, StringConstraints(max_length=1024)]

MAX_MODEL_FILE_BYTES = 10 * 1024**3
MODEL_FILE_EXTENSIONS = (".bin", ".safetensors", ".json", ".txt", ".pt", ".pth", ".onnx")
MODEL_FILE_RE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$"

DEFAULT_RUNTIME_IMAGE = "vllm/vllm-openai:v0.8.5"
RUNTIME_IMAGES = {"vllm": DEFAULT_RUNTIME_IMAGE,
                  "tgi": "ghcr.io/huggingface/text-generation-inference:3.0.1"}
"""The image each runtime kind starts when ``runtime.image`` is not given."""
RESERVED_ARGS = {
    "vllm": ("--model", "--served-model-name", "--port", "--host", "--enable-lora",
             "--lora-modules", "--max-lora-rank", "--tensor-parallel-size", "-tp"),
    "tgi": ("--model-id", "--port", "--hostname", "--num-shard", "--lora-adapters"),
}
"""Flags llmops renders itself from the model, the resources and the port (per runtime)."""
MAX_LORA_RANK = 512


class Strict(BaseModel):
    """Base of every model here: unknown fields are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


# --------------------------------------------------------------------------- vocabularies


class ModelType(StrEnum):
    BASE = "base"
    FINE_TUNED = "fine-tuned"
    ADAPTER = "adapter"


class RuntimeKind(StrEnum):
    VLLM = "vllm"
    TGI = "tgi"


class DataClassification(StrEnum):
    PUBLIC = "public"
    INTERNAL = "internal"
    CONFIDENTIAL = "confidential"
    RESTRICTED = "restricted"


class ModelStage(StrEnum):
    DRAFT = "draft"
    APPROVED = "approved"
    DEPRECATED = "deprecated"


class ExperimentState(StrEnum):
    RUNNING = "running"
    CONCLUDED = "concluded"


class RouterPlacement(StrEnum):
    SIDECAR = "sidecar"
    DEPLOYMENT = "deployment"


class Permission(StrEnum):
    ALL = "*"
    CATALOG_READ = "catalog:read"
    MODELS_PROMOTE = "models:promote"
    MODELS_UPLOAD = "models:upload"
    MODELS_CREATE = "models:create"
    SERVING_READ = "serving:read"
    SERVING_ROLLBACK = "serving:rollback"
    SERVING_DEPLOY = "serving:deploy"
    PROMPTS_READ = "prompts:read"
    PROMPTS_CONCLUDE = "prompts:conclude"
    PROMPTS_EXPERIMENT = "prompts:experiment"
    TRAINING_READ = "training:read"
    TRAINING_SUBMIT = "training:submit"
    GOVERNANCE_READ = "governance:read"
    AUDIT_READ = "audit:read"
    RECONCILE_READ = "reconcile:read"
    RECONCILE_TRIGGER = "reconcile:trigger"
    COSTS_READ = "costs:read"


class Weekday(StrEnum):
    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"


# --------------------------------------------------------------------------- shared parts


class Metadata(Strict):
    name: DnsLabel
    labels: dict[LabelKey, LabelValue] = {}
    annotations: dict[Annotated[str, StringConstraints(max_length=253)], Text] = {}


class ModelRef(Strict):
    name: DnsLabel
    version: Semver

    def __str__(self) -> str:
        return f"{self.name} {self.version}"


class Resources(Strict):
    gpu: Annotated[int, Field(ge=0, le=64)] = 0
    gpuType: Annotated[str, StringConstraints(max_length=63)] | None = None
    cpu: Quantity = "1"
    memory: Quantity = "4Gi"


class SpecBase(Strict):
    apiVersion: Literal["llmops.io/v1alpha1"]
    metadata: Metadata

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def environment(self) -> str:
        return ""

    @property
    def key(self) -> SpecKey:
        return SpecKey(str(self.kind), self.environment, self.name)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- Model


class StoredFile(Strict):
    """One file of an artifact in S3 as recorded at upload: ``llmops fetch-model`` checks it."""

    name: Annotated[str, StringConstraints(pattern=MODEL_FILE_RE)]
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    size: Annotated[int, Field(ge=0, le=MAX_MODEL_FILE_BYTES)]


class ModelFile(StoredFile):
    @model_validator(mode="after")
    def _extension(self) -> ModelFile:
        if not self.name.endswith(MODEL_FILE_EXTENSIONS):
            raise ValueError(
                f"file {self.name!r} has a disallowed extension "
                f"(allowed: {' '.join(MODEL_FILE_EXTENSIONS)})"
            )
        return self


class ModelSpecBody(Strict):
    version: Semver
    type: ModelType
    ownerTeam: DnsLabel
    storageUri: S3Uri
    files: list[ModelFile] = []
    framework: Annotated[str, StringConstraints(min_length=1, max_length=63)]
    dataClassification: DataClassification
    stage: ModelStage = ModelStage.DRAFT
    baseModel: ModelRef | None = None
    loraRank: Annotated[int, Field(ge=1, le=MAX_LORA_RANK)] | None = None
    """The LoRA rank ``r`` of an adapter (checked against the server's ``--max-lora-rank``)."""
    description: ShortText | None = None

    @model_validator(mode="after")
    def _rules(self) -> ModelSpecBody:
        if self.loraRank is not None and self.type != ModelType.ADAPTER:
            raise ValueError("loraRank applies only to adapter models")
        if self.type in (ModelType.FINE_TUNED, ModelType.ADAPTER) and self.baseModel is None:
            raise ValueError(f"a {self.type} model needs baseModel")
        if self.type == ModelType.BASE and self.baseModel is not None:
            raise ValueError("a base model has no baseModel")
        names = [f.name for f in self.files]
        if len(set(names)) != len(names):
            raise ValueError("files lists the same file twice")
        if names and self.type != ModelType.ADAPTER and "config.json" not in names:
            raise ValueError(f"a {self.type} model needs config.json among its files")
        return self


class ModelSpec(SpecBase):
    kind: Literal["Model"]
    spec: ModelSpecBody

    @property
    def key(self) -> SpecKey:
        return SpecKey(Kind.MODEL, "", f"{self.name}@{self.spec.version}")

    @property
    def ref(self) -> ModelRef:
        return ModelRef(name=self.name, version=self.spec.version)


# --------------------------------------------------------------------------- PromptTemplate


class PromptTemplateBody(Strict):
    version: Semver
    template: Annotated[str, StringConstraints(min_length=1, max_length=65536)]
    variables: list[Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]] = []
    modelRef: ModelRef | None = None
    description: ShortText | None = None


class PromptTemplateSpec(SpecBase):
    kind: Literal["PromptTemplate"]
    spec: PromptTemplateBody


# --------------------------------------------------------------------------- ServingEndpoint


class Runtime(Strict):
    kind: RuntimeKind = RuntimeKind.VLLM
    image: ImageRef | None = None
    """Default: ``RUNTIME_IMAGES[kind]``."""
    args: list[Annotated[str, StringConstraints(max_length=4096)]] = []
    port: Annotated[int, Field(ge=1, le=65535)] = 8000
    healthPath: Annotated[str, StringConstraints(pattern=ROUTE_RE)] = "/health"
    env: dict[Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], Text] = {}
    maxLoraRank: Annotated[int, Field(ge=1, le=MAX_LORA_RANK)] | None = None
    """vLLM's ``--max-lora-rank``; default: the adapter's rank rounded up to one vLLM accepts."""
    startupSeconds: Annotated[int, Field(ge=60, le=6 * 3600)] | None = None
    """How long the model may take to download and load; default from the environment."""

    @field_validator("args")
    @classmethod
    def _reserved(cls, args: list[str], info: ValidationInfo) -> list[str]:
        reserved = RESERVED_ARGS[info.data.get("kind", RuntimeKind.VLLM)]
        for i, arg in enumerate(args):
            flag = arg.split("=", 1)[0]
            if flag in reserved:
                raise ValueError(f"[{i}] {flag} is set by llmops from the model, the "
                                 f"resources and the port; remove it (llmops sets: "
                                 f"{' '.join(reserved)})")
        return args

    @model_validator(mode="after")
    def _lora(self) -> Runtime:
        if self.maxLoraRank is not None and self.kind != RuntimeKind.VLLM:
            raise ValueError("maxLoraRank applies only to runtime kind vllm")
        return self

    @property
    def image_ref(self) -> str:
        return self.image or RUNTIME_IMAGES[self.kind]


class Replicas(Strict):
    min: Annotated[int, Field(ge=0, le=1000)]
    max: Annotated[int, Field(ge=0, le=1000)]

    @model_validator(mode="after")
    def _order(self) -> Replicas:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self

    def __str__(self) -> str:
        return f"{self.min}-{self.max}"


class CustomMetric(Strict):
    name: Annotated[str, StringConstraints(pattern=METRIC_NAME_RE)]
    targetAverageValue: Quantity


DEFAULT_QUEUE_DEPTH = 5


class Autoscale(Strict):
    """What the autoscaler follows: the model server's request queue unless told otherwise."""

    queueDepth: Annotated[int, Field(ge=1, le=10000)] | None = None
    """Requests waiting per replica (vLLM ``vllm:num_requests_waiting``, TGI
    ``tgi_queue_size``); the default, at ``DEFAULT_QUEUE_DEPTH``."""
    cpuUtilization: Annotated[int, Field(ge=1, le=100)] | None = None
    customMetric: CustomMetric | None = None

    @model_validator(mode="after")
    def _one(self) -> Autoscale:
        given = [n for n in ("queueDepth", "cpuUtilization", "customMetric")
                 if getattr(self, n) is not None]
        if len(given) > 1:
            raise ValueError(f"set at most one of queueDepth, cpuUtilization and "
                             f"customMetric (got {', '.join(given)})")
        return self

    @property
    def queue_target(self) -> int | None:
        """The queue depth to scale on, or None when CPU or a custom metric is asked for."""
        if self.cpuUtilization is None and self.customMetric is None:
            return self.queueDepth or DEFAULT_QUEUE_DEPTH
        return None


class RouterOptions(Strict):
    """Where the prompt router runs: beside each model server pod, or as its own Deployment."""

    placement: RouterPlacement = RouterPlacement.SIDECAR
    replicas: Annotated[int, Field(ge=1, le=100)] = 2
    """Router pods when ``placement`` is ``deployment``."""


class ServingEndpointBody(Strict):
    environment: DnsLabel
    modelRef: ModelRef
    route: Annotated[str, StringConstraints(pattern=ROUTE_RE, max_length=512)]
    host: Annotated[str, StringConstraints(pattern=HOST_RE, max_length=253)] | None = None
    runtime: Runtime = Runtime()
    replicas: Replicas
    autoscale: Autoscale = Autoscale()
    resources: Resources = Resources()
    promptTemplateRef: DnsLabel | None = None
    router: RouterOptions = RouterOptions()
    ownerTeam: DnsLabel | None = None


class ServingEndpointSpec(SpecBase):
    kind: Literal["ServingEndpoint"]
    spec: ServingEndpointBody

    @property
    def environment(self) -> str:
        return self.spec.environment


# --------------------------------------------------------------------------- PromptExperiment


class Variant(Strict):
    templateRef: DnsLabel
    weight: Annotated[int, Field(ge=0, le=100, strict=True)]


class Stickiness(Strict):
    header: Annotated[str, StringConstraints(pattern=HEADER_RE)] | None = None
    cookie: Annotated[str, StringConstraints(pattern=HEADER_RE)] | None = None

    @model_validator(mode="after")
    def _one(self) -> Stickiness:
        if (self.header is None) == (self.cookie is None):
            raise ValueError("set exactly one of header and cookie")
        return self


class PromptExperimentBody(Strict):
    environment: DnsLabel
    endpointRef: DnsLabel
    variants: list[Variant]
    metric: Annotated[str, StringConstraints(pattern=METRIC_NAME_RE)] = "latency_ms"
    stickiness: Stickiness | None = None
    state: ExperimentState = ExperimentState.RUNNING
    winner: DnsLabel | None = None
    notes: Text | None = None

    @model_validator(mode="after")
    def _rules(self) -> PromptExperimentBody:
        if len(self.variants) < 2:
            raise ValueError("an experiment needs at least two variants")
        refs = [v.templateRef for v in self.variants]
        if len(set(refs)) != len(refs):
            raise ValueError("variants must use distinct templates")
        total = sum(v.weight for v in self.variants)
        if total != 100:
            raise ValueError(f"variant weights sum to {total}, not 100")
        if self.state == ExperimentState.CONCLUDED:
            if self.winner is None:
                raise ValueError("a concluded experiment names its winner")
            if self.winner not in refs:
                raise ValueError(f"winner {self.winner!r} is not one of the variants")
        elif self.winner is not None:
            raise ValueError("only a concluded experiment has a winner")
        return self

    def effective_weights(self) -> dict[str, int]:
        """Traffic share per template: the declared weights, or 100% to the winner."""
        if self.state == ExperimentState.CONCLUDED:
            return {v.templateRef: (100 if v.templateRef == self.winner else 0)
                    for v in self.variants}
        return {v.templateRef: v.weight for v in self.variants}


class PromptExperimentSpec(SpecBase):
    kind: Literal["PromptExperiment"]
    spec: PromptExperimentBody

    @property
    def environment(self) -> str:
        return self.spec.environment


# --------------------------------------------------------------------------- TrainingJob


HyperValue = str | int | float | bool


class TrainingJobBody(Strict):
    environment: DnsLabel
    baseModelRef: ModelRef
    datasetRef: DnsLabel
    image: ImageRef
    command: list[Annotated[str, StringConstraints(max_length=4096)]] = []
    hyperparameters: dict[Annotated[str, StringConstraints(pattern=HYPERPARAMETER_RE)],
                          HyperValue] = {}
    resources: Resources = Resources()
    outputModel: ModelRef
    experimentUrl: Annotated[str, StringConstraints(pattern=HTTP_URL_RE,
                                                    max_length=2048)] | None = None
    backoffLimit: Annotated[int, Field(ge=0, le=20)] = 2
    activeDeadlineSeconds: Annotated[int, Field(ge=60, le=30 * 86400)] = 7 * 86400
    """Wall-clock limit of the whole Job (all attempts); the Job fails when it is reached."""
    ownerTeam: DnsLabel | None = None


class TrainingJobSpec(SpecBase):
    kind: Literal["TrainingJob"]
    spec: TrainingJobBody

    @property
    def environment(self) -> str:
        return self.spec.environment


# --------------------------------------------------------------------------- Dataset


class DatasetBody(Strict):
    uri: S3Uri
    dataClassification: DataClassification
    ownerTeam: DnsLabel
    files: list[StoredFile] = []
    """When listed, training pods get the dataset fetched and verified like a model."""
    description: ShortText | None = None

    @model_validator(mode="after")
    def _unique(self) -> DatasetBody:
        names = [f.name for f in self.files]
        if len(set(names)) != len(names):
            raise ValueError("files lists the same file twice")
        return self


class DatasetSpec(SpecBase):
    kind: Literal["Dataset"]
    spec: DatasetBody


# --------------------------------------------------------------------------- Policy


class Rbac(Strict):
    roles: dict[DnsLabel, list[Permission]]


class PromotionRule(Strict):
    environment: DnsLabel
    requireStage: ModelStage = ModelStage.APPROVED
    requirePriorEnvironment: DnsLabel | None = None


class GpuBudget(Strict):
    team: DnsLabel
    environment: DnsLabel
    gpus: Annotated[int, Field(ge=0, le=100000)]
    pricePerGpuHour: Annotated[float, Field(ge=0)] | None = None


class ChangeWindow(Strict):
    environments: list[DnsLabel]
    days: list[Weekday]
    start: time
    end: time
    timezone: Annotated[str, StringConstraints(max_length=64)] = "UTC"

    @model_validator(mode="after")
    def _tz(self) -> ChangeWindow:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {self.timezone!r}") from exc
        if self.start == self.end:
            raise ValueError("start and end are equal")
        return self


class PruneProtection(Strict):
    environments: list[DnsLabel] = []
    kinds: list[Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Za-z0-9]*$")]] = []

    @model_validator(mode="after")
    def _not_empty(self) -> PruneProtection:
        if not self.environments and not self.kinds:
            raise ValueError("name environments, kinds or both")
        return self


class PolicyBody(Strict):
    rbac: Rbac | None = None
    promotion: list[PromotionRule] = []
    dataClassification: dict[DataClassification, list[DnsLabel]] = {}
    gpuBudgets: list[GpuBudget] = []
    changeWindows: list[ChangeWindow] = []
    pruneProtection: list[PruneProtection] = []


class PolicySpec(SpecBase):
    kind: Literal["Policy"]
    spec: PolicyBody


AnySpec = (
    ModelSpec
    | PromptTemplateSpec
    | ServingEndpointSpec
    | PromptExperimentSpec
    | TrainingJobSpec
    | DatasetSpec
    | PolicySpec
)

SPEC_CLASSES: dict[str, type[SpecBase]] = {
    Kind.MODEL: ModelSpec,
    Kind.PROMPT_TEMPLATE: PromptTemplateSpec,
    Kind.SERVING_ENDPOINT: ServingEndpointSpec,
    Kind.PROMPT_EXPERIMENT: PromptExperimentSpec,
    Kind.TRAINING_JOB: TrainingJobSpec,
    Kind.DATASET: DatasetSpec,
    Kind.POLICY: PolicySpec,
}


def spec_class(kind: Any) -> type[SpecBase] | None:
    return SPEC_CLASSES.get(kind) if isinstance(kind, str) else None
