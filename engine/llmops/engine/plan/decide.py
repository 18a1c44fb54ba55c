"""The decision: an environment's desired objects against what is there -> a gated ``ChangeSet``.

One function, ``decide``, answers "what would change here, and may it?" for
both callers, so ``llmops plan`` and the reconciler cannot disagree:

- ``llmops.engine.plan.planner`` compares the head revision's objects with the
  base revision's (``Compare.REVISION``: symmetric, removed fields count),
  passes the head's ``Governance`` and no other gate, and prints the result;
- the reconciler (``llmops.engine.run.reconciler``) compares the rendered
  objects with the live/published ones (``Compare.LIVE``: only the fields git
  sets count, as server-side apply), passes the inventory and every gate
  (``gates_for``), and executes and records the result.

Input: the environment, the desired objects, the current ones by key, the
comparison mode, the inventory (content hash of each object as last applied),
``Gates`` and ``Governance``. Output: a ``ChangeSet`` with one entry per
``ResourceKey``: created / configured / unchanged / deleted, or skipped with a
reason ("prune-protected", "kept: source unavailable", or ``FINISHED``: a Job
recorded finished that is gone, e.g. deleted by its ``ttlSecondsAfterFinished``,
and would otherwise be created, and so run, again); ``configured`` entries
whose rendered form has not changed since the last apply are marked drifted.
Objects owned (current or in the inventory) but no longer desired are the
deletions. The change set carries the policy verdicts, and ``blocked`` when
the environment must not act at all, checked in this order:

- ``EmptyRevision``: nothing desired in an environment that has objects,
  unless it sets ``allowEmpty`` (unknown is never empty);
- ``PruneThreshold``: deleting more than ``maxPrunePercent`` of the owned
  objects, unless the revision's prune was confirmed;
- ``PolicyDenied``: a policy denies, and something would change.

Pure apart from ``Gates.prune_confirmed``, a query asked only when a prune
passes the threshold.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from llmops.engine import manifest
from llmops.engine.plan import diff, govern
from llmops.engine.plan.changeset import (
    ACTING,
    Action,
    Blocked,
    BlockReason,
    ChangeSet,
    ChangeSetEntry,
)
from llmops.engine.spec import schema
from llmops.engine.spec.validate import SpecSet
from llmops.engine.types import KubeObject, ResourceKey, SpecKey, content_hash

PROTECTED = "prune-protected"
SOURCE_UNAVAILABLE = "kept: source unavailable"
FINISHED = "finished: not run again"


class Compare(StrEnum):
    """How the desired side is held against the current one."""

    LIVE = "live"
    """Against live objects: only fields the desired object sets count (server-side apply)."""
    REVISION = "revision"
    """Against another revision's objects: symmetric, removed fields count."""


def _unconfirmed() -> bool:
    return False


@dataclass(frozen=True, slots=True)
class Gates:
    """What narrows deletions or stops an environment. The defaults gate nothing (a plan)."""

    protect: bool = False
    """Skip prune-protected deletions (annotation, label or one of ``protection_rules``)."""
    protection_rules: tuple[schema.PruneProtection, ...] = ()
    allow_empty: bool = True
    max_prune_percent: int = 100
    prune_confirmed: Callable[[], bool] = _unconfirmed
    """Whether this revision's prune past the threshold was confirmed (asked lazily)."""
    source_unavailable: bool = False
    """The source could not be fetched: acting on the last good revision, delete nothing."""


@dataclass(frozen=True, slots=True)
class Governance:
    """The policies to check: those of ``spec_set`` (the revision being decided) at ``now``."""

    spec_set: SpecSet
    now: datetime
    policy: govern.MergedPolicy | None = None
    """The merged Policy documents of ``spec_set``, when the caller has them already."""
    also_changed: frozenset[SpecKey] = frozenset()
    """Specs that change although none of their objects do (for the change windows)."""


