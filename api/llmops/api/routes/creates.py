"""The seed's create calls: thin adapters over the create use cases (``CreateService``).

Role: the four routes that add a spec, each one commit in the specs repo
(on a review branch, or straight onto the tracked branch where the
environment sets ``directCommits``), answering ``{id, created, commit,
branch, direct, parent, file, reason, spec}`` with 201 (200 for a redeploy):

- ``POST /catalog/models`` (``models:create``), ``{name, version, type,
  owner_team, metadata}``: a draft Model version, files uploaded next;
- ``POST /serving/endpoints`` (``serving:deploy``), ``{modelId, environment,
  route, minReplicas, maxReplicas, autoscalePolicy}`` (optional ``name``,
  ``gpu``, ``gpuType``, ``promptTemplateId``): a ServingEndpoint, or the
  existing one of that name moved to the model;
- ``POST /prompts/experiments`` (``prompts:experiment``), ``{templateAId,
  templateBId, allocation, metric}`` (optional ``endpointId``,
  ``environment``, ``name``, ``stickinessHeader``): a running A/B
  PromptExperiment, ``allocation`` the percent (or fraction) sent to B; or
  ``variants: [{templateId, weight}]`` for A/B/n;
- ``POST /training/jobs`` (``training:submit``): a TrainingJob.

Field names are taken as the seed writes them (snake_case or camelCase).
Errors are the engine's categories, mapped once by ``llmops.api.errors``
(404 unknown model/template/dataset or an environment ``llmops.yaml`` does
not declare, 409 the spec exists or the repo as it stands does not take it
(``data.field``, ``data.issues``: a reference only on another review branch,
replicas min above max, weights not summing to 100, ...), 422 a request field
is invalid, 403 not the owner, 503 the specs repo unavailable). Caller:
``llmops.api.app`` mounts ``router``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Response
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from llmops.api import errors, lookup
from llmops.api.auth import AUTH_RESPONSES, CallerDep, require
from llmops.api.deps import WritesDep
from llmops.api.envelope import Envelope, success
from llmops.api.routes.writes import WRITE_RESPONSES, WriteOut
from llmops.engine.service import creates
from llmops.engine.spec import schema
from llmops.engine.spec.schema import DataClassification, ModelType, Permission

router = APIRouter(tags=["writes"], responses=AUTH_RESPONSES)


def _alias(*names: str) -> Any:
    return AliasChoices(*names)


def _ascii(pattern: str) -> str:
    """``pattern`` with ``\\d`` spelled ``[0-9]``: what the use cases check (``re.ASCII``),
    and what a JSON Schema validator and a generator read the same way."""
    return pattern.replace(r"\d", "[0-9]")


def _bare(pattern: str) -> str:
    return pattern.removeprefix("^").removesuffix("$")


# The format rules the create use cases (``llmops.engine.service.creates``) and the spec
# schema apply, published as ``pattern``s, so a request the schema admits is not refused
# for its shape (and one it does not admit is a 422 naming the field).
SEMVER_PATTERN = _ascii(schema.SEMVER_RE)
MODEL_REF_PATTERN = f"^{_bare(schema.DNS_LABEL_RE)}@{_bare(SEMVER_PATTERN)}$"
HEADER_PATTERN = r"^[A-Za-z0-9-]*$"
Id = Annotated[str, Field(min_length=1, max_length=lookup.MAX_ID_CHARS)]
Label = Annotated[str, Field(min_length=1, max_length=63, pattern=schema.DNS_LABEL_RE,
                             description="A DNS-1123 label.")]
Version = Annotated[str, Field(min_length=1, max_length=128, pattern=SEMVER_PATTERN,
                               description="A semver, e.g. 1.4.0.")]
HyperparameterName = Annotated[str, Field(max_length=253, pattern=schema.HYPERPARAMETER_RE)]
ModelRef = Annotated[str, Field(min_length=3, max_length=lookup.MAX_ID_CHARS,
                                pattern=MODEL_REF_PATTERN, description="name@version.")]


class CreatedOut(WriteOut):
    """The new spec's id and the commit that holds it."""

    id: str
    name: str = Field(description="The spec's name (a model's name@version).")
    created: bool = Field(description="False when an existing endpoint was redeployed.")
    spec: dict[str, Any] = Field(description="The spec as committed.")

    @classmethod
    def of_created(cls, done: creates.Created) -> CreatedOut:
        return cls(**dict(WriteOut.of(done)), id=done.id, name=done.name,
                   created=done.created, spec=done.spec)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class BaseModelRef(_Request):
    name: Label
    version: Version


