"""The plan: what a head revision would change against a base, per environment.

Input: a base ``SpecSet`` (``None`` for an empty repo: everything is
created), a head ``SpecSet``, the environments to plan and the time (for
change windows). Output: a ``Plan`` holding, per environment, a semantic
summary per spec in a reviewer's words ("model chat-model 1.2.0 -> 1.3.0;
replicas 2-4 -> 3-6; GPUs +2"), the object ``ChangeSet`` and the policy
verdicts of the head; the changes to global specs (models, prompt templates,
datasets, policies) once; and the GPU cost delta. ``Plan.as_dict`` is the
JSON form; the CLI prints the text and Markdown forms. Called by the
``llmops plan`` command.

The object ``ChangeSet`` comes from ``decide.decide``, the function the
reconciler decides with, comparing the head's objects with the base's
(``Compare.REVISION``) under the head's governance only: a plan reports no
prune protection, threshold or empty-revision gate (there is no target here).
Both sides render through one render cache, so a spec that the change does
not touch, nor anything it is rendered from, gives the very same objects on
both sides: they are counted unchanged without being normalised or compared
(their entries carry no before/after). ``build_plan(full=True)`` renders and
compares everything, the reference the tests hold this to.
Verdicts are those of the head revision: every rule is checked on the whole
head (a plan that keeps a violation fails), and change windows on the specs
whose objects (or env-scoped spec) change in that environment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from llmops import renderers
from llmops.engine.errors import LlmopsError
from llmops.engine.plan import changeset, cost, decide, diff, govern
from llmops.engine.spec import schema
from llmops.engine.spec.validate import SpecSet
from llmops.engine.types import Kind, KubeObject, ResourceKey, SpecKey


class PlanError(LlmopsError):
    """A revision could not be planned (rendering failed, unknown environment)."""


@dataclass(frozen=True, slots=True)
class SpecChange:
    """One spec that differs between base and head, described for a reviewer."""

    key: SpecKey
    action: changeset.Action
    title: str
    details: tuple[str, ...]

    @property
    def summary(self) -> str:
        return f"{self.title}: {'; '.join(self.details)}" if self.details else self.title

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.key.kind, "environment": self.key.environment,
                "name": self.key.name, "action": str(self.action), "title": self.title,
                "details": list(self.details), "summary": self.summary}


@dataclass(frozen=True, slots=True)
class EnvironmentPlan:
    environment: str
    specs: tuple[SpecChange, ...]
    changes: changeset.ChangeSet
    verdicts: tuple[govern.Verdict, ...]

    @property
    def has_changes(self) -> bool:
        return bool(self.specs) or self.changes.has_changes

    @property
    def denied(self) -> tuple[govern.Verdict, ...]:
        return govern.denied(self.verdicts)

    @property
    def blocking(self) -> tuple[govern.Verdict, ...]:
        """The denials that stop this environment: only when it changes (as the
        reconciler blocks only an environment with something to do). A denial where
        nothing changes is shown, and gates the next change there, not this plan."""
        return self.denied if self.has_changes else ()


@dataclass(frozen=True, slots=True)
class Plan:
    base_revision: str
    head_revision: str
    environments: tuple[EnvironmentPlan, ...]
    global_specs: tuple[SpecChange, ...]
    cost: tuple[cost.CostDelta, ...]
    now: datetime

    @property
    def has_changes(self) -> bool:
        return bool(self.global_specs) or any(e.has_changes for e in self.environments)

    @property
    def denied(self) -> tuple[govern.Verdict, ...]:
        """Denials that fail the plan: each environment's gates that environment only."""
        return tuple(v for e in self.environments for v in e.blocking)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form: stable keys, secret values masked, sorted as printed."""
        return {
            "base": {"commit": self.base_revision},
            "head": {"commit": self.head_revision},
            "evaluatedAt": self.now.isoformat(),
            "hasChanges": self.has_changes,
            "denied": bool(self.denied),
            "globalChanges": [c.as_dict() for c in self.global_specs],
            "environments": [_env_dict(e) for e in self.environments],
            "cost": _cost_dict(self.cost),
        }


def _env_dict(env: EnvironmentPlan) -> dict[str, Any]:
    return {
        "name": env.environment,
        "hasChanges": env.has_changes,
        "blocked": bool(env.blocking),
        "counts": {str(k): v for k, v in env.changes.counts().items()
                   if v or k is not changeset.Action.SKIPPED},
        "specChanges": [c.as_dict() for c in env.specs],
        "verdicts": [{"rule": str(v.rule), "decision": str(v.decision), "target": v.target,
                      "spec": str(v.spec) if v.spec else None, "reason": v.reason}
                     for v in env.verdicts],
        "objects": [{
            "id": str(e.key), "group": e.key.group, "kind": e.key.kind,
            "namespace": e.key.namespace, "name": e.key.name, "action": str(e.action),
            "owner": {"kind": e.owner[0], "name": e.owner[1]},
            "changes": [{"path": c.path, "op": str(c.op), "before": c.before, "after": c.after,
                         "sensitive": c.sensitive} for c in e.changes],
            "diff": diff.unified(e),
        } for e in env.changes.changed],
    }


def _cost_dict(rows: tuple[cost.CostDelta, ...]) -> dict[str, Any]:
    return {
        "hoursPerMonth": cost.HOURS_PER_MONTH,
        "rows": [{
            "team": r.team, "environment": r.environment,
            "gpusMin": {"base": r.base.gpus_min, "head": r.head.gpus_min,
                        "delta": r.gpus_min_delta},
            "gpusMax": {"base": r.base.gpus_max, "head": r.head.gpus_max,
                        "delta": r.gpus_max_delta},
            "pricePerGpuHour": r.head.price_per_gpu_hour,
            "monthlyMax": {"base": r.base.monthly_max, "head": r.head.monthly_max,
                           "delta": r.monthly_max_delta},
            "monthlyMin": {"base": r.base.monthly_min, "head": r.head.monthly_min,
                           "delta": r.monthly_min_delta},
        } for r in rows],
    }


# --------------------------------------------------------------------------- semantic summary


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def _show(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, str) and ("\n" in value or len(value) > 60):
        return "(text)"
    return "none" if value is None else str(value).lower() if isinstance(value, bool) \
        else str(value)


def _generic(before: dict[str, Any], after: dict[str, Any], covered: Iterable[str]) -> list[str]:
    """One phrase per changed leaf not already described (paths relative to ``spec``)."""
    fb, fa = _flat(before), _flat(after)
    skip = tuple(covered)
    out: list[str] = []
    for path in dict.fromkeys([*fb, *fa]):
        b, a = fb.get(path), fa.get(path)
        if b == a or any(path == c or path.startswith(c + ".") for c in skip):
            continue
        name = path.removeprefix("spec.")
        if isinstance(b, str) and isinstance(a, str) and ("\n" in a + b or len(a + b) > 120):
            out.append(f"{name} changed")
        elif b is None:
            out.append(f"{name} set to {_show(a)}")
        elif a is None:
            out.append(f"{name} removed (was {_show(b)})")
        else:
            out.append(f"{name} {_show(b)} -> {_show(a)}")
    return out


def _ref(ref: schema.ModelRef | None) -> str:
    return "none" if ref is None else f"{ref.name} {ref.version}"


def _ref_change(label: str, b: schema.ModelRef | None, a: schema.ModelRef | None) -> list[str]:
    if b == a:
        return []
    if b is not None and a is not None and b.name == a.name:
        return [f"{label} {a.name} {b.version} -> {a.version}"]
    return [f"{label} {_ref(b)} -> {_ref(a)}"]


def _set_change(label: str, b: Iterable[str], a: Iterable[str]) -> list[str]:
    before, after = list(b), list(a)
    added = [x for x in after if x not in before]
    removed = [x for x in before if x not in after]
    if not added and not removed:
        return [f"{label} reordered"] if before != after else []
    return [f"{label} " + ", ".join([*(f"+{x}" for x in added), *(f"-{x}" for x in removed)])]


def _autoscale(a: schema.Autoscale) -> str:
    if a.customMetric is not None:
        return f"{a.customMetric.name} at {a.customMetric.targetAverageValue}"
    if a.cpuUtilization is not None:
        return f"cpu {a.cpuUtilization}%"
    return f"queue depth {a.queue_target}"


def _endpoint(b: schema.ServingEndpointSpec, a: schema.ServingEndpointSpec) -> list[str]:
    bs, as_ = b.spec, a.spec
    out = _ref_change("model", bs.modelRef, as_.modelRef)
    if bs.replicas != as_.replicas:
        out.append(f"replicas {bs.replicas} -> {as_.replicas}")
    gpus = as_.resources.gpu * as_.replicas.max - bs.resources.gpu * bs.replicas.max
    if gpus:
        out.append(f"GPUs {gpus:+d}")
    if bs.resources.gpuType != as_.resources.gpuType:
        out.append(f"GPU type {bs.resources.gpuType or 'none'} -> {as_.resources.gpuType}")
    if bs.runtime.image_ref != as_.runtime.image_ref:
        out.append(f"image {bs.runtime.image_ref} -> {as_.runtime.image_ref}")
    out += _set_change("runtime args", bs.runtime.args, as_.runtime.args)
    changed_env = sorted(k for k in {*bs.runtime.env, *as_.runtime.env}
                         if bs.runtime.env.get(k) != as_.runtime.env.get(k))
    if changed_env:  # names only: values stay out of plans
        out.append(f"runtime env changed: {', '.join(changed_env)}")
    if bs.autoscale != as_.autoscale:
        out.append(f"autoscale {_autoscale(bs.autoscale)} -> {_autoscale(as_.autoscale)}")
    if bs.promptTemplateRef != as_.promptTemplateRef:
        out.append(f"prompt template {bs.promptTemplateRef or 'none'} -> "
                   f"{as_.promptTemplateRef or 'none'}")
    return out + _generic(b.model_dump(mode="json"), a.model_dump(mode="json"), (
        "spec.modelRef", "spec.replicas", "spec.resources.gpu", "spec.resources.gpuType",
        "spec.runtime.image",
        "spec.runtime.args", "spec.runtime.env", "spec.autoscale", "spec.promptTemplateRef"))


def _weights(variants: Sequence[schema.Variant], order: Sequence[str]) -> str:
    by_ref = {v.templateRef: v.weight for v in variants}
    return "/".join(str(by_ref.get(ref, 0)) for ref in order)


def _experiment(b: schema.PromptExperimentSpec, a: schema.PromptExperimentSpec) -> list[str]:
    bs, as_ = b.spec, a.spec
    out: list[str] = []
    b_refs = [v.templateRef for v in bs.variants]
    a_refs = [v.templateRef for v in as_.variants]
    if set(b_refs) != set(a_refs):
        out.append(f"variants {', '.join(b_refs)} -> {', '.join(a_refs)}")
        out.append(f"weights {'/'.join(str(v.weight) for v in bs.variants)} -> "
                   f"{'/'.join(str(v.weight) for v in as_.variants)}")
    elif bs.variants != as_.variants:
        before, after = _weights(bs.variants, a_refs), _weights(as_.variants, a_refs)
        if before != after:
            out.append(f"weights {before} -> {after} ({'/'.join(a_refs)})")
    if bs.state != as_.state or bs.winner != as_.winner:
        won = f" (winner {as_.winner})" if as_.winner else ""
        out.append(f"state {bs.state} -> {as_.state}{won}" if bs.state != as_.state
                   else f"winner {bs.winner} -> {as_.winner}")
    return out + _generic(b.model_dump(mode="json"), a.model_dump(mode="json"),
                          ("spec.variants", "spec.state", "spec.winner"))


def _model(b: schema.ModelSpec, a: schema.ModelSpec) -> list[str]:
    out: list[str] = []
    if b.spec.stage != a.spec.stage:
        out.append(f"stage {b.spec.stage} -> {a.spec.stage}")
    if b.spec.files != a.spec.files:
        out += _set_change("files", [f"{f.name}" for f in b.spec.files],
                           [f"{f.name}" for f in a.spec.files]) or ["file checksums changed"]
    return out + _generic(b.model_dump(mode="json"), a.model_dump(mode="json"),
                          ("spec.stage", "spec.files"))


def _template(b: schema.PromptTemplateSpec, a: schema.PromptTemplateSpec) -> list[str]:
    out: list[str] = []
    if b.spec.version != a.spec.version:
        out.append(f"version {b.spec.version} -> {a.spec.version}")
    if b.spec.template != a.spec.template:
        out.append("template text changed")
    out += _set_change("variables", b.spec.variables, a.spec.variables)
    out += _ref_change("model", b.spec.modelRef, a.spec.modelRef)
    return out + _generic(b.model_dump(mode="json"), a.model_dump(mode="json"), (
        "spec.version", "spec.template", "spec.variables", "spec.modelRef"))


def _job(b: schema.TrainingJobSpec, a: schema.TrainingJobSpec) -> list[str]:
    out = _ref_change("base model", b.spec.baseModelRef, a.spec.baseModelRef)
    out += _ref_change("output model", b.spec.outputModel, a.spec.outputModel)
    gpus = a.spec.resources.gpu - b.spec.resources.gpu
    if gpus:
        out.append(f"GPUs {gpus:+d}")
    return out + _generic(b.model_dump(mode="json"), a.model_dump(mode="json"), (
        "spec.baseModelRef", "spec.outputModel", "spec.resources.gpu"))


def _policy(b: schema.PolicySpec, a: schema.PolicySpec) -> list[str]:
    out: list[str] = []
    bb = {(g.team, g.environment): g for g in b.spec.gpuBudgets}
    ab = {(g.team, g.environment): g for g in a.spec.gpuBudgets}
    for slot in sorted({*bb, *ab}):
        old, new = bb.get(slot), ab.get(slot)
        if old == new:
            continue
        where = f"GPU budget {slot[0]} in {slot[1]}"
        if old is None or new is None:
            out.append(f"{where} {'added' if old is None else 'removed'}")
        else:
            if old.gpus != new.gpus:
                out.append(f"{where} {old.gpus} -> {new.gpus}")
            if old.pricePerGpuHour != new.pricePerGpuHour:
                out.append(f"{where}: price/GPU-hour {old.pricePerGpuHour} -> "
                           f"{new.pricePerGpuHour}")
    for name in ("promotion", "changeWindows", "pruneProtection"):
        if getattr(b.spec, name) != getattr(a.spec, name):
            out.append(f"{name} rules changed")
    return out + _generic(b.model_dump(mode="json"), a.model_dump(mode="json"), (
        "spec.gpuBudgets", "spec.promotion", "spec.changeWindows", "spec.pruneProtection"))


def _created(spec: schema.AnySpec, spec_set: SpecSet, verb: str) -> str:
    if isinstance(spec, schema.ServingEndpointSpec):
        s = spec.spec
        gpus = s.resources.gpu * s.replicas.max
        free = "frees " if verb == "deleted" else ""
        return (f"{verb} (model {_ref(s.modelRef)}, replicas {s.replicas}, "
                f"{free}{gpus} GPU{'s' * (gpus != 1)} at max)")
    if isinstance(spec, schema.PromptExperimentSpec):
        weights = ", ".join(f"{v.templateRef} {v.weight}" for v in spec.spec.variants)
        return f"{verb} ({spec.spec.state}: {weights})"
    if isinstance(spec, schema.ModelSpec):
        return f"{verb} ({spec.spec.type}, stage {spec.spec.stage}, {spec.spec.dataClassification})"
    if isinstance(spec, schema.TrainingJobSpec):
        return (f"{verb} (base {_ref(spec.spec.baseModelRef)}, dataset {spec.spec.datasetRef}, "
                f"{spec.spec.resources.gpu} GPUs, team {spec_set.team_of(spec)})")
    if isinstance(spec, schema.PromptTemplateSpec):
        return f"{verb} (version {spec.spec.version})"
    return verb


_DESCRIBE: dict[str, Callable[[Any, Any], list[str]]] = {
    Kind.SERVING_ENDPOINT: _endpoint,
    Kind.PROMPT_EXPERIMENT: _experiment,
    Kind.MODEL: _model,
    Kind.PROMPT_TEMPLATE: _template,
    Kind.TRAINING_JOB: _job,
    Kind.POLICY: _policy,
}


def title(spec: schema.AnySpec) -> str:
    if isinstance(spec, schema.ModelSpec):
        return f"Model {spec.name} {spec.spec.version}"
    return str(spec.key)


def spec_changes(base: SpecSet | None, head: SpecSet,
                 keys: Iterable[SpecKey]) -> tuple[SpecChange, ...]:
    """A ``SpecChange`` for each of ``keys`` that differs between base and head."""
    out: list[SpecChange] = []
    for key in sorted(keys):
        old = base.get(key) if base is not None else None
        new = head.get(key)
        if old is None and new is not None:
            out.append(SpecChange(key, changeset.Action.CREATED, title(new.spec),
                                  (_created(new.spec, head, "created"),)))
        elif new is None and old is not None and base is not None:
            out.append(SpecChange(key, changeset.Action.DELETED, title(old.spec),
                                  (_created(old.spec, base, "deleted"),)))
        elif old is not None and new is not None:
            if old.spec is new.spec:  # the same document on both sides (validate shares it)
                continue
            b_dump, a_dump = old.spec.model_dump(mode="json"), new.spec.model_dump(mode="json")
            if b_dump == a_dump:
                continue
            describe = _DESCRIBE.get(key.kind)
            details = describe(old.spec, new.spec) if describe else _generic(b_dump, a_dump, ())
            out.append(SpecChange(key, changeset.Action.CONFIGURED, title(new.spec),
                                  tuple(details) or ("changed",)))
    return tuple(out)


# --------------------------------------------------------------------------- building


def _render(spec_set: SpecSet | None, env: str, revision: str, side: str,
            cache: renderers.RenderCache) -> tuple[KubeObject, ...]:
    if spec_set is None or env not in spec_set.config.environments:
        return ()
    try:
        return renderers.render_environment(spec_set, env, revision=revision, cache=cache)
    except LlmopsError as exc:
        raise PlanError(f"rendering {env} at the {side} revision failed: {exc}") from exc


def _keys(spec_set: SpecSet | None, env: str) -> set[SpecKey]:
    if spec_set is None:
        return set()
    return {item.key for item in spec_set.items if item.spec.environment == env}


def environment_spec_changes(base: SpecSet | None, head: SpecSet,
                             env: str) -> tuple[SpecChange, ...]:
    """What changes for a reviewer in ``env``: its own specs, then the global ones (models,
    templates, policies) that every environment shares. A reconcile run's semantic summary
    (``base`` is the revision last applied there, None when nothing was)."""
    global_keys = {i.key for s in (base, head) if s is not None for i in s.items
                   if not i.spec.environment}
    return (spec_changes(base, head, _keys(base, env) | _keys(head, env))
            + spec_changes(base, head, global_keys))


def _decide(env: str, before: Sequence[KubeObject], after: Sequence[KubeObject],
            governance: decide.Governance | None, revision: str) -> changeset.ChangeSet:
    """``decide.decide`` over the objects that differ. An object the shared render cache
    handed to both sides (the same object: its spec and everything it is rendered from
    are unchanged) is unchanged by construction: counted, never normalised, masked or
    compared, so its entry carries no ``before``/``after`` (a plan prints only changes)."""
    same = {id(o) for o in before} & {id(o) for o in after}
    changes = decide.decide(env, [o for o in after if id(o) not in same],
                            {ResourceKey.of(o): o for o in before if id(o) not in same},
                            compare=decide.Compare.REVISION, governance=governance,
                            revision=revision)
    kept = [changeset.ChangeSetEntry(ResourceKey.of(o), changeset.Action.UNCHANGED)
            for o in after if id(o) in same]
    entries = sorted([*changes.entries, *kept], key=lambda e: diff.entry_order(e.key))
    return replace(changes, entries=tuple(entries))


def _environment_plan(base: SpecSet | None, head: SpecSet, env: str, now: datetime,
                      policy: govern.MergedPolicy, revisions: tuple[str, str],
                      full: bool) -> EnvironmentPlan:
    """One environment: its spec changes, and the decision on its objects."""
    described = spec_changes(base, head, _keys(base, env) | _keys(head, env))
    governance = None
    if env in head.config.environments:
        governance = decide.Governance(head, now, policy, frozenset(c.key for c in described))
    # One cache for both sides: a spec the change does not touch (nor anything it is
    # rendered from) renders once, and its objects are the same on both sides.
    cache = renderers.RenderCache()
    before = _render(base, env, revisions[0], "base", cache)
    after = _render(head, env, revisions[1], "head", renderers.RenderCache() if full else cache)
    if full:
        changes = decide.decide(env, after, {ResourceKey.of(o): o for o in before},
                                compare=decide.Compare.REVISION, governance=governance,
                                revision=revisions[1])
    else:
        changes = _decide(env, before, after, governance, revisions[1])
    return EnvironmentPlan(env, described, changes, changes.verdicts)


def environments_of(base: SpecSet | None, head: SpecSet) -> list[str]:
    """Environments in plan order: the head's promotion order, its others, then the base's."""
    names = [*head.config.promotionOrder, *head.config.environments]
    if base is not None:
        names += list(base.config.environments)
    return list(dict.fromkeys(names))


def build_plan(base: SpecSet | None, head: SpecSet, environments: Sequence[str] | None = None,
               now: datetime | None = None, *, base_revision: str = "",
               head_revision: str = "", full: bool = False) -> Plan:
    """Plan ``head`` against ``base`` (None: an empty repo) for ``environments`` (None: all).

    ``full`` renders each side with its own cache and compares every object: the same
    plan, the slow way (the reference the tests hold the incremental one to)."""
    moment = now if now is not None else datetime.now(UTC)
    known = environments_of(base, head)
    selected = list(dict.fromkeys(environments)) if environments else known
    unknown = [e for e in selected if e not in known]
    if unknown:
        raise PlanError(f"unknown environment {', '.join(unknown)} "
                        f"(declared: {', '.join(known)})")
    policy = govern.merge_policies(head)
    plans = [_environment_plan(base, head, env, moment, policy, (base_revision, head_revision),
                               full) for env in selected]
    global_keys = {i.key for s in (base, head) if s is not None for i in s.items
                   if not i.spec.environment}
    return Plan(base_revision=base_revision, head_revision=head_revision, environments=tuple(plans),
                global_specs=spec_changes(base, head, global_keys),
                cost=cost.cost_delta(base, head, selected), now=moment)
