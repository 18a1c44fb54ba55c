"""The reconcile pass end to end: a real git repo, a real store (SQLite and PostgreSQL),
the hydrate actuator writing to a directory; faults included."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import event

from conftest import edit
from llmops.engine import manifest
from llmops.engine.actuate import hydrate
from llmops.engine.actuate.base import ActPlan, ActResult
from llmops.engine.actuate.hydrate import HydrateActuator
from llmops.engine.plan import decide
from llmops.engine.run import reconciler, record
from llmops.engine.service import compose
from llmops.engine.settings import Settings
from llmops.engine.source import snapshots
from llmops.engine.spec import repoconfig
from llmops.engine.store import audit, catalog, state
from llmops.engine.store.db import Store, StoreUnavailable
from llmops.engine.store.models import RunResult, SourceState
from llmops.engine.types import KubeObject, ResourceKey

# Inside the template's prod change window (Mon-Fri 08:00-18:00 Europe/Berlin).
WEDNESDAY = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
SATURDAY = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "core.hooksPath=/dev/null", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


def commit(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=Alice", "-c", "user.email=alice@example.com", "commit", "-qm",
        message)
    return git(repo, "rev-parse", "HEAD")


class Harness:
    def __init__(self, store: Store, repo: Path, tmp: Path) -> None:
        self.store = store
        self.repo = repo
        self.out = tmp / "rendered"
        self.work = tmp / "work"
        self.clock = WEDNESDAY
        self.src = snapshots.open_source(str(repo), "main", self.work)
        self.actuator = HydrateActuator(self.out)  # one, as compose.actuator_factory keeps
        self.rec = self.make()

    def make(self, **kw: object) -> reconciler.Reconciler:
        return reconciler.Reconciler(
            self.store, self.src, lambda env, cfg: self.actuator,
            clock=lambda: self.clock, **kw)  # type: ignore[arg-type]

    def run(self) -> dict[str, reconciler.PassResult]:
        return {r.environment: r for r in self.rec.run_once()}

    def published(self, env: str) -> hydrate.HydratedSet:
        found = hydrate.read_set(self.out, env)
        assert found is not None
        return found

    def audit_count(self) -> int:
        return audit.verify(self.store).entries


@pytest.fixture
def h(store: Store, template_git_repo: Path, tmp_path: Path) -> Harness:
    return Harness(store, template_git_repo, tmp_path)


def test_first_pass_publishes_every_environment(h: Harness) -> None:
    results = h.run()
    assert {env: r.result for env, r in results.items()} == {
        "dev": RunResult.SUCCEEDED, "stg": RunResult.SUCCEEDED, "prod": RunResult.SUCCEEDED}
    head = git(h.repo, "rev-parse", "HEAD")
    for env in ("dev", "stg", "prod"):
        published = h.published(env)
        assert published.revision == head
        inventory = state.read_inventory(h.store, env)
        assert {i.key for i in inventory} == set(published.objects)
        status = state.get_environment_status(h.store, env)
        assert status is not None
        assert status.last_applied_revision == head
        ready = status.condition(state.ConditionType.READY)
        assert ready is not None
        assert ready.status is state.ConditionStatus.TRUE
    assert audit.verify(h.store).ok
    intents = h.store and audit.AuditLog(h.store).query(result="intent").entries
    assert {e.environment for e in intents} == {"dev", "stg", "prod"}
    assert all(e.actor == "llmops <llmops@localhost>" or "@" in e.actor for e in intents)


@pytest.mark.slow  # over 0.5 s of CPU on its own
def test_same_revision_twice_changes_nothing(h: Harness) -> None:
    h.run()
    entries, runs = h.audit_count(), len(state.list_runs(h.store, limit=1000))
    published = {env: h.published(env) for env in ("dev", "stg", "prod")}
    second = h.run()
    assert {r.result for r in second.values()} == {RunResult.NOOP}
    assert h.audit_count() == entries
    assert len(state.list_runs(h.store, limit=1000)) == runs
    assert {env: h.published(env) for env in published} == published
    # A fresh reconciler (a restarted daemon) on the same revision: still nothing.
    h.rec = h.make()
    assert {r.result for r in h.run().values()} == {RunResult.NOOP}
    assert h.audit_count() == entries


def bump_stg_support_chat(h: Any) -> tuple[str, reconciler.PassResult]:
    """Commit support-chat 1.3.0 in stg and reconcile: stg acts, dev and prod have nothing."""
    edit(h.repo, "endpoints/stg/support-chat.yaml", "version: 1.2.0", "version: 1.3.0")
    sha = commit(h.repo, "stg: support-chat 1.3.0")
    results = h.run()
    assert results["dev"].result is RunResult.NOOP
    assert results["prod"].result is RunResult.NOOP
    stg: reconciler.PassResult = results["stg"]
    assert stg.result is RunResult.SUCCEEDED, stg.message
    return sha, stg


@pytest.mark.slow  # over 0.5 s of CPU on its own
def test_model_bump_writes_only_the_affected_objects(h: Harness) -> None:
    h.run()
    before = h.published("stg")
    sha, stg = bump_stg_support_chat(h)
    assert (stg.counts.created, stg.counts.configured, stg.counts.deleted) == (0, 1, 0)
    after = h.published("stg")
    changed = {k for k in after.objects if after.objects[k] != before.objects.get(k)}
    assert [(k.kind, k.name) for k in changed] == [("Deployment", "support-chat")]
    applied = audit.AuditLog(h.store).query(action="apply", environment="stg").entries
    assert [e.target for e in applied if e.source_commit == sha] == [
        "Deployment/nlp-platform-stg/support-chat"]


def test_a_pass_reads_its_commits_from_git_objects_without_writing_them_out(
        h: Harness) -> None:
    h.run()
    bump_stg_support_chat(h)
    # Only the source's mirror and lock: no commit exported into the work directory.
    assert not [p.name for p in h.work.iterdir() if len(p.name) == 40]


def test_a_one_object_change_writes_only_its_inventory_rows(h: Harness) -> None:
    h.run()
    before = {i.key: i for i in state.read_inventory(h.store, "stg")}
    rows: list[int] = []

    def count(conn: object, cursor: object, statement: str, params: Any, context: object,
              many: bool) -> None:
        if statement.split(None, 1)[0].upper() in ("INSERT", "DELETE") and (
                " inventory " in f"{statement} "):
            rows.append(len(params) if many else 1)

    event.listen(h.store.engine, "before_cursor_execute", count)
    sha, _ = bump_stg_support_chat(h)
    assert sum(rows) == 0  # one changed Deployment: updated in place, not a new inventory
    after = {i.key: i for i in state.read_inventory(h.store, "stg")}
    assert len(before) > 10
    assert after.keys() == before.keys()
    assert {i.revision for i in after.values()} == {sha}
    assert [(k.kind, k.name) for k in after
            if after[k].content_hash != before[k].content_hash] == [
        ("Deployment", "support-chat")]


def test_a_one_spec_change_rewrites_only_its_catalog_row(h: Harness, tmp_path: Path) -> None:
    h.run()
    rows: list[tuple[str, int]] = []

    def count(conn: object, cursor: object, statement: str, params: Any, context: object,
              many: bool) -> None:
        verb = statement.split(None, 1)[0].upper()
        if verb in ("INSERT", "UPDATE", "DELETE") and " spec_catalog" in statement:
            rows.append((verb, len(params) if many else 1))

    event.listen(h.store.engine, "before_cursor_execute", count)
    sha, _ = bump_stg_support_chat(h)
    # Every row's revision in one statement, then the one changed spec by its id.
    assert rows == [("UPDATE", 1), ("UPDATE", 1)]
    entries = catalog.list_entries(h.store)
    assert {e.revision for e in entries} == {sha}
    # The same catalog as recording the revision afresh.
    fresh = Store(f"sqlite:///{tmp_path / 'fresh.db'}")
    fresh.migrate()
    assert h.rec._revision is not None
    assert h.rec._revision.spec_set is not None
    catalog.record(fresh, sha, h.rec._revision.spec_set)
    assert [(e.id, e.revision, e.file, e.spec) for e in entries] == [
        (e.id, e.revision, e.file, e.spec) for e in catalog.list_entries(fresh)]
    stg = next(e for e in entries if e.name == "support-chat" and e.environment == "stg")
    assert stg.spec["spec"]["modelRef"]["version"] == "1.3.0"


def test_a_run_records_its_commit_and_its_plan_as_llmops_plan_shows_it(h: Harness) -> None:
    first = h.run()["stg"]
    assert first.run_id is not None
    created = state.get_run(h.store, first.run_id)
    assert created is not None
    assert created.plan_detail is not None
    assert created.subject  # the template's first commit
    assert {s["action"] for s in created.plan_detail["specs"]} == {"created"}
    h.rec = h.make()  # a restarted daemon: the applied revision is read back from git
    sha, stg = bump_stg_support_chat(h)
    assert stg.run_id is not None
    run = state.get_run(h.store, stg.run_id)
    assert run is not None
    assert (run.author, run.subject) == ("Alice <alice@example.com>",
                                         "stg: support-chat 1.3.0")
    assert run.plan_detail is not None
    (spec,) = [s for s in run.plan_detail["specs"] if s["kind"] == "ServingEndpoint"]
    assert (spec["environment"], spec["name"]) == ("stg", "support-chat")
    assert "model support-chat 1.2.0 -> 1.3.0" in spec["details"]
    (obj,) = run.plan_detail["objects"]
    assert obj["id"] == "Deployment/nlp-platform-stg/support-chat"
    assert (obj["action"], obj["owner"]) == ("configured", "ServingEndpoint/support-chat")
    diff_lines = obj["diff"].splitlines()
    assert any(line.startswith("-") and "1.2.0" in line for line in diff_lines)
    assert any(line.startswith("+") and "1.3.0" in line for line in diff_lines)
    assert run.plan_detail["omitted"] == 0
    # A pass with nothing to do records no run, yet the overview names the commit it follows.
    dev = state.get_environment_status(h.store, "dev")
    assert dev is not None
    assert (dev.observed_revision, dev.observed_author, dev.observed_subject) == (
        sha, "Alice <alice@example.com>", "stg: support-chat 1.3.0")


def test_a_runs_plan_is_bounded_and_masks_secret_values_as_plan_does() -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "a"},
              "stringData": {"url": "postgres://app:hunter2-value@db/app"}}
    deploy = {"apiVersion": "apps/v1", "kind": "Deployment",
              "metadata": {"name": "chat", "namespace": "a"},
              "spec": {"template": {"spec": {"containers": [{
                  "name": "server", "image": "vllm:1",
                  "env": [{"name": "HF_TOKEN", "value": "hf_live_token_value"}]}]}}}}
    big = [{"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": f"z{i}", "namespace": "a"},  # listed after the two above
            "data": {"blob": "line of a large prompt template\n" * 1000}} for i in range(30)]
    changes = decide.decide("dev", [secret, deploy, *big], {}, compare=decide.Compare.LIVE)
    detail = record.plan_detail(changes, None)
    stored = json.dumps(detail)
    assert "hunter2-value" not in stored
    assert "hf_live_token_value" not in stored
    by_id = {o["id"]: o for o in detail["objects"]}
    assert "url: '***'" in by_id["Secret/a/db"]["diff"]
    assert "value: '***'" in by_id["Deployment/a/chat"]["diff"]
    assert sum(len(o["diff"]) for o in detail["objects"]) <= record.MAX_DIFF_CHARS
    assert all(len(o["diff"]) <= record.MAX_OBJECT_DIFF_CHARS for o in detail["objects"])
    assert any(o["truncated"] for o in detail["objects"])
    assert detail["omitted"] == 32 - len(detail["objects"]) > 0
    assert detail["specs"] is None  # the base revision was not known


@pytest.mark.slow  # over 0.5 s of CPU on its own
def test_bad_spec_acts_on_nothing_and_is_recorded_once(h: Harness) -> None:
    h.run()
    before = {env: h.published(env) for env in ("dev", "stg", "prod")}
    edit(h.repo, "endpoints/stg/support-chat.yaml", "version: 1.2.0", "version: 1.3.0")
    edit(h.repo, "endpoints/dev/sql-assistant.yaml", "route: ", "route: relative")
    sha = commit(h.repo, "one good change, one bad spec")
    results = h.run()
    assert {r.result for r in results.values()} == {RunResult.FAILED}
    assert {r.reason for r in results.values()} == {"ValidationFailed"}
    assert "endpoints/dev/sql-assistant.yaml" in results["stg"].message
    assert {env: h.published(env) for env in before} == before
    status = state.get_environment_status(h.store, "stg")
    assert status is not None
    assert status.last_attempted_revision == sha
    assert status.last_applied_revision != sha
    stalled = status.condition(state.ConditionType.STALLED)
    assert stalled is not None
    assert (stalled.status, stalled.reason) == (state.ConditionStatus.TRUE, "ValidationFailed")
    entries = h.audit_count()
    h.run()
    assert h.audit_count() == entries


def drop_dev_sql_assistant(h: Any) -> reconciler.PassResult:
    """Publish the template, then commit dev without sql-assistant: its 6 objects go."""
    h.run()
    (h.repo / "endpoints/dev/sql-assistant.yaml").unlink()
    edit(h.repo, "llmops.yaml", "maxPrunePercent: 30", "maxPrunePercent: 50")
    commit(h.repo, "drop dev sql-assistant")
    result: reconciler.PassResult = h.run()["dev"]
    assert result.result is RunResult.SUCCEEDED, result.message
    assert result.counts.deleted == 6
    return result


@pytest.mark.slow  # over 0.5 s of CPU on its own
def test_removed_endpoint_is_pruned(h: Harness) -> None:
    drop_dev_sql_assistant(h)
    names = {(k.kind, k.name) for k in h.published("dev").objects}
    assert ("Deployment", "sql-assistant") not in names
    pruned = audit.AuditLog(h.store).query(action="prune", environment="dev").entries
    assert "Deployment/data-science-dev/sql-assistant" in {e.target for e in pruned}
    assert ("Deployment", "sql-assistant") not in {
        (i.key.kind, i.key.name) for i in state.read_inventory(h.store, "dev")}


def test_empty_revision_is_blocked_unless_allow_empty(store: Store, minimal_repo: Path,
                                                      tmp_path: Path) -> None:
    git(minimal_repo, "init", "-q", "-b", "main")
    commit(minimal_repo, "one endpoint")
    h = Harness(store, minimal_repo, tmp_path)
    assert h.run()["dev"].result is RunResult.SUCCEEDED
    before = h.published("dev")
    (minimal_repo / "endpoints/dev/chat.yaml").unlink()
    commit(minimal_repo, "no endpoint left")
    blocked = h.run()["dev"]
    assert (blocked.result, blocked.reason) == (RunResult.BLOCKED, "EmptyRevision")
    assert "allowEmpty" in blocked.message
    assert h.published("dev") == before
    edit(minimal_repo, "llmops.yaml", 'dev: {namespace: "{team}-dev"}',
         'dev: {namespace: "{team}-dev", allowEmpty: true, maxPrunePercent: 100}')
    commit(minimal_repo, "dev may be empty")
    done = h.run()["dev"]
    assert done.result is RunResult.SUCCEEDED, done.message
    # Everything goes but the team's namespace: rendered prune-protected, it stays.
    kept = list(h.published("dev").objects)
    assert [(k.kind, k.name) for k in kept] == [("Namespace", "nlp-dev")]
    assert [item.key for item in state.read_inventory(store, "dev")] == kept


@pytest.mark.slow  # over 0.5 s of CPU on its own
def test_mass_delete_is_blocked_until_confirmed(h: Harness) -> None:
    h.run()
    before = h.published("dev")
    for path in (h.repo / "endpoints" / "dev").iterdir():
        path.unlink()
    sha = commit(h.repo, "dev: remove every endpoint")
    blocked = h.run()["dev"]
    assert blocked.result is RunResult.BLOCKED
    assert "maxPrunePercent 30%" in blocked.message
    assert h.published("dev") == before
    assert any(e.result == "blocked" for e in
               audit.AuditLog(h.store).query(environment="dev").entries)
    entries = h.audit_count()
    assert h.run()["dev"].result is RunResult.BLOCKED
    assert h.audit_count() == entries
    reconciler.confirm_prune(h.store, "dev", sha, "alice")
    done = h.run()["dev"]
    assert done.result is RunResult.SUCCEEDED
    assert not any(k.kind == "Deployment" for k in h.published("dev").objects)


@pytest.mark.slow  # over 0.5 s of CPU on its own
def test_prune_protected_objects_are_kept(h: Harness) -> None:
    edit(h.repo, "policies/governance.yaml", "kinds: [PersistentVolumeClaim]",
         "kinds: [PersistentVolumeClaim, Ingress]")
    edit(h.repo, "policies/governance.yaml", "environments: [prod]\n      kinds",
         "environments: [prod, dev]\n      kinds")
    edit(h.repo, "llmops.yaml", "maxPrunePercent: 30", "maxPrunePercent: 50")
    commit(h.repo, "protect ingresses")
    h.run()
    (h.repo / "endpoints/dev/sql-assistant.yaml").unlink()
    commit(h.repo, "drop dev sql-assistant")
    result = h.run()["dev"]
    assert result.result is RunResult.SUCCEEDED, result.message
    names = {(k.kind, k.name) for k in h.published("dev").objects}
    assert ("Ingress", "sql-assistant") in names
    assert ("Deployment", "sql-assistant") not in names
    assert ("Ingress", "sql-assistant") in {
        (i.key.kind, i.key.name) for i in state.read_inventory(h.store, "dev")}


def test_change_window_blocks_prod_changes_on_saturday(h: Harness) -> None:
    h.run()
    edit(h.repo, "endpoints/prod/support-chat.yaml", "    max: 4\n", "    max: 5\n")
    commit(h.repo, "prod: scale out")
    h.clock = SATURDAY
    result = h.run()["prod"]
    assert result.result is RunResult.BLOCKED
    assert result.reason == "PolicyDenied"
    assert "change window" in result.message


def test_a_shut_change_window_is_one_blocked_run_not_one_per_pass(h: Harness) -> None:
    """The daemon passes every minute all weekend; the blocked revision stays one run and
    one audit entry (the reason names when the window opens, not the minute it was read)."""
    h.run()
    edit(h.repo, "endpoints/prod/support-chat.yaml", "    max: 4\n", "    max: 5\n")
    commit(h.repo, "prod: scale out")
    h.clock = SATURDAY
    first = h.run()["prod"]
    assert first.result is RunResult.BLOCKED
    assert first.run_id is not None
    runs, entries = len(state.list_runs(h.store, environment="prod", limit=50)), h.audit_count()
    for later in (timedelta(minutes=1), timedelta(hours=30)):
        h.clock = SATURDAY + later
        again = h.run()["prod"]
        assert again.result is RunResult.BLOCKED
        assert again.message == first.message
    assert len(state.list_runs(h.store, environment="prod", limit=50)) == runs
    assert h.audit_count() == entries
    # Monday 10:00 in Berlin: the first pass inside the window applies it, no new commit.
    h.clock = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    opened = h.run()["prod"]
    assert opened.result is RunResult.SUCCEEDED, opened.message
    assert opened.revision == first.revision


def test_unreachable_remote_keeps_the_last_good_revision(
        store: Store, template_git_repo: Path, tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(template_git_repo), str(remote)],
                   check=True)
    h = Harness.__new__(Harness)
    Harness.__init__(h, store, remote, tmp_path)
    h.src = snapshots.open_source(f"file://{remote}", "main", h.work)
    h.rec = h.make()
    first = h.run()
    good = first["dev"].revision
    remote.rename(tmp_path / "gone.git")
    results = h.run()
    assert {r.revision for r in results.values()} == {good}
    status = state.get_environment_status(store, "dev")
    assert status is not None
    assert status.source_state is SourceState.UNAVAILABLE
    assert h.published("dev").revision == good
    # A reconciler with no good revision at all stalls: the repo is unknown, not empty.
    fresh = Harness.__new__(Harness)
    Harness.__init__(fresh, store, template_git_repo, tmp_path / "fresh")
    fresh.src = snapshots.open_source(f"file://{tmp_path / 'gone-too.git'}", "main", fresh.work)
    fresh.rec = fresh.make(environments=["dev"])
    (stalled,) = fresh.rec.run_once()
    assert (stalled.result, stalled.reason) == (RunResult.FAILED, "SourceUnavailable")
    assert h.published("dev").revision == good


def test_store_down_applies_nothing(template_git_repo: Path, tmp_path: Path) -> None:
    store = Store("postgresql+psycopg://postgres@127.0.0.1:1/none", connect_timeout=1)
    src = snapshots.open_source(str(template_git_repo), "main", tmp_path / "work")
    rec = reconciler.Reconciler(store, src, lambda env, cfg: HydrateActuator(tmp_path / "out"),
                                clock=lambda: WEDNESDAY)
    with pytest.raises(StoreUnavailable):
        rec.run_once()
    assert not (tmp_path / "out").exists()


class _FailingAudit(audit.AuditLog):
    def append(self, entry: audit.AuditEntry) -> audit.AuditRecord:
        if entry.result == "intent":
            raise StoreUnavailable("db", "connection lost")
        return super().append(entry)


def test_intent_entry_failure_applies_nothing(h: Harness) -> None:
    h.rec.audit = _FailingAudit(h.store)
    with pytest.raises(StoreUnavailable):
        h.run()
    assert not (h.out / "dev").exists()


def test_the_intent_is_committed_before_the_actuator_runs(h: Harness, store_url: str) -> None:
    """Seen from another connection while the actuator acts: the run's intent entry and the
    widened inventory are durable already (no pass-wide transaction holds them back)."""
    seen: list[tuple[str, int]] = []

    class Watching(HydrateActuator):
        def act(self, plan: ActPlan) -> ActResult:
            with Store(store_url) as other:
                (entry,) = audit.AuditLog(other).query(result="intent",
                                                       environment=plan.environment).entries
                seen.append((entry.reason, len(state.read_inventory(other, "dev"))))
            return super().act(plan)

    h.actuator = Watching(h.out)
    h.rec = h.make(environments=["dev"])
    (result,) = h.rec.run_once()
    assert result.result is RunResult.SUCCEEDED
    ((reason, inventory),) = seen
    assert reason.startswith(f"run {result.run_id}: write ")
    assert inventory == len(h.published("dev").objects)


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from datetime import UTC, datetime
    from pathlib import Path
    from llmops.engine.run import reconciler
    from llmops.engine.source import snapshots
    from llmops.engine.actuate import hydrate
    from llmops.engine.actuate.hydrate import HydrateActuator
    from llmops.engine.store.db import Store

    class KilledMidway(HydrateActuator):
        def act(self, plan):
            if MIDWAY:  # publish the first half of the objects, then die
                half = sorted(plan.desired)[:len(plan.desired) // 2]
                hydrate.write_set(self.root, plan.environment, plan.revision,
                                  [plan.desired[k] for k in half])
            os.kill(os.getpid(), signal.SIGKILL)

    url, repo, work, out = sys.argv[1:5]
    MIDWAY = sys.argv[5:] == ["midway"]
    rec = reconciler.Reconciler(Store(url), snapshots.open_source(repo, "main", Path(work)),
                                lambda env, cfg: KilledMidway(Path(out)),
                                environments=["dev"],
                                clock=lambda: datetime(2026, 11, 25, 9, tzinfo=UTC))
    rec.run_once()
""")