Annotation = Annotated[str, Field(max_length=4096)]


class ModelMetadata(BaseModel):
    """The seed's free-form model ``metadata``: the keys the spec has, typed as the spec
    takes them; any other key is an annotation (``llmops.io/<key>``), a string."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, Annotation]

    framework: Annotated[str, Field(min_length=1, max_length=63)] = "transformers"
    data_classification: DataClassification | None = None
    dataClassification: DataClassification | None = None
    description: Annotated[str, Field(max_length=1024)] | None = None
    base_model: ModelRef | BaseModelRef | None = None
    baseModel: ModelRef | BaseModelRef | None = None


_HAS_BASE = [{"required": [key], "properties": {key: {"not": {"type": "null"}}}}
             for key in ("base_model", "baseModel")]
# The spec's rule: a fine-tuned model or an adapter names its base model, a base model none.
MODEL_SHAPES: dict[str, Any] = {"anyOf": [
    {"properties": {"type": {"const": ModelType.BASE.value},
                    "metadata": {"not": {"anyOf": _HAS_BASE}}}},
    {"required": ["metadata"],
     "properties": {"type": {"enum": [ModelType.FINE_TUNED.value, ModelType.ADAPTER.value]},
                    "metadata": {"anyOf": _HAS_BASE}}},
]}


class ModelRequest(_Request):
    model_config = ConfigDict(json_schema_extra=MODEL_SHAPES)

    name: Label
    version: Version
    type: ModelType
    owner_team: Label = Field(validation_alias=_alias("owner_team", "ownerTeam"))
    metadata: ModelMetadata = Field(default_factory=ModelMetadata, description=(
        "framework, data_classification, description, base_model (name@version of a "
        "model in the catalog: 404 otherwise); other keys become annotations."))


MetricName = Annotated[str, Field(min_length=1, max_length=63, pattern=schema.METRIC_NAME_RE)]
Quantity = Annotated[str, Field(max_length=64, pattern=schema.QUANTITY_RE)] | Annotated[
    int, Field(ge=0, le=10**9)]


class CpuPolicy(_Request):
    cpuUtilization: int = Field(ge=1, le=100, description="Target CPU percent.",
                                validation_alias=_alias("cpuUtilization", "targetCpuUtilization",
                                                        "target_cpu_utilization"))


class MetricPolicy(_Request):
    metric: MetricName
    targetAverageValue: Quantity = Field(validation_alias=_alias("targetAverageValue",
                                                                 "target"))


class CustomMetric(_Request):
    name: MetricName
    targetAverageValue: Quantity


class CustomMetricPolicy(_Request):
    customMetric: CustomMetric


class EndpointRequest(_Request):
    model_id: Id = Field(validation_alias=_alias("modelId", "model_id"))
    environment: Label
    route: Annotated[str, Field(min_length=1, max_length=512, pattern=schema.ROUTE_RE)]
    min_replicas: int = Field(ge=0, le=1000, validation_alias=_alias("minReplicas",
                                                                     "min_replicas"))
    max_replicas: int = Field(ge=0, le=1000, validation_alias=_alias("maxReplicas",
                                                                     "max_replicas"))
    autoscale_policy: CpuPolicy | MetricPolicy | CustomMetricPolicy | None = Field(
        default=None, validation_alias=_alias("autoscalePolicy", "autoscale_policy"),
        description="{cpuUtilization: percent} or {metric, targetAverageValue}.")
    name: Label | None = None
    gpu: int | None = Field(default=None, ge=0, le=64)
    gpu_type: Label | None = Field(default=None, validation_alias=_alias("gpuType",
                                                                         "gpu_type"))
    prompt_template_id: Id | None = Field(
        default=None, validation_alias=_alias("promptTemplateId", "prompt_template_id"))


class VariantRequest(_Request):
    template_id: Id = Field(validation_alias=_alias("templateId", "template_id"))
    weight: int = Field(ge=0, le=100)


_AB = ("templateAId", "templateBId", "allocation")
_ABSENT_OR_NULL: dict[str, Any] = {"type": "null"}
# Exactly one of the two shapes; a field of the other shape may be absent or null.
EXPERIMENT_SHAPES: dict[str, Any] = {"oneOf": [
    {"title": "A/B", "required": list(_AB),
     "properties": {"templateAId": {"type": "string"}, "templateBId": {"type": "string"},
                    "allocation": {"type": "number"}, "variants": _ABSENT_OR_NULL}},
    {"title": "A/B/n", "required": ["variants"],
     "properties": {"variants": {"type": "array"},
                    **dict.fromkeys(_AB, _ABSENT_OR_NULL)}},
]}
ALLOCATION: dict[str, Any] = {"anyOf": [
    {"type": "integer", "minimum": 1, "maximum": 99},
    {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1, "multipleOf": 0.01},
    {"type": "null"}]}
"""B's share as the use case takes it: a whole percent 1-99, or a fraction in hundredths."""


