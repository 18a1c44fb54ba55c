"""The reconciler: one linear pass per environment that makes the target match git.

source -> load -> validate -> render -> diff -> govern -> act -> assess -> record

Input: a ``Source`` (git or a local directory), a ``Store`` and an actuator per
environment. Output: one ``PassResult`` per environment, with everything
recorded: a reconcile run, the inventory, spec/object/environment status and
audit entries. Called by ``llmops reconcile``, the daemon and ``llmops up``;
it is the only module that calls more than one stage.

Promises kept here:
- An error anywhere in a revision acts on nothing from it; the environment is
  marked ``Stalled`` with the reason, and the last good state stays.
- Unknown is never empty: a failed fetch, render or observe prunes nothing; a
  revision that renders no object for an environment that has some is blocked
  unless the environment sets ``allowEmpty``; deleting more than
  ``maxPrunePercent`` of the owned objects is blocked until confirmed;
  prune-protected objects are kept.
- Intent before action: an audit entry is written before acting (and the
  inventory widened to old + new), the outcome after. If the store cannot be
  written, nothing is applied. A pass killed in between is closed as
  ``interrupted`` on the next start, which then finishes the work.
- Reconciling the same revision twice changes nothing and writes no run and
  no audit entry.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from llmops.engine.actuate.base import ActPlan, Actuator, ActuatorError, ObjectOutcome, Outcome
from llmops.engine.actuate.health import HealthStatus, worst
from llmops.engine.errors import LlmopsError, SpecError
from llmops.engine.plan import diff, govern
from llmops.engine.source.snapshots import Snapshot, Source, SourceUnavailable
from llmops.engine.spec import loader, schema, validate
from llmops.engine.store import audit, catalog, state
from llmops.engine.store.db import Store
from llmops.engine.store.models import RunResult, SourceState
from llmops.engine.types import KubeObject, ResourceKey, SpecKey, content_hash
from llmops.renderers import RenderCache, RenderError, render_environment

log = logging.getLogger(__name__)

PRUNE_ANNOTATION = "llmops.io/prune"
PRUNE_PROTECTED_LABEL = "llmops.io/prune-protected"
MAX_AUDITED_KEYS = 200
GPU_SAMPLE_SECONDS = 900.0

ActuatorFactory = Callable[[str, schema.Environment], Actuator]


class Metrics:
    """What the reconciler reports; the daemon passes a Prometheus-backed one."""

    def stage(self, environment: str, stage: str, seconds: float) -> None: ...
    def run(self, environment: str, result: str) -> None: ...
    def objects(self, environment: str, action: str, count: int) -> None: ...
    def drifted(self, environment: str, count: int) -> None: ...
    def succeeded(self, environment: str, revision: str) -> None: ...
    def fetch_failed(self) -> None: ...
    def pass_duration(self, seconds: float) -> None: ...
    def gpus(self, environment: str, allocation: dict[tuple[str, str], int]) -> None: ...


class LeaseLost(LlmopsError):
    """This process no longer holds the leader lease: it must not write."""


@dataclass(frozen=True, slots=True)
class PassResult:
    environment: str
    revision: str
    result: RunResult
    reason: str = ""
    message: str = ""
    run_id: int | None = None
    counts: state.RunCounts = field(default_factory=state.RunCounts)

    @property
    def ok(self) -> bool:
        return self.result in (RunResult.SUCCEEDED, RunResult.NOOP)


@dataclass
class Revision:
    """One fetched revision, loaded and validated once however many passes use it."""

    snapshot: Snapshot
    spec_set: validate.SpecSet | None = None
    error: SpecError | None = None
    rendered: dict[str, tuple[KubeObject, ...]] = field(default_factory=dict)


def object_hash(obj: KubeObject) -> str:
    """Content hash of an object without the per-commit bookkeeping annotations."""
    return content_hash(diff.normalize(obj, ignore_annotations=diff.REVISION_BOOKKEEPING))


def _owner(obj: KubeObject) -> tuple[str, str]:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return str(labels.get("llmops.io/kind", "")), str(labels.get("llmops.io/spec", ""))


def _protected(obj: KubeObject | None, env: str, rules: Sequence[schema.PruneProtection],
               key: ResourceKey) -> bool:
    if obj is not None:
        meta = obj.get("metadata") or {}
        if str((meta.get("annotations") or {}).get(PRUNE_ANNOTATION, "")).lower() == "disabled":
            return True
        if str((meta.get("labels") or {}).get(PRUNE_PROTECTED_LABEL, "")).lower() == "true":
            return True
    for rule in rules:
        if (not rule.environments or env in rule.environments) and (
                not rule.kinds or key.kind in rule.kinds):
            return True
    return False


class Reconciler:
    """Runs reconcile passes; holds the per-revision caches between them."""

    def __init__(self, store: Store, source: Source, actuator_for: ActuatorFactory, *,
                 environments: Sequence[str] = (), metrics: Metrics | None = None,
                 clock: Callable[[], datetime] | None = None,
                 confirm_prune: bool = False) -> None:
        self.store = store
        self.source = source
        self.actuator_for = actuator_for
        self.only = tuple(environments)
        self.metrics = metrics or Metrics()
        self.clock = clock or (lambda: datetime.now(UTC))
        self.confirm_prune = confirm_prune
        self.audit = audit.AuditLog(store)
        self.cache = loader.ParseCache()
        self.render_cache = RenderCache()
        self._revision: Revision | None = None
        self._last_sample: dict[str, float] = {}
        self._in_sync: dict[str, tuple[str, int, str]] = {}
        self._spec_status: dict[SpecKey, state.SpecStatus] = {}
        self.lease_check: Callable[[], bool] | None = None
        """Set by the daemon: called before every write phase; False stops the pass."""

    def _ensure_leader(self) -> None:
        if self.lease_check is not None and not self.lease_check():
            raise LeaseLost("the leader lease was lost; stopping before the next write")

    # ------------------------------------------------------------------ entry point

    def run_once(self) -> list[PassResult]:
        """Fetch, then reconcile every environment (or those asked for)."""
        source_error = ""
        try:
            snapshot = self.source.fetch()
        except SourceUnavailable as exc:
            self.metrics.fetch_failed()
            source_error = str(exc)
            last = self.source.last_good
            if last is None:
                return [self._stall_without_revision(env, "SourceUnavailable", source_error)
                        for env in self._known_environments()]
            snapshot = last
        revision = self._load(snapshot)
        envs = self._environments(revision)
        return [self.reconcile_environment(revision, env, source_error=source_error)
                for env in envs]

    # ------------------------------------------------------------------ wait

    def wait_healthy(self, env: str, *, timeout: float, interval: float = 2.0,
                     sleep: Callable[[float], None] = time.sleep
                     ) -> dict[ResourceKey, HealthStatus] | None:
        """Poll the health of the environment's inventory until every object is Healthy
        or ``timeout`` passes; returns the last reading, or None when the environment's
        actuator cannot observe health (hydrate, none). Object statuses are updated."""
        revision = self._revision
        if revision is None or revision.spec_set is None:
            return None
        config = revision.spec_set.config.environments.get(env)
        if config is None:
            return None
        probe = getattr(self.actuator_for(env, config), "health", None)
        if probe is None:
            return None
        keys = [item.key for item in state.read_inventory(self.store, env)]
        deadline = time.monotonic() + timeout
        while True:
            health: dict[ResourceKey, HealthStatus] = probe(env, keys)
            done = all(h is HealthStatus.HEALTHY for h in health.values())
            if done or time.monotonic() >= deadline:
                break
            sleep(min(interval, max(0.0, deadline - time.monotonic())))
        for key, h in health.items():
            state.put_object_status(self.store, state.ObjectStatus(env, key, h.value))
        return health

    # ------------------------------------------------------------------ load

    def _load(self, snapshot: Snapshot) -> Revision:
        if self._revision is not None and self._revision.snapshot.revision == snapshot.revision:
            return self._revision
        revision = Revision(snapshot)
        try:
            revision.spec_set = validate.load_and_validate(snapshot.path, cache=self.cache)
        except SpecError as exc:
            revision.error = exc
        else:
            catalog.record(self.store, snapshot.revision, revision.spec_set)
        self._revision = revision
        return revision

    def _known_environments(self) -> list[str]:
        if self.only:
            return list(self.only)
        known = [s.environment for s in state.list_environment_status(self.store)]
        return known or ["default"]

    def _environments(self, revision: Revision) -> list[str]:
        if revision.spec_set is None:
            return self._known_environments()
        declared = list(revision.spec_set.config.environments)
        return [e for e in declared if not self.only or e in self.only] if self.only else declared

    # ------------------------------------------------------------------ one environment

    def reconcile_environment(self, revision: Revision, env: str, *,
                              source_error: str = "") -> PassResult:
        sha = revision.snapshot.revision
        self._ensure_leader()
        self._close_interrupted(env)
        if revision.spec_set is None:
            assert revision.error is not None
            return self._stall(env, revision, "ValidationFailed", str(revision.error),
                               source_error=source_error)
        spec_set = revision.spec_set
        config = spec_set.config.environments.get(env)
        if config is None:
            return self._stall(env, revision, "UnknownEnvironment",
                               f"environment {env!r} is not declared in llmops.yaml",
                               source_error=source_error)
        with self._timed(env, "render"):
            try:
                objects = revision.rendered.get(env)
                if objects is None:
                    objects = render_environment(spec_set, env, source_commit=sha,
                                                 cache=self.render_cache)
                    revision.rendered[env] = objects
            except RenderError as exc:
                return self._stall(env, revision, "RenderFailed", str(exc),
                                   source_error=source_error)
        actuator = self.actuator_for(env, config)
        with self._timed(env, "diff"):
            try:
                live = actuator.observe(env)
            except ActuatorError as exc:
                return self._stall(env, revision, "ObserveFailed", str(exc),
                                   source_error=source_error)
            inventory = {item.key: item for item in state.read_inventory(self.store, env)}
            desired = {ResourceKey.of(o): o for o in objects}
            # Nothing to diff when the rendered objects and the live ones are exactly those
            # of the last pass that found nothing to write (a resync of the same revision).
            fingerprint = (sha, id(objects), content_hash(
                [[str(k), live[k]] for k in sorted(live)]))
            if self._in_sync.get(env) == fingerprint:
                write: dict[ResourceKey, str] = {}
            else:
                changes = diff.diff_live(objects, [live[k] for k in desired if k in live],
                                         default_namespace="",
                                         ignore_annotations=diff.REVISION_BOOKKEEPING)
                write = {e.key: e.action.value for e in changes.entries
                         if e.action in (diff.Action.CREATED, diff.Action.CONFIGURED)}
        drifted = {key for key in write if write[key] == "configured" and key in inventory
                   and inventory[key].content_hash == object_hash(desired[key])}
        owned = set(inventory) | set(live)
        gone = sorted(owned - set(desired))
        rules = [r for p in spec_set.policies() for r in p.spec.pruneProtection]
        keep = {k: live[k] for k in gone if k in live and _protected(live.get(k), env, rules, k)}
        delete = tuple(k for k in gone if k not in keep and not _protected(None, env, rules, k))
        keep |= {k: live[k] for k in gone if k not in delete and k in live}
        if source_error and delete:
            # The source is unavailable: act on the last good revision, prune nothing.
            keep |= {k: live[k] for k in delete if k in live}
            delete = ()

        # Safety: unknown is never empty; mass deletion waits for a confirmation.
        if not desired and owned and not spec_set.config.allow_empty(env):
            return self._block(env, revision, "EmptyRevision",
                               f"the revision renders no objects for {env} and would delete "
                               f"all {len(owned)}; set allowEmpty to allow it")
        limit = spec_set.config.max_prune_percent(env)
        if delete and len(delete) * 100 > limit * len(owned) and not self._prune_confirmed(
                env, sha):
            return self._block(env, revision, "PruneThreshold",
                               f"would delete {len(delete)} of {len(owned)} objects "
                               f"({len(delete) * 100 // len(owned)}% > maxPrunePercent {limit}%);"
                               f" confirm with `llmops prune confirm --env {env} "
                               f"--revision {sha}`")
        changed_specs = {SpecKey(*_spec_key(desired.get(k) or live.get(k) or {}, env))
                         for k in (*write, *delete)}
        verdicts = govern.evaluate(spec_set, env, changed=changed_specs, now=self.clock())
        denied = [v for v in verdicts if v.denied]
        if denied and (write or delete):
            return self._block(env, revision, "PolicyDenied",
                               "; ".join(f"{v.rule}: {v.target}: {v.reason}" for v in denied))

        # Unchanged objects keep their published form (their source-commit stamp too).
        final = {k: (live[k] if k in live and k not in write else obj)
                 for k, obj in desired.items()}
        plan = ActPlan(environment=env, revision=sha, desired=final, write=write,
                       delete=delete, keep=keep)
        if not write and not delete and self._published(env, sha, actuator):
            self._in_sync[env] = fingerprint
            return self._noop(env, revision, desired, inventory, source_error)
        self._in_sync.pop(env, None)
        return self._act(env, revision, actuator, plan, desired, inventory, drifted,
                         source_error)

    # ------------------------------------------------------------------ act and record

    def _act(self, env: str, revision: Revision, actuator: Actuator, plan: ActPlan,
             rendered: Mapping[ResourceKey, KubeObject],
             inventory: Mapping[ResourceKey, state.InventoryItem], drifted: set[ResourceKey],
             source_error: str) -> PassResult:
        """Write intent, act, record the outcome. The inventory hashes the rendered form
        of each object (never the live one), so later hand edits show up as drift."""
        sha = revision.snapshot.revision
        actor = revision.snapshot.author or "llmops"
        summary = {"write": {str(k): a for k, a in list(plan.write.items())[:MAX_AUDITED_KEYS]},
                   "delete": [str(k) for k in plan.delete[:MAX_AUDITED_KEYS]],
                   "drifted": [str(k) for k in sorted(drifted)[:MAX_AUDITED_KEYS]],
                   "actuator": actuator.name}
        self._ensure_leader()
        run = state.start_run(self.store, env, sha, plan=summary)
        self.audit.append(audit.AuditEntry(
            actor=actor, action=audit.AuditAction.RECONCILE, target=f"environment/{env}",
            result=audit.AuditResult.INTENT, environment=env, source_commit=sha,
            reason=f"run {run.id}: write {len(plan.write)}, delete {len(plan.delete)}"
                   f"{f', correct drift on {len(drifted)}' if drifted else ''}",
            details=summary))
        # Widen the inventory before acting: a pass killed midway orphans nothing.
        widened = dict(inventory) | self._inventory_items(rendered, env, sha)
        state.replace_inventory(self.store, env, widened.values())
        with self._timed(env, "act"):
            try:
                result = actuator.act(plan) if actuator.applies else None
            except ActuatorError as exc:
                state.finish_run(self.store, run.id, RunResult.FAILED, error=str(exc))
                self._outcome(actor, env, sha, f"environment/{env}", audit.AuditResult.FAILED,
                              str(exc))
                return self._stall(env, revision, "ApplyFailed", str(exc), run_id=run.id,
                                   source_error=source_error, record_run=False)
        outcomes = result.outcomes if result else {}
        failed = {k: o for k, o in outcomes.items() if o.outcome is Outcome.FAILED}
        for key in sorted(outcomes):
            o = outcomes[key]
            if o.outcome in (Outcome.UNCHANGED, Outcome.SKIPPED):
                continue
            action = (audit.AuditAction.PRUNE if key in plan.delete
                      else audit.AuditAction.APPLY).value
            reason = o.message or o.outcome.value
            if key in drifted and o.outcome is not Outcome.FAILED:
                reason = f"drift corrected; {reason}"
            self.audit.append(audit.AuditEntry(
                actor=actor, action=action, target=str(key), environment=env,
                source_commit=sha, reason=reason,
                result=(audit.AuditResult.FAILED if o.outcome is Outcome.FAILED
                        else audit.AuditResult.SUCCEEDED)))
        # The inventory: what is desired, kept, or was not deleted (failed or skipped).
        final_items = self._inventory_items({**plan.keep, **rendered}, env, sha)
        for key in plan.delete:
            done = outcomes.get(key)
            if (done is None or done.outcome is not Outcome.DELETED) and key in widened:
                final_items[key] = widened[key]
        if actuator.applies:
            state.replace_inventory(self.store, env, final_items.values())
        counts = state.RunCounts(
            created=sum(1 for o in outcomes.values() if o.outcome is Outcome.CREATED),
            configured=sum(1 for o in outcomes.values() if o.outcome is Outcome.CONFIGURED),
            deleted=sum(1 for o in outcomes.values() if o.outcome is Outcome.DELETED),
            unchanged=len(plan.desired) - len(plan.write),
            failed=len(failed))
        ok = not failed
        run_result = RunResult.SUCCEEDED if ok else RunResult.FAILED
        error = "; ".join(f"{k}: {o.message}" for k, o in sorted(failed.items()))[:4000]
        state.finish_run(self.store, run.id, run_result, counts=counts, error=error,
                         plan={**summary, "results": {str(k): o.outcome.value
                                                      for k, o in outcomes.items()}})
        self._outcome(actor, env, sha, f"environment/{env}",
                      audit.AuditResult.SUCCEEDED if ok else audit.AuditResult.FAILED,
                      f"run {run.id}: {counts.as_dict()}" + (f"; {error}" if error else ""))
        self._record_status(env, revision, plan.desired, outcomes, applied=ok,
                            reason="Applied" if ok else "ApplyFailed", message=error,
                            source_error=source_error, drifted=set())
        for action, count in counts.as_dict().items():
            self.metrics.objects(env, action, count)
        self.metrics.drifted(env, len(drifted))
        self.metrics.run(env, run_result.value)
        if ok:
            self.metrics.succeeded(env, sha)
        return PassResult(env, sha, run_result, "Applied" if ok else "ApplyFailed", error,
                          run.id, counts)

    def _noop(self, env: str, revision: Revision, desired: Mapping[ResourceKey, KubeObject],
              inventory: Mapping[ResourceKey, state.InventoryItem],
              source_error: str) -> PassResult:
        sha = revision.snapshot.revision
        if set(inventory) != set(desired):
            # The target already holds the revision (e.g. after a kill before the
            # final inventory was written): settle the inventory, nothing else.
            state.replace_inventory(self.store, env,
                                    self._inventory_items(desired, env, sha).values())
        self._record_status(env, revision, desired, {}, applied=True, reason="Applied",
                            message="", source_error=source_error, drifted=set())
        self.metrics.run(env, RunResult.NOOP.value)
        self.metrics.drifted(env, 0)
        self.metrics.succeeded(env, sha)
        return PassResult(env, sha, RunResult.NOOP, "Applied",
                          counts=state.RunCounts(unchanged=len(desired)))

    def _published(self, env: str, sha: str, actuator: Actuator) -> bool:
        """Whether nothing is left to do: no writes, and the status says it is applied."""
        status = state.get_environment_status(self.store, env)
        return not actuator.applies or (status is not None and bool(
            status.last_applied_revision))

    # ------------------------------------------------------------------ failures

    def _stall(self, env: str, revision: Revision, reason: str, message: str, *,
               run_id: int | None = None, source_error: str = "",
               record_run: bool = True) -> PassResult:
        return self._halt(env, revision.snapshot, RunResult.FAILED, reason, message,
                          run_id=run_id, source_error=source_error, record_run=record_run)

    def _block(self, env: str, revision: Revision, reason: str, message: str) -> PassResult:
        return self._halt(env, revision.snapshot, RunResult.BLOCKED, reason, message)

    def _stall_without_revision(self, env: str, reason: str, message: str) -> PassResult:
        self._close_interrupted(env)
        return self._halt(env, None, RunResult.FAILED, reason, message, source_error=message)

    def _halt(self, env: str, snapshot: Snapshot | None, result: RunResult, reason: str,
              message: str, *, run_id: int | None = None, source_error: str = "",
              record_run: bool = True) -> PassResult:
        """Record a pass that acted on nothing; the same halt twice is recorded once."""
        sha = snapshot.revision if snapshot else ""
        now = self.clock()
        current = state.get_environment_status(self.store, env) or state.EnvironmentStatus(env)
        stalled = current.condition(state.ConditionType.STALLED)
        repeat = (current.last_attempted_revision == sha and stalled is not None
                  and stalled.reason == reason and stalled.message == message[:4000])
        if not repeat and record_run and snapshot is not None:
            run = state.start_run(self.store, env, sha, plan={"reason": reason})
            state.finish_run(self.store, run.id, result, error=message[:4000])
            run_id = run.id
            self.audit.append(audit.AuditEntry(
                actor=(snapshot.author or "llmops"), action=audit.AuditAction.RECONCILE,
                target=f"environment/{env}", environment=env, source_commit=sha,
                result=(audit.AuditResult.BLOCKED if result is RunResult.BLOCKED
                        else audit.AuditResult.FAILED), reason=f"{reason}: {message}"[:4000]))
        if not repeat:
            conditions = (
                state.Condition(state.ConditionType.READY, state.ConditionStatus.FALSE, reason,
                                message[:4000], now),
                state.Condition(state.ConditionType.RECONCILING, state.ConditionStatus.FALSE,
                                reason, "", now),
                state.Condition(state.ConditionType.STALLED, state.ConditionStatus.TRUE, reason,
                                message[:4000], now),
            )
            state.put_environment_status(self.store, replace(
                current, observed_revision=sha or current.observed_revision,
                last_attempted_revision=sha or current.last_attempted_revision,
                conditions=conditions,
                source_state=SourceState.UNAVAILABLE if source_error else SourceState.AVAILABLE,
                source_message=source_error[:4000]))
        self.metrics.run(env, result.value)
        log.warning("%s: %s at %s: %s", env, reason, sha[:12] or "-", message.splitlines()[0]
                    if message else "")
        return PassResult(env, sha, result, reason, message, run_id)

    def _close_interrupted(self, env: str) -> None:
        """Close runs a killed process left ``running``: the audit gets their outcome."""
        for run in state.list_runs(self.store, environment=env, limit=20):
            if run.result is RunResult.RUNNING:
                state.finish_run(self.store, run.id, RunResult.FAILED,
                                 error="interrupted: the reconciler stopped mid-pass")
                self._outcome("llmops", env, run.revision, f"environment/{env}",
                              audit.AuditResult.FAILED,
                              f"run {run.id} interrupted; the next pass finishes it")

    def _prune_confirmed(self, env: str, sha: str) -> bool:
        if self.confirm_prune:
            return True
        page = self.audit.query(action=CONFIRM_ACTION, environment=env, limit=50)
        return any(e.source_commit == sha for e in page.entries)

    # ------------------------------------------------------------------ helpers

    def _outcome(self, actor: str, env: str, sha: str, target: str,
                 result: audit.AuditResult, reason: str) -> None:
        self.audit.append(audit.AuditEntry(
            actor=actor, action=audit.AuditAction.RECONCILE, target=target, environment=env,
            source_commit=sha, result=result, reason=reason[:4000]))

    def _inventory_items(self, objects: Mapping[ResourceKey, KubeObject], env: str,
                         sha: str) -> dict[ResourceKey, state.InventoryItem]:
        out = {}
        for key, obj in objects.items():
            kind, name = _owner(obj)
            out[key] = state.InventoryItem(key, str(obj.get("apiVersion", "")),
                                           object_hash(obj), kind, name, sha)
        return out

    def _record_status(self, env: str, revision: Revision,
                       objects: Mapping[ResourceKey, KubeObject],
                       outcomes: Mapping[ResourceKey, ObjectOutcome], *, applied: bool,
                       reason: str, message: str, source_error: str,
                       drifted: set[ResourceKey]) -> None:
        sha = revision.snapshot.revision
        now = self.clock()
        by_spec: dict[tuple[str, str], list[HealthStatus]] = {}
        errors: dict[tuple[str, str], str] = {}
        for key, obj in objects.items():
            outcome = outcomes.get(key)
            health = outcome.health if outcome else HealthStatus.UNKNOWN
            owner = _owner(obj)
            by_spec.setdefault(owner, []).append(health)
            if outcome and outcome.outcome is Outcome.FAILED:
                errors[owner] = f"{key}: {outcome.message}"
            if outcome is not None:
                state.put_object_status(self.store, state.ObjectStatus(
                    env, key, health.value, outcome.message, key in drifted,
                    outcome.message if outcome.outcome is Outcome.FAILED else ""))
        for (kind, name), healths in by_spec.items():
            if not kind or not name:
                continue
            spec_env = "" if kind in ("Model", "Dataset", "Policy", "PromptTemplate") else env
            status = state.SpecStatus(SpecKey(kind, spec_env, name), sha if applied else "",
                                      worst(healths).value, False, errors.get((kind, name), ""))
            if self._spec_status.get(status.key) != status:  # unchanged rows are not rewritten
                state.put_spec_status(self.store, status)
                self._spec_status[status.key] = status
        current = state.get_environment_status(self.store, env) or state.EnvironmentStatus(env)
        ready = state.ConditionStatus.TRUE if applied else state.ConditionStatus.FALSE
        conditions = (
            state.Condition(state.ConditionType.READY, ready, reason, message[:4000], now),
            state.Condition(state.ConditionType.RECONCILING, state.ConditionStatus.FALSE,
                            reason, "", now),
            state.Condition(state.ConditionType.STALLED,
                            state.ConditionStatus.FALSE if applied else state.ConditionStatus.TRUE,
                            reason, message[:4000], now),
        )
        updated = replace(
            current, observed_revision=sha, last_attempted_revision=sha,
            last_applied_revision=sha if applied else current.last_applied_revision,
            last_success_at=now if applied else current.last_success_at,
            source_state=SourceState.UNAVAILABLE if source_error else SourceState.AVAILABLE,
            source_message=source_error[:4000])
        if _status_key(updated) != _status_key(current) or tuple(
                (c.type, c.status, c.reason, c.message) for c in current.conditions) != tuple(
                (c.type, c.status, c.reason, c.message) for c in conditions):
            state.put_environment_status(self.store, replace(updated, conditions=conditions))
        if revision.spec_set is not None and applied:
            spec_set = revision.spec_set
            self.metrics.gpus(env, {
                (spec_set.team_of(e), e.name): e.spec.resources.gpu * e.spec.replicas.min
                for e in spec_set.of(schema.ServingEndpointSpec) if e.environment == env})
            self._sample_gpus(env, spec_set)

    def _sample_gpus(self, env: str, spec_set: validate.SpecSet) -> None:
        """Record GPU use per endpoint for the cost report, at most every 15 minutes."""
        now = time.monotonic()
        if now - self._last_sample.get(env, -GPU_SAMPLE_SECONDS) < GPU_SAMPLE_SECONDS:
            return
        self._last_sample[env] = now
        at = self.clock()
        samples = [state.GpuSample(env, spec_set.team_of(e), e.name, e.spec.resources.gpu,
                                   e.spec.replicas.min, at)
                   for e in spec_set.of(schema.ServingEndpointSpec) if e.environment == env]
        if samples:
            state.add_gpu_samples(self.store, samples)

    @contextmanager
    def _timed(self, env: str, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.metrics.stage(env, stage, time.perf_counter() - start)


CONFIRM_ACTION = "confirm-prune"


def _spec_key(obj: KubeObject, env: str) -> tuple[str, str, str]:
    kind, name = _owner(obj)
    return (kind, "" if kind in ("Model", "Dataset", "Policy", "PromptTemplate") else env, name)


def _status_key(status: state.EnvironmentStatus) -> tuple[Any, ...]:
    return (status.observed_revision, status.last_applied_revision,
            status.last_attempted_revision, status.source_state, status.source_message)


def confirm_prune(store: Store, env: str, revision: str, actor: str) -> None:
    """Record a confirmation that lets ``revision`` prune past the threshold in ``env``."""
    audit.AuditLog(store).append(audit.AuditEntry(
        actor=actor, action=CONFIRM_ACTION, target=f"environment/{env}", environment=env,
        source_commit=revision, result=audit.AuditResult.SUCCEEDED,
        reason="mass prune confirmed"))
