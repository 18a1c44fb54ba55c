"""The reconciler: one linear pass per environment that makes the target match git.

source -> load -> validate -> render -> observe -> decide -> act -> assess -> record

Input: a ``Source`` (git or a local directory), a ``Store`` and an actuator per
environment. Output: one ``PassResult`` per environment, with everything
recorded: a reconcile run, the inventory, spec/object/environment status and
audit entries. Called by ``llmops reconcile``, the daemon and ``llmops up``;
it is the only module that calls more than one stage.

What to do is not decided here: ``llmops.engine.plan.decide.decide``, the
function ``llmops plan`` decides with, turns the rendered objects, the
observed ones, the inventory and the revision's gates into a ``ChangeSet``.
This module executes it (as the actuator's ``ActPlan``) and records it.
``reconcile_environment`` is one linear pass of small steps (Flux's
kustomize-controller style): each returns its value, or stops the pass with a
reason that marks the environment ``Stalled``.

Promises kept here:
- An error anywhere in a revision acts on nothing from it; the environment is
  marked ``Stalled`` with the reason, and the last good state stays.
- Unknown is never empty: a failed fetch, render or observe prunes nothing;
  what ``decide`` blocks (an empty revision, a prune past the threshold, a
  policy denial) is recorded as ``blocked`` and acts on nothing.
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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from llmops.engine.actuate import kube_health
from llmops.engine.actuate.base import ActPlan, Actuator, ActuatorError, ObjectOutcome, Outcome
from llmops.engine.actuate.health import HealthStatus
from llmops.engine.errors import LlmopsError, SpecError
from llmops.engine.plan import decide, diff, planner
from llmops.engine.plan.changeset import ChangeSet
from llmops.engine.run import anchoring, finished, record
from llmops.engine.source.snapshots import Snapshot, Source, SourceUnavailable
from llmops.engine.spec import loader, repoconfig, schema, validate
from llmops.engine.store import audit, catalog, state
from llmops.engine.store.db import Store
from llmops.engine.store.models import RunResult
from llmops.engine.types import Kind, KubeObject, ResourceKey, SpecKey
from llmops.renderers import RenderCache, RenderError, render_environment

log = logging.getLogger(__name__)

MAX_AUDITED_KEYS = 200
GPU_SAMPLE_SECONDS = 900.0
CONFIRM_ACTION = "confirm-prune"

ActuatorFactory = Callable[[str, repoconfig.Environment], Actuator]


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
    def audit_anchor(self, sink: str, ok: bool) -> None: ...


class LeaseLost(LlmopsError):
    """This process no longer holds the leader lease: it must not write."""


class _Stalled(LlmopsError):
    """A step of the pass failed: the environment is marked Stalled with ``reason``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


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
        self._in_sync: dict[str, tuple[str, int, str, Mapping[ResourceKey, KubeObject]]] = {}
        self._memos: dict[str, diff.LiveMemo] = {}
        self._spec_status: dict[SpecKey, state.SpecStatus] = {}
        self._applied: dict[str, tuple[str, validate.SpecSet]] = {}
        """Per environment, the revision this process last applied (or found applied)."""
        self.lease_check: Callable[[], bool] | None = None
        """Set by the daemon: called before every write phase; False stops the pass."""
        self.repo_anchors: anchoring.RepoAnchors | None = None  # set by ``compose``

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
                stalled = [self._stall_without_revision(env, "SourceUnavailable",
                                                        source_error)
                           for env in self._known_environments()]
                self._anchor()
                return stalled
            snapshot = last
        revision = self._load(snapshot)
        envs = self._environments(revision)
        results = [self.reconcile_environment(revision, env, source_error=source_error)
                   for env in envs]
        self._anchor()
        return results

    def _anchor(self) -> None:
        """Anchor the pass's entries in the anchor file, then (when due) the specs repo."""
        self.audit.anchor()
        if self.repo_anchors is not None:
            self.repo_anchors.write(self.store, self.metrics)

    # ------------------------------------------------------------------ wait

    def wait_healthy(self, env: str, *, timeout: float, interval: float = 2.0,
                     sleep: Callable[[float], None] = time.sleep
                     ) -> dict[ResourceKey, HealthStatus] | None:
        """Poll the health of the environment's inventory until every object is Healthy
        or ``timeout`` passes; returns the last reading, or None when the environment's
        actuator cannot observe health (hydrate, none). Object statuses are updated. A
        finished Job that is gone (its TTL) reads as it finished, not as Missing."""
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
        ended = state.read_finished_jobs(self.store, env)
        deadline = time.monotonic() + timeout
        while True:
            health: dict[ResourceKey, HealthStatus] = {
                key: HealthStatus(ended[key].health)
                if h is HealthStatus.MISSING and key in ended else h
                for key, h in probe(env, keys).items()}
            done = all(h is HealthStatus.HEALTHY for h in health.values())
            if done or time.monotonic() >= deadline:
                break
            sleep(min(interval, max(0.0, deadline - time.monotonic())))
        state.put_object_status(self.store, *(state.ObjectStatus(env, key, h.value)
                                              for key, h in health.items()))
        return health

    # ------------------------------------------------------------------ load

    def _load(self, snapshot: Snapshot) -> Revision:
        if self._revision is not None and self._revision.snapshot.revision == snapshot.revision:
            return self._revision
        prior, revision = self._revision, Revision(snapshot)
        try:
            revision.spec_set = validate.validate(self.source.load(snapshot, cache=self.cache))
        except SpecError as exc:
            revision.error = exc
        else:  # only the specs that changed since the revision recorded before
            catalog.record(self.store, snapshot.revision, revision.spec_set, previous=(
                (prior.snapshot.revision, prior.spec_set) if prior and prior.spec_set else None))
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
        """Make ``env`` match ``revision``: render, observe, decide, then act or stop."""
        sha = revision.snapshot.revision
        self._ensure_leader()
        record.close_interrupted(self.store, self.audit, env)
        try:
            spec_set, config = _declared(revision, env)
            objects = self._render(revision, spec_set, env)
            actuator = self.actuator_for(env, config)
            with self._timed(env, "diff"):
                live = _observe(actuator, env)
                # A resync: the rendered and live objects are exactly those of the
                # last pass that found nothing to write. Nothing to compare or record.
                # (Comparing tuples tests identity first: the very mapping the actuator
                # handed out last time costs nothing; another is compared by value, each
                # unchanged object by identity.)
                fingerprint = (sha, id(objects), source_error, live)
                if self._in_sync.get(env) == fingerprint:
                    return self._resynced(env, sha, spec_set, len(objects))
                inventory = {item.key: item for item in state.read_inventory(self.store, env)}
                desired = {ResourceKey.of(o): o for o in objects}
                ended = self._finished_jobs(env, desired, live)
                changes = self._decide(revision, spec_set, env, objects, live, inventory,
                                       source_error=source_error, ended=ended)
        except _Stalled as stop:
            return self._stall(env, revision, stop.reason, str(stop), source_error=source_error)
        if changes.blocked is not None:
            return self._block(env, revision, changes.blocked.reason.value,
                               changes.blocked.message)
        plan = record.act_plan(env, sha, desired, live, changes)
        gone = finished.outcomes(changes, ended)
        if not plan.write and not plan.delete and self._published(env, sha, actuator):
            self._in_sync[env] = fingerprint
            # Seen by an actuator that observes the cluster: each object's health as
            # listed this pass (else the status would fall back to Unknown).
            seen = ({k: ObjectOutcome(Outcome.UNCHANGED, "", kube_health.assess(live[k]))
                     for k in desired if k in live} if self._observes(env, revision) else {})
            return self._noop(env, revision, desired, inventory, source_error,
                              {**seen, **gone})
        self._in_sync.pop(env, None)
        return self._act(env, revision, actuator, plan, desired, inventory, changes,
                         source_error, gone)

    def _render(self, revision: Revision, spec_set: validate.SpecSet,
                env: str) -> tuple[KubeObject, ...]:
        """The environment's objects, rendered once per revision."""
        with self._timed(env, "render"):
            objects = revision.rendered.get(env)
            if objects is None:
                try:
                    objects = render_environment(spec_set, env,
                                                 revision=revision.snapshot.revision,
                                                 cache=self.render_cache)
                except RenderError as exc:
                    raise _Stalled("RenderFailed", str(exc)) from exc
                revision.rendered[env] = objects
            return objects

    def _finished_jobs(self, env: str, desired: Mapping[ResourceKey, KubeObject],
                       live: Mapping[ResourceKey, KubeObject]
                       ) -> dict[ResourceKey, state.FinishedJob]:
        """The Jobs seen finished, those this pass sees finishing recorded first."""
        known = state.read_finished_jobs(self.store, env)
        new = finished.seen(desired, live, known, self.clock())
        if new:
            self._ensure_leader()
            state.put_finished_jobs(self.store, env, *new)
            known.update((job.key, job) for job in new)
        return known

    def _decide(self, revision: Revision, spec_set: validate.SpecSet, env: str,
                objects: tuple[KubeObject, ...], live: Mapping[ResourceKey, KubeObject],
                inventory: Mapping[ResourceKey, state.InventoryItem], *,
                source_error: str, ended: Mapping[ResourceKey, state.FinishedJob]
                ) -> ChangeSet:
        """What the pass would do and whether it may: the decision ``llmops plan`` shares."""
        sha = revision.snapshot.revision
        gates = decide.gates_for(spec_set, env,
                                 prune_confirmed=lambda: self._prune_confirmed(env, sha),
                                 source_unavailable=bool(source_error))
        return decide.decide(
            env, objects, live, compare=decide.Compare.LIVE,
            inventory={key: item.content_hash for key, item in inventory.items()},
            gates=gates, governance=decide.Governance(spec_set, self.clock()),
            revision=sha, memo=self._memos.setdefault(env, diff.LiveMemo()),
            finished=finished.hashes(ended))

    # ------------------------------------------------------------------ act and record

    def _act(self, env: str, revision: Revision, actuator: Actuator, plan: ActPlan,
             rendered: Mapping[ResourceKey, KubeObject],
             inventory: Mapping[ResourceKey, state.InventoryItem], changes: ChangeSet,
             source_error: str, gone: Mapping[ResourceKey, ObjectOutcome]) -> PassResult:
        """Write intent, act, record the outcome. The inventory hashes the rendered form
        of each object (never the live one), so later hand edits show up as drift.
        ``gone``: the outcomes of finished Jobs not created again (they override the
        actuator's, which sees only that they are not there)."""
        sha = revision.snapshot.revision
        actor = revision.snapshot.author or "llmops"
        drifted = sorted(e.key for e in changes.drifted)
        summary = {"write": {str(k): a for k, a in list(plan.write.items())[:MAX_AUDITED_KEYS]},
                   "delete": [str(k) for k in plan.delete[:MAX_AUDITED_KEYS]],
                   "drifted": [str(k) for k in drifted[:MAX_AUDITED_KEYS]],
                   "actuator": actuator.name}
        detail = self._plan_detail(env, revision, changes)
        self._ensure_leader()
        run = record.intent(self.store, self.audit, env, sha, actor, plan, summary,
                            drifted=len(drifted), commit=record.commit_of(revision.snapshot),
                            detail=detail)
        # Widen the inventory before acting: a pass killed midway orphans nothing.
        widened = dict(inventory) | record.inventory_items(rendered, sha, self._memos.get(env))
        state.replace_inventory(self.store, env, widened.values(), current=inventory)
        with self._timed(env, "act"):
            try:
                result = actuator.act(plan) if actuator.applies else None
            except ActuatorError as exc:
                state.finish_run(self.store, run.id, RunResult.FAILED, error=str(exc))
                record.outcome(self.audit, actor, env, sha, f"environment/{env}",
                               audit.AuditResult.FAILED, str(exc))
                return self._stall(env, revision, "ApplyFailed", str(exc), run_id=run.id,
                                   source_error=source_error, record_run=False)
        outcomes = {**(result.outcomes if result else {}), **gone}
        record.object_entries(self.audit, env, sha, actor, plan, outcomes, set(drifted))
        if actuator.applies:
            final = record.final_inventory(sha, plan, rendered, widened, outcomes)
            state.replace_inventory(self.store, env, final.values(), current=widened)
            state.forget_finished_jobs(self.store, env, (
                key for key in plan.delete if key not in final))
        counts, error = record.finish(self.store, self.audit, env, sha, actor, run, plan,
                                      summary, outcomes)
        return self._finish(env, revision, run.id, counts, error, drifted=len(drifted),
                            plan=plan, outcomes=outcomes, source_error=source_error)

    def _finish(self, env: str, revision: Revision, run_id: int, counts: state.RunCounts,
                error: str, *, drifted: int, plan: ActPlan,
                outcomes: Mapping[ResourceKey, ObjectOutcome], source_error: str) -> PassResult:
        """Status and metrics after acting; the pass's result."""
        sha = revision.snapshot.revision
        ok = counts.failed == 0
        run_result = RunResult.SUCCEEDED if ok else RunResult.FAILED
        self._record_status(env, revision, plan.desired, outcomes, applied=ok,
                            reason="Applied" if ok else "ApplyFailed", message=error,
                            source_error=source_error, drifted=set())
        for action, count in counts.as_dict().items():
            self.metrics.objects(env, action, count)
        self.metrics.drifted(env, drifted)
        self.metrics.run(env, run_result.value)
        if ok:
            self.metrics.succeeded(env, sha)
            self._remember_applied(env, revision)
        return PassResult(env, sha, run_result, "Applied" if ok else "ApplyFailed", error,
                          run_id, counts)

    def _noop(self, env: str, revision: Revision, desired: Mapping[ResourceKey, KubeObject],
              inventory: Mapping[ResourceKey, state.InventoryItem],
              source_error: str, outcomes: Mapping[ResourceKey, ObjectOutcome]) -> PassResult:
        """Nothing to write: settle the inventory and record ``outcomes`` (the observed
        health of each object, and finished Jobs not created again)."""
        sha = revision.snapshot.revision
        if set(inventory) != set(desired):
            # The target already holds the revision (e.g. after a kill before the
            # final inventory was written): settle the inventory, nothing else.
            items = record.inventory_items(desired, sha, self._memos.get(env))
            state.replace_inventory(self.store, env, items.values(), current=inventory)
        self._record_status(env, revision, desired, outcomes, applied=True, reason="Applied",
                            message="", source_error=source_error, drifted=set())
        self._remember_applied(env, revision)
        return self._nothing_done(env, sha, len(desired))

    def _resynced(self, env: str, sha: str, spec_set: validate.SpecSet,
                  objects: int) -> PassResult:
        """A pass over what the last no-op pass saw: nothing compared, nothing written but
        the GPU samples of the cost report when they are due."""
        self._sample_gpus(env, spec_set)
        return self._nothing_done(env, sha, objects)

    def _nothing_done(self, env: str, sha: str, objects: int) -> PassResult:
        """The metrics and result of a pass that found ``objects`` all as wanted."""
        self.metrics.run(env, RunResult.NOOP.value)
        self.metrics.drifted(env, 0)
        self.metrics.succeeded(env, sha)
        return PassResult(env, sha, RunResult.NOOP, "Applied",
                          counts=state.RunCounts(unchanged=objects))

    def _published(self, env: str, sha: str, actuator: Actuator) -> bool:
        """Whether nothing is left to do: no writes, and the status says it is applied."""
        status = state.get_environment_status(self.store, env)
        return not actuator.applies or (status is not None and bool(
            status.last_applied_revision))

    # ------------------------------------------------------------------ the run's plan

    def _plan_detail(self, env: str, revision: Revision,
                     changes: ChangeSet) -> dict[str, Any]:
        """The run's semantic summary (against the revision last applied to ``env``) and
        its per-object diffs, as ``llmops plan`` shows them."""
        with self._timed(env, "plan"):
            return record.plan_detail(changes, self._semantic_summary(env, revision))

    def _remember_applied(self, env: str, revision: Revision) -> None:
        if revision.spec_set is not None:
            self._applied[env] = (revision.snapshot.revision, revision.spec_set)

    def _semantic_summary(self, env: str,
                          revision: Revision) -> tuple[planner.SpecChange, ...] | None:
        """The spec changes since the revision last applied to ``env`` (everything is
        created when none was). That revision's specs are remembered by this process, or
        read from the source; None when it cannot be read: no summary, never a wrong one."""
        head = revision.spec_set
        if head is None:
            return None
        status = state.get_environment_status(self.store, env)
        applied = status.last_applied_revision if status is not None else ""
        remembered = self._applied.get(env)
        if not applied:
            base = None
        elif remembered is not None and remembered[0] == applied:
            base = remembered[1]
        else:
            try:
                snapshot = self.source.snapshot_at(applied)
                base = validate.validate(self.source.load(snapshot, cache=self.cache))
            except (LlmopsError, OSError) as exc:
                log.info("%s: no semantic summary: revision %s unreadable: %s", env,
                         applied[:12], exc)
                return None
            self._applied[env] = (applied, base)
        return planner.environment_spec_changes(base, head, env)

    # ------------------------------------------------------------------ failures

    def _stall(self, env: str, revision: Revision, reason: str, message: str, *,
               run_id: int | None = None, source_error: str = "",
               record_run: bool = True) -> PassResult:
        return self._halt(env, revision.snapshot, RunResult.FAILED, reason, message,
                          run_id=run_id, source_error=source_error, record_run=record_run)

    def _block(self, env: str, revision: Revision, reason: str, message: str) -> PassResult:
        return self._halt(env, revision.snapshot, RunResult.BLOCKED, reason, message)

    def _stall_without_revision(self, env: str, reason: str, message: str) -> PassResult:
        record.close_interrupted(self.store, self.audit, env)
        return self._halt(env, None, RunResult.FAILED, reason, message, source_error=message)

    def _halt(self, env: str, snapshot: Snapshot | None, result: RunResult, reason: str,
              message: str, *, run_id: int | None = None, source_error: str = "",
              record_run: bool = True) -> PassResult:
        """Record a pass that acted on nothing; the same halt twice is recorded once."""
        sha = snapshot.revision if snapshot else ""
        recorded = record.halt(self.store, self.audit, env, snapshot, result, reason, message,
                               now=self.clock(), source_error=source_error,
                               record_run=record_run)
        self.metrics.run(env, result.value)
        # INFO: the result carries it, and its caller (the daemon's report, the CLI) says it.
        log.info("%s: %s at %s: %s", env, reason, sha[:12] or "-", message.splitlines()[0]
                 if message else "")
        return PassResult(env, sha, result, reason, message,
                          recorded if recorded is not None else run_id)

    def _prune_confirmed(self, env: str, sha: str) -> bool:
        if self.confirm_prune:
            return True
        page = self.audit.query(action=CONFIRM_ACTION, environment=env, limit=50)
        return any(e.source_commit == sha for e in page.entries)

    # ------------------------------------------------------------------ helpers

    def _observes(self, env: str, revision: Revision) -> bool:
        """Whether the environment's actuator can see the cluster (has a health probe)."""
        config = (revision.spec_set.config.environments.get(env)
                  if revision.spec_set is not None else None)
        return config is not None and getattr(self.actuator_for(env, config), "health",
                                              None) is not None

    def _record_status(self, env: str, revision: Revision,
                       objects: Mapping[ResourceKey, KubeObject],
                       outcomes: Mapping[ResourceKey, ObjectOutcome], *, applied: bool,
                       reason: str, message: str, source_error: str,
                       drifted: set[ResourceKey]) -> None:
        """Object, spec and environment status after a pass that acted (or had nothing to)."""
        sha = revision.snapshot.revision
        now = self.clock()
        record.object_status(self.store, env, sha if applied else "", objects, outcomes,
                             drifted, self._spec_status,
                             unassessed=HealthStatus.UNKNOWN if self._observes(env, revision)
                             else HealthStatus.NOT_OBSERVED)
        record.environment_status(self.store, env, sha, applied=applied, reason=reason,
                                  message=message, source_error=source_error, now=now,
                                  commit=record.commit_of(revision.snapshot))
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
        # A training job holds its GPUs while its Job runs (assessed Progressing).
        running = {s.key.name for s in state.list_spec_status(
            self.store, environment=env, kind=Kind.TRAINING_JOB)
            if s.health == HealthStatus.PROGRESSING}
        samples += [state.GpuSample(env, spec_set.team_of(j), j.name, j.spec.resources.gpu,
                                    1 if j.name in running else 0, at, "training")
                    for j in spec_set.of(schema.TrainingJobSpec) if j.environment == env]
        if samples:
            state.add_gpu_samples(self.store, samples)

    @contextmanager
    def _timed(self, env: str, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.metrics.stage(env, stage, time.perf_counter() - start)


# --------------------------------------------------------------------------- steps and helpers


def _declared(revision: Revision, env: str) -> tuple[validate.SpecSet, repoconfig.Environment]:
    """The revision's specs and the environment's config, or a stop: invalid or unknown."""
    if revision.spec_set is None:
        assert revision.error is not None
        raise _Stalled("ValidationFailed", str(revision.error))
    config = revision.spec_set.config.environments.get(env)
    if config is None:
        raise _Stalled("UnknownEnvironment",
                       f"environment {env!r} is not declared in llmops.yaml")
    return revision.spec_set, config


def _observe(actuator: Actuator, env: str) -> Mapping[ResourceKey, KubeObject]:
    """What the target holds now, or a stop: unknown is never empty."""
    try:
        return actuator.observe(env)
    except ActuatorError as exc:
        raise _Stalled("ObserveFailed", str(exc)) from exc


def confirm_prune(store: Store, env: str, revision: str, actor: str) -> None:
    """Record a confirmation that lets ``revision`` prune past the threshold in ``env``."""
    audit.AuditLog(store).append(audit.AuditEntry(
        actor=actor, action=CONFIRM_ACTION, target=f"environment/{env}", environment=env,
        source_commit=revision, result=audit.AuditResult.SUCCEEDED,
        reason="mass prune confirmed"))
