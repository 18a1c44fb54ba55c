"""The dashboard's read pages: overview, runs, catalog, endpoints, experiments, audit, costs.

Role: each page checks the permission its REST twin needs (``Viewer.need``:
the same 403, audited), calls that twin's own function in
``llmops.api.routes`` for its data (so a filter or a read rule lives in one
place), and renders a template. Paths are the REST API's without its
``/llm-ops/v1`` prefix. Filters come from GET forms; an empty field is no
filter, a value outside a closed vocabulary is a 400 page naming the field.
Input: query and path parameters; the store, settings and status cache.
Output: HTML pages. Caller: ``llmops.api.dashboard.mount``.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Path, Query
from fastapi.responses import HTMLResponse

from llmops.api import deps, errors, params
from llmops.api.dashboard import charts, variants
from llmops.api.dashboard.session import PageRoute, ViewerDep, render
from llmops.api.deps import AuditLogDep, CacheDep, SettingsDep, StoreDep
from llmops.api.resources import ModelOut, Page
from llmops.api.routes import audit as audit_routes
from llmops.api.routes import catalog as catalog_routes
from llmops.api.routes import costs as cost_routes
from llmops.api.routes import prompts, reconcile, serving
from llmops.engine.actuate.health import HealthStatus
from llmops.engine.spec.schema import (
    DataClassification,
    ExperimentState,
    ModelStage,
    ModelType,
    Permission,
)
from llmops.engine.store import audit, state
from llmops.engine.store.models import RunResult

LISTED = Page(limit=deps.MAX_PAGE, offset=0)
"""The lists a page shows: the REST API's first (largest) page."""

router = APIRouter(route_class=PageRoute, include_in_schema=False)
E = TypeVar("E", bound=StrEnum)
Text = Annotated[str, Query(max_length=253)]
PAGE = 50
WINDOW = "24h"
"""The experiment page's metrics window unless one is asked for (the REST read's)."""
SYMBOLS = {"created": "+", "configured": "~", "deleted": "-"}
"""The action marks ``llmops plan`` prints (``plan_cmd.SYMBOL``)."""


def _opt(value: str) -> str | None:
    return value.strip() or None


def _enum(kind: type[E], value: str, field: str) -> E | None:
    """``value`` as a member of ``kind``; empty is None; anything else a 400 naming ``field``."""
    if not value.strip():
        return None
    try:
        return kind(value.strip())
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise errors.BadRequest(f"filter {field}: {value[:40]!r} is not one of {allowed}",
                                {"field": field}) from None


def _cursor(value: str, field: str) -> int | None:
    if not value.strip():
        return None
    if not value.strip().isdigit() or not 1 <= int(value) <= params.MAX_ROW_ID:
        raise errors.BadRequest(f"{field} must be a positive whole number", {"field": field})
    return int(value)


def _time(value: str, field: str) -> datetime | None:
    """An ISO 8601 time from a filter (UTC when it has no offset); 400 naming ``field``."""
    if not value.strip():
        return None
    try:
        return params.instant(datetime.fromisoformat(value.strip()))
    except ValueError as err:
        raise errors.BadRequest(f"filter {field}: {value[:40]!r} is not an ISO 8601 time "
                                f"(e.g. 2026-12-07T14:00): {err}", {"field": field}) from None


# --------------------------------------------------------------------------- overview, runs


def _spec_counts(store: StoreDep) -> dict[str, Counter[str]]:
    counts: dict[str, Counter[str]] = {}
    for status in state.list_spec_status(store):
        env = counts.setdefault(status.key.environment or "(global)", Counter())
        env[status.health] += 1
        env["drifted"] += int(status.drift)
    return counts


@router.get("/", response_class=HTMLResponse)
def overview(viewer: ViewerDep, store: StoreDep, cfg: SettingsDep,
             cache: CacheDep) -> HTMLResponse:
    """Per environment: followed revision (short SHA, author, subject, as the reconciler
    recorded them), last run, spec health counts; failing runs."""
    viewer.need(Permission.RECONCILE_READ)
    environments = reconcile.status(store, cfg, cache).data.environments
    failing = reconcile.list_runs(store, result=RunResult.FAILED, limit=5).data.items
    latest = reconcile.list_runs(store, limit=1).data.items
    return render(viewer.request, "overview.html", viewer=viewer, environments=environments,
                  counts=_spec_counts(store), failing=failing,
                  latest=latest[0] if latest else None)