@pytest.mark.slow
def test_killed_between_intent_and_outcome_resumes_cleanly(h: Harness, store_url: str) -> None:
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, store_url, str(h.repo),
                           str(h.work), str(h.out)], capture_output=True, text=True, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    (running,) = state.list_runs(h.store, environment="dev")
    assert running.result is RunResult.RUNNING
    assert len(state.read_inventory(h.store, "dev")) > 0  # widened before acting
    h.rec = h.make(environments=["dev"])
    (result,) = h.rec.run_once()
    assert result.result is RunResult.SUCCEEDED
    interrupted = state.get_run(h.store, running.id)
    assert interrupted is not None
    assert interrupted.result is RunResult.FAILED
    assert "interrupted" in interrupted.error
    assert {i.key for i in state.read_inventory(h.store, "dev")} == set(
        h.published("dev").objects)
    assert audit.verify(h.store).ok
    assert any("interrupted" in e.reason for e in audit.AuditLog(h.store).query().entries)


@pytest.mark.slow
def test_killed_mid_act_leaves_intent_and_an_interrupted_outcome(h: Harness,
                                                                 store_url: str) -> None:
    """SIGKILL after half the objects are published: the intent was durable before acting;
    the next pass records the run as interrupted with what it left unfinished, applies only
    what is missing (each recorded), and ends consistent."""
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, store_url, str(h.repo),
                           str(h.work), str(h.out), "midway"], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    log = audit.AuditLog(h.store)
    (intent,) = log.query(result="intent", environment="dev").entries
    (running,) = state.list_runs(h.store, environment="dev")
    assert intent.reason.startswith(f"run {running.id}: write ")
    planned = set(running.plan["write"])
    already = set(h.published("dev").objects)
    assert 0 < len(already) < len(planned)

    h.rec = h.make(environments=["dev"])
    (result,) = h.rec.run_once()
    assert result.result is RunResult.SUCCEEDED
    (closed,) = log.query(result="interrupted", environment="dev").entries
    assert closed.id > intent.id
    assert closed.source_commit == running.revision
    assert closed.reason.startswith(f"run {running.id} interrupted: {len(planned)} planned")
    assert set(closed.details["unfinished"]["write"]) == planned
    # The recovery pass applied exactly what was missing, one entry each, none twice.
    applied = [e.target for e in log.query(action="apply", environment="dev").entries
               if e.id > closed.id]
    assert sorted(applied) == sorted({str(k) for k in planned} - {str(k) for k in already})
    assert result.counts.created == len(applied)
    assert {str(i.key) for i in state.read_inventory(h.store, "dev")} == {
        str(k) for k in h.published("dev").objects} == planned
    outcome = log.query(environment="dev", action="reconcile", limit=1).entries[0]
    assert (outcome.result, outcome.reason.split(":")[0]) == ("succeeded", f"run {result.run_id}")
    assert audit.verify(h.store).ok
    (again,) = h.rec.run_once()  # nothing left: no run, no entry
    assert again.result is RunResult.NOOP
    assert log.head() == outcome


