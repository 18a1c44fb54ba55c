"""Serving endpoints, read-only: ``GET /serving/endpoints`` and ``/serving/endpoints/{id}``.

Role: the endpoints of the catalog's revision with the health the last
reconcile assessed. The list filters by ``environment``, by model
(``modelId``: the model's UUID, ``name@version`` or name) and by ``status``
(the spec's health, any case; ``Unknown`` when none was recorded, ``NotObserved``
under an actuator that cannot see the cluster). The detail adds
scaling (replicas, autoscale, resources), the model's catalog entry, the
experiment routing its traffic, and the Kubernetes objects it owns with
their health: the object status rows carry no owner, so the objects are the
environment's inventory entries whose ``spec_kind``/``spec_name`` name the
endpoint. Input: query and path parameters; the store. Output:
``EndpointOut`` / ``EndpointDetail`` in the envelope (the functions return it, for the
dashboard; the routes answer it as serialised JSON: ``envelope.serialised``). Needs
``serving:read``. Caller: ``llmops.api.app`` mounts ``router``.
"""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Annotated

from fastapi import APIRouter, Path, Query

from llmops.api import errors, lookup
from llmops.api.auth import AUTH_RESPONSES, require
from llmops.api.deps import PageDep, StoreDep
from llmops.api.envelope import Envelope, Failure, serialised, success
from llmops.api.resources import (
    EndpointDetail,
    EndpointOut,
    Items,
    ModelOut,
    ObjectHealth,
    SpecOut,
    StatusOut,
)
from llmops.engine.actuate.health import HealthStatus
from llmops.engine.service import access
from llmops.engine.spec.schema import ExperimentState, Permission
from llmops.engine.store import catalog, state
from llmops.engine.types import Kind

router = APIRouter(prefix="/serving", tags=["serving"], responses=AUTH_RESPONSES)
READ = [require(Permission.SERVING_READ)]


def _endpoint(store: catalog.Db, entry: catalog.CatalogEntry,
              status: state.SpecStatus | None) -> EndpointOut:
    body = entry.body
    model_ref = body.get("modelRef") or {}
    return EndpointOut(
        **SpecOut.fields_of(entry), route=str(body.get("route", "")), host=body.get("host"),
        owner_team=access.owner_team(store, entry),
        model=lookup.ref(Kind.MODEL, str(model_ref.get("name", "")),
                         version=str(model_ref.get("version", ""))),
        status=StatusOut.of(status))


class InvalidStatus(errors.ApiError):
    status_code = HTTPStatus.UNPROCESSABLE_ENTITY


def _folded(name: str) -> str:
    """``name`` without case, spaces, ``-`` or ``_``: ``not_observed`` is ``NotObserved``."""
    return "".join(c for c in name.casefold() if c not in " -_")


STATUS_DESCRIPTION = (
    "Spec health, any case (`healthy` = `Healthy`, `notobserved` or `not-observed` = "
    f"`NotObserved`): one of {', '.join(v.value for v in HealthStatus)}. Under an actuator "
    "that cannot observe a cluster (`hydrate`, the default of `llmops up`, "
    "`hydrate-branch`, `none`) every endpoint is `NotObserved`, never `Healthy`.")


_SEPARATORS = "[ _-]*"
STATUS_PATTERN = "^" + _SEPARATORS + "(?:" + "|".join(
    "".join(f"[{c.upper()}{c.lower()}]{_SEPARATORS}" for c in value.value)
    for value in HealthStatus) + ")$"
"""What ``status`` takes, published as its ``pattern``: a health name in any ASCII case,
with spaces, ``-`` or ``_`` anywhere (``not-observed``)."""
_STATUS = re.compile(STATUS_PATTERN)


def _health(status: str) -> str:
    """``status`` as a health name, whatever its case; 422 naming the field otherwise."""
    if _STATUS.fullmatch(status):
        for value in HealthStatus:
            if _folded(value.value) == _folded(status):
                return value.value
    raise InvalidStatus(f"status {status[:32]!r} is not one of "
                        f"{', '.join(v.value for v in HealthStatus)} (any case)",
                        {"field": "status"})


