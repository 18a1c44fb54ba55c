"""The decision `llmops plan` and the reconciler share: what would change, and whether it may.

Fast: the bundled template rendered in memory, no store, no git, no cluster.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conftest import (
    MINIMAL_CONFIG,
    MINIMAL_ENDPOINT,
    MINIMAL_MODEL,
    MINIMAL_MODEL_FILES,
    TEMPLATE,
    write_repo,
)
from llmops.engine.plan import decide
from llmops.engine.plan.changeset import Action, BlockReason, ChangeSet
from llmops.engine.spec import validate
from llmops.engine.spec.validate import SpecSet
from llmops.engine.types import KubeObject, ResourceKey
from llmops.renderers import render_environment

# Inside the template's prod change window (Mon-Fri 08:00-18:00 Europe/Berlin), and outside.
WEDNESDAY = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
SATURDAY = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)

Objects = tuple[KubeObject, ...]


@pytest.fixture(scope="module")
def spec_set() -> SpecSet:
    return validate.load_and_validate(TEMPLATE)


def render(spec_set: SpecSet, env: str, commit: str = "c1") -> Objects:
    return render_environment(spec_set, env, revision=commit)


def by_key(objects: Iterable[KubeObject]) -> dict[ResourceKey, KubeObject]:
    return {ResourceKey.of(o): copy.deepcopy(o) for o in objects}


def find(objects: Iterable[KubeObject], kind: str, name: str) -> KubeObject:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def without(objects: Objects, *drop: KubeObject) -> Objects:
    keys = {ResourceKey.of(o) for o in drop}
    return tuple(o for o in objects if ResourceKey.of(o) not in keys)


def reconcile(spec_set: SpecSet, env: str, desired: Objects,
              current: dict[ResourceKey, KubeObject], *, now: datetime = WEDNESDAY,
              inventory: dict[ResourceKey, str] | None = None,
              confirmed: Callable[[], bool] = lambda: False,
              source_unavailable: bool = False, **gates: object) -> ChangeSet:
    """Decide as the reconciler does: against live objects, with every gate."""
    found = decide.gates_for(spec_set, env, prune_confirmed=confirmed,
                             source_unavailable=source_unavailable)
    return decide.decide(env, desired, current, compare=decide.Compare.LIVE,
                         inventory=inventory, gates=replace(found, **gates),  # type: ignore[arg-type]
                         governance=decide.Governance(spec_set, now), revision="r2")


def actions(changes: ChangeSet) -> dict[ResourceKey, tuple[Action, str]]:
    return {e.key: (e.action, e.reason) for e in changes.entries}


# --------------------------------------------------------------------------- what changes


def test_an_unrelated_commit_changes_nothing(spec_set: SpecSet) -> None:
    live = by_key(render(spec_set, "dev", "c1"))
    changes = reconcile(spec_set, "dev", render(spec_set, "dev", "c2"), live)
    assert {a for a, _ in actions(changes).values()} == {Action.UNCHANGED}
    assert not changes.has_changes
    assert changes.blocked is None


def test_a_changed_object_is_configured_and_a_new_one_created(spec_set: SpecSet) -> None:
    desired = render(spec_set, "dev")
    live = by_key(desired)
    service = find(desired, "Service", "support-chat")
    live[ResourceKey.of(service)]["spec"]["ports"][0]["port"] = 8081
    deployment = ResourceKey.of(find(desired, "Deployment", "sql-assistant"))
    del live[deployment]
    changes = reconcile(spec_set, "dev", desired, live)
    assert {e.key: e.action for e in changes.changed} == {
        ResourceKey.of(service): Action.CONFIGURED, deployment: Action.CREATED}


def test_drift_is_marked_when_the_rendered_form_did_not_change(spec_set: SpecSet) -> None:
    desired = render(spec_set, "dev")
    live = by_key(desired)
    service = find(desired, "Service", "support-chat")
    key = ResourceKey.of(service)
    live[key]["spec"]["ports"][0]["port"] = 8081  # a hand edit
    inventory = {k: decide.object_hash(o) for k, o in by_key(desired).items()}
    edited = reconcile(spec_set, "dev", desired, live, inventory=inventory).get(key)
    assert edited is not None
    assert (edited.action, edited.drifted) == (Action.CONFIGURED, True)
    # A change in git is a change, not drift.
    inventory[key] = "hash of an older rendered form"
    changed = reconcile(spec_set, "dev", desired, live, inventory=inventory).get(key)
    assert changed is not None
    assert (changed.action, changed.drifted) == (Action.CONFIGURED, False)


def test_objects_git_dropped_are_deleted_even_when_only_the_inventory_knows_them(
        spec_set: SpecSet) -> None:
    desired = render(spec_set, "dev")
    live = by_key(desired)
    ghost = ResourceKey("apps", "Deployment", "nlp-platform-dev", "retired")
    changes = reconcile(spec_set, "dev", desired, live, inventory={ghost: "h"})
    entry = changes.get(ghost)
    assert entry is not None
    assert (entry.action, entry.before) == (Action.DELETED, None)


def test_a_finished_job_that_is_gone_is_not_created_again(spec_set: SpecSet) -> None:
    desired = render(spec_set, "stg")
    job = next(o for o in desired if o["kind"] == "Job")
    key = ResourceKey.of(job)
    live = by_key(without(desired, job))  # deleted by its ttlSecondsAfterFinished

    def decided(finished: dict[ResourceKey, str]) -> tuple[Action, str]:
        changes = decide.decide("stg", desired, live, compare=decide.Compare.LIVE,
                                finished=finished)
        entry = changes.get(key)
        assert entry is not None
        return entry.action, entry.reason

    assert decided({key: decide.run_hash(job)}) == (Action.SKIPPED, decide.FINISHED)
    assert decided({}) == (Action.CREATED, "")
    # Another pod template under the same name is another run.
    assert decided({key: "hash of another pod template"}) == (Action.CREATED, "")
    # Neither metadata nor the TTL is part of what ran.
    relabelled = copy.deepcopy(job)
    relabelled["metadata"]["annotations"]["llmops.io/experiment-url"] = "https://x.test/1"
    relabelled["spec"]["ttlSecondsAfterFinished"] = 3600
    assert decide.run_hash(relabelled) == decide.run_hash(job)


# --------------------------------------------------------------------------- what stays


def test_a_protected_object_is_skipped_with_its_reason(spec_set: SpecSet) -> None:
    desired = render(spec_set, "dev")
    live = by_key(desired)
    dropped = [find(desired, kind, "support-chat")
               for kind in ("Ingress", "Service", "HorizontalPodAutoscaler")]
    ingress, service, hpa = (ResourceKey.of(o) for o in dropped)
    live[ingress]["metadata"]["labels"]["llmops.io/prune-protected"] = "true"
    live[service]["metadata"]["annotations"]["llmops.io/prune"] = "disabled"
    changes = reconcile(spec_set, "dev", without(desired, *dropped), live,
                        max_prune_percent=100)
    assert {k: actions(changes)[k] for k in (ingress, service, hpa)} == {
        ingress: (Action.SKIPPED, "prune-protected"),
        service: (Action.SKIPPED, "prune-protected"),
        hpa: (Action.DELETED, "")}
    assert [e.key for e in changes.changed] == [hpa]


def test_a_rendered_namespace_that_git_dropped_is_kept(spec_set: SpecSet) -> None:
    """Namespaces are rendered prune-protected: deleting one deletes what llmops does not own."""
    desired = render(spec_set, "dev")
    namespace = find(desired, "Namespace", "data-science-dev")
    key = ResourceKey.of(namespace)
    changes = reconcile(spec_set, "dev", without(desired, namespace), by_key(desired),
                        max_prune_percent=100)
    assert actions(changes)[key] == (Action.SKIPPED, "prune-protected")


def test_a_protection_rule_keeps_objects_of_its_kinds(spec_set: SpecSet) -> None:
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
             "metadata": {"name": "weights", "namespace": "nlp-platform-prod"}}
    desired = render(spec_set, "prod")
    live = by_key((*desired, claim))
    entry = reconcile(spec_set, "prod", desired, live).get(ResourceKey.of(claim))
    assert entry is not None
    assert (entry.action, entry.reason) == (Action.SKIPPED, "prune-protected")


def test_nothing_is_deleted_while_the_source_is_unavailable(spec_set: SpecSet) -> None:
    desired = render(spec_set, "dev")
    live = by_key(desired)
    hpa = find(desired, "HorizontalPodAutoscaler", "support-chat")
    changes = reconcile(spec_set, "dev", without(desired, hpa), live, source_unavailable=True)
    assert actions(changes)[ResourceKey.of(hpa)] == (Action.SKIPPED, "kept: source unavailable")
    assert not changes.has_changes


# --------------------------------------------------------------------------- when it must not act


def sql_assistant(objects: Objects) -> list[KubeObject]:
    return [o for o in objects if o["metadata"]["name"].startswith("sql-assistant")]


def test_a_prune_over_the_threshold_blocks_unless_confirmed(spec_set: SpecSet) -> None:
    desired = render(spec_set, "dev")
    live = by_key(desired)
    head = without(desired, *sql_assistant(desired))  # 6 of 16 objects: 37% > 30%
    blocked = reconcile(spec_set, "dev", head, live).blocked
    assert blocked is not None
    assert blocked.reason is BlockReason.PRUNE_THRESHOLD
    assert blocked.message == (
        "would delete 6 of 16 objects (37% > maxPrunePercent 30%); confirm with "
        "`llmops prune confirm --env dev --revision r2`")
    confirmed = reconcile(spec_set, "dev", head, live, confirmed=lambda: True)
    assert confirmed.blocked is None
    assert confirmed.counts()[Action.DELETED] == 6


def test_a_prune_under_the_threshold_asks_for_no_confirmation(spec_set: SpecSet) -> None:
    desired = render(spec_set, "dev")
    hpa = find(desired, "HorizontalPodAutoscaler", "support-chat")

    def never() -> bool:
        raise AssertionError("the confirmation was looked up")

    changes = reconcile(spec_set, "dev", without(desired, hpa), by_key(desired), confirmed=never)
    assert changes.blocked is None


def test_an_empty_render_of_a_populated_environment_blocks(spec_set: SpecSet) -> None:
    live = by_key(render(spec_set, "dev"))
    blocked = reconcile(spec_set, "dev", (), live).blocked
    assert blocked is not None
    assert blocked.reason is BlockReason.EMPTY_REVISION
    assert blocked.message == ("the revision renders no objects for dev and would delete all "
                               "16; set allowEmpty to allow it")
    allowed = reconcile(spec_set, "dev", (), live, allow_empty=True, max_prune_percent=100)
    assert (allowed.blocked, allowed.counts()[Action.DELETED]) == (None, 14)
    kept = sorted((e.key.kind, e.key.name) for e in allowed.entries
                  if e.action is Action.SKIPPED)  # rendered prune-protected
    assert kept == [("Namespace", "data-science-dev"), ("Namespace", "nlp-platform-dev")]
    assert reconcile(spec_set, "dev", (), {}).blocked is None  # empty and nothing there


def test_a_change_outside_the_change_window_is_denied(spec_set: SpecSet) -> None:
    desired = render(spec_set, "prod")
    live = by_key(desired)
    hpa = ResourceKey.of(find(desired, "HorizontalPodAutoscaler", "support-chat"))
    live[hpa]["spec"]["maxReplicas"] = 9
    assert reconcile(spec_set, "prod", desired, live, now=WEDNESDAY).blocked is None
    blocked = reconcile(spec_set, "prod", desired, live, now=SATURDAY).blocked
    assert blocked is not None
    assert blocked.reason is BlockReason.POLICY_DENIED
    assert blocked.message.startswith("change-window: ")
    assert "outside every prod change window" in blocked.message
    assert "; next opens Mon " in blocked.message
    assert blocked.message.endswith("(for ServingEndpoint prod/support-chat)")
    # Nothing to change: the window is not even asked about.
    quiet = reconcile(spec_set, "prod", desired, by_key(desired), now=SATURDAY)
    assert (quiet.blocked, quiet.denied) == (None, ())


def test_a_denied_policy_blocks_only_when_something_would_change(tmp_path: Path) -> None:
    budget = """\
        apiVersion: llmops.io/v1alpha1
        kind: Policy
        metadata: {name: budgets}
        spec:
          gpuBudgets: [{team: nlp, environment: dev, gpus: 0}]
        """
    repo = write_repo(tmp_path / "repo", {
        "llmops.yaml": MINIMAL_CONFIG,
        "models/chat-model.yaml": MINIMAL_MODEL + MINIMAL_MODEL_FILES,
        "endpoints/dev/chat.yaml": MINIMAL_ENDPOINT.replace(
            "replicas:", "resources: {gpu: 1}\n  replicas:"),
        "policies/budgets.yaml": budget})
    over = validate.load_and_validate(repo)
    desired = render(over, "dev")
    same = reconcile(over, "dev", desired, by_key(desired))
    assert [v.rule for v in same.denied] == ["gpu-budget"]
    assert same.blocked is None
    live = by_key(desired)
    del live[ResourceKey.of(find(desired, "Service", "chat"))]
    blocked = reconcile(over, "dev", desired, live).blocked
    assert blocked is not None
    assert blocked.reason is BlockReason.POLICY_DENIED
    assert blocked.message.startswith("gpu-budget: team nlp uses 2 GPUs in dev")
    assert blocked.message.endswith("(for team nlp)")


# --------------------------------------------------------------------------- plan and reconcile


def decide_as(compare: decide.Compare, env: str, head: Objects, base: Objects) -> ChangeSet:
    return decide.decide(env, head, by_key(base), compare=compare)


def test_plan_and_reconcile_decide_alike_on_whole_objects_and_values(spec_set: SpecSet) -> None:
    base = render(spec_set, "dev")
    head = copy.deepcopy(without(base, *sql_assistant(base)))
    find(head, "HorizontalPodAutoscaler", "support-chat")["spec"]["maxReplicas"] = 2
    extra = copy.deepcopy(find(base, "Service", "support-chat"))
    extra["metadata"]["name"] = "support-chat-canary"
    head = (*head, extra)
    plan = decide_as(decide.Compare.REVISION, "dev", head, base)
    live = decide_as(decide.Compare.LIVE, "dev", head, base)
    assert actions(plan) == actions(live)
    assert plan.counts()[Action.DELETED] == 6
    assert [e.changes for e in plan.changed] == [e.changes for e in live.changed]


def test_only_a_plan_counts_fields_the_other_side_alone_sets(spec_set: SpecSet) -> None:
    base = render(spec_set, "dev")
    current = copy.deepcopy(base)
    # What a server adds (a default), or what an older revision set and git removed.
    find(current, "Deployment", "support-chat")["spec"]["revisionHistoryLimit"] = 10
    key = ResourceKey.of(find(base, "Deployment", "support-chat"))
    plan = decide_as(decide.Compare.REVISION, "dev", base, current).get(key)
    live = decide_as(decide.Compare.LIVE, "dev", base, current).get(key)
    assert plan is not None
    assert live is not None
    assert (plan.action, live.action) == (Action.CONFIGURED, Action.UNCHANGED)


def test_a_plan_applies_no_prune_gate(spec_set: SpecSet) -> None:
    base = render(spec_set, "dev")
    changes = decide_as(decide.Compare.REVISION, "dev", (), base)
    assert changes.blocked is None
    assert changes.counts()[Action.DELETED] == len(base)