@pytest.mark.slow  # over 0.5 s of CPU on its own
def test_hand_edited_published_file_is_put_back(h: Harness) -> None:
    h.run()
    published = h.published("dev")
    key = next(k for k in published.objects if k.kind == "Service")
    path = (h.out / "dev").resolve() / hydrate.file_name(key)
    path.write_text(path.read_text().replace("port: 80", "port: 8081"))
    result = h.run()["dev"]
    assert result.result is RunResult.SUCCEEDED
    assert result.counts.configured == 1
    assert h.published("dev").objects[key] == published.objects[key]
    entries = audit.AuditLog(h.store).query(action="apply", environment="dev").entries
    assert entries[0].reason.startswith("drift corrected")


def test_reader_never_sees_a_half_written_set(tmp_path: Path) -> None:
    objects = [{"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": f"cm-{i}", "namespace": "ns"}, "data": {"v": "1"}}
               for i in range(50)]
    hydrate.write_set(tmp_path, "dev", "rev1", objects)
    first = os.readlink(tmp_path / "dev")
    for obj in objects:
        obj["data"] = {"v": "2"}
    hydrate.write_set(tmp_path, "dev", "rev2", objects)
    assert os.readlink(tmp_path / "dev") != first
    index = json.loads((tmp_path / "dev" / "index.json").read_text())
    assert index["revision"] == "rev2"
    assert len(index["objects"]) == 50


