"""Admission: the policy verdicts of a write, before it is committed.

Role: every write use case (``WriteService`` and what builds on it: creates,
uploads) commits a spec edit; before that commit, ``writeback`` hands the
spec set as it would be after the edit (and, on demand, the one before it)
to ``admit``, which runs what ``llmops plan`` runs for the environments the
edit affects (``planner.build_plan``: the render, ``decide.decide`` and the
``govern`` verdicts), so a write and the plan of its branch cannot disagree:

- the affected environments: the spec's own for an environment-scoped spec,
  every environment for a global one (a Model's stage reaches every endpoint
  that serves it);
- a denial the edit brings is refused (``PolicyDenied``, a ``Forbidden``
  naming the rule and its reason; nothing is committed): one the spec set
  did not have before the edit, with the same rule, subject and reason; a
  GPU budget denial counts only when the edit adds GPUs to the team, so a
  write that shrinks an over-budget team is accepted;
- change windows gate applying, not proposing (as Argo CD's sync windows
  gate syncs, not commits): a change outside its environment's window is
  accepted with a note saying the apply waits for the window; so is a denial
  that was there before the edit (a note: the environment stays blocked);
- an edited spec set that does not render is refused (``Unrenderable``, an
  ``InvalidInput``): the reconciler would apply nothing from it.

Input: the edited spec's key, the time (``clock``). Output: the notes for the
answer (``WriteResult.notes``). Caller: ``llmops.engine.service.writes``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from llmops.engine import errors
from llmops.engine.plan import decide, govern, planner
from llmops.engine.source import writeback
from llmops.engine.spec.validate import SpecSet
from llmops.engine.types import SpecKey


class PolicyDenied(errors.Forbidden):
    """A policy denies the spec set the write would make; ``details["verdicts"]`` lists why."""


class Unrenderable(errors.InvalidInput):
    """The edited spec set does not render for an environment the write affects."""


def _environments(key: SpecKey, after: SpecSet) -> list[str]:
    if key.environment:
        return [key.environment] if key.environment in after.config.environments else []
    return list(after.config.environments)


def _plan(before: SpecSet | None, after: SpecSet, envs: Sequence[str],
          now: datetime) -> planner.Plan:
    """``llmops plan`` of the edit; a base that does not render counts as empty."""
    try:
        return planner.build_plan(before, after, envs, now)
    except planner.PlanError:
        if before is None:
            raise
    return planner.build_plan(None, after, envs, now)


def _team_gpus(spec_set: SpecSet | None, env: str) -> dict[str, int]:
    """GPUs per budget subject (``team <name>``, as ``govern`` names it) in ``env``."""
    if spec_set is None:
        return {}
    return {f"team {team}": n for team, n in govern.team_gpus(spec_set, env).items()}


def _brought(env: str, verdicts: Sequence[govern.Verdict], before: SpecSet | None,
             after: SpecSet, now: datetime) -> tuple[govern.Verdict, ...]:
    """The denials of ``verdicts`` (all but change windows) the edit brings to ``env``."""
    known: set[tuple[str, str, str]] = set()
    if before is not None and env in before.config.environments:
        known = {(v.rule, v.target, v.reason)
                 for v in govern.evaluate(before, env, now=now) if v.denied}
    used_before, used_after = _team_gpus(before, env), _team_gpus(after, env)
    return tuple(
        v for v in govern.denied(verdicts)
        if v.rule is not govern.Rule.CHANGE_WINDOW
        and (v.rule, v.target, v.reason) not in known
        and not (v.rule is govern.Rule.GPU_BUDGET
                 and used_after.get(v.target, 0) <= used_before.get(v.target, 0)))


def _notes(env: str, blocking: Sequence[govern.Verdict],
           brought: Sequence[govern.Verdict]) -> list[str]:
    """What the accepted write will meet when it is applied in ``env``."""
    windows = [v for v in blocking if v.rule is govern.Rule.CHANGE_WINDOW]
    earlier = [v for v in blocking if v.rule is not govern.Rule.CHANGE_WINDOW
               and v not in brought]
    out = []
    if windows:
        out.append(f"{env}: {decide.denial_summary(windows)}: the commit is accepted; "
                   "applying it waits for the window")
    if earlier:
        out.append(f"{env}: already denied before this write, so {env} stays blocked "
                   f"until it is fixed: {decide.denial_summary(earlier)}")
    return out


def check(key: SpecKey, before: Callable[[], SpecSet | None], after: SpecSet,
          now: datetime) -> tuple[str, ...]:
    """Refuse the edit that makes ``after`` (see the module docstring), else its notes."""
    envs = _environments(key, after)
    if not envs:
        return ()
    base = before()
    try:
        plan = _plan(base, after, envs, now)
    except planner.PlanError as exc:
        raise Unrenderable(f"{exc}; nothing was committed", details={"spec": str(key)}) from None
    notes: list[str] = []
    denials: list[govern.Verdict] = []
    for env_plan in plan.environments:
        brought = _brought(env_plan.environment, env_plan.verdicts, base, after, now)
        denials += brought
        notes += _notes(env_plan.environment, env_plan.blocking, brought)
    if denials:
        raise PolicyDenied(
            f"policy denies this write of {key}: {decide.denial_summary(denials)}; "
            "nothing was committed",
            details={"verdicts": [{"rule": str(v.rule), "environment": v.environment,
                                   "target": v.target, "reason": v.reason}
                                  for v in denials]})
    return tuple(notes)


def admit_for(key: SpecKey, clock: Callable[[], datetime]) -> writeback.Admit:
    """The ``writeback.Admit`` check of a write of ``key`` at ``clock()``."""
    return lambda before, after: check(key, before, after, clock())
