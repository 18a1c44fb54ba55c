"""The record stage: what a reconcile pass did, written to the store.

Input: one pass over one environment as the reconciler saw it: a halt with its
reason, or the ``ActPlan`` it acted on and the actuator's ``ObjectOutcome``
values. Output: rows in the store: the reconcile run and its counts, audit
entries (intent before acting, one per object acted on, the outcome after),
inventory items (each object's rendered-form hash and owning spec), and
object, spec and environment status with ``Ready``/``Reconciling``/``Stalled``
conditions. Called only by ``llmops.engine.run.reconciler``, at the points of
its pass where each write belongs; nothing is decided here.

Writes are idempotent where a pass repeats: the same halt twice is recorded
once, and status rows that did not change are not rewritten.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from llmops.engine import manifest, redact
from llmops.engine.actuate.base import ActPlan, ObjectOutcome, Outcome
from llmops.engine.actuate.health import HealthStatus, worst
from llmops.engine.plan import decide, diff
from llmops.engine.plan.changeset import WRITING, Action, ChangeSet
from llmops.engine.plan.planner import SpecChange
from llmops.engine.source.snapshots import Snapshot
from llmops.engine.store import audit, state
from llmops.engine.store.db import Store
from llmops.engine.store.models import RunResult, SourceState
from llmops.engine.types import KubeObject, ResourceKey, SpecKey

MAX_MESSAGE = 4000
MAX_SUBJECT = 500
MAX_DIFF_CHARS = 200_000
"""All object diffs of one run together; objects past it are counted, not kept."""
MAX_OBJECT_DIFF_CHARS = 20_000
"""One object's diff; a longer one is cut (and marked ``truncated``)."""


def commit_of(snapshot: Snapshot | None) -> tuple[str, str]:
    """(author, subject) of the snapshot's commit as recorded: bounded, credentials masked."""
    if snapshot is None:
        return "", ""
    return (redact.redact(snapshot.author)[:255],
            redact.redact(snapshot.subject)[:MAX_SUBJECT])


def conditions(applied: bool, reason: str, message: str,
               now: datetime) -> tuple[state.Condition, ...]:
    """Ready/Reconciling/Stalled after a pass: Ready when applied, else Stalled."""
    ready, stalled = ((state.ConditionStatus.TRUE, state.ConditionStatus.FALSE) if applied
                      else (state.ConditionStatus.FALSE, state.ConditionStatus.TRUE))
    return (
        state.Condition(state.ConditionType.READY, ready, reason, message[:MAX_MESSAGE], now),
        state.Condition(state.ConditionType.RECONCILING, state.ConditionStatus.FALSE,
                        reason, "", now),
        state.Condition(state.ConditionType.STALLED, stalled, reason, message[:MAX_MESSAGE],
                        now),
    )


def outcome(log: audit.AuditLog, actor: str, env: str, sha: str, target: str,
            result: audit.AuditResult, reason: str) -> None:
    log.append(audit.AuditEntry(
        actor=actor, action=audit.AuditAction.RECONCILE, target=target, environment=env,
        source_commit=sha, result=result, reason=reason[:MAX_MESSAGE]))


# --------------------------------------------------------------------------- a pass that halts


def halt(store: Store, log: audit.AuditLog, env: str, snapshot: Snapshot | None,
         result: RunResult, reason: str, message: str, *, now: datetime,
         source_error: str, record_run: bool) -> int | None:
    """Record a pass that acted on nothing (the same halt twice once); the run's id."""
    sha = snapshot.revision if snapshot else ""
    author, subject = commit_of(snapshot)
    current = state.get_environment_status(store, env) or state.EnvironmentStatus(env)
    stalled = current.condition(state.ConditionType.STALLED)
    if (current.last_attempted_revision == sha and stalled is not None
            and stalled.reason == reason and stalled.message == message[:MAX_MESSAGE]):
        return None
    run_id = None
    if record_run and snapshot is not None:
        run = state.start_run(store, env, sha, plan={"reason": reason}, author=author,
                              subject=subject)
        state.finish_run(store, run.id, result, error=message[:MAX_MESSAGE])
        run_id = run.id
        log.append(audit.AuditEntry(
            actor=(snapshot.author or "llmops"), action=audit.AuditAction.RECONCILE,
            target=f"environment/{env}", environment=env, source_commit=sha,
            result=(audit.AuditResult.BLOCKED if result is RunResult.BLOCKED
                    else audit.AuditResult.FAILED),
            reason=f"{reason}: {message}"[:MAX_MESSAGE]))
    if snapshot is not None:
        current = replace(current, observed_author=author, observed_subject=subject)
    state.put_environment_status(store, replace(
        current, observed_revision=sha or current.observed_revision,
        last_attempted_revision=sha or current.last_attempted_revision,
        conditions=conditions(False, reason, message, now),
        source_state=SourceState.UNAVAILABLE if source_error else SourceState.AVAILABLE,
        source_message=source_error[:MAX_MESSAGE]))
    return run_id