def test_a_new_set_links_the_files_that_did_not_change_and_rewrites_hand_edits(
        tmp_path: Path) -> None:
    def config_map(name: str, value: str) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": "ns"}, "data": {"v": value}}

    def inode(name: str) -> int:
        return (tmp_path / "dev" / "ns" / f"core_ConfigMap_{name}.yaml").stat().st_ino

    def publish(revision: str, objects: list[dict[str, Any]]) -> None:
        desired = {ResourceKey.of(o): o for o in objects}
        actuator.observe("dev")
        actuator.act(ActPlan("dev", revision, desired, dict.fromkeys(desired, "configured")))

    actuator = HydrateActuator(tmp_path)
    publish("rev1", [config_map("a", "1"), config_map("b", "1")])
    before = {name: inode(name) for name in "ab"}
    publish("rev2", [config_map("a", "1"), config_map("b", "2")])
    assert inode("a") == before["a"]  # same content: linked, not written again
    assert inode("b") != before["b"]
    edited = tmp_path / "dev" / "ns" / "core_ConfigMap_a.yaml"
    edited.write_text(edited.read_text().replace("v: '1'", "v: '9'"))
    publish("rev3", [config_map("a", "1"), config_map("b", "2")])
    assert inode("a") != before["a"]
    assert hydrate.read_set(tmp_path, "dev").objects[  # type: ignore[union-attr]
        ResourceKey("", "ConfigMap", "ns", "a")] == config_map("a", "1")