def gates_for(spec_set: SpecSet, env: str, *, prune_confirmed: Callable[[], bool],
              source_unavailable: bool = False) -> Gates:
    """Every gate ``spec_set`` declares for ``env``: what the reconciler decides with."""
    rules = tuple(r for p in spec_set.policies() for r in p.spec.pruneProtection)
    return Gates(protect=True, protection_rules=rules,
                 allow_empty=spec_set.config.allow_empty(env),
                 max_prune_percent=spec_set.config.max_prune_percent(env),
                 prune_confirmed=prune_confirmed, source_unavailable=source_unavailable)


def object_hash(obj: KubeObject) -> str:
    """Content hash of an object without the per-commit bookkeeping annotations."""
    return content_hash(diff.normalize(obj, ignore_annotations=manifest.REVISION_BOOKKEEPING))


def run_hash(obj: KubeObject) -> str:
    """Content hash of what a Job runs: its pod template (immutable on a Job). Metadata and
    mutable fields (``ttlSecondsAfterFinished``) are left out: changing them runs nothing."""
    spec = obj.get("spec") or {}
    return content_hash(spec.get("template") if isinstance(spec, dict) else None)


def protected(obj: KubeObject | None, env: str, rules: Sequence[schema.PruneProtection],
              key: ResourceKey) -> bool:
    """Whether a prune must keep the object: marked on the object itself, or by a rule."""
    if manifest.prune_protected(obj):
        return True
    for rule in rules:
        if (not rule.environments or env in rule.environments) and (
                not rule.kinds or key.kind in rule.kinds):
            return True
    return False


# --------------------------------------------------------------------------- steps


def _compare(desired: Sequence[KubeObject], current: Mapping[ResourceKey, KubeObject],
             compare: Compare, memo: diff.LiveMemo | None
             ) -> dict[ResourceKey, ChangeSetEntry]:
    """Entries for every desired object (and, between revisions, every dropped one)."""
    if compare is Compare.REVISION:
        changes = diff.diff_revisions(current.values(), desired)
    else:
        keys = [ResourceKey.of(o) for o in desired]
        changes = diff.diff_live(desired, [current[k] for k in keys if k in current],
                                 default_namespace="",
                                 ignore_annotations=manifest.REVISION_BOOKKEEPING, memo=memo)
    return {e.key: e for e in changes.entries}


def _dropped(key: ResourceKey, obj: KubeObject | None) -> ChangeSetEntry:
    """A deletion of an owned object no longer desired (``obj`` None: known only to the
    inventory)."""
    before = None if obj is None else diff.mask(
        diff.normalize(obj, ignore_annotations=manifest.REVISION_BOOKKEEPING))
    return ChangeSetEntry(key, Action.DELETED, before=before)


def _narrow(entry: ChangeSetEntry, env: str, obj: KubeObject | None,
            gates: Gates) -> ChangeSetEntry:
    """A deletion as the gates let it be: skipped when protected or the source is unknown."""
    if gates.protect and protected(obj, env, gates.protection_rules, entry.key):
        return replace(entry, action=Action.SKIPPED, reason=PROTECTED)
    if gates.source_unavailable:
        return replace(entry, action=Action.SKIPPED, reason=SOURCE_UNAVAILABLE)
    return entry


def _mark_drift(entry: ChangeSetEntry, desired: KubeObject | None,
                inventory: Mapping[ResourceKey, str]) -> ChangeSetEntry:
    """Drift: configured, although the rendered form is the one last applied."""
    if (entry.action is Action.CONFIGURED and desired is not None and entry.key in inventory
            and inventory[entry.key] == object_hash(desired)):
        return replace(entry, drifted=True)
    return entry


def _not_again(entry: ChangeSetEntry, desired: KubeObject | None,
               finished: Mapping[ResourceKey, str]) -> ChangeSetEntry:
    """A creation of a Job that already ran this pod template to the end: skipped."""
    if (entry.action is Action.CREATED and desired is not None and entry.key in finished
            and finished[entry.key] == run_hash(desired)):
        return replace(entry, action=Action.SKIPPED, reason=FINISHED)
    return entry


