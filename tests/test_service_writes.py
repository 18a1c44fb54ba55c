"""The write use cases as plain Python: rollback, conclude, promote against a real specs repo.

No HTTP: a ``WriteService`` over a real store and a specs repo from the
template (``test_writeback.make_world``), called with a plain ``Caller``.
Each test checks what a user would see: the commit (content, message
trailers, author, branch) and the audit rows; refusals raise the engine's
error categories, which the API and the CLI map to statuses and exit codes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_writeback import (
    PROD_ENDPOINT,
    USER,
    Snapshot,
    World,
    changed_lines,
    commit_all,
    git,
    make_world,
    writes,
)

from llmops.api.errors import STATUS_OF
from llmops.cli import EXIT_CODE_OF
from llmops.engine import errors, settings
from llmops.engine.service import compose, lookup
from llmops.engine.service.access import Caller, NotOwner
from llmops.engine.service.writes import Committed, InvalidWinner, WriteService
from llmops.engine.source import writeback
from llmops.engine.spec.schema import ModelStage
from llmops.engine.store import Store, audit, db, modelfiles
from llmops.engine.types import Kind, SpecKey

ADMIN = Caller(user=USER, roles=("admin",), method="test", via="test suite")
DEE = Caller(user="dee", roles=("ml-engineer",), teams=("data-science",), method="test",
             via="test suite")
EXPERIMENT = "support-greeting-v2-vs-v3"


@pytest.fixture
def world(store: Store, tmp_path: Path) -> World:
    return make_world(store, tmp_path)


@pytest.fixture
def service(world: World) -> WriteService:
    cfg = settings.load(git={"repo": str(world.repo), "branch": "main"})
    return compose.services(cfg, store=world.store).writes


def message_of(world: World, done: Committed) -> str:
    return git(world.repo, "log", "-1", "--format=%B", done.commit)


def test_promote_commits_the_stage_with_trailers_and_audits_intent_then_outcome(
        world: World, service: WriteService) -> None:
    before = Snapshot.of(world.repo)
    done = service.promote_model(ADMIN, "support-chat@1.3.0", ModelStage.APPROVED)
    assert (done.name, done.direct, done.file) == (
        "support-chat@1.3.0", False, "models/support-chat-1.3.0.yaml")
    assert done.branch.startswith("llmops/promote/support-chat-")
    assert done.parent == before.refs["refs/heads/main"]
    assert changed_lines(world.repo, done.parent, done.commit) == ["-  stage: draft",
                                                                   "+  stage: approved"]
    message = message_of(world, done)
    assert message.startswith("Set model support-chat@1.3.0 stage to approved\n\n")
    assert message.rstrip("\n").endswith(
        "Llmops-Action: promote\nLlmops-Spec: Model support-chat@1.3.0\n"
        "Llmops-Requested-By: Ada Lovelace")
    rows = writes(world.store)
    assert [(r.result, r.actor, r.reason) for r in rows] == [
        ("intent", USER, "stage draft -> approved"),
        ("succeeded", USER, "stage draft -> approved")]
    assert rows[1].source_commit == done.commit
    assert rows[1].details["branch"] == done.branch
    assert rows[1].details["specId"] == str(SpecKey(Kind.MODEL, "", "support-chat@1.3.0").id)
    assert Snapshot.of(world.repo).refs["refs/heads/main"] == before.refs["refs/heads/main"]


def test_conclude_resolves_the_winner_and_commits_state_winner_and_notes(
        world: World, service: WriteService) -> None:
    winner = str(SpecKey(Kind.PROMPT_TEMPLATE, "", "support-greeting-v3").id)
    done = service.conclude_experiment(ADMIN, EXPERIMENT, winner, "v3 wins.",
                                       environment="prod")
    text = world.show(done.commit, f"experiments/{EXPERIMENT}.yaml")
    assert "  state: concluded\n" in text
    assert "  winner: support-greeting-v3\n" in text
    assert "  notes: |-\n    v3 wins.\n" in text
    assert message_of(world, done).startswith(
        f"Conclude experiment prod/{EXPERIMENT}: support-greeting-v3 wins\n")
    assert [(r.result, r.target, r.reason) for r in writes(world.store)] == [
        ("intent", f"PromptExperiment prod/{EXPERIMENT}",
         "conclude with winner support-greeting-v3"),
        ("succeeded", f"PromptExperiment prod/{EXPERIMENT}",
         "conclude with winner support-greeting-v3")]


def test_a_winner_uuid_of_another_kind_is_a_conflict_before_any_audit_row(
        world: World, service: WriteService) -> None:
    dataset = str(SpecKey(Kind.DATASET, "", "customer-tickets").id)
    with pytest.raises(InvalidWinner) as raised:
        service.conclude_experiment(ADMIN, EXPERIMENT, dataset)
    assert errors.category(raised.value) is errors.Conflict
    assert raised.value.details == {"field": "winnerTemplateId"}
    with pytest.raises(writeback.NotAVariant):  # a name that is no variant: the edit refuses
        service.conclude_experiment(ADMIN, EXPERIMENT, "support-greeting-v1")
    assert [r.result for r in writes(world.store)] == ["intent", "failed"]


def test_rollback_restores_the_spec_before_the_applied_change(
        world: World, service: WriteService) -> None:
    path = world.repo / PROD_ENDPOINT
    original = path.read_text()
    path.write_text(original.replace("    max: 4\n", "    max: 5\n", 1))
    bumped = commit_all(world.repo, "prod: more replicas")
    applied = world.record()
    done = service.rollback_endpoint(ADMIN, "support-chat", environment="prod")
    assert done.parent == applied
    assert world.show(done.commit, PROD_ENDPOINT) == original
    message = message_of(world, done)
    assert message.startswith("Roll back ServingEndpoint prod/support-chat to ")
    assert f"Restores {PROD_ENDPOINT} as it was before {bumped}\n" in message
    assert "Llmops-Action: rollback\n" in message
    intent, outcome = writes(world.store)
    assert intent.reason == f"rollback from {applied[:12]}"
    assert outcome.result == "succeeded"
    assert f"(undoes {bumped[:12]})" in outcome.reason


def test_rollback_without_an_earlier_version_is_a_conflict_audited_as_failed(
        world: World, service: WriteService) -> None:
    with pytest.raises(writeback.NothingToWrite) as raised:
        service.rollback_endpoint(ADMIN, "support-chat", environment="prod")
    assert errors.category(raised.value) is errors.Conflict
    assert [r.result for r in writes(world.store)] == ["intent", "failed"]


def test_another_teams_spec_is_forbidden_and_the_denial_audited(
        world: World, service: WriteService) -> None:
    before = Snapshot.of(world.repo)
    with pytest.raises(NotOwner) as raised:
        service.promote_model(DEE, "support-chat@1.3.0", ModelStage.APPROVED)
    assert errors.category(raised.value) is errors.Forbidden
    assert raised.value.details == {"ownerTeam": "nlp-platform", "teams": ["data-science"]}
    assert writes(world.store) == []
    [row] = audit.AuditLog(world.store).query(action="access", result="denied").entries
    assert (row.actor, row.target) == ("dee", "Model support-chat@1.3.0")
    assert row.details["route"] == "test suite"
    assert Snapshot.of(world.repo) == before


def test_unknown_and_ambiguous_specs(world: World, service: WriteService) -> None:
    with pytest.raises(lookup.NoSuchSpec) as missing:
        service.promote_model(ADMIN, "no-such-model@1.0.0", ModelStage.APPROVED)
    assert errors.category(missing.value) is errors.NotFound
    with pytest.raises(lookup.AmbiguousName) as ambiguous:
        service.rollback_endpoint(ADMIN, "support-chat")  # dev, stg and prod
    assert {c["environment"] for c in (ambiguous.value.details or {})["candidates"]} \
        == {"dev", "stg", "prod"}
    assert writes(world.store) == []


def test_every_category_has_one_status_and_one_exit_code() -> None:
    assert set(STATUS_OF) == set(errors.CATEGORIES)
    assert set(EXIT_CODE_OF) == {*errors.CATEGORIES, None}
    assert errors.category(writeback.RepoUnavailable("x")) is errors.Unavailable
    assert errors.category(writeback.EditRejected("x")) is errors.InvalidInput
    assert errors.category(modelfiles.TooLarge("x")) is errors.TooLarge
    assert errors.category(modelfiles.LengthMismatch("x")) is errors.Malformed
    assert errors.category(db.StoreUnavailable("url", "down")) is errors.Unavailable
    assert errors.category(writeback.WriteError("x")) is None


def test_a_second_write_of_a_spec_stacks_on_its_open_review_branch(
        world: World, service: WriteService) -> None:
    first = service.promote_model(ADMIN, "support-chat@1.3.0", ModelStage.APPROVED)
    second = service.promote_model(ADMIN, "support-chat@1.3.0", ModelStage.DEPRECATED)
    assert (second.branch, second.parent, second.direct) == (first.branch, first.commit, False)
    assert second.reason.startswith(f"added to {first.branch}")
    git(world.repo, "update-ref", "refs/heads/main", second.commit)  # the branch is merged
    third = service.promote_model(ADMIN, "support-chat@1.3.0", ModelStage.APPROVED)
    assert third.branch != first.branch
    assert third.parent == second.commit