def test_reconcile_cli_once(template_git_repo: Path, tmp_path: Path,
                            monkeypatch: pytest.MonkeyPatch, cli) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("LLMOPS_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(reconciler, "datetime", _FixedDatetime)
    result = cli("reconcile", "--once", "--repo", template_git_repo, "--env", "dev",
                 "--out", tmp_path / "out")
    assert result.code == 0, result.out + result.err
    assert result.out.startswith("dev: succeeded at ")
    assert (tmp_path / "out" / "dev" / "index.json").is_file()
    status = cli("status")
    assert status.code == 0
    assert status.out.startswith("dev: Ready")
    again = cli("reconcile", "--once", "--repo", template_git_repo, "--env", "dev",
                "--out", tmp_path / "out")
    assert again.out.startswith("dev: noop")
    verify = cli("audit", "verify")
    assert verify.code == 0
    assert "audit chain intact" in verify.out


class _FixedDatetime(datetime):
    @classmethod
    def now(cls, tz: object = None) -> _FixedDatetime:  # type: ignore[override]
        return cls(2026, 11, 25, 9, tzinfo=UTC)


def test_service_builds_the_configured_actuators(tmp_path: Path) -> None:
    cfg = Settings(home=tmp_path)
    make = compose.actuator_factory(cfg)
    env = repoconfig.Environment(namespace="x", actuator=repoconfig.ActuatorName.NONE)
    assert make("dev", env).name == "none"
    assert make("dev", repoconfig.Environment(namespace="x")).name == "hydrate"
    plan = ActPlan("dev", "r", {}, {})
    assert make("dev", env).act(plan) == ActResult({})


@pytest.mark.slow  # over 0.5 s of CPU on its own
def test_unchanged_specs_are_not_parsed_or_rendered_again(
        h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    h.run()
    parsed, rendered = h.rec.cache.misses, h.rec.render_cache.misses
    assert rendered > 0
    edit(h.repo, "endpoints/stg/support-chat.yaml", "version: 1.2.0", "version: 1.3.0")
    commit(h.repo, "stg: support-chat 1.3.0")
    hashed: list[KubeObject] = []
    real_hash = decide.object_hash
    monkeypatch.setattr(decide, "object_hash", lambda obj: hashed.append(obj) or real_hash(obj))
    h.run()
    # The inventory hashes only the objects rendered again: stg's endpoint, its experiment,
    # and the environment-wide ones (built every pass), not sql-assistant's.
    owners = {manifest.owner_of(obj) for obj in hashed}
    assert owners == {("ServingEndpoint", "support-chat"), ("Environment", "stg"),
                      ("PromptExperiment", "support-greeting-v1-vs-v2"),
                      ("Policy", "governance")}
    assert h.rec.cache.misses == parsed + 1  # only the changed file was parsed
    # Only stg's support-chat endpoint and the experiment on it were rendered again.
    assert h.rec.render_cache.misses == rendered + 2
    misses = h.rec.render_cache.misses
    h.run()  # resync of the same revision: nothing parsed, nothing rendered
    assert (h.rec.cache.misses, h.rec.render_cache.misses) == (parsed + 1, misses)


@pytest.mark.slow  # over 0.5 s of CPU on its own
def test_a_pass_over_an_unchanged_revision_writes_nothing_and_parses_nothing(
        h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """After the pass that published a revision, passes over the same revision (nothing
    edited by hand) neither write to the store nor parse the published files again."""
    h.run()
    statements: list[str] = []
    event.listen(h.store.engine, "before_cursor_execute",
                 lambda *args: statements.append(args[2].split(None, 1)[0].upper()))
    parses: list[object] = []
    real_load = yaml.load
    monkeypatch.setattr(hydrate.yaml, "load", lambda *a, **k: parses.append(a) or real_load(
        *a, **k))
    for _ in range(2):
        results = h.run()
        assert {r.result for r in results.values()} == {RunResult.NOOP}
    assert not {"INSERT", "UPDATE", "DELETE"} & set(statements), statements
    assert parses == []
    # A hand edit of a published file is still seen, and put back, by the next pass.
    key = next(k for k in h.published("dev").objects if k.kind == "Service")
    path = (h.out / "dev").resolve() / hydrate.file_name(key)
    path.write_text(path.read_text().replace("port: 80", "port: 8081"))
    result = h.run()["dev"]
    assert (result.result, result.counts.configured) == (RunResult.SUCCEEDED, 1)


def test_gpu_samples_cover_endpoints_and_training_jobs(h: Harness) -> None:
    h.run()
    stg = state.gpu_samples(h.store, environment="stg")
    training = [s for s in stg if s.workload == "training"]
    # The hydrate actuator cannot see the Job run: its GPUs are sampled as not held.
    assert [(s.endpoint, s.gpus, s.replicas) for s in training] == [("support-chat-sft", 4, 0)]
    assert {s.endpoint for s in stg if s.workload == "serving"} == {"support-chat",
                                                                    "sql-assistant"}


@pytest.mark.slow  # over 0.5 s of CPU on its own
def test_passes_over_an_unchanged_revision_still_sample_gpus_when_due(
        h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    h.run()
    h.run()  # nothing to do: the next pass over this revision returns at once
    before = len(state.gpu_samples(h.store, environment="prod"))
    monkeypatch.setattr(reconciler, "GPU_SAMPLE_SECONDS", 0.0)
    assert h.run()["prod"].result is RunResult.NOOP
    assert len(state.gpu_samples(h.store, environment="prod")) > before
