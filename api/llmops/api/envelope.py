"""The response envelope and the response models of every route.

Role: the one shape every API response has, ``{"status": "success"|"fail",
"message": str, "data": ...}``, as the generic pydantic model ``Envelope[T]``
so OpenAPI documents each route's ``data``; and the response models that
``data`` holds (camelCase on the wire), built from the store's frozen values
(``state.Run``, ``state.EnvironmentStatus``, ``audit.AuditRecord``). Store
values never leave as they are: free text and recorded plans are redacted
again on the way out, so no credential reaches a response. Input: store
values. Output: pydantic models (``respond``: an envelope as serialised JSON).
Callers: the routes in ``llmops.api.routes`` and the exception handlers in
``llmops.api.errors``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Generic, Literal, ParamSpec, TypeGuard, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from starlette.responses import Response

from llmops.engine import redact
from llmops.engine.actuate.argocd import AppStatus
from llmops.engine.store import audit, state
from llmops.engine.store.models import RunResult

T = TypeVar("T")
P = ParamSpec("P")

SUCCESS: Literal["success"] = "success"
FAIL: Literal["fail"] = "fail"
JSON = "application/json"


class ApiModel(BaseModel):
    """Base of the response models: frozen, camelCase aliases, built by field name."""

    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True,
                              validate_by_alias=True, serialize_by_alias=True, frozen=True)


class Envelope(BaseModel, Generic[T]):
    """Every response body: a status, a human-readable message and the data."""

    status: Literal["success", "fail"]
    message: str
    data: T


class Failure(BaseModel):
    """A failed request's body (the envelope with ``status`` "fail")."""

    status: Literal["fail"] = FAIL
    message: str
    data: Any = None


def success(data: T, message: str = "ok") -> Envelope[T]:
    return Envelope[T](status=SUCCESS, message=message, data=data)


def respond(envelope: Envelope[Any]) -> Response:
    """``envelope`` as a JSON response, serialised once by pydantic (camelCase, as FastAPI
    would serialise it against the route's ``response_model``)."""
    return Response(envelope.model_dump_json(by_alias=True), media_type=JSON)


def serialised(route: Callable[P, Envelope[Any]]) -> Callable[P, Response]:
    """``route`` answering with ``respond(route(...))``, for registering a read whose
    ``data`` is already a response model: given a ``Response``, FastAPI neither validates
    the envelope again against the route's ``response_model`` (which the route still
    declares, so OpenAPI documents it) nor serialises it a second time. ``route`` itself
    stays a plain function returning the envelope (the dashboard calls it)."""

    @functools.wraps(route)
    def serve(*args: P.args, **kwargs: P.kwargs) -> Response:
        return respond(route(*args, **kwargs))

    return serve


# --------------------------------------------------------------------------- health


class Liveness(ApiModel):
    alive: bool = True


class Readiness(ApiModel):
    ready: bool = True
    store: Literal["reachable", "unreachable"] = "reachable"


# --------------------------------------------------------------------------- runs


class Counts(ApiModel):
    created: int = 0
    configured: int = 0
    deleted: int = 0
    unchanged: int = 0
    failed: int = 0

    @classmethod
    def of(cls, counts: state.RunCounts) -> Counts:
        return cls(**counts.as_dict())


class CommitOut(ApiModel):
    """A revision's commit as the reconciler read it from the source ("" when unknown)."""

    author: str = Field(description="Name <email> of the commit's author.")
    subject: str = Field(description="The first line of the commit message.")

    @classmethod
    def of(cls, author: str, subject: str) -> CommitOut:
        return cls(author=redact.redact(author), subject=redact.redact(subject))


class RunSummary(ApiModel):
    """One reconcile run of one environment at one revision."""

    id: int
    environment: str
    revision: str
    commit: CommitOut
    result: str
    started_at: datetime
    finished_at: datetime | None
    counts: Counts
    error: str

    @classmethod
    def of(cls, run: state.Run) -> RunSummary:
        return cls(id=run.id, environment=run.environment, revision=run.revision,
                   commit=CommitOut.of(run.author, run.subject),
                   result=run.result.value, started_at=run.started_at,
                   finished_at=run.finished_at, counts=Counts.of(run.counts),
                   error=redact.redact(run.error))


class ObjectResult(ApiModel):
    """What the actuator did to one object in a run, as recorded."""

    object: str
    outcome: str


class SpecChangeOut(ApiModel):
    """One spec that changed since the revision last applied, in a reviewer's words."""

    kind: str
    environment: str
    name: str
    action: str
    title: str
    details: list[str]