def close_interrupted(store: Store, log: audit.AuditLog, env: str) -> None:
    """Close runs a killed process left ``running``: each gets an ``interrupted`` outcome
    naming what its intent planned and no entry records as done (``unfinished``); the
    pass that follows finishes the work and records each object it still has to act on."""
    for run in state.list_runs(store, environment=env, result=RunResult.RUNNING, limit=20):
        state.finish_run(store, run.id, RunResult.FAILED,
                         error="interrupted: the reconciler stopped mid-pass")
        done = _recorded_objects(log, env, run)
        planned = {"write": sorted(run.plan.get("write", {})),
                   "delete": sorted(run.plan.get("delete", []))}
        unfinished = {kind: [k for k in keys if k not in done]
                      for kind, keys in planned.items()}
        count = sum(len(keys) for keys in unfinished.values())
        log.append(audit.AuditEntry(
            actor="llmops", action=audit.AuditAction.RECONCILE,
            target=f"environment/{env}", environment=env, source_commit=run.revision,
            result=audit.AuditResult.INTERRUPTED,
            reason=f"run {run.id} interrupted: {count} planned object(s) without a "
                   "recorded outcome; the next pass finishes it",
            details={"run": run.id, "unfinished": unfinished, "recorded": len(done)}))


def _recorded_objects(log: audit.AuditLog, env: str, run: state.Run) -> set[str]:
    """Targets of the per-object entries ``run`` wrote after its intent (all or none:
    they are written in one transaction), among the environment's newest entries."""
    page = log.query(environment=env, limit=audit.MAX_PAGE)
    intent_id = next((e.id for e in page.entries if e.result == audit.AuditResult.INTENT
                      and e.reason.startswith(f"run {run.id}:")), None)
    if intent_id is None:
        return set()
    return {e.target for e in page.entries
            if e.id > intent_id and e.source_commit == run.revision
            and e.action in (audit.AuditAction.APPLY, audit.AuditAction.PRUNE)}


# --------------------------------------------------------------------------- a pass that acts


def act_plan(env: str, sha: str, desired: Mapping[ResourceKey, KubeObject],
             live: Mapping[ResourceKey, KubeObject], changes: ChangeSet) -> ActPlan:
    """The actuator's instructions for a decided ``ChangeSet``.

    Unchanged objects keep their published form (their source-commit stamp too);
    skipped deletions stay as they are live."""
    write = {e.key: e.action.value for e in changes.entries if e.action in WRITING}
    final = {k: (live[k] if k in live and k not in write else obj)
             for k, obj in desired.items()}
    return ActPlan(
        environment=env, revision=sha, desired=final, write=write,
        delete=tuple(sorted(e.key for e in changes.entries if e.action is Action.DELETED)),
        keep={e.key: live[e.key] for e in sorted(changes.entries, key=lambda e: e.key)
              if e.action is Action.SKIPPED and e.key in live})


def plan_detail(changes: ChangeSet, specs: Iterable[SpecChange] | None) -> dict[str, Any]:
    """A run's plan as a reviewer reads it: the semantic summary per spec (``None`` when
    the base revision is unknown) and each acting object's unified diff, made by the
    function ``llmops plan`` prints them with (secret values masked there). Bounded:
    each diff to ``MAX_OBJECT_DIFF_CHARS``, all of them to ``MAX_DIFF_CHARS`` (the rest
    are counted in ``omitted``, never rendered: a large pass stays cheap)."""
    objects: list[dict[str, Any]] = []
    used = omitted = 0
    for entry in changes.changed:
        room = min(MAX_OBJECT_DIFF_CHARS, MAX_DIFF_CHARS - used)
        if room <= 0:
            omitted += 1
            continue
        text = diff.unified(entry)
        kind, name = entry.owner
        objects.append({"id": str(entry.key), "action": entry.action.value,
                        "owner": f"{kind}/{name}" if kind else "", "drifted": entry.drifted,
                        "diff": text[:room], "truncated": len(text) > room})
        used += min(len(text), room)
    return {"specs": None if specs is None else [c.as_dict() for c in specs],
            "objects": objects, "omitted": omitted, "maxChars": MAX_DIFF_CHARS}