class ExperimentRequest(_Request):
    model_config = ConfigDict(json_schema_extra=EXPERIMENT_SHAPES)

    template_a_id: Id | None = Field(default=None,
                                     validation_alias=_alias("templateAId", "template_a_id"))
    template_b_id: Id | None = Field(default=None,
                                     validation_alias=_alias("templateBId", "template_b_id"))
    allocation: float | None = Field(
        default=None, gt=0, lt=100, json_schema_extra=ALLOCATION,
        description="B's share: a whole percent (1-99), or a fraction in hundredths (0.2).")
    variants: list[VariantRequest] | None = Field(
        default=None, min_length=2, max_length=16,
        description="A/B/n instead of templateAId/templateBId/allocation: weights sum to 100.")
    metric: Annotated[str, Field(min_length=1, max_length=63,
                                 pattern=schema.METRIC_NAME_RE)] = "latency_ms"
    environment: Label | None = None
    endpoint_id: Id | None = Field(default=None,
                                   validation_alias=_alias("endpointId", "endpoint_id"))
    name: Label | None = None
    stickiness_header: Annotated[str, Field(max_length=64, pattern=HEADER_PATTERN)] | None = Field(
        default=None, validation_alias=_alias("stickinessHeader", "stickiness_header"))


class TrainingRequest(_Request):
    name: Label
    environment: Label
    base_model_id: Id = Field(validation_alias=_alias("baseModelId", "base_model_id"))
    dataset_id: Id = Field(validation_alias=_alias("datasetId", "dataset_id"))
    image: Annotated[str, Field(min_length=1, max_length=512, pattern=schema.IMAGE_RE)]
    output_model: ModelRef = Field(validation_alias=_alias("outputModel", "output_model"),
                                   description="name@version of the model the job produces.")
    hyperparameters: dict[HyperparameterName, str | int | float | bool] = Field(
        default_factory=dict, json_schema_extra={"propertyNames": {  # pydantic says it with
            "maxLength": 253, "pattern": schema.HYPERPARAMETER_RE}})  # patternProperties only
    command: list[Annotated[str, Field(max_length=4096)]] = Field(default_factory=list,
                                                                  max_length=256)
    gpu: int = Field(default=0, ge=0, le=64)
    gpu_type: Label | None = Field(default=None, validation_alias=_alias("gpuType",
                                                                         "gpu_type"))
    experiment_url: Annotated[str, Field(max_length=2048,
                                         pattern=schema.HTTP_URL_RE)] | None = Field(
        default=None, validation_alias=_alias("experimentUrl", "experiment_url"))
    owner_team: Label | None = Field(default=None,
                                     validation_alias=_alias("ownerTeam", "owner_team"))


def _linked(**targets: tuple[str, str]) -> dict[int | str, dict[str, Any]]:
    """``WRITE_RESPONSES`` with OpenAPI links from the 201's ``data.id`` to the operations
    that take it (``link name: (operationId, parameter)``): create -> get -> rollback,
    conclude, upload, so a stateful client (schemathesis) reaches real ids."""
    links = {name: {"operationId": operation,
                    "parameters": {parameter: "$response.body#/data/id"}}
             for name, (operation, parameter) in targets.items()}
    return {**WRITE_RESPONSES, 201: {"description": "Created: the commit that holds the new "
                                                    "spec, and its id.", "links": links}}


def _answer(response: Response, done: creates.Created, what: str) -> Envelope[CreatedOut]:
    response.status_code = 201 if done.created else 200
    verb = "committed" if done.created else "redeployed"
    return success(CreatedOut.of_created(done), f"{what} {done.name} {verb} to {done.branch}")