class ObjectDiffOut(ApiModel):
    """One object the run wrote or deleted: its unified diff, secret values masked."""

    id: str
    action: str
    owner: str
    drifted: bool = False
    diff: str
    truncated: bool = Field(default=False, description="The diff was cut at the bound.")


class PlanDetailOut(ApiModel):
    """The run's plan as ``llmops plan`` shows it: spec changes, then object diffs."""

    specs: list[SpecChangeOut] | None = Field(
        description="Null when the revision last applied could not be read.")
    objects: list[ObjectDiffOut]
    omitted: int = Field(description="Object diffs past the size bound, not recorded.")
    max_chars: int = Field(description="The bound on all object diffs of a run together.")

    @classmethod
    def of(cls, detail: Mapping[str, Any] | None) -> PlanDetailOut | None:
        """The recorded detail, redacted again; None when the run recorded none."""
        if not detail:
            return None
        return cls.model_validate(redact.redact_data(dict(detail)))


class RunDetail(RunSummary):
    """A run with its recorded plan and its per-object results."""

    plan: dict[str, Any]
    plan_detail: PlanDetailOut | None = Field(
        default=None, description="Semantic summary and per-object diffs (runs that acted).")
    results: list[ObjectResult]

    @classmethod
    def of(cls, run: state.Run) -> RunDetail:
        plan = dict(redact.redact_data(run.plan))
        recorded = plan.pop("results", None)
        results = ([ObjectResult(object=str(key), outcome=str(outcome))
                    for key, outcome in sorted(recorded.items())]
                   if isinstance(recorded, dict) else [])
        summary = RunSummary.of(run)
        return cls(**dict(summary), plan=plan, plan_detail=PlanDetailOut.of(run.plan_detail),
                   results=results)


class RunPage(ApiModel):
    items: list[RunSummary]
    next_cursor: int | None = Field(
        description="Pass as before_id for the next (older) page; null on the last page.")


# --------------------------------------------------------------------------- status


class ConditionOut(ApiModel):
    type: str
    status: str
    reason: str
    message: str
    last_transition_time: datetime | None

    @classmethod
    def of(cls, condition: state.Condition) -> ConditionOut:
        return cls(type=condition.type.value, status=condition.status.value,
                   reason=condition.reason, message=redact.redact(condition.message),
                   last_transition_time=condition.last_transition_at)


class SourceOut(ApiModel):
    state: str
    message: str


class LastRun(ApiModel):
    """The environment's last finished run (a running one is not counted)."""

    id: int
    result: str
    revision: str
    finished_at: datetime | None = Field(
        description="Null when the summary came from the cache (which does not carry it).")
    counts: Counts
    reason: str = Field(default="", description="The daemon's reason for the result "
                                                "(cache only; empty from the store).")

    @classmethod
    def of(cls, run: state.Run) -> LastRun:
        return cls(id=run.id, result=run.result.value, revision=run.revision,
                   finished_at=run.finished_at, counts=Counts.of(run.counts))

    @classmethod
    def from_cache(cls, environment: str, data: Mapping[str, Any] | None) -> LastRun | None:
        """The summary the daemon cached for ``environment``, or None when ``data`` is
        missing or not a finished run's summary of that environment (then the caller
        reads the store). ``data`` is already signature-checked; its shape is checked here."""
        if data is None or data.get("environment") != environment:
            return None
        run_id, result = data.get("runId"), data.get("result")
        revision, reason = data.get("revision"), data.get("reason", "")
        counts = _cached_counts(data.get("counts"))
        if (not _is_int(run_id) or run_id < 1 or result not in _FINISHED
                or not isinstance(revision, str) or not isinstance(reason, str)
                or counts is None):
            return None
        return cls(id=run_id, result=result, revision=revision, finished_at=None,
                   counts=counts, reason=redact.redact(reason))


_FINISHED = frozenset(r.value for r in RunResult if r is not RunResult.RUNNING)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _cached_counts(value: object) -> Counts | None:
    """Counts from a cached mapping (missing names are 0), or None when malformed."""
    if not isinstance(value, dict):
        return None
    known = set(Counts.model_fields)
    if not set(value) <= known or not all(_is_int(v) and v >= 0 for v in value.values()):
        return None
    return Counts(**value)


class ArgoCdAppOut(ApiModel):
    """The environment's Argo CD Application, as Argo CD reports it when asked."""

    application: str
    sync: str = Field(description="Synced, OutOfSync, Unknown, or 'unknown (reason)' when "
                                  "Argo CD could not be read.")
    health: str = Field(description="Healthy, Progressing, Degraded, Suspended, Missing, "
                                    "Unknown, or 'unknown (reason)'.")
    revision: str
    operation_phase: str
    error: str

    @classmethod
    def of(cls, app: AppStatus) -> ArgoCdAppOut:
        return cls(application=app.application, sync=redact.redact(app.sync),
                   health=redact.redact(app.health), revision=app.revision,
                   operation_phase=app.operation, error=redact.redact(app.error))


