"""The govern stage: Policy specs -> allow/deny verdicts for one environment of a revision.

Input: a validated ``SpecSet``, an environment, the keys of the specs whose
objects change there, and the time of the check. Output: ``Verdict`` values,
one per rule and subject, each allow or deny with a reason a reviewer can act
on. Any deny fails the plan (and blocks the apply). Called by
``llmops.engine.plan.planner`` and by the reconciler before it applies.

Rules, from every Policy document of the revision merged together:

- promotion: in an environment with a promotion rule, an endpoint's model
  must be at ``requireStage`` and, with ``requirePriorEnvironment``, be served
  there already (an endpoint of that environment with the same model name and
  version, in the same revision);
- data classification: a model or dataset of a class may be used (by an
  endpoint or a training job) only in the environments listed for the class;
  a class no policy lists is allowed everywhere; when several policies list
  the same class, an environment must be allowed by all of them;
- GPU budget: a team's GPUs in the environment (``resources.gpu x
  replicas.max`` per endpoint plus ``resources.gpu`` per training job) must
  fit its budget; a team without a budget there is not limited;
- change windows: in an environment that has windows, a change is accepted
  only inside one (weekday and local start/end in the window's time zone;
  an end before the start spans midnight and belongs to the day it started).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from llmops.engine.spec import schema
from llmops.engine.spec.validate import SpecSet
from llmops.engine.types import SpecKey

_WEEKDAYS = tuple(schema.Weekday)  # Monday first, as datetime.weekday() counts


class Decision(StrEnum):
    ALLOW = "allow"
    DENY = "deny"


class Rule(StrEnum):
    PROMOTION = "promotion"
    DATA_CLASSIFICATION = "data-classification"
    GPU_BUDGET = "gpu-budget"
    CHANGE_WINDOW = "change-window"


@dataclass(frozen=True, slots=True)
class Verdict:
    """One rule's decision about one spec (or, with ``spec`` None, an environment)."""

    rule: Rule
    decision: Decision
    reason: str
    spec: SpecKey | None = None
    environment: str = ""
    subject: str = ""

    @property
    def denied(self) -> bool:
        return self.decision == Decision.DENY

    @property
    def target(self) -> str:
        """What the verdict is about: the spec, else the subject (a team), else the env."""
        return str(self.spec) if self.spec is not None else (self.subject or self.environment)


@dataclass(frozen=True)
class MergedPolicy:
    """The rules of every Policy document of a revision, added up."""

    promotion: tuple[schema.PromotionRule, ...] = ()
    classification: dict[str, frozenset[str]] = field(default_factory=dict)
    budgets: dict[tuple[str, str], schema.GpuBudget] = field(default_factory=dict)
    windows: tuple[schema.ChangeWindow, ...] = ()

    def windows_for(self, env: str) -> tuple[schema.ChangeWindow, ...]:
        return tuple(w for w in self.windows if env in w.environments)


def merge_policies(spec_set: SpecSet) -> MergedPolicy:
    promotion: list[schema.PromotionRule] = []
    classification: dict[str, frozenset[str]] = {}
    budgets: dict[tuple[str, str], schema.GpuBudget] = {}
    windows: list[schema.ChangeWindow] = []
    for policy in spec_set.policies():
        body = policy.spec
        promotion.extend(body.promotion)
        for cls, envs in body.dataClassification.items():
            allowed = frozenset(envs)
            key = str(cls)
            classification[key] = classification[key] & allowed if key in classification \
                else allowed
        for budget in body.gpuBudgets:
            budgets.setdefault((budget.team, budget.environment), budget)
        windows.extend(body.changeWindows)
    return MergedPolicy(tuple(promotion), classification, budgets, tuple(windows))


# --------------------------------------------------------------------------- promotion


