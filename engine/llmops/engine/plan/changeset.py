"""The vocabulary of a decision: ``ChangeSet`` of ``ChangeSetEntry`` keyed by ``ResourceKey``.

Input: nothing; these are value types. Output: what the plan stage hands on.
``llmops.engine.plan.diff`` fills entries with the field-level changes between
two sides (``created``, ``configured``, ``deleted``, ``unchanged``);
``llmops.engine.plan.decide`` adds what the gates make of them (``skipped``
with a reason, drift) and an environment-level ``Blocked`` reason with the
policy verdicts. Read by ``llmops plan`` (printed), the reconciler (executed
and recorded) and the kubernetes actuator (one entry per server-side dry run).

Entries hold normalised, secret-masked copies of both sides: safe to print.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import yaml

from llmops.engine import manifest
from llmops.engine.plan import govern
from llmops.engine.types import KubeObject, ResourceKey


class Action(StrEnum):
    """What happens (or would happen) to one object, in the past tense."""

    CREATED = "created"
    CONFIGURED = "configured"
    DELETED = "deleted"
    UNCHANGED = "unchanged"
    SKIPPED = "skipped"
    """Git dropped it but it stays, or a finished Job is not created again
    (``ChangeSetEntry.reason`` says why)."""


ACTING = frozenset({Action.CREATED, Action.CONFIGURED, Action.DELETED})
WRITING = frozenset({Action.CREATED, Action.CONFIGURED})


class FieldOp(StrEnum):
    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"


class BlockReason(StrEnum):
    """Why an environment must not act at all (the run is recorded as blocked)."""

    EMPTY_REVISION = "EmptyRevision"
    PRUNE_THRESHOLD = "PruneThreshold"
    POLICY_DENIED = "PolicyDenied"


@dataclass(frozen=True, slots=True)
class Blocked:
    reason: BlockReason
    message: str


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One changed field; ``before``/``after`` are ``None`` when absent, ``***`` when secret."""

    path: str
    op: FieldOp
    before: Any
    after: Any
    sensitive: bool = False

    @property
    def multiline(self) -> bool:
        """Whether both sides are text and one spans lines (worth a line diff)."""
        return (isinstance(self.before, str) and isinstance(self.after, str)
                and not self.sensitive and "\n" in self.before + self.after)

    def text_diff(self) -> list[str]:
        """Line diff of a multi-line text change, without headers."""
        if not self.multiline:
            return []
        lines = difflib.unified_diff(str(self.before).splitlines(),
                                     str(self.after).splitlines(), lineterm="", n=1)
        return [line for line in lines if not line.startswith(("---", "+++"))]

    def describe(self) -> str:
        if self.sensitive:
            return f"{self.path}: sensitive value {self.op}"
        if self.multiline:
            return f"{self.path}: text changed"
        if self.op == FieldOp.ADDED:
            return f"{self.path}: + {_short(self.after)}"
        if self.op == FieldOp.REMOVED:
            return f"{self.path}: - {_short(self.before)}"
        return f"{self.path}: {_short(self.before)} -> {_short(self.after)}"


def _short(value: Any, limit: int = 80) -> str:
    if isinstance(value, str):
        text = value if "\n" not in value else value.splitlines()[0] + " ..."
    else:
        text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
        text = text.removesuffix("\n...").removesuffix("...").strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True, slots=True)
class ChangeSetEntry:
    """One object's fate. ``before``/``after`` are normalised and masked (safe to print).

    ``reason`` says why an entry is ``skipped`` ("prune-protected", "kept:
    source unavailable"); ``drifted`` marks a ``configured`` object whose
    rendered form did not change since it was last applied: someone edited it.
    """

    key: ResourceKey
    action: Action
    changes: tuple[FieldChange, ...] = ()
    before: KubeObject | None = None
    after: KubeObject | None = None
    reason: str = ""
    drifted: bool = False

    @property
    def owner(self) -> tuple[str, str]:
        """(kind, name) of the llmops spec that rendered the object, from its labels."""
        for obj in (self.after, self.before):
            found = manifest.owner_of(obj)
            if any(found):
                return found
        return ("", "")


@dataclass(frozen=True, slots=True)
class ChangeSet:
    """One entry per object on either side, in ``diff.entry_order``.

    ``blocked`` is set when the environment must not act at all; ``verdicts``
    are the policy verdicts the decision was checked against (empty when no
    policy was evaluated).
    """

    entries: tuple[ChangeSetEntry, ...] = ()
    blocked: Blocked | None = None
    verdicts: tuple[govern.Verdict, ...] = ()

    @property
    def changed(self) -> tuple[ChangeSetEntry, ...]:
        """Entries that act: created, configured or deleted (not unchanged, not skipped)."""
        return tuple(e for e in self.entries if e.action in ACTING)

    @property
    def has_changes(self) -> bool:
        return any(e.action in ACTING for e in self.entries)

    @property
    def drifted(self) -> tuple[ChangeSetEntry, ...]:
        return tuple(e for e in self.entries if e.drifted)

    @property
    def denied(self) -> tuple[govern.Verdict, ...]:
        return govern.denied(self.verdicts)

    def counts(self) -> dict[Action, int]:
        out = dict.fromkeys(Action, 0)
        for entry in self.entries:
            out[entry.action] += 1
        return out

    def get(self, key: ResourceKey) -> ChangeSetEntry | None:
        return next((e for e in self.entries if e.key == key), None)