class EnvironmentStatusOut(ApiModel):
    environment: str
    observed_revision: str
    observed_commit: CommitOut = Field(
        description="Author and subject of the observed revision's commit.")
    last_applied_revision: str
    last_attempted_revision: str
    conditions: list[ConditionOut]
    source: SourceOut
    last_success_at: datetime | None
    updated_at: datetime | None
    last_run: LastRun | None
    last_run_source: Literal["cache", "store"] = Field(
        default="store", description="Where lastRun came from: the daemon's signed Redis "
        "value (cache) or the store's last finished run (store; also when there is none).")
    argocd: ArgoCdAppOut | None = Field(
        default=None, description="Only when LLMOPS_ARGOCD__URL is configured.")

    @classmethod
    def of(cls, status: state.EnvironmentStatus, last_run: state.Run | LastRun | None,
           app: AppStatus | None = None) -> EnvironmentStatusOut:
        """``last_run`` is a store run, or a ``LastRun`` read from the cache."""
        summary = (last_run if isinstance(last_run, LastRun) or last_run is None
                   else LastRun.of(last_run))
        return cls(environment=status.environment,
                   observed_revision=status.observed_revision,
                   observed_commit=CommitOut.of(status.observed_author,
                                                status.observed_subject),
                   last_applied_revision=status.last_applied_revision,
                   last_attempted_revision=status.last_attempted_revision,
                   conditions=[ConditionOut.of(c) for c in status.conditions],
                   source=SourceOut(state=status.source_state.value,
                                    message=redact.redact(status.source_message)),
                   last_success_at=status.last_success_at, updated_at=status.updated_at,
                   last_run=summary,
                   last_run_source="cache" if isinstance(last_run, LastRun) else "store",
                   argocd=ArgoCdAppOut.of(app) if app is not None else None)


class StatusList(ApiModel):
    environments: list[EnvironmentStatusOut]


class RunEvent(ApiModel):
    """One finished run as the daemon published it to the Redis stream."""

    id: str = Field(description="The Redis stream id of the event.")
    environment: str
    revision: str
    result: str
    reason: str
    message: str
    run_id: int | None
    counts: Counts

    @classmethod
    def from_cache(cls, stream_id: str, data: Mapping[str, Any]) -> RunEvent | None:
        """The event, or None when ``data`` (signature-checked) is not shaped like one."""
        environment, revision, result = (data.get("environment"), data.get("revision"),
                                         data.get("result"))
        reason, message = data.get("reason", ""), data.get("message", "")
        run_id, counts = data.get("runId"), _cached_counts(data.get("counts"))
        if (not all(isinstance(v, str) for v in (environment, revision, result, reason,
                                                   message))
                or not (run_id is None or _is_int(run_id)) or counts is None):
            return None
        return cls(id=stream_id, environment=str(environment), revision=str(revision),
                   result=str(result), reason=redact.redact(str(reason)),
                   message=redact.redact(str(message)), run_id=run_id, counts=counts)


class RunEventPage(ApiModel):
    items: list[RunEvent]
    next: str = Field(description="Pass as after for the next (newer) events; the same "
                                  "cursor again when there were none yet.")


class Triggered(ApiModel):
    triggered: bool = True


class TriggerRequest(BaseModel):
    """The trigger takes no options: its body is empty or ``{}``."""

    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- audit


class AuditEntryOut(ApiModel):
    id: int
    at: datetime
    actor: str
    source_commit: str
    environment: str
    action: str
    target: str
    result: str
    reason: str
    details: dict[str, Any]
    prev_hash: str
    hash: str
    key_id: str = Field(description="Fingerprint of the HMAC key ``hash`` was made with "
                                    "(empty: an unkeyed SHA-256 link); never the key.")

    @classmethod
    def of(cls, record: audit.AuditRecord) -> AuditEntryOut:
        return cls(id=record.id, at=record.at, actor=record.actor,
                   source_commit=record.source_commit, environment=record.environment,
                   action=record.action, target=record.target, result=record.result,
                   reason=record.reason, details=record.details,
                   prev_hash=record.prev_hash, hash=record.hash, key_id=record.key_id)


class AuditPageOut(ApiModel):
    entries: list[AuditEntryOut]
    next_cursor: int | None = Field(
        description="Pass as after_id for the next (older) page; null on the last page.")
