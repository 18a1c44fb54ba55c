"""Dependencies of the routes, as ``Annotated`` aliases (``StoreDep``, ``AuditLogDep``, ...).

Role: hand each route what it reads from or calls, taken from ``app.state``
where ``create_app`` put the composition root's ``Services``: the ``Store``,
an ``AuditLog`` over it, the ``Settings``, the write use cases
(``WritesDep``: the ``WriteService``), the trigger callable (``TriggerDep``
raises ``NotConfigured`` -> 409 when the app has none) and the Redis
status cache (``CacheDep``: the ``StatusCache``, or ``None`` without Redis).
Routes declare ``store: StoreDep`` and never reach into the request
themselves. Input: the request. Output: those objects. Callers: the modules
of ``llmops.api.routes``; tests override nothing here, they build the app
with the objects they want. Those that only hand out an object are ``async``, so
FastAPI runs them inline instead of sending each to its thread pool.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, cast

from fastapi import Depends, Query, Request

from llmops.api import errors
from llmops.api.resources import Page
from llmops.engine.service.writes import WriteService
from llmops.engine.settings import Settings
from llmops.engine.store import audit
from llmops.engine.store.cache import StatusCache
from llmops.engine.store.db import Store

Trigger = Callable[[], None]


async def get_store(request: Request) -> Store:
    return cast(Store, request.app.state.store)


async def get_settings(request: Request) -> Settings:
    return cast(Settings, request.app.state.settings)


async def get_audit_log(store: Annotated[Store, Depends(get_store)]) -> audit.AuditLog:
    return audit.AuditLog(store)


async def get_writes(request: Request) -> WriteService:
    return cast(WriteService, request.app.state.writes)


def get_trigger(request: Request) -> Trigger:
    trigger = cast(Trigger | None, request.app.state.trigger)
    if trigger is None:
        raise errors.NotConfigured(
            "no reconciler to trigger: this server runs without a daemon or wake-up channel",
            {"triggered": False})
    return trigger


async def get_status_cache(request: Request) -> StatusCache | None:
    """The app's Redis status cache, or None when no Redis is configured (never the truth)."""
    return cast(StatusCache | None, getattr(request.app.state, "status_cache", None))


DEFAULT_PAGE = 100
MAX_PAGE = 1000


async def get_page(
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Items per page.")]
    = DEFAULT_PAGE,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1, description=(
        "Items to skip: 0, or the next_offset of the previous page."))] = 0,
) -> Page:
    """The page a list route returns (``limit`` from ``offset``), bounded."""
    return Page(limit, offset)


StoreDep = Annotated[Store, Depends(get_store)]
PageDep = Annotated[Page, Depends(get_page)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
AuditLogDep = Annotated[audit.AuditLog, Depends(get_audit_log)]
WritesDep = Annotated[WriteService, Depends(get_writes)]
TriggerDep = Annotated[Trigger, Depends(get_trigger)]
CacheDep = Annotated[StatusCache | None, Depends(get_status_cache)]