def _verdicts(env: str, entries: Collection[ChangeSetEntry],
              governance: Governance | None) -> tuple[govern.Verdict, ...]:
    if governance is None:
        return ()
    changed = {manifest.owner_key(e.owner, env) for e in entries if e.action in ACTING}
    return govern.evaluate(governance.spec_set, env, changed=changed | governance.also_changed,
                           now=governance.now, policy=governance.policy)


def _blocked(env: str, revision: str, entries: Collection[ChangeSetEntry], *, desired: int,
             owned: int, gates: Gates, verdicts: Sequence[govern.Verdict]) -> Blocked | None:
    """Why the environment must not act, or None: the first gate that stops it."""
    deleted = sum(1 for e in entries if e.action is Action.DELETED)
    limit = gates.max_prune_percent
    if not desired and owned and not gates.allow_empty:
        return Blocked(BlockReason.EMPTY_REVISION,
                       f"the revision renders no objects for {env} and would delete all "
                       f"{owned}; set allowEmpty to allow it")
    if deleted and deleted * 100 > limit * owned and not gates.prune_confirmed():
        return Blocked(BlockReason.PRUNE_THRESHOLD,
                       f"would delete {deleted} of {owned} objects "
                       f"({deleted * 100 // owned}% > maxPrunePercent {limit}%); confirm with "
                       f"`llmops prune confirm --env {env} --revision {revision}`")
    denied = govern.denied(verdicts)
    if denied and any(e.action in ACTING for e in entries):
        return Blocked(BlockReason.POLICY_DENIED, denial_summary(denied))
    return None


def denial_summary(denied: Sequence[govern.Verdict]) -> str:
    """Denied verdicts as one line each rule and reason (a change window denies every
    changed spec for the same reason: it is said once, with the specs it stops)."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for v in denied:
        grouped.setdefault((v.rule, v.reason), []).append(v.target)
    parts = []
    for (rule, reason), targets in grouped.items():
        shown = ", ".join(targets[:3]) + (f" and {len(targets) - 3} more"
                                          if len(targets) > 3 else "")
        parts.append(f"{rule}: {reason} (for {shown})")
    return "; ".join(parts)


# --------------------------------------------------------------------------- entry point


def decide(env: str, desired: Iterable[KubeObject], current: Mapping[ResourceKey, KubeObject],
           *, compare: Compare, inventory: Mapping[ResourceKey, str] | None = None,
           gates: Gates = Gates(), governance: Governance | None = None,
           revision: str = "", memo: diff.LiveMemo | None = None,
           finished: Mapping[ResourceKey, str] | None = None) -> ChangeSet:
    """What ``env`` would do to reach ``desired`` from ``current``, and whether it may.

    ``inventory`` maps each owned object to the content hash (``object_hash``)
    of its rendered form as last applied; ``revision`` is the one being
    decided (named in a threshold block); ``memo`` (``Compare.LIVE`` only)
    carries the unchanged objects of the caller's last decision over; ``finished``
    maps each Job seen finished to the ``run_hash`` it ran.
    """
    wanted = tuple(desired)
    by_key = {ResourceKey.of(o): o for o in wanted}
    entries = _compare(wanted, current, compare, memo)
    owned = set(current) | set(inventory or {})
    entries |= {k: _dropped(k, current.get(k)) for k in sorted(owned) if k not in entries}
    for key, entry in entries.items():
        if entry.action is Action.DELETED:
            entries[key] = _narrow(entry, env, current.get(key), gates)
        elif entry.action is Action.CREATED and finished:
            entries[key] = _not_again(entry, by_key.get(key), finished)
        elif inventory:
            entries[key] = _mark_drift(entry, by_key.get(key), inventory)
    ordered = tuple(entries[k] for k in sorted(entries, key=diff.entry_order))
    verdicts = _verdicts(env, ordered, governance)
    blocked = _blocked(env, revision, ordered, desired=len(by_key), owned=len(owned),
                       gates=gates, verdicts=verdicts)
    return ChangeSet(ordered, blocked, verdicts)
