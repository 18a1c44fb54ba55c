"""An endpoint's health on the seed's route: ``GET /serve/{name}/health``.

Role: answer "is this endpoint serving?" in one call: the spec's health as
the last reconcile assessed it (from the store: the endpoint's aggregated
health over the objects it owns, with their counts per health), plus the
model server's own readiness when it can be reached: an HTTP GET of its
runtime's health path through the endpoint's Service
(``settings.api.model_server_url_template``, a short
``model_server_timeout_seconds``; a connection error or timeout is reported,
never waited on). ``healthy`` is true when the recorded health is Healthy
and the model server, if it answered, said ready. ``environment=`` narrows a
name used in several environments (otherwise 409 with the candidates).
Input: the path, the store, the settings. Output: ``ServeHealth`` in the
envelope. Needs ``serving:read``. Caller: ``llmops.api.app`` mounts
``router``.
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated

import httpx
from fastapi import APIRouter, Path, Query
from pydantic import Field

from llmops.api import lookup
from llmops.api.auth import AUTH_RESPONSES, require
from llmops.api.deps import SettingsDep, StoreDep
from llmops.api.envelope import ApiModel, Envelope, Failure, success
from llmops.api.resources import UNKNOWN
from llmops.engine import netguard
from llmops.engine.actuate.health import HealthStatus
from llmops.engine.settings import Settings
from llmops.engine.spec.schema import Permission
from llmops.engine.store import catalog, db, state
from llmops.engine.types import Kind

router = APIRouter(prefix="/serve", tags=["serving"], responses=AUTH_RESPONSES)


class ModelServer(ApiModel):
    """What the model server said when asked (``checked`` false: not asked)."""

    checked: bool
    url: str | None = None
    ready: bool | None = None
    http_status: int | None = None
    error: str | None = None


class ServeHealth(ApiModel):
    name: str
    environment: str
    id: str
    healthy: bool = Field(description="Healthy in the store and, if it answered, ready.")
    health: str = Field(description="The spec's health as the last reconcile assessed it.")
    objects: dict[str, int] = Field(description="Owned objects per health.")
    model_server: ModelServer


def _service(store: db.Store, entry: catalog.CatalogEntry) -> tuple[str, str] | None:
    """(name, namespace) of the Service the endpoint owns, from the inventory."""
    for item, _status in state.owned_objects(store, entry.environment,
                                             Kind.SERVING_ENDPOINT, entry.name):
        if item.key.kind == "Service":
            return item.key.name, item.key.namespace
    return None


async def _probe(settings: Settings, service: tuple[str, str] | None,
                 path: str) -> ModelServer:
    template = settings.api.model_server_url_template
    if not template or service is None:
        return ModelServer(checked=False)
    url = template.format(service=service[0], namespace=service[1], path=path)
    timeout = settings.api.model_server_timeout_seconds
    try:
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False,
                                     transport=netguard.async_transport()) as client:
            answer = await client.get(url)
    except httpx.HTTPError as exc:
        return ModelServer(checked=True, url=url, ready=None,
                           error=f"{type(exc).__name__}: not reachable within {timeout:g}s")
    return ModelServer(checked=True, url=url, ready=answer.status_code == 200,
                       http_status=answer.status_code)


@router.get("/{name}/health", response_model=Envelope[ServeHealth],
            summary="An endpoint's health and its model server's readiness",
            dependencies=[require(Permission.SERVING_READ)],
            responses={404: {"model": Failure, "description": "No such endpoint."},
                       409: {"model": Failure, "description": "The name is ambiguous."}})
async def serve_health(
    store: StoreDep, settings: SettingsDep,
    name: Annotated[str, Path(min_length=1, max_length=lookup.MAX_ID_CHARS,
                              description="The endpoint's name or UUID.")],
    environment: Annotated[str | None, Query(max_length=63)] = None,
) -> Envelope[ServeHealth]:
    """The recorded health, the owned objects' healths and the model server's answer."""
    entry = lookup.one(store, Kind.SERVING_ENDPOINT, name, environment=environment)
    env = entry.environment
    status = state.get_spec_status(store, entry.key)
    health = status.health if status is not None else UNKNOWN
    counts = Counter(s.health for _item, s in state.owned_objects(
        store, env, Kind.SERVING_ENDPOINT, entry.name) if s is not None)
    runtime = entry.body.get("runtime") or {}
    server = await _probe(settings, _service(store, entry),
                          str(runtime.get("healthPath") or "/health"))
    healthy = health == HealthStatus.HEALTHY.value and server.ready is not False
    return success(ServeHealth(name=entry.name, environment=env, id=entry.id,
                               healthy=healthy, health=health, objects=dict(counts),
                               model_server=server),
                   f"endpoint {entry.name} in {env}: {health}"
                   + ("" if server.ready is None else
                      f", model server {'ready' if server.ready else 'not ready'}"))
