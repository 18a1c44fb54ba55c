"""Response models of the resource routes: catalog, serving, experiments, training, costs.

Role: what ``data`` holds for ``/catalog/...``, ``/serving/...``,
``/prompts/...``, ``/training/...``, ``/governance/policies`` and
``/costs``, built from the store's frozen values (``catalog.CatalogEntry``,
``state.SpecStatus``, ``state.ObjectStatus``); camelCase on the wire like
every model of ``llmops.api.envelope``. Spec bodies leave as recorded, except
that the values of an endpoint's ``runtime.env`` and free text are redacted
again, so no credential written into a spec reaches a response. Input: store
values. Output: pydantic models. Callers: the routes of those areas.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import Field

from llmops.api.envelope import ApiModel
from llmops.engine import redact
from llmops.engine.store import catalog, state

T = TypeVar("T")
S = TypeVar("S")
UNKNOWN = "Unknown"


class Items(ApiModel, Generic[T]):
    """One page of a list result."""

    items: list[T]
    total: int = Field(description="Items matching the filters, over every page.")
    next_offset: int | None = Field(
        default=None, description="Pass as offset for the next page; null on the last page.")

    @classmethod
    def page(cls, found: Sequence[S], page: Page, build: Callable[[S], T]) -> Items[T]:
        """The ``page`` of ``found`` (filtered and sorted), each item built by ``build``
        (only the page's items are built)."""
        end = page.offset + page.limit
        return cls(items=[build(x) for x in found[page.offset:end]], total=len(found),
                   next_offset=end if end < len(found) else None)


@dataclass(frozen=True, slots=True)
class Page:
    """Which slice of a list to return: ``limit`` items from ``offset`` (both validated)."""

    limit: int
    offset: int


def _redacted_body(entry: catalog.CatalogEntry) -> dict[str, Any]:
    body = dict(entry.body)
    runtime = body.get("runtime")
    if isinstance(runtime, dict) and isinstance(runtime.get("env"), dict):
        env = {str(k): redact.redact(str(v)) if not redact.is_secret_key(str(k)) else
               redact.MASK for k, v in runtime["env"].items()}
        body["runtime"] = {**runtime, "env": env}
    return body


class SpecOut(ApiModel):
    """Any catalog spec: identity, provenance and its ``spec`` section as recorded."""

    id: str
    kind: str
    name: str
    environment: str
    labels: dict[str, str]
    revision: str
    file: str
    updated_at: datetime
    spec: dict[str, Any]

    @classmethod
    def fields_of(cls, entry: catalog.CatalogEntry) -> dict[str, Any]:
        return {"id": entry.id, "kind": entry.kind, "name": entry.base_name,
                "environment": entry.environment, "labels": entry.labels,
                "revision": entry.revision, "file": entry.file,
                "updated_at": entry.updated_at, "spec": _redacted_body(entry)}

    @classmethod
    def of(cls, entry: catalog.CatalogEntry) -> SpecOut:
        return cls(**cls.fields_of(entry))


class ModelOut(SpecOut):
    """One model version."""

    version: str
    type: str
    owner_team: str
    stage: str
    data_classification: str
    storage_uri: str = Field(default="", description="Where the version's files are.")
    files: list[dict[str, Any]] = Field(default_factory=list,
                                        description="Each file's name, sha256 and size.")

    @classmethod
    def of(cls, entry: catalog.CatalogEntry) -> ModelOut:
        body = entry.body
        files = [dict(f) for f in body.get("files") or [] if isinstance(f, dict)]
        return cls(**cls.fields_of(entry), version=str(body.get("version", "")),
                   type=str(body.get("type", "")), owner_team=str(body.get("ownerTeam", "")),
                   stage=str(body.get("stage", "")),
                   data_classification=str(body.get("dataClassification", "")),
                   storage_uri=str(body.get("storageUri", "")), files=files)


class ModelVersions(ApiModel):
    """Every version of one model name, oldest version first."""

    name: str
    versions: list[ModelOut]


class Ref(ApiModel):
    """A reference to another spec by its stable id (which may be absent from the catalog)."""

    id: str
    name: str
    version: str | None = None


class ObjectHealth(ApiModel):
    """One Kubernetes object an endpoint owns, with its last assessed health."""

    group: str
    kind: str
    namespace: str
    name: str
    health: str
    message: str
    drift: bool
    last_error: str
    updated_at: datetime | None

    @classmethod
    def of(cls, key: Any, status: state.ObjectStatus | None) -> ObjectHealth:
        return cls(group=key.group, kind=key.kind, namespace=key.namespace, name=key.name,
                   health=status.health if status else UNKNOWN,
                   message=redact.redact(status.message) if status else "",
                   drift=status.drift if status else False,
                   last_error=redact.redact(status.last_error) if status else "",
                   updated_at=status.updated_at if status else None)


class StatusOut(ApiModel):
    """A spec's health in its environment, as the last reconcile assessed it."""

    health: str = UNKNOWN
    applied_revision: str = ""
    drift: bool = False
    last_error: str = ""
    updated_at: datetime | None = None

    @classmethod
    def of(cls, status: state.SpecStatus | None) -> StatusOut:
        if status is None:
            return cls()
        return cls(health=status.health, applied_revision=status.revision, drift=status.drift,
                   last_error=redact.redact(status.last_error), updated_at=status.updated_at)


class EndpointOut(SpecOut):
    """A serving endpoint with its model reference and status."""

    route: str
    host: str | None
    owner_team: str
    model: Ref
    status: StatusOut


class EndpointDetail(EndpointOut):
    """An endpoint with scaling, the model's metadata, experiment and owned objects."""

    replicas: dict[str, Any]
    autoscale: dict[str, Any]
    resources: dict[str, Any]
    model_metadata: ModelOut | None
    experiment: Ref | None
    objects: list[ObjectHealth]


class VariantOut(ApiModel):
    template: Ref
    weight: int
    effective_weight: int


class DistributionOut(ApiModel):
    """A histogram over the window: count, mean and quantiles (ms or tokens)."""

    count: int
    mean: float | None
    p50: float | None
    p90: float | None
    p99: float | None


class VariantMetricsOut(ApiModel):
    """What the prompt router measured for one variant over the window."""

    variant: str
    requests: int
    by_code: dict[str, int]
    errors: int
    error_rate: float | None
    latency_ms: DistributionOut
    time_to_first_token_ms: DistributionOut
    prompt_tokens: int
    completion_tokens: int
    prompt_tokens_per_request: DistributionOut
    completion_tokens_per_request: DistributionOut


class ComparisonOut(ApiModel):
    """A variant against the control for the experiment's metric."""

    variant: str
    control: str
    test: str
    difference: float
    statistic: float | None
    p_value: float | None
    significant: bool
    samples_needed: int | None
    additional_samples: int | None


class ExperimentMetricsOut(ApiModel):
    """Per-variant metrics from Prometheus over a window, with the significance test."""

    window: str
    since: datetime
    until: datetime
    metric: str
    control: str | None
    variants: list[VariantMetricsOut]
    comparisons: list[ComparisonOut]
    note: str | None


class ExperimentOut(SpecOut):
    """A prompt experiment: its endpoint, variants, metric, state and winner.

    ``metrics``: only on the single-experiment read, when Prometheus is
    configured (``LLMOPS_PROMETHEUS__URL``); ``metrics_error`` says why they
    are missing when Prometheus did not answer.
    """

    endpoint: Ref
    variants: list[VariantOut]
    metric: str
    state: str
    winner: str | None
    stickiness: dict[str, Any] | None
    notes: str | None
    status: StatusOut
    metrics: ExperimentMetricsOut | None = None
    metrics_error: str | None = None


class TrainingJobOut(SpecOut):
    """A training job with its inputs, output model and status."""

    owner_team: str
    base_model: Ref
    dataset: Ref
    output_model: Ref
    experiment_url: str | None = Field(
        default=None, description="The run's experiment tracker page (spec.experimentUrl), "
        "also on the Job as the annotation llmops.io/experiment-url.")
    status: StatusOut
    phase: str = Field(description="From the Job's assessed health: queued (not observed "
                                   "running yet), running, succeeded or failed.")


class GpuHours(ApiModel):
    """GPU hours (serving and training) and tokens of one group over the window."""

    team: str | None = None
    environment: str | None = None
    endpoint: str | None = None
    training_job: str | None = None
    gpu_hours: float = Field(description="Serving plus training GPU hours.")
    serving_gpu_hours: float = 0.0
    training_gpu_hours: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0


class CostReport(ApiModel):
    """GPU hours and tokens over a window, from the recorded GPU samples and the prompt
    routers' token counts."""

    window: str
    since: datetime
    until: datetime
    total_gpu_hours: float
    serving_gpu_hours: float
    training_gpu_hours: float
    prompt_tokens: int
    completion_tokens: int
    by_team: list[GpuHours]
    by_environment: list[GpuHours]
    by_endpoint: list[GpuHours] = Field(
        description="One row per (environment, endpoint), with its team and tokens.")
    by_training_job: list[GpuHours] = Field(
        description="One row per (environment, training job), with its team.")
    tokens_error: str | None = Field(
        default=None, description="Why there are no token counts: Prometheus "
        "(LLMOPS_PROMETHEUS__URL) could not be read. Null when it was, or is not set.")