@router.post("/catalog/models", response_model=Envelope[CreatedOut], status_code=201,
             summary="Register a model version (a commit)",
             dependencies=[require(Permission.MODELS_CREATE)], responses=_linked(
                 GetModel=("getModel", "model_id"),
                 UploadFiles=("uploadModelFiles", "model_id"),
                 UploadFile=("uploadModelFile", "model_id"),
                 Promote=("promoteModel", "model_id")))
def create_model(writes: WritesDep, caller: CallerDep, request: ModelRequest,
                 response: Response) -> Envelope[CreatedOut]:
    """A draft ``Model`` spec; upload its files next with ``.../{id}/upload``."""
    done = creates.CreateService(writes).create_model(caller, creates.NewModel(
        name=request.name, version=request.version, type=request.type.value,
        owner_team=request.owner_team,
        metadata=request.metadata.model_dump(mode="json", exclude_none=True)))
    return _answer(response, done, "model")


@router.post("/serving/endpoints", response_model=Envelope[CreatedOut], status_code=201,
             summary="Deploy a model on an endpoint (a commit)",
             dependencies=[require(Permission.SERVING_DEPLOY)], responses=_linked(
                 GetEndpoint=("getEndpoint", "endpoint_id"),
                 Rollback=("rollbackEndpoint", "endpoint_id")))
def deploy_endpoint(writes: WritesDep, caller: CallerDep, request: EndpointRequest,
                    response: Response) -> Envelope[CreatedOut]:
    """A ``ServingEndpoint`` spec for the model (an existing one of that name is updated)."""
    done = creates.CreateService(writes).deploy_endpoint(caller, creates.NewEndpoint(
        model_id=request.model_id, environment=request.environment, route=request.route,
        min_replicas=request.min_replicas, max_replicas=request.max_replicas,
        autoscale=(request.autoscale_policy.model_dump(mode="json")
                   if request.autoscale_policy is not None else None),
        name=request.name, gpu=request.gpu,
        gpu_type=request.gpu_type, prompt_template_id=request.prompt_template_id))
    return _answer(response, done, "endpoint")


@router.post("/prompts/experiments", response_model=Envelope[CreatedOut], status_code=201,
             summary="Start an A/B prompt experiment (a commit)",
             dependencies=[require(Permission.PROMPTS_EXPERIMENT)], responses=_linked(
                 GetExperiment=("getExperiment", "experiment_id"),
                 Conclude=("concludeExperiment", "experiment_id")))
def create_experiment(writes: WritesDep, caller: CallerDep, request: ExperimentRequest,
                      response: Response) -> Envelope[CreatedOut]:
    """A running ``PromptExperiment``: A keeps the rest, B gets ``allocation``."""
    ab = (request.template_a_id, request.template_b_id, request.allocation)
    mixed = request.variants is not None and any(x is not None for x in ab)
    if mixed or (request.variants is None and None in ab):
        raise errors.BadRequest("send templateAId, templateBId and allocation (A/B), or "
                                "variants (A/B/n), not both", {"field": "variants"})
    done = creates.CreateService(writes).create_experiment(caller, creates.NewExperiment(
        template_a_id=request.template_a_id or "", template_b_id=request.template_b_id or "",
        allocation=request.allocation or 0.0,
        variants=tuple((v.template_id, v.weight) for v in request.variants or ()),
        metric=request.metric,
        environment=request.environment, endpoint_id=request.endpoint_id, name=request.name,
        stickiness_header=request.stickiness_header))
    return _answer(response, done, "experiment")


@router.post("/training/jobs", response_model=Envelope[CreatedOut], status_code=201,
             summary="Submit a training job (a commit)",
             dependencies=[require(Permission.TRAINING_SUBMIT)], responses=_linked(
                 GetTrainingJob=("getTrainingJob", "job_id")))
def submit_training_job(writes: WritesDep, caller: CallerDep, request: TrainingRequest,
                        response: Response) -> Envelope[CreatedOut]:
    """A ``TrainingJob`` spec; the reconciler runs it as a Job."""
    done = creates.CreateService(writes).submit_training_job(caller, creates.NewTrainingJob(
        name=request.name, environment=request.environment,
        base_model_id=request.base_model_id, dataset_id=request.dataset_id,
        image=request.image, output_model=request.output_model,
        hyperparameters=dict(request.hyperparameters), command=list(request.command),
        gpu=request.gpu, gpu_type=request.gpu_type, experiment_url=request.experiment_url,
        owner_team=request.owner_team))
    return _answer(response, done, "training job")