def intent(store: Store, log: audit.AuditLog, env: str, sha: str, actor: str,
           plan: ActPlan, summary: dict[str, Any], *, drifted: int,
           commit: tuple[str, str] = ("", ""),
           detail: dict[str, Any] | None = None) -> state.Run:
    """Start the run (with its commit's author and subject and its ``plan_detail``) and
    write the intent entry, before anything is acted on. The audit entry holds the
    summary, not the diffs."""
    run = state.start_run(store, env, sha, plan=summary, author=commit[0], subject=commit[1],
                          plan_detail=detail)
    log.append(audit.AuditEntry(
        actor=actor, action=audit.AuditAction.RECONCILE, target=f"environment/{env}",
        result=audit.AuditResult.INTENT, environment=env, source_commit=sha,
        reason=f"run {run.id}: write {len(plan.write)}, delete {len(plan.delete)}"
               f"{f', correct drift on {drifted}' if drifted else ''}",
        details=summary))
    return run


def object_entries(log: audit.AuditLog, env: str, sha: str, actor: str, plan: ActPlan,
                   outcomes: Mapping[ResourceKey, ObjectOutcome],
                   drifted: set[ResourceKey]) -> None:
    """One audit entry per object written, deleted or failed, in one transaction."""
    entries = []
    for key in sorted(outcomes):
        o = outcomes[key]
        if o.outcome in (Outcome.UNCHANGED, Outcome.SKIPPED):
            continue
        action = (audit.AuditAction.PRUNE if key in plan.delete
                  else audit.AuditAction.APPLY).value
        reason = o.message or o.outcome.value
        if key in drifted and o.outcome is not Outcome.FAILED:
            reason = f"drift corrected; {reason}"
        entries.append(audit.AuditEntry(
            actor=actor, action=action, target=str(key), environment=env,
            source_commit=sha, reason=reason,
            result=(audit.AuditResult.FAILED if o.outcome is Outcome.FAILED
                    else audit.AuditResult.SUCCEEDED)))
    log.extend(entries)


def finish(store: Store, log: audit.AuditLog, env: str, sha: str, actor: str, run: state.Run,
           plan: ActPlan, summary: dict[str, Any],
           outcomes: Mapping[ResourceKey, ObjectOutcome]) -> tuple[state.RunCounts, str]:
    """Close the run with its counts and write the outcome entry; (counts, error)."""
    failed = {k: o for k, o in outcomes.items() if o.outcome is Outcome.FAILED}
    counts = run_counts(plan, outcomes)
    error = "; ".join(f"{k}: {o.message}" for k, o in sorted(failed.items()))[:MAX_MESSAGE]
    state.finish_run(store, run.id, RunResult.FAILED if failed else RunResult.SUCCEEDED,
                     counts=counts, error=error,
                     plan={**summary, "results": {str(k): o.outcome.value
                                                  for k, o in outcomes.items()}})
    outcome(log, actor, env, sha, f"environment/{env}",
            audit.AuditResult.FAILED if failed else audit.AuditResult.SUCCEEDED,
            f"run {run.id}: {counts.as_dict()}" + (f"; {error}" if error else ""))
    return counts, error


def run_counts(plan: ActPlan, outcomes: Mapping[ResourceKey, ObjectOutcome]) -> state.RunCounts:
    def count(kind: Outcome) -> int:
        return sum(1 for o in outcomes.values() if o.outcome is kind)

    # A planned write the server found equal is unchanged, not lost; an object the
    # actuator reports nothing for (hydrate, none: only writes) is unchanged too.
    unchanged = count(Outcome.UNCHANGED) + sum(
        1 for k in plan.desired if k not in outcomes and k not in plan.write)
    return state.RunCounts(
        created=count(Outcome.CREATED), configured=count(Outcome.CONFIGURED),
        deleted=count(Outcome.DELETED), unchanged=unchanged, failed=count(Outcome.FAILED))


# --------------------------------------------------------------------------- inventory


