"""Admission: the policy verdicts of a write, before it is committed.

Role: every write use case (``WriteService`` and what builds on it: creates,
uploads) commits a spec edit; before that commit, ``writeback`` hands the
spec set as it would be after the edit (and, on demand, the one before it)
to ``check``, which gives each environment the edit affects the verdicts
``llmops plan`` and the reconciler give it (``govern.evaluate``, which
``decide.decide`` runs), so a write and the plan of its branch cannot
disagree:

- the affected environments: the spec's own for an environment-scoped spec,
  every environment for a global one (a Model's stage reaches every endpoint
  that serves it);
- each is rendered before and after the edit (the render is the check that
  the edit renders at all: ``Unrenderable``, an ``InvalidInput``, otherwise);
  what changes there, for the change windows, is what ``decide`` counts: the
  edited spec and the owner of every object whose rendered form changes;
- a denial the edit brings is refused (``PolicyDenied``, a ``Forbidden``
  naming the rule and its reason; nothing is committed): one the spec set
  did not have before the edit, with the same rule, subject and reason; a
  GPU budget denial counts only when the edit adds GPUs to the team, so a
  write that shrinks an over-budget team is accepted;
- change windows gate applying, not proposing (as Argo CD's sync windows
  gate syncs, not commits): a change outside its environment's window is
  accepted with a note saying the apply waits for the window; so is a denial
  that was there before the edit (a note: the environment stays blocked).

Input: the edited spec's key, the spec sets, the time (``clock``). Output:
the notes for the answer (``WriteResult.notes``). Caller:
``llmops.engine.service.writes`` (through ``writeback.Admit``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from llmops import renderers
from llmops.engine import errors, manifest
from llmops.engine.plan import decide, govern
from llmops.engine.source import writeback
from llmops.engine.spec.validate import SpecSet
from llmops.engine.types import KubeObject, ResourceKey, SpecKey


class PolicyDenied(errors.Forbidden):
    """A policy denies the spec set the write would make; ``details["verdicts"]`` lists why."""


class Unrenderable(errors.InvalidInput):
    """The edited spec set does not render for an environment the write affects."""


def _environments(key: SpecKey, after: SpecSet) -> list[str]:
    if key.environment:
        return [key.environment] if key.environment in after.config.environments else []
    return list(after.config.environments)


def _objects(spec_set: SpecSet | None, env: str) -> dict[ResourceKey, KubeObject]:
    """The rendered objects of ``env``; none for a spec set that lacks it or fails."""
    if spec_set is None or env not in spec_set.config.environments:
        return {}
    try:
        return {ResourceKey.of(o): o for o in renderers.render_environment(spec_set, env)}
    except renderers.RenderError:
        return {}  # the parent is not the write's doing: everything counts as changed


def _changed(key: SpecKey, env: str, before: SpecSet | None,
             after: SpecSet) -> frozenset[SpecKey]:
    """The specs the edit changes in ``env``, as ``decide`` counts them for windows."""
    try:
        head = {ResourceKey.of(o): o for o in renderers.render_environment(after, env)}
    except renderers.RenderError as exc:
        raise Unrenderable(f"{env} does not render after this edit: {exc}; nothing was "
                           "committed", details={"environment": env}) from None
    base = _objects(before, env)
    owners = {manifest.owner_of(head.get(k) or base.get(k))
              for k in head.keys() | base.keys() if head.get(k) != base.get(k)}
    changed = {manifest.owner_key(owner, env) for owner in owners if owner[0]}
    return frozenset(changed | ({key} if key.environment == env else set()))


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
    policy = govern.merge_policies(after)
    notes: list[str] = []
    denials: list[govern.Verdict] = []
    for env in envs:
        changed = _changed(key, env, base, after)
        verdicts = govern.evaluate(after, env, changed=changed, now=now, policy=policy)
        brought = _brought(env, verdicts, base, after, now)
        denials += brought
        if changed:  # as in a plan: a denial blocks an environment that changes
            notes += _notes(env, govern.denied(verdicts), brought)
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