def _promotion(spec_set: SpecSet, env: str, policy: MergedPolicy) -> list[Verdict]:
    rules = [r for r in policy.promotion if r.environment == env]
    if not rules:
        return []
    out: list[Verdict] = []
    for endpoint in spec_set.of(schema.ServingEndpointSpec):
        if endpoint.environment != env:
            continue
        ref = endpoint.spec.modelRef
        model = spec_set.model(ref)
        problems: list[str] = []
        for rule in rules:
            stage = model.spec.stage if model else None
            if stage != rule.requireStage:
                problems.append(f"model {ref} is {stage or 'not defined'}, {env} requires "
                                f"{rule.requireStage}")
            prior = rule.requirePriorEnvironment
            if prior and not any(
                e.environment == prior and e.spec.modelRef == ref
                for e in spec_set.of(schema.ServingEndpointSpec)
            ):
                problems.append(f"model {ref} does not run in {prior} (no {prior} endpoint "
                                f"serves it), {env} requires it to run there first")
        if problems:
            out.append(Verdict(Rule.PROMOTION, Decision.DENY, "; ".join(problems),
                               endpoint.key, env))
        else:
            needs = " and ".join(
                f"{r.requireStage}" + (f", runs in {r.requirePriorEnvironment}"
                                       if r.requirePriorEnvironment else "")
                for r in rules)
            out.append(Verdict(Rule.PROMOTION, Decision.ALLOW,
                               f"model {ref} is {needs}", endpoint.key, env))
    return out


# --------------------------------------------------------------------------- classification


def _classification(spec_set: SpecSet, env: str, policy: MergedPolicy) -> list[Verdict]:
    if not policy.classification:
        return []
    out: list[Verdict] = []

    def check(subject: SpecKey, used: list[tuple[str, str]]) -> None:
        denied = [f"{what} is {cls}, allowed only in "
                  f"{', '.join(sorted(policy.classification[cls])) or 'no environment'}"
                  for what, cls in used
                  if cls in policy.classification and env not in policy.classification[cls]]
        if denied:
            out.append(Verdict(Rule.DATA_CLASSIFICATION, Decision.DENY, "; ".join(denied),
                               subject, env))
        else:
            shown = ", ".join(f"{what} is {cls}" for what, cls in used)
            out.append(Verdict(Rule.DATA_CLASSIFICATION, Decision.ALLOW,
                               f"{shown}: allowed in {env}", subject, env))

    for endpoint in spec_set.of(schema.ServingEndpointSpec):
        if endpoint.environment == env:
            model = spec_set.model(endpoint.spec.modelRef)
            if model is not None:
                check(endpoint.key, [(f"model {endpoint.spec.modelRef}",
                                      str(model.spec.dataClassification))])
    for job in spec_set.of(schema.TrainingJobSpec):
        if job.environment == env:
            used: list[tuple[str, str]] = []
            model = spec_set.model(job.spec.baseModelRef)
            if model is not None:
                used.append((f"model {job.spec.baseModelRef}", str(model.spec.dataClassification)))
            dataset = spec_set.dataset(job.spec.datasetRef)
            if dataset is not None:
                used.append((f"dataset {dataset.name}", str(dataset.spec.dataClassification)))
            if used:
                check(job.key, used)
    return out


# --------------------------------------------------------------------------- GPU budgets


def team_gpus(spec_set: SpecSet, env: str) -> dict[str, int]:
    """GPUs per team in ``env`` as budgets count them: endpoints at replicas.max, plus jobs."""
    used: dict[str, int] = {}
    for endpoint in spec_set.of(schema.ServingEndpointSpec):
        if endpoint.environment == env:
            team = spec_set.team_of(endpoint)
            gpus = endpoint.spec.resources.gpu * endpoint.spec.replicas.max
            used[team] = used.get(team, 0) + gpus
    for job in spec_set.of(schema.TrainingJobSpec):
        if job.environment == env:
            team = spec_set.team_of(job)
            used[team] = used.get(team, 0) + job.spec.resources.gpu
    return used


