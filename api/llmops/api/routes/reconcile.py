"""Reconcile status, run history and the trigger: ``/reconcile/...``.

Role: read what the reconciler recorded, and ask it to run. Input: query
and path parameters; the store through ``StoreDep``; the trigger callable
through ``TriggerDep``. Output, in the envelope:

- ``GET /reconcile/status``: per environment, the observed / last applied /
  last attempted revisions, conditions, source state, last success time and
  the counts of its last finished run; with ``LLMOPS_ARGOCD__URL`` set, also
  the environment's Argo CD Application sync and health, read from Argo CD
  at request time (``llmops.engine.actuate.argocd``; never fails the request). With
  Redis configured (``CacheDep``), ``lastRun`` is the summary the daemon
  signed into the cache when that value is present, verifies and is a
  finished run's (``lastRunSource: "cache"``); otherwise (missing,
  unreachable, tampered, expired, malformed) the store's last finished run
  (``lastRunSource: "store"``). Redis is never the truth and never an error;
- ``GET /reconcile/events``: finished-run events from the Redis stream
  after the ``after`` stream id, oldest first, with the ``next`` cursor;
  409 when no Redis is configured, 503 when it does not answer;
- ``GET /reconcile/runs``: runs newest first, filtered by ``environment``
  and ``result``, paged by ``before_id`` / ``limit`` with ``nextCursor``;
- ``GET /reconcile/runs/{run_id}``: one run with its plan and per-object
  results as recorded (404 when there is no such run);
- ``POST /reconcile/trigger``: wakes the reconciler (202; 409 when no
  reconciler is attached to this server); the reconcile itself happens in the
  daemon, never in the request.

Reads need ``reconcile:read``, the trigger ``reconcile:trigger``. Caller:
``llmops.api.app`` mounts ``router``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Query

from llmops.api import errors
from llmops.api.auth import AUTH_RESPONSES, require
from llmops.api.deps import CacheDep, SettingsDep, StoreDep, TriggerDep
from llmops.api.envelope import (
    Envelope,
    EnvironmentStatusOut,
    Failure,
    LastRun,
    RunDetail,
    RunEvent,
    RunEventPage,
    RunPage,
    RunSummary,
    StatusList,
    Triggered,
    TriggerRequest,
    success,
)
from llmops.api.params import MAX_ROW_ID, STREAM_ID_PATTERN, StreamId
from llmops.engine.actuate import argocd
from llmops.engine.spec.schema import Permission
from llmops.engine.store import db, state
from llmops.engine.store.cache import StatusCache
from llmops.engine.store.models import RunResult

router = APIRouter(prefix="/reconcile", tags=["reconcile"], responses=AUTH_RESPONSES)
READ = [require(Permission.RECONCILE_READ)]

MAX_RUNS_PAGE = 200
LAST_RUN_BATCH = 20
ENVIRONMENT_MAX = 63
MAX_EVENTS_PAGE = 500


def _last_finished_run(store: db.Store, environment: str) -> state.Run | None:
    """The newest run of ``environment`` that is no longer running."""
    before: int | None = None
    while True:
        runs = state.list_runs(store, environment=environment, before_id=before,
                               limit=LAST_RUN_BATCH)
        for run in runs:
            if run.result is not RunResult.RUNNING:
                return run
        if len(runs) < LAST_RUN_BATCH:
            return None
        before = runs[-1].id


def _last_run(store: db.Store, status_cache: StatusCache | None,
              environment: str) -> LastRun | state.Run | None:
    """The cached summary when the cache vouches for one, else the store's last finished run."""
    if status_cache is not None:
        cached = LastRun.from_cache(environment, status_cache.get_environment(environment))
        if cached is not None:
            return cached
    return _last_finished_run(store, environment)


@router.get("/status", response_model=Envelope[StatusList], summary="Environment status",
            dependencies=READ)