@router.get("/reconcile/runs", response_class=HTMLResponse)
def runs(viewer: ViewerDep, store: StoreDep, environment: Text = "", result: Text = "",
         before_id: Text = "") -> HTMLResponse:
    """Runs newest first, filtered by environment and result, a page at a time."""
    viewer.need(Permission.RECONCILE_READ)
    page = reconcile.list_runs(store, environment=_opt(environment),
                               result=_enum(RunResult, result, "result"),
                               before_id=_cursor(before_id, "before_id"), limit=PAGE).data
    return render(viewer.request, "runs.html", viewer=viewer, page=page,
                  filters={"environment": environment, "result": result},
                  results=[r.value for r in RunResult])


@router.get("/reconcile/runs/{run_id}", response_class=HTMLResponse)
def run(viewer: ViewerDep, store: StoreDep,
        run_id: Annotated[int, Path(ge=1, le=params.MAX_ROW_ID)]) -> HTMLResponse:
    """One run: its commit, its plan (the semantic summary and per-object diffs as
    ``llmops plan`` shows them; writes, deletions, drift) and the outcome of every object."""
    viewer.need(Permission.RECONCILE_READ)
    detail = reconcile.get_run(store, run_id).data
    plan: dict[str, Any] = detail.plan
    return render(viewer.request, "run.html", viewer=viewer, run=detail,
                  detail=detail.plan_detail, symbols=SYMBOLS,
                  writes=sorted((plan.get("write") or {}).items()),
                  deletes=list(plan.get("delete") or []),
                  drifted=list(plan.get("drifted") or []),
                  extra={k: v for k, v in plan.items()
                         if k not in ("write", "delete", "drifted")})


# --------------------------------------------------------------------------- catalog


@router.get("/catalog/models", response_class=HTMLResponse)
def models(viewer: ViewerDep, store: StoreDep,
           model_type: Annotated[str, Query(alias="type", max_length=64)] = "", team: Text = "",
           stage: Text = "", classification: Text = "", text: Text = "") -> HTMLResponse:
    """Model versions filtered by type, team, stage, classification and name."""
    viewer.need(Permission.CATALOG_READ)
    found = catalog_routes.list_models(
        store, model_type=_enum(ModelType, model_type, "type"), owner_team=_opt(team),
        stage=_enum(ModelStage, stage, "stage"),
        data_classification=_enum(DataClassification, classification, "classification"),
        name=_opt(text), page=LISTED).data.items
    return render(viewer.request, "models.html", viewer=viewer, models=found,
                  filters={"type": model_type, "team": team, "stage": stage,
                           "classification": classification, "text": text},
                  choices={"type": [m.value for m in ModelType],
                           "stage": [m.value for m in ModelStage],
                           "classification": [m.value for m in DataClassification]})


@router.get("/catalog/models/{model_id}", response_class=HTMLResponse)
def model(viewer: ViewerDep, store: StoreDep, model_id: str) -> HTMLResponse:
    """Every version of a model (or the one asked for): files, storage, where it serves."""
    viewer.need(Permission.CATALOG_READ)
    found = catalog_routes.get_model(store, model_id).data
    versions = [found] if isinstance(found, ModelOut) else found.versions
    serving_read = viewer.can(Permission.SERVING_READ)
    where = {v.id: (serving.list_endpoints(store, LISTED,
                                           model_id=f"{v.name}@{v.version}").data.items
                    if serving_read else []) for v in versions}
    return render(viewer.request, "model.html", viewer=viewer, name=versions[0].name,
                  versions=versions, where=where)


# --------------------------------------------------------------------------- serving


@router.get("/serving/endpoints", response_class=HTMLResponse)
def endpoints(viewer: ViewerDep, store: StoreDep, environment: Text = "", model: Text = "",
              status: Text = "") -> HTMLResponse:
    """Endpoints filtered by environment, model and health."""
    viewer.need(Permission.SERVING_READ)
    found = serving.list_endpoints(store, LISTED, environment=_opt(environment),
                                   model_id=_opt(model),
                                   status=_enum(HealthStatus, status, "status")).data.items
    return render(viewer.request, "endpoints.html", viewer=viewer, endpoints=found,
                  filters={"environment": environment, "model": model, "status": status},
                  statuses=[h.value for h in HealthStatus])