def inventory_items(objects: Mapping[ResourceKey, KubeObject], sha: str,
                    memo: diff.LiveMemo | None = None) -> dict[ResourceKey, state.InventoryItem]:
    """Inventory items of ``objects``: each hashed in the form given (the rendered one).
    With the environment's ``memo``, an object hashed by the last call (the very same
    object: the render cache hands it out again) is not hashed again."""
    known = memo.hashes if memo is not None else {}
    hashes: dict[ResourceKey, tuple[Mapping[str, Any], str]] = {}
    out = {}
    for key, obj in objects.items():
        seen = known.get(key)
        digest = seen[1] if seen is not None and seen[0] is obj else decide.object_hash(obj)
        hashes[key] = (obj, digest)
        kind, name = manifest.owner_of(obj)
        out[key] = state.InventoryItem(key, str(obj.get("apiVersion", "")), digest, kind,
                                       name, sha)
    if memo is not None:
        memo.hashes = hashes
    return out


def final_inventory(sha: str, plan: ActPlan, rendered: Mapping[ResourceKey, KubeObject],
                    widened: Mapping[ResourceKey, state.InventoryItem],
                    outcomes: Mapping[ResourceKey, ObjectOutcome]
                    ) -> dict[ResourceKey, state.InventoryItem]:
    """What is desired, kept, or was not deleted (failed or skipped). ``widened`` holds
    the items of ``rendered`` already (hashed before acting): they are not hashed again."""
    items = inventory_items({k: o for k, o in plan.keep.items() if k not in rendered}, sha)
    items |= {key: widened[key] for key in rendered}
    for key in plan.delete:
        done = outcomes.get(key)
        if (done is None or done.outcome is not Outcome.DELETED) and key in widened:
            items[key] = widened[key]
    return items


# --------------------------------------------------------------------------- status


def object_status(store: Store, env: str, applied_sha: str,
                  objects: Mapping[ResourceKey, KubeObject],
                  outcomes: Mapping[ResourceKey, ObjectOutcome], drifted: set[ResourceKey],
                  written: dict[SpecKey, state.SpecStatus], *,
                  unassessed: HealthStatus = HealthStatus.UNKNOWN) -> None:
    """Each acted-on object's status, and each owning spec's worst health.

    An object this pass did not act on counts as ``unassessed`` (``NotObserved``
    when the actuator cannot see the cluster, else Unknown). ``written`` holds the
    spec rows as last written (by this process): unchanged rows are not rewritten;
    it is updated in place."""
    by_spec: dict[tuple[str, str], list[HealthStatus]] = {}
    errors: dict[tuple[str, str], str] = {}
    objects_done = []
    for key, obj in objects.items():
        done = outcomes.get(key)
        health = done.health if done else unassessed
        spec = manifest.owner_of(obj)
        by_spec.setdefault(spec, []).append(health)
        if done and done.outcome is Outcome.FAILED:
            errors[spec] = f"{key}: {done.message}"
        if done is not None:
            objects_done.append(state.ObjectStatus(
                env, key, health.value, done.message, key in drifted,
                done.message if done.outcome is Outcome.FAILED else ""))
    specs_changed = []
    for (kind, name), healths in by_spec.items():
        if not kind or not name:
            continue
        status = state.SpecStatus(manifest.owner_key((kind, name), env), applied_sha,
                                  worst(healths).value, False, errors.get((kind, name), ""))
        if written.get(status.key) != status:
            specs_changed.append(status)
    state.put_object_status(store, *objects_done)
    state.put_spec_status(store, *specs_changed)
    written.update({status.key: status for status in specs_changed})


def environment_status(store: Store, env: str, sha: str, *, applied: bool, reason: str,
                       message: str, source_error: str, now: datetime,
                       commit: tuple[str, str] = ("", "")) -> None:
    """The environment's revisions (the observed one's commit author and subject) and
    conditions, written only when they changed."""
    current = state.get_environment_status(store, env) or state.EnvironmentStatus(env)
    new_conditions = conditions(applied, reason, message, now)
    updated = replace(
        current, observed_revision=sha, last_attempted_revision=sha,
        observed_author=commit[0], observed_subject=commit[1],
        last_applied_revision=sha if applied else current.last_applied_revision,
        last_success_at=now if applied else current.last_success_at,
        source_state=SourceState.UNAVAILABLE if source_error else SourceState.AVAILABLE,
        source_message=source_error[:MAX_MESSAGE])
    if _status_key(updated) != _status_key(current) or tuple(
            (c.type, c.status, c.reason, c.message) for c in current.conditions) != tuple(
            (c.type, c.status, c.reason, c.message) for c in new_conditions):
        state.put_environment_status(store, replace(updated, conditions=new_conditions))


def _status_key(status: state.EnvironmentStatus) -> tuple[Any, ...]:
    return (status.observed_revision, status.last_applied_revision,
            status.last_attempted_revision, status.source_state, status.source_message,
            status.observed_author, status.observed_subject)
