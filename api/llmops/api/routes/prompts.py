"""Prompt experiments, read-only: ``GET /prompts/experiments`` and ``/prompts/experiments/{id}``.

Role: the A/B/n experiments of the catalog's revision: the endpoint they
route, each variant's template, declared weight and effective weight (all
traffic to the winner once concluded), the metric, stickiness, state,
winner and notes, with the spec's last assessed health. Filters:
``environment``, ``endpoint`` (name) and ``state``. Each experiment answers
to its UUID and to its name (``environment=`` narrows a name used in several
environments). Input: query and path parameters; the store. Output:
``ExperimentOut`` in the envelope; the single read adds the prompt router's
per-variant metrics over ``window`` (default 24h) read from Prometheus when
``LLMOPS_PROMETHEUS__URL`` is set (``metrics_error`` when it did not answer).
Needs ``prompts:read``. Caller:
``llmops.api.app`` mounts ``router``.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from llmops.api import lookup
from llmops.api.auth import AUTH_RESPONSES, require
from llmops.api.deps import PageDep, SettingsDep, StoreDep
from llmops.api.envelope import Envelope, Failure, success
from llmops.api.resources import (
    ExperimentMetricsOut,
    ExperimentOut,
    Items,
    SpecOut,
    StatusOut,
    VariantOut,
)
from llmops.engine import redact
from llmops.engine.errors import Unavailable
from llmops.engine.service import experiments
from llmops.engine.spec.schema import ExperimentState, Permission
from llmops.engine.store import catalog, db, state
from llmops.engine.types import Kind

router = APIRouter(prefix="/prompts", tags=["prompts"], responses=AUTH_RESPONSES)
READ = [require(Permission.PROMPTS_READ)]


def _experiment(entry: catalog.CatalogEntry, status: state.SpecStatus | None) -> ExperimentOut:
    body = entry.body
    state_ = str(body.get("state", ExperimentState.RUNNING.value))
    winner = body.get("winner")
    variants: list[dict[str, Any]] = [v for v in body.get("variants", []) if isinstance(v, dict)]

    def effective(variant: dict[str, Any]) -> int:
        if state_ == ExperimentState.CONCLUDED:
            return 100 if variant.get("templateRef") == winner else 0
        return int(variant.get("weight", 0))

    notes = body.get("notes")
    return ExperimentOut(
        **SpecOut.fields_of(entry),
        endpoint=lookup.ref(Kind.SERVING_ENDPOINT, str(body.get("endpointRef", "")),
                            environment=entry.environment),
        variants=[VariantOut(template=lookup.ref(Kind.PROMPT_TEMPLATE,
                                                 str(v.get("templateRef", ""))),
                             weight=int(v.get("weight", 0)), effective_weight=effective(v))
                  for v in variants],
        metric=str(body.get("metric", "")), state=state_,
        winner=str(winner) if winner else None, stickiness=body.get("stickiness"),
        notes=redact.redact(str(notes)) if notes else None, status=StatusOut.of(status))


def _status(store: db.Store, entry: catalog.CatalogEntry) -> state.SpecStatus | None:
    found = state.list_spec_status(store, environment=entry.environment,
                                   kind=Kind.PROMPT_EXPERIMENT)
    return next((s for s in found if s.key == entry.key), None)


@router.get("/experiments", response_model=Envelope[Items[ExperimentOut]],
            summary="Prompt experiments", dependencies=READ)
def list_experiments(
    store: StoreDep,
    page: PageDep,
    environment: Annotated[str | None, Query(max_length=63)] = None,
    endpoint: Annotated[str | None, Query(max_length=253)] = None,
    experiment_state: Annotated[ExperimentState | None, Query(alias="state")] = None,
) -> Envelope[Items[ExperimentOut]]:
    """Experiments matching every given filter, by environment then name."""
    statuses = {s.key: s for s in state.list_spec_status(store, environment=environment,
                                                         kind=Kind.PROMPT_EXPERIMENT)}
    entries = catalog.list_entries(store, kind=Kind.PROMPT_EXPERIMENT, environment=environment,
                                   fields={"endpointRef": endpoint, "state": experiment_state})
    return success(Items[ExperimentOut].page(entries, page,
                                             lambda e: _experiment(e, statuses.get(e.key))),
                   f"{len(entries)} experiment(s)")


@router.get("/experiments/{experiment_id}", response_model=Envelope[ExperimentOut],
            operation_id="getExperiment",
            summary="One prompt experiment", dependencies=READ,
            responses={404: {"model": Failure, "description": "No such experiment."},
                       409: {"model": Failure, "description": "The name is ambiguous."}})
def get_experiment(
    store: StoreDep,
    settings: SettingsDep,
    experiment_id: Annotated[str, Path(min_length=1, max_length=lookup.MAX_ID_CHARS,
                                       description="The UUID or the name.")],
    environment: Annotated[str | None, Query(max_length=63)] = None,
    window: Annotated[str, Query(max_length=16, json_schema_extra={
        "pattern": experiments.WINDOW_PATTERN}, description=(
        "Metrics window: <n>m, <n>h or <n>d, more than 0 and at most 90d (99999m, 2160h), "
        "no leading zero."))] = "24h",
) -> Envelope[ExperimentOut]:
    """Variants with their weights, metric, state and winner of one experiment.

    With Prometheus configured, also each variant's requests, errors, latency,
    time to first token and tokens over ``window``, and the significance test
    of the experiment's metric (``llmops.engine.service.experiments``).
    """
    entry = lookup.one(store, Kind.PROMPT_EXPERIMENT, experiment_id, environment=environment)
    out = _experiment(entry, _status(store, entry))
    experiments.parse_window(window)  # a malformed window is refused with or without Prometheus
    if settings.prometheus.url:
        reader = experiments.PrometheusHttp(settings.prometheus.url, settings.prometheus.timeout)
        try:
            found = experiments.experiment_metrics(
                reader, environment=entry.environment, endpoint=out.endpoint.name,
                experiment=entry.name, variants=[v.template.name for v in out.variants],
                metric=out.metric, window=window, until=datetime.now(UTC))
            out = out.model_copy(update={"metrics": ExperimentMetricsOut.model_validate(
                asdict(found))})
        except Unavailable as exc:
            out = out.model_copy(update={"metrics_error": str(exc)})
    return success(out, f"experiment {entry.name} in {entry.environment}")