def status(
    store: StoreDep,
    cfg: SettingsDep,
    status_cache: CacheDep,
    environment: Annotated[str | None, Query(max_length=ENVIRONMENT_MAX,
                                             description="Only this environment.")] = None,
) -> Envelope[StatusList]:
    """Flux-style status of every environment the reconciler has recorded (and, when
    Argo CD is configured, each environment's Application sync and health)."""
    statuses = [s for s in state.list_environment_status(store)
                if environment is None or s.environment == environment]
    apps = (argocd.statuses(cfg.argocd, [s.environment for s in statuses])
            if cfg.argocd.url and statuses else {})
    items = [EnvironmentStatusOut.of(s, _last_run(store, status_cache, s.environment),
                                     apps.get(s.environment))
             for s in statuses]
    return success(StatusList(environments=items), f"{len(items)} environment(s)")


@router.get("/runs", response_model=Envelope[RunPage], summary="Reconcile runs",
            dependencies=READ)
def list_runs(
    store: StoreDep,
    environment: Annotated[str | None, Query(max_length=ENVIRONMENT_MAX)] = None,
    result: Annotated[RunResult | None, Query(description="Only runs with this result.")]
    = None,
    before_id: Annotated[int | None, Query(ge=1, le=2**63 - 1,
                                           description="Cursor: runs older than this "
                                                       "id (a previous nextCursor).")]
    = None,
    limit: Annotated[int, Query(ge=1, le=MAX_RUNS_PAGE)] = 50,
) -> Envelope[RunPage]:
    """Runs newest first; follow ``nextCursor`` (as ``before_id``) for older ones."""
    runs = state.list_runs(store, environment=environment, result=result,
                           before_id=before_id, limit=limit + 1)
    page, more = runs[:limit], len(runs) > limit
    return success(RunPage(items=[RunSummary.of(run) for run in page],
                           next_cursor=page[-1].id if more else None),
                   f"{len(page)} run(s)")


@router.get("/runs/{run_id}", response_model=Envelope[RunDetail], summary="One reconcile run",
            dependencies=READ,
            responses={404: {"model": Failure, "description": "No run with this id."}})
def get_run(store: StoreDep,
            run_id: Annotated[int, Path(ge=1, le=MAX_ROW_ID)]) -> Envelope[RunDetail]:
    """One run with its plan and the outcome of every object, as recorded."""
    run = state.get_run(store, run_id)
    if run is None:
        raise errors.NotFound(f"reconcile run {run_id} does not exist", {"id": run_id})
    return success(RunDetail.of(run), f"run {run_id}")


@router.get("/events", response_model=Envelope[RunEventPage], summary="Finished-run events",
            dependencies=READ,
            responses={409: {"model": Failure,
                             "description": "This server runs without Redis "
                                            "(LLMOPS_REDIS_URL): there are no events."},
                       503: {"model": Failure, "description": "Redis does not answer."}})
def events(
    status_cache: CacheDep,
    after: Annotated[StreamId, Query(pattern=STREAM_ID_PATTERN, max_length=41,
                                description="Cursor: events after this stream id (a "
                                            "previous next; 0-0 for the oldest kept).")]
    = "0-0",
    limit: Annotated[int, Query(ge=1, le=MAX_EVENTS_PAGE)] = 100,
) -> Envelope[RunEventPage]:
    """Finished runs as the daemon published them to Redis, oldest first; poll with ``next``.

    The stream is capped (the oldest events are dropped) and is not the record:
    ``/reconcile/runs`` is. Events that fail verification are left out."""
    if status_cache is None:
        raise errors.NotConfigured(
            "no run events: this server runs without Redis (LLMOPS_REDIS_URL)", {"after": after})
    read = status_cache.read_runs(after, count=limit)
    if not read and not status_cache.ping():
        raise errors.ServiceUnavailable("no run events: Redis does not answer", {"after": after})
    items = [e for e in (RunEvent.from_cache(ident, data) for ident, data in read)
             if e is not None]
    return success(RunEventPage(items=items, next=read[-1][0] if read else after),
                   f"{len(items)} event(s)")


@router.post("/trigger", status_code=202, response_model=Envelope[Triggered],
             summary="Wake the reconciler",
             dependencies=[require(Permission.RECONCILE_TRIGGER)],
             responses={409: {"model": Failure,
                              "description": "No reconciler is attached to this server."}})
def trigger(
    fire: TriggerDep,
    body: Annotated[TriggerRequest | None, Body(description="Empty, or {}.")] = None,
) -> Envelope[Triggered]:
    """Ask the reconciler to run now; returns at once (the run is asynchronous)."""
    fire()
    return success(Triggered(), "reconcile requested")