def _budgets(spec_set: SpecSet, env: str, policy: MergedPolicy) -> list[Verdict]:
    used = team_gpus(spec_set, env)
    out: list[Verdict] = []
    for (team, budget_env), budget in sorted(policy.budgets.items()):
        if budget_env != env:
            continue
        gpus = used.get(team, 0)
        decision = Decision.DENY if gpus > budget.gpus else Decision.ALLOW
        verb = "is over" if gpus > budget.gpus else "fits"
        out.append(Verdict(Rule.GPU_BUDGET, decision,
                           f"team {team} uses {gpus} GPUs in {env} (endpoints at replicas.max "
                           f"plus training jobs), {verb} its budget of {budget.gpus}",
                           None, env, f"team {team}"))
    return out


# --------------------------------------------------------------------------- change windows


def in_window(window: schema.ChangeWindow, now: datetime) -> bool:
    """Whether ``now`` (naive means UTC) falls inside ``window``."""
    aware = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
    local = aware.astimezone(ZoneInfo(window.timezone))
    clock = local.time().replace(tzinfo=None)
    days = set(window.days)
    today = _WEEKDAYS[local.weekday()]
    if window.start < window.end:
        return today in days and window.start <= clock < window.end
    # Overnight: the part after midnight belongs to the previous day's window.
    yesterday = _WEEKDAYS[(local - timedelta(days=1)).weekday()]
    return (today in days and clock >= window.start) or (
        yesterday in days and clock < window.end)


def describe_window(window: schema.ChangeWindow) -> str:
    return (f"{','.join(window.days)} {window.start:%H:%M}-{window.end:%H:%M} "
            f"{window.timezone}")


def next_open(windows: Collection[schema.ChangeWindow], now: datetime) -> datetime | None:
    """The first moment after ``now`` inside one of ``windows`` (in that window's time
    zone), or None when there is none within a week (no days listed)."""
    aware = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
    starts: list[datetime] = []
    for window in windows:
        zone = ZoneInfo(window.timezone)
        local = aware.astimezone(zone)
        for offset in range(8):
            day = (local + timedelta(days=offset)).date()
            start = datetime.combine(day, window.start, tzinfo=zone)
            if _WEEKDAYS[day.weekday()] in window.days and start > aware:
                starts.append(start)
                break
    return min(starts, default=None)


def _windows(env: str, changed: Collection[SpecKey], now: datetime,
             policy: MergedPolicy) -> list[Verdict]:
    windows = policy.windows_for(env)
    if not windows or not changed:
        return []
    open_window = next((w for w in windows if in_window(w, now)), None)
    stamp = (now if now.tzinfo else now.replace(tzinfo=UTC)).isoformat(timespec="minutes")
    shown = "; ".join(describe_window(w) for w in windows)
    reopens = next_open(windows, now) if open_window is None else None
    then = f"; next opens {reopens:%a %Y-%m-%d %H:%M} {reopens.tzname()}" if reopens else ""
    out: list[Verdict] = []
    for key in sorted(changed):
        if open_window is not None:
            out.append(Verdict(Rule.CHANGE_WINDOW, Decision.ALLOW,
                               f"{stamp} is inside the {env} change window "
                               f"{describe_window(open_window)}", key, env))
        else:
            # No clock reading in a denial: it stays the same text pass after pass while
            # the window is shut, so the reconciler records the blocked revision once.
            out.append(Verdict(Rule.CHANGE_WINDOW, Decision.DENY,
                               f"outside every {env} change window ({shown}){then}",
                               key, env))
    return out


# --------------------------------------------------------------------------- entry point


def evaluate(spec_set: SpecSet, environment: str, *, changed: Collection[SpecKey] = (),
             now: datetime | None = None,
             policy: MergedPolicy | None = None) -> tuple[Verdict, ...]:
    """Every verdict for ``environment`` of ``spec_set``; ``changed`` feeds the change windows."""
    merged = policy if policy is not None else merge_policies(spec_set)
    moment = now if now is not None else datetime.now(UTC)
    return (
        *_promotion(spec_set, environment, merged),
        *_classification(spec_set, environment, merged),
        *_budgets(spec_set, environment, merged),
        *_windows(environment, changed, moment, merged),
    )


def denied(verdicts: Collection[Verdict]) -> tuple[Verdict, ...]:
    return tuple(v for v in verdicts if v.denied)