def _model_filter(store: catalog.Db, model_id: str) -> set[str]:
    """``name@version`` of every model version a ``modelId`` filter stands for."""
    return {e.name for e in lookup.matches(store, Kind.MODEL, model_id)}


def list_endpoints(
    store: StoreDep,
    page: PageDep,
    environment: Annotated[str | None, Query(max_length=63)] = None,
    model_id: Annotated[str | None, Query(alias="modelId", max_length=lookup.MAX_ID_CHARS,
                                          description="The model's UUID, name@version or "
                                                      "name.")] = None,
    status: Annotated[str | None, Query(
        max_length=32, json_schema_extra={"pattern": STATUS_PATTERN},
        description=STATUS_DESCRIPTION,
        examples=["healthy", "notobserved"])] = None,
) -> Envelope[Items[EndpointOut]]:
    """Endpoints matching every given filter, by environment then name (filtered, counted
    and paged by the store in one transaction: only the page's rows are read)."""
    health = _health(status) if status is not None else None
    with store.session() as session:
        found = catalog.status_page(
            session, kind=Kind.SERVING_ENDPOINT, limit=page.limit, offset=page.offset,
            environment=environment, health=health,
            models=_model_filter(session, model_id) if model_id is not None else None)
        items = [_endpoint(session, entry, status) for entry, status in found.items]
    end = page.offset + len(found.items)
    return success(Items[EndpointOut](
        items=items, total=found.total, next_offset=end if end < found.total else None),
        f"{found.total} endpoint(s)")


router.get("/endpoints", response_model=Envelope[Items[EndpointOut]],
           summary="Serving endpoints", dependencies=READ)(serialised(list_endpoints))


def get_endpoint(
    store: StoreDep,
    endpoint_id: Annotated[str, Path(min_length=1, max_length=lookup.MAX_ID_CHARS,
                                     description="The UUID or the name.")],
    environment: Annotated[str | None, Query(max_length=63,
                                             description="Narrows a name.")] = None,
) -> Envelope[EndpointDetail]:
    """Route, scaling, model, experiment, health, drift and owned objects of one endpoint."""
    with store.session() as session:  # one transaction: one snapshot, one checkout
        entry = lookup.one(session, Kind.SERVING_ENDPOINT, endpoint_id, environment=environment)
        env, body = entry.environment, entry.body
        summary = _endpoint(session, entry, state.get_spec_status(session, entry.key))
        model = catalog.get(session, summary.model.id)
        experiments = [e for e in catalog.list_entries(session, kind=Kind.PROMPT_EXPERIMENT,
                                                       environment=env)
                       if e.body.get("endpointRef") == entry.name]
        experiments.sort(key=lambda e: (e.body.get("state") != ExperimentState.RUNNING, e.name))
        owned = state.owned_objects(session, env, Kind.SERVING_ENDPOINT, entry.name)
        detail = EndpointDetail(
            **dict(summary), replicas=dict(body.get("replicas") or {}),
            autoscale=dict(body.get("autoscale") or {}),
            resources=dict(body.get("resources") or {}),
            model_metadata=ModelOut.of(model) if model is not None else None,
            experiment=(lookup.ref(Kind.PROMPT_EXPERIMENT, experiments[0].name, environment=env)
                        if experiments else None),
            objects=[ObjectHealth.of(item.key, status) for item, status in owned])
    return success(detail, f"endpoint {entry.name} in {env}")


router.get("/endpoints/{endpoint_id}", response_model=Envelope[EndpointDetail],
           operation_id="getEndpoint",
           summary="One serving endpoint", dependencies=READ,
           responses={404: {"model": Failure, "description": "No such endpoint."},
                      409: {"model": Failure, "description": "The name is ambiguous."}})(
    serialised(get_endpoint))