@router.get("/serving/endpoints/{endpoint_id}", response_class=HTMLResponse)
def endpoint(viewer: ViewerDep, store: StoreDep, endpoint_id: str,
             environment: Text = "") -> HTMLResponse:
    """Route, health, objects, scaling, model, applied revision, drift, recent runs."""
    viewer.need(Permission.SERVING_READ)
    detail = serving.get_endpoint(store, endpoint_id, environment=_opt(environment)).data
    recent = (reconcile.list_runs(store, environment=detail.environment, limit=5).data.items
              if viewer.can(Permission.RECONCILE_READ) else [])
    return render(viewer.request, "endpoint.html", viewer=viewer, ep=detail, runs=recent)


# --------------------------------------------------------------------------- experiments


@router.get("/prompts/experiments", response_class=HTMLResponse)
def experiments(viewer: ViewerDep, store: StoreDep, environment: Text = "",
                endpoint: Text = "", state: Text = "") -> HTMLResponse:
    """Experiments filtered by environment, endpoint and state."""
    viewer.need(Permission.PROMPTS_READ)
    found = prompts.list_experiments(
        store, LISTED, environment=_opt(environment), endpoint=_opt(endpoint),
        experiment_state=_enum(ExperimentState, state, "state")).data.items
    return render(viewer.request, "experiments.html", viewer=viewer, experiments=found,
                  filters={"environment": environment, "endpoint": endpoint, "state": state},
                  states=[s.value for s in ExperimentState])


@router.get("/prompts/experiments/{experiment_id}", response_class=HTMLResponse)
def experiment(viewer: ViewerDep, store: StoreDep, cfg: SettingsDep, experiment_id: str,
               environment: Text = "", window: Text = "") -> HTMLResponse:
    """Variants and weights (as a bar), metric, state, winner; per variant the requests,
    the experiment's metric and its significance against the control over ``window``
    (the REST read's use case, Prometheus); the conclude form."""
    viewer.need(Permission.PROMPTS_READ)
    found = prompts.get_experiment(store, cfg, experiment_id, environment=_opt(environment),
                                   window=window.strip() or WINDOW).data
    return render(viewer.request, "experiment.html", viewer=viewer, exp=found,
                  rows=variants.rows(found), window=window.strip() or WINDOW,
                  prometheus=bool(cfg.prometheus.url), alpha=variants.ALPHA,
                  bar=charts.weights_bar(
                      [(v.template.name, v.effective_weight) for v in found.variants]))


# --------------------------------------------------------------------------- audit, costs


@router.get("/governance/audit", response_class=HTMLResponse)
def audit_log(viewer: ViewerDep, log: AuditLogDep, actor: Text = "", action: Text = "",
              result: Text = "", environment: Text = "", since: Text = "", until: Text = "",
              after_id: Text = "", verify: Text = "") -> HTMLResponse:
    """Entries by actor, action, result (one of ``AuditResult``: a 400 naming the field
    otherwise) environment and time; cursor pages; the chain's state when asked
    (``verify=1``: the walk reads every entry, so not on every view)."""
    viewer.need(Permission.AUDIT_READ)
    window = {name: _time(value, name) for name, value in
              (("since", since), ("until", until))}
    chosen = _enum(audit.AuditResult, result, "result")
    page = audit_routes.logs(log, actor=_opt(actor), action=_opt(action),
                             result=chosen.value if chosen else None,
                             environment=_opt(environment), since=window["since"],
                             until=window["until"], after_id=_cursor(after_id, "after_id"),
                             limit=PAGE).data
    return render(viewer.request, "audit.html", viewer=viewer, page=page,
                  chain=log.verify() if verify == "1" else None,
                  results=[r.value for r in audit.AuditResult],
                  filters={"actor": actor, "action": action, "result": result,
                           "environment": environment, "since": since, "until": until})


@router.get("/costs", response_class=HTMLResponse)
def costs(viewer: ViewerDep, store: StoreDep, cfg: SettingsDep) -> HTMLResponse:
    """GPU hours over the last 24 h and 7 d per team, environment and endpoint (SVG bars)."""
    viewer.need(Permission.COSTS_READ)
    reports = [cost_routes.costs(store, cfg, window=window).data for window in ("24h", "7d")]
    return render(viewer.request, "costs.html", viewer=viewer, reports=[
        (report, charts.cost_charts(report)) for report in reports])
