"""The `kubernetes` actuator end to end: a real git repo from the template, a real store
(SQLite and PostgreSQL), the reconciler, and the official client talking to the
Kubernetes API emulator over HTTP; faults injected at the emulator."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kube_emulator import RunningEmulator, running_emulator
from kubernetes.dynamic import DynamicClient
from test_reconcile import WEDNESDAY, commit, git

from conftest import edit
from llmops.engine.actuate import kube
from llmops.engine.actuate.base import ActPlan, ActuatorError, Outcome
from llmops.engine.actuate.health import HealthStatus
from llmops.engine.run import reconciler
from llmops.engine.settings import KubeSettings
from llmops.engine.source import snapshots
from llmops.engine.spec import repoconfig
from llmops.engine.store import audit, state
from llmops.engine.store.db import Store
from llmops.engine.store.models import RunResult
from llmops.engine.types import ResourceKey

# Slow tier: every test applies to the Kubernetes emulator over HTTP.
pytestmark = pytest.mark.slow

ORDER = {kind: rank for rank, kinds in enumerate((
    ("Namespace",), ("ResourceQuota",), ("ConfigMap", "Secret"), ("Deployment", "Job"),
    ("Service",), ("Ingress",), ("HorizontalPodAutoscaler", "PodDisruptionBudget")))
    for kind in kinds}


OBJECT_PATH = re.compile(r"^/apis?/(?:[^/]+/)?v[^/]+/namespaces/[^/]+(?:/[^/]+/[^/]+)?$")
"""The URL of one object (a Namespace, or an object in one); not discovery, not a list."""


def point_at_emulator(repo: Path, kubeconfig: Path) -> None:
    """Every environment of `llmops.yaml` applies to the emulator with the kubernetes actuator."""
    path = repo / "llmops.yaml"
    text = re.sub(r"cluster:\n\s+context: [\w-]+\n",
                  f"cluster: {{kubeconfig: \"{kubeconfig}\", context: emulator}}\n",
                  path.read_text())
    path.write_text(text.replace("actuator: hydrate", "actuator: kubernetes"))


class KubeHarness:
    """The reconciler with kubernetes actuators on the emulator; backoff sleeps recorded."""

    def __init__(self, store: Store, repo: Path, tmp: Path, kube_: RunningEmulator,
                 envs: tuple[str, ...] = ("dev",)) -> None:
        self.store = store
        self.repo = repo
        self.kube = kube_
        self.server = kube_.server
        self.sleeps: list[float] = []
        self.actuators: dict[tuple[str, bool], kube.KubernetesActuator] = {}
        self.src = snapshots.open_source(str(repo), "main", tmp / "work")
        self.rec = reconciler.Reconciler(store, self.src, self.actuator_for,
                                         environments=envs, clock=lambda: WEDNESDAY)

    def actuator_for(self, env: str, config: repoconfig.Environment) -> kube.KubernetesActuator:
        key = (env, config.forceConflicts)
        if key not in self.actuators:
            self.actuators[key] = kube.KubernetesActuator(
                KubeSettings(), config.cluster, force_conflicts=config.forceConflicts,
                sleep=self.sleeps.append)
        return self.actuators[key]

    def run_blocked(self, reason: str, env: str = "dev") -> None:
        """A pass that blocks ``env`` for ``reason`` and sends the cluster no write."""
        self.server.reset_counters()
        result = self.run()[env]
        assert (result.result, result.reason) == (RunResult.BLOCKED, reason)
        assert self.server.write_count() == 0

    def run(self) -> dict[str, reconciler.PassResult]:
        return {r.environment: r for r in self.rec.run_once()}

    def live(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        versions = {"Deployment": "apps/v1", "Ingress": "networking.k8s.io/v1",
                    "HorizontalPodAutoscaler": "autoscaling/v2", "Job": "batch/v1"}
        found: dict[str, Any] | None = self.server.get(versions.get(kind, "v1"), kind, name,
                                                       namespace)
        return found

    def image(self, namespace: str, name: str) -> str:
        dep = self.live("Deployment", namespace, name)
        assert dep is not None
        return str(dep["spec"]["template"]["spec"]["containers"][0]["image"])

    def client_writes(self) -> list[tuple[str, str, str]]:
        return [(w.verb, w.kind, w.name) for w in self.server.writes()]

    def object_requests(self) -> Counter[tuple[str, str]]:
        """Requests to single objects since the last reset (discovery and lists left
        out), by method and by whether they were about the ApplySet parent Secret."""
        out: Counter[tuple[str, str]] = Counter()
        for (method, path), n in self.server.stats.requests.items():
            if OBJECT_PATH.match(path):
                out[method, "parent" if "/secrets/llmops-" in path else "object"] += n
        return out


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[RunningEmulator]:
    with running_emulator(tmp_path) as kube_:
        yield kube_


@pytest.fixture
def kh(store: Store, template_git_repo: Path, tmp_path: Path,
       emulator: RunningEmulator) -> KubeHarness:
    point_at_emulator(template_git_repo, emulator.kubeconfig)
    commit(template_git_repo, "apply with the kubernetes actuator")
    return KubeHarness(store, template_git_repo, tmp_path, emulator)


def other_client(kube_: RunningEmulator, tmp_path: Path, name: str) -> DynamicClient:
    return DynamicClient(kube_.api_client(), cache_file=str(tmp_path / f"{name}.json"))


# --------------------------------------------------------------------------- the happy path


def test_first_apply_creates_every_object_and_reports_health(
        store: Store, template_git_repo: Path, tmp_path: Path,
        emulator: RunningEmulator) -> None:
    point_at_emulator(template_git_repo, emulator.kubeconfig)
    head = commit(template_git_repo, "apply with the kubernetes actuator")
    h = KubeHarness(store, template_git_repo, tmp_path, emulator, envs=())
    results = h.run()
    assert {env: r.result for env, r in results.items()} == {
        "dev": RunResult.SUCCEEDED, "stg": RunResult.SUCCEEDED, "prod": RunResult.SUCCEEDED}
    assert results["stg"].counts.created == 18
    for env in ("dev", "stg", "prod"):
        inventory = {i.key for i in state.read_inventory(store, env)}
        assert inventory == set(h.actuators[(env, False)].observe(env))
        dep = h.live("Deployment", f"nlp-platform-{env}", "support-chat")
        assert dep is not None
        assert dep["metadata"]["annotations"]["llmops.io/source-commit"] == head
        assert [m["manager"] for m in dep["metadata"]["managedFields"]
                if m["operation"] == "Apply"] == ["llmops"]
        healths = {s.key: s.health for s in state.list_object_status(store, env)}
        assert set(healths) == inventory
        # Each write's health is what its apply returned: the workloads, routes and
        # autoscalers no controller had seen yet are Progressing, the rest Healthy.
        waiting = {k.kind for k, health in healths.items() if health != "Healthy"}
        assert "Deployment" in waiting
        assert waiting <= {"Deployment", "Job", "HorizontalPodAutoscaler", "Ingress"}
        assert set(healths.values()) == {"Healthy", "Progressing"}
    # The next pass writes nothing and records the health it lists.
    assert {r.result for r in h.run().values()} == {RunResult.NOOP}
    for env in ("dev", "stg", "prod"):
        assert {s.health for s in state.list_object_status(store, env)} == {"Healthy"}
    job = ResourceKey("batch", "Job", "nlp-platform-stg", "support-chat-sft-586f9b55")
    assert h.actuators[("stg", False)].health("stg", [job]) == {job: HealthStatus.HEALTHY}
    # Applied in order: namespaces and quotas, config, workloads, services, routes, HPAs.
    for env in ("dev", "stg", "prod"):
        ranks = [ORDER[w.kind] for w in h.server.writes() if w.verb == "apply"
                 and (w.namespace or w.name).endswith(f"-{env}")]
        assert ranks == sorted(ranks)
        assert len(ranks) == results[env].counts.created


def test_first_apply_sends_one_request_per_object(kh: KubeHarness) -> None:
    """Into new namespaces: each object's apply, and a dry run only of the namespaces
    (what lives in one cannot be dry-run before it exists); no object is read before
    or after its write, only the ApplySet parent (when observing and before widening)."""
    kh.server.reset_counters()
    result = kh.run()["dev"]
    assert result.result is RunResult.SUCCEEDED, result.message
    objects = result.counts.created
    namespaces = sum(1 for _, kind, _ in kh.client_writes() if kind == "Namespace")
    assert (objects, namespaces) == (16, 2)
    assert kh.object_requests() == {("PATCH", "object"): objects + namespaces,
                                    ("PATCH", "parent"): 1, ("GET", "parent"): 2}


def test_a_drifted_object_is_dry_run_read_and_applied(kh: KubeHarness) -> None:
    """An existing object to write: its dry run (200, not 201: it exists), one read of
    it to diff against, its apply; nothing else is read."""
    kh.run()
    edit(kh.repo, "endpoints/dev/support-chat.yaml", "--max-model-len=8192",
         "--max-model-len=4096")
    commit(kh.repo, "dev: support-chat with a shorter context")
    kh.server.reset_counters()
    result = kh.run()["dev"]
    assert (result.result, result.counts.configured) == (RunResult.SUCCEEDED, 1)
    assert kh.object_requests() == {("PATCH", "object"): 2, ("GET", "object"): 1,
                                    ("GET", "parent"): 2}


def test_second_pass_makes_zero_writes(kh: KubeHarness) -> None:
    assert kh.run()["dev"].result is RunResult.SUCCEEDED
    kh.server.reset_counters()
    second = kh.run()["dev"]
    assert second.result is RunResult.NOOP
    assert kh.server.write_count() == 0
    assert kh.server.stats.matching("PATCH") == 0


def test_model_bump_writes_only_the_affected_deployment(
        store: Store, template_git_repo: Path, tmp_path: Path,
        emulator: RunningEmulator) -> None:
    point_at_emulator(template_git_repo, emulator.kubeconfig)
    commit(template_git_repo, "apply with the kubernetes actuator")
    h = KubeHarness(store, template_git_repo, tmp_path, emulator, envs=("stg",))
    h.run()
    emulator.server.reset_counters()
    edit(h.repo, "endpoints/stg/support-chat.yaml", "version: 1.2.0", "version: 1.3.0")
    commit(h.repo, "stg: support-chat 1.3.0")
    result = h.run()["stg"]
    assert result.result is RunResult.SUCCEEDED, result.message
    assert (result.counts.created, result.counts.configured, result.counts.deleted) == (0, 1, 0)
    assert h.client_writes() == [("apply", "Deployment", "support-chat")]
    dep = h.live("Deployment", "nlp-platform-stg", "support-chat")
    assert dep is not None
    env = {e["name"]: e.get("value") for e in
           dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MODEL_VERSION"] == "1.3.0"


def test_removed_endpoint_is_pruned_in_reverse_order(kh: KubeHarness) -> None:
    kh.run()
    (kh.repo / "endpoints/dev/sql-assistant.yaml").unlink()
    edit(kh.repo, "llmops.yaml", "maxPrunePercent: 30", "maxPrunePercent: 50")
    commit(kh.repo, "drop dev sql-assistant")
    kh.server.reset_counters()
    result = kh.run()["dev"]
    assert result.result is RunResult.SUCCEEDED, result.message
    assert result.counts.deleted == 6
    deleted = [(kind, name) for verb, kind, name in kh.client_writes() if verb == "delete"]
    assert {name for _, name in deleted} == {"sql-assistant", "sql-assistant-chat",
                                             "sql-assistant-prompt"}
    ranks = [ORDER[kind] for kind, _ in deleted]
    assert ranks == sorted(ranks, reverse=True)
    assert kh.live("Deployment", "data-science-dev", "sql-assistant") is None
    assert kh.live("Deployment", "nlp-platform-dev", "support-chat") is not None
    pruned = audit.AuditLog(kh.store).query(action="prune", environment="dev").entries
    assert "Deployment/data-science-dev/sql-assistant" in {e.target for e in pruned}


def test_health_follows_the_workloads(kh: KubeHarness) -> None:
    kh.run()
    act = kh.actuators[("dev", False)]
    chat = ResourceKey("apps", "Deployment", "nlp-platform-dev", "support-chat")
    sql = ResourceKey("apps", "Deployment", "data-science-dev", "sql-assistant")
    ingress = ResourceKey("networking.k8s.io", "Ingress", "nlp-platform-dev", "support-chat")
    gone = ResourceKey("", "ConfigMap", "nlp-platform-dev", "never-applied")
    kh.server.controllers.stall_deployment("nlp-platform-dev", "support-chat")
    kh.server.controllers.set_state("Deployment", "data-science-dev", "sql-assistant",
                                    "progressing")
    assert act.health("dev", [chat, sql, ingress, gone]) == {
        chat: HealthStatus.DEGRADED, sql: HealthStatus.PROGRESSING,
        ingress: HealthStatus.HEALTHY, gone: HealthStatus.MISSING}


def test_failed_job_is_degraded(store: Store, template_git_repo: Path, tmp_path: Path,
                                emulator: RunningEmulator) -> None:
    point_at_emulator(template_git_repo, emulator.kubeconfig)
    commit(template_git_repo, "apply with the kubernetes actuator")
    h = KubeHarness(store, template_git_repo, tmp_path, emulator, envs=("stg",))
    h.run()
    job = ResourceKey("batch", "Job", "nlp-platform-stg", "support-chat-sft-586f9b55")
    emulator.server.controllers.fail_job(job.namespace, job.name)
    assert h.actuators[("stg", False)].health("stg", [job]) == {job: HealthStatus.DEGRADED}


TRAINING_NAMESPACE = "nlp-platform-stg"


def training_job(h: KubeHarness) -> ResourceKey:
    (job,) = [ResourceKey.of(o) for o in h.server.objects("Job")]
    return job


def ttl_deletes(emulator: RunningEmulator, tmp_path: Path, job: ResourceKey) -> None:
    """What the TTL-after-finished controller does once the Job's TTL has passed."""
    ttl = other_client(emulator, tmp_path, "ttl-after-finished")
    jobs = ttl.resources.get(api_version="batch/v1", kind="Job")
    ttl.delete(jobs, name=job.name, namespace=job.namespace, propagation_policy="Background")


@pytest.mark.parametrize(("ends", "health", "phase"), [
    ("complete", HealthStatus.HEALTHY, "Complete"),
    ("failed", HealthStatus.DEGRADED, "Failed (BackoffLimitExceeded)")])
def test_a_finished_job_deleted_by_its_ttl_is_not_run_again(
        store: Store, template_git_repo: Path, tmp_path: Path, emulator: RunningEmulator,
        ends: str, health: HealthStatus, phase: str) -> None:
    point_at_emulator(template_git_repo, emulator.kubeconfig)
    commit(template_git_repo, "apply with the kubernetes actuator")
    h = KubeHarness(store, template_git_repo, tmp_path, emulator, envs=("stg",))
    assert h.run()["stg"].result is RunResult.SUCCEEDED
    job = training_job(h)
    live = h.live("Job", job.namespace, job.name)
    assert live is not None
    assert live["spec"]["ttlSecondsAfterFinished"] == 7 * 24 * 3600
    emulator.server.controllers.set_state("Job", job.namespace, job.name, ends)
    assert h.run()["stg"].result is RunResult.NOOP  # sees it finished: remembered
    ttl_deletes(emulator, tmp_path, job)
    emulator.server.reset_counters()
    after = h.run()["stg"]
    assert after.result is RunResult.NOOP, after.message
    assert emulator.server.write_count() == 0, "the training ran again"
    assert h.live("Job", job.namespace, job.name) is None
    status = {s.key: s for s in state.list_object_status(store, "stg")}[job]
    assert status.health == health.value
    assert f"finished ({phase}" in status.message
    assert "not run again" in status.message
    (spec,) = state.list_spec_status(store, environment="stg", kind="TrainingJob")
    assert spec.health == health.value
    assert h.rec.wait_healthy("stg", timeout=0, sleep=lambda s: None)[job] is health

    # Another pod template (here more epochs) is another run.
    edit(h.repo, "training/support-chat-sft.yaml", "num_train_epochs: 3", "num_train_epochs: 4")
    commit(h.repo, "stg: one more epoch")
    again = h.run()["stg"]
    assert again.result is RunResult.SUCCEEDED, again.message
    assert (again.counts.created, again.counts.deleted) == (1, 1)  # the old one: already gone
    rerun = training_job(h)
    assert rerun != job
    assert set(state.read_finished_jobs(store, "stg")) == set()

    # A removed TrainingJob is still pruned, and forgotten.
    h.run()  # sees the new run finished
    assert set(state.read_finished_jobs(store, "stg")) == {rerun}
    (h.repo / "training/support-chat-sft.yaml").unlink()
    commit(h.repo, "stg: drop the fine-tuning job")
    pruned = h.run()["stg"]
    assert pruned.result is RunResult.SUCCEEDED, pruned.message
    assert pruned.counts.deleted == 1
    assert h.server.objects("Job") == []
    assert state.read_finished_jobs(store, "stg") == {}


# --------------------------------------------------------------------------- drift and conflicts


def test_hand_edit_is_corrected_and_audited_as_drift(kh: KubeHarness, tmp_path: Path) -> None:
    kh.run()
    hand = other_client(kh.kube, tmp_path, "hand")
    deployments = hand.resources.get(api_version="apps/v1", kind="Deployment")
    hand.patch(deployments, name="support-chat", namespace="nlp-platform-dev",
               body={"spec": {"template": {"spec": {"containers": [
                   {"name": "server", "image": "evil/miner:1"}]}}}},
               content_type="application/strategic-merge-patch+json",
               field_manager="kubectl-edit")
    assert kh.image("nlp-platform-dev", "support-chat") == "evil/miner:1"
    kh.server.reset_counters()
    result = kh.run()["dev"]
    assert result.result is RunResult.SUCCEEDED, result.message
    assert result.counts.configured == 1
    assert kh.image("nlp-platform-dev", "support-chat") == "vllm/vllm-openai:v0.8.5"
    assert [w for w in kh.client_writes() if w[0] == "apply"] == [
        ("apply", "Deployment", "support-chat")]
    applied = audit.AuditLog(kh.store).query(action="apply", environment="dev").entries
    entry = next(e for e in applied if e.target == "Deployment/nlp-platform-dev/support-chat"
                 and e.reason.startswith("drift"))
    assert entry.reason.startswith("drift corrected")
    assert "image" in entry.reason
    assert 'kubectl-edit' in entry.reason


def sre_team_takes_the_image(kh: KubeHarness, tmp_path: Path) -> None:
    """Another applier (field manager sre-team) takes dev support-chat's image."""
    other = other_client(kh.kube, tmp_path, "other")
    deployments = other.resources.get(api_version="apps/v1", kind="Deployment")
    other.server_side_apply(
        deployments, name="support-chat", namespace="nlp-platform-dev", field_manager="sre-team",
        force_conflicts=True, body={
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "support-chat", "namespace": "nlp-platform-dev"},
            "spec": {"template": {"spec": {"containers": [
                {"name": "server", "image": "vllm/vllm-openai:v0.9.0"}]}}}})


def test_conflict_with_another_applier_is_reported_then_forced_when_configured(
        kh: KubeHarness, tmp_path: Path) -> None:
    kh.run()
    sre_team_takes_the_image(kh, tmp_path)
    result = kh.run()["dev"]
    assert (result.result, result.reason) == (RunResult.FAILED, "ApplyFailed")
    assert 'conflict with "sre-team"' in result.message
    assert "image" in result.message
    assert "Deployment/nlp-platform-dev/support-chat: dry-run failed (Conflict)" in result.message
    assert kh.image("nlp-platform-dev", "support-chat") == "vllm/vllm-openai:v0.9.0"
    objects = {s.key.name: s for s in state.list_object_status(kh.store, "dev")
               if s.key.kind == "Deployment"}
    assert 'conflict with "sre-team"' in objects["support-chat"].last_error

    edit(kh.repo, "llmops.yaml", "    actuator: kubernetes\n  stg:",
         "    actuator: kubernetes\n    forceConflicts: true\n  stg:")
    commit(kh.repo, "dev: take over conflicting fields")
    forced = kh.run()["dev"]
    assert forced.result is RunResult.SUCCEEDED, forced.message
    assert kh.image("nlp-platform-dev", "support-chat") == "vllm/vllm-openai:v0.8.5"


def test_a_spec_can_opt_in_to_take_conflicting_fields(kh: KubeHarness, tmp_path: Path) -> None:
    kh.run()
    sre_team_takes_the_image(kh, tmp_path)
    edit(kh.repo, "endpoints/dev/support-chat.yaml", "  name: support-chat\n",
         '  name: support-chat\n  annotations:\n    llmops.io/force-conflicts: "true"\n')
    commit(kh.repo, "support-chat takes its fields back")
    result = kh.run()["dev"]
    assert result.result is RunResult.SUCCEEDED, result.message
    assert kh.image("nlp-platform-dev", "support-chat") == "vllm/vllm-openai:v0.8.5"


# --------------------------------------------------------------------------- prune safety


def test_keda_and_gateway_objects_are_listed_and_pruned_once_applied(kh: KubeHarness) -> None:
    """Types an environment renders only when it chooses them (KEDA, Gateway API) are
    listed once the ApplySet parent lists their kind, so a removed one is pruned."""
    path = kh.repo / "llmops.yaml"
    path.write_text(path.read_text().replace("    serving:\n", (
        "    serving:\n      autoscaler: keda\n      prometheusUrl: http://prometheus:9090\n"
        "      routing: gateway-api\n      gateway: {name: public}\n"), 1))
    commit(kh.repo, "dev: KEDA and the Gateway API")
    assert kh.run()["dev"].result is RunResult.SUCCEEDED
    kinds = {k.kind for k in kh.actuators[("dev", False)].observe("dev")}
    assert {"ScaledObject", "HTTPRoute"} <= kinds
    assert kh.server.get("keda.sh/v1alpha1", "ScaledObject", "sql-assistant",
                         "data-science-dev") is not None
    (kh.repo / "endpoints/dev/sql-assistant.yaml").unlink()
    commit(kh.repo, "dev: drop sql-assistant")
    kh.rec.confirm_prune = True  # 5 of 14 objects: over the template's prune threshold
    result = kh.run()["dev"]
    assert (result.result, result.counts.deleted) == (RunResult.SUCCEEDED, 5), result.message
    for api_version, kind in (("keda.sh/v1alpha1", "ScaledObject"),
                              ("gateway.networking.k8s.io/v1", "HTTPRoute")):
        assert kh.server.get(api_version, kind, "sql-assistant", "data-science-dev") is None


def test_empty_revision_prunes_nothing(store: Store, minimal_repo: Path, tmp_path: Path,
                                       emulator: RunningEmulator) -> None:
    edit(minimal_repo, "llmops.yaml", 'dev: {namespace: "{team}-dev"}',
         f'dev: {{namespace: "{{team}}-dev", actuator: kubernetes, cluster: '
         f'{{kubeconfig: "{emulator.kubeconfig}", context: emulator}}}}')
    git(minimal_repo, "init", "-q", "-b", "main")
    commit(minimal_repo, "one endpoint")
    h = KubeHarness(store, minimal_repo, tmp_path, emulator)
    assert h.run()["dev"].result is RunResult.SUCCEEDED
    (minimal_repo / "endpoints/dev/chat.yaml").unlink()
    commit(minimal_repo, "no endpoint left")
    h.run_blocked("EmptyRevision")
    assert h.live("Deployment", "nlp-dev", "chat") is not None


def test_mass_delete_over_the_threshold_is_blocked(kh: KubeHarness) -> None:
    kh.run()
    for path in (kh.repo / "endpoints" / "dev").iterdir():
        path.unlink()
    commit(kh.repo, "dev: remove every endpoint")
    kh.run_blocked("PruneThreshold")
    assert kh.live("Deployment", "data-science-dev", "sql-assistant") is not None


def test_prune_protected_object_is_kept(kh: KubeHarness) -> None:
    edit(kh.repo, "policies/governance.yaml", "kinds: [PersistentVolumeClaim]",
         "kinds: [PersistentVolumeClaim, Ingress]")
    edit(kh.repo, "policies/governance.yaml", "environments: [prod]\n      kinds",
         "environments: [prod, dev]\n      kinds")
    edit(kh.repo, "llmops.yaml", "maxPrunePercent: 30", "maxPrunePercent: 50")
    commit(kh.repo, "protect ingresses")
    kh.run()
    (kh.repo / "endpoints/dev/sql-assistant.yaml").unlink()
    commit(kh.repo, "drop dev sql-assistant")
    result = kh.run()["dev"]
    assert result.result is RunResult.SUCCEEDED, result.message
    assert kh.live("Ingress", "data-science-dev", "sql-assistant") is not None
    assert kh.live("Deployment", "data-science-dev", "sql-assistant") is None


# --------------------------------------------------------------------------- faults


def test_server_error_mid_apply_fails_the_run_prunes_nothing_and_recovers(
        kh: KubeHarness) -> None:
    kh.run()
    (kh.repo / "endpoints/dev/sql-assistant.yaml").unlink()
    edit(kh.repo, "llmops.yaml", "maxPrunePercent: 30", "maxPrunePercent: 50")
    edit(kh.repo, "endpoints/dev/support-chat.yaml", "version: 1.3.0", "version: 1.2.0")
    commit(kh.repo, "dev: support-chat back to 1.2.0, drop sql-assistant")
    kh.server.faults.error(500, times=5, method="PATCH", path=r"/deployments/")
    kh.server.reset_counters()
    failed = kh.run()["dev"]
    assert (failed.result, failed.reason) == (RunResult.FAILED, "ApplyFailed")
    assert "Deployment/nlp-platform-dev/support-chat: dry-run failed (InternalError)" in (
        failed.message)
    assert kh.sleeps == [0.2, 0.4, 0.8, 1.6]
    assert [w for w in kh.client_writes() if w[0] == "delete"] == []
    assert kh.live("Deployment", "data-science-dev", "sql-assistant") is not None
    run = state.get_run(kh.store, failed.run_id or 0)
    assert run is not None
    assert run.result is RunResult.FAILED

    done = kh.run()["dev"]
    assert done.result is RunResult.SUCCEEDED, done.message
    assert done.counts.deleted == 6
    assert kh.live("Deployment", "data-science-dev", "sql-assistant") is None
    dep = kh.live("Deployment", "nlp-platform-dev", "support-chat")
    assert dep is not None
    assert {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0][
        "env"]}["MODEL_VERSION"] == "1.2.0"


def test_failed_list_stalls_the_pass_and_deletes_nothing(kh: KubeHarness) -> None:
    kh.run()
    (kh.repo / "endpoints/dev/sql-assistant.yaml").unlink()
    edit(kh.repo, "llmops.yaml", "maxPrunePercent: 30", "maxPrunePercent: 50")
    commit(kh.repo, "drop dev sql-assistant")
    kh.server.faults.error(500, times=5, method="GET", path=r"^/apis/apps/v1/deployments$")
    kh.server.reset_counters()
    result = kh.run()["dev"]
    assert (result.result, result.reason) == (RunResult.FAILED, "ObserveFailed")
    assert "listing Deployment failed" in result.message
    assert kh.server.write_count() == 0
    assert kh.live("Deployment", "data-science-dev", "sql-assistant") is not None


def test_a_full_service_ip_range_is_not_retried_in_a_loop(kh: KubeHarness) -> None:
    kh.server.faults.error(500, times=5, method="PATCH", path=r"/services/", message=(
        "Internal error occurred: failed to allocate a serviceIP: range is full"))
    result = kh.run()["dev"]
    assert (result.result, result.reason) == (RunResult.FAILED, "ApplyFailed")
    assert "range is full" in result.message
    assert kh.sleeps == []
    # A first apply: the namespaces are new, so (as on a real server, where a dry run in a
    # namespace that does not exist yet can only answer NotFound) their objects are checked
    # by their real applies, in order; the first failure stops the pass.
    assert "Service/data-science-dev/sql-assistant: apply failed (InternalError)" in (
        result.message)
    assert kh.live("Deployment", "nlp-platform-dev", "support-chat") is not None
    assert {kind for _, kind, _ in kh.client_writes()}.isdisjoint(
        {"Ingress", "HorizontalPodAutoscaler"})


def test_throttled_request_is_retried_after_retry_after(kh: KubeHarness) -> None:
    kh.server.faults.throttle(retry_after=2, method="PATCH", path=r"/configmaps/")
    result = kh.run()["dev"]
    assert result.result is RunResult.SUCCEEDED, result.message
    assert kh.sleeps == [2.0]
    assert kh.live("ConfigMap", "nlp-platform-dev", "support-chat-prompt") is not None


# --------------------------------------------------------------------------- secrets, errors


def test_secret_values_never_appear_in_failure_messages(emulator: RunningEmulator) -> None:
    act = kube.KubernetesActuator(KubeSettings(), repoconfig.Cluster(
        kubeconfig=str(emulator.kubeconfig), context="emulator"), sleep=lambda s: None)
    secret = {"apiVersion": "v1", "kind": "Secret",
              "metadata": {"name": "db", "namespace": "missing-ns"},
              "stringData": {"password": "hunter2-very-secret"}}
    key = ResourceKey.of(secret)
    result = act.act(ActPlan("dev", "abc", {key: secret}, {key: "created"}))
    outcome = result.outcomes[key]
    assert outcome.outcome is Outcome.FAILED
    assert "dry-run failed (NotFound)" in outcome.message
    assert "hunter2" not in outcome.message
    text = kube.mask("server said: hunter2-very-secret and aHVudGVyMi12ZXJ5LXNlY3JldA==",
                     secret)
    assert "hunter2" not in text
    assert "aHVudGVy" not in text
    err = kube.ApplyError(key, "apply", "Conflict", 'conflict with "x" on .data')
    assert str(err) == 'Secret/missing-ns/db: apply failed (Conflict): conflict with "x" on .data'


def test_unreachable_cluster_is_unknown_not_empty(tmp_path: Path) -> None:
    with running_emulator(tmp_path) as kube_:
        kubeconfig = kube_.kubeconfig
    act = kube.KubernetesActuator(KubeSettings(), repoconfig.Cluster(
        kubeconfig=str(kubeconfig), context="emulator"), sleep=lambda s: None)
    with pytest.raises(ActuatorError, match="discovery failed"):
        act.observe("dev")


# --------------------------------------------------------------------------- the CLI


def cli_on_emulator(repo: Path, tmp_path: Path, emulator: RunningEmulator,
                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The template repo committed with dev on the emulator; the CLI's state under tmp."""
    point_at_emulator(repo, emulator.kubeconfig)
    commit(repo, "apply with the kubernetes actuator")
    monkeypatch.setenv("LLMOPS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LLMOPS_DATABASE_URL", raising=False)
    monkeypatch.delenv("LLMOPS_CONFIG", raising=False)


def test_cli_reconcile_once_applies_to_the_cluster(
        template_git_repo: Path, tmp_path: Path, emulator: RunningEmulator,
        monkeypatch: pytest.MonkeyPatch, cli: Any) -> None:
    cli_on_emulator(template_git_repo, tmp_path, emulator, monkeypatch)
    result = cli("reconcile", "--once", "--repo", template_git_repo, "--env", "dev")
    assert result.code == 0, result.out + result.err
    assert "dev: succeeded" in result.out
    assert "created 16" in result.out
    assert emulator.server.get("apps/v1", "Deployment", "support-chat",
                               "nlp-platform-dev") is not None
    again = cli("reconcile", "--once", "--repo", template_git_repo, "--env", "dev")
    assert again.code == 0, again.out + again.err
    assert "dev: noop" in again.out


def test_environments_on_one_cluster_share_one_api_discovery(
        template_git_repo: Path, tmp_path: Path, emulator: RunningEmulator,
        monkeypatch: pytest.MonkeyPatch, cli: Any) -> None:
    cli_on_emulator(template_git_repo, tmp_path, emulator, monkeypatch)
    emulator.server.reset_counters()
    result = cli("reconcile", "--once", "--repo", template_git_repo, "--env", "dev",
                 "--env", "stg")
    assert result.code == 0, result.out + result.err
    assert [line.split(" at ")[0] for line in result.out.splitlines()] == [
        "dev: succeeded", "stg: succeeded"]
    assert emulator.server.stats.matching("GET", r"^/apis$") == 1


def test_reconcile_wait_waits_for_health_and_fails_on_a_stalled_rollout(
        template_git_repo: Path, tmp_path: Path, emulator: RunningEmulator,
        monkeypatch: pytest.MonkeyPatch, cli: Any) -> None:
    cli_on_emulator(template_git_repo, tmp_path, emulator, monkeypatch)
    ok = cli("reconcile", "--once", "--repo", template_git_repo, "--env", "dev", "--wait",
             "--timeout", "20")
    assert ok.code == 0, ok.out + ok.err
    assert "dev: all 16 objects Healthy" in ok.out
    emulator.server.controllers.stall_deployment("nlp-platform-dev", "support-chat")
    edit(template_git_repo, "endpoints/dev/support-chat.yaml", "--max-model-len=8192",
         "--max-model-len=4096")
    commit(template_git_repo, "dev: roll support-chat")
    stuck = cli("reconcile", "--once", "--repo", template_git_repo, "--env", "dev", "--wait",
                "--timeout", "1")
    assert stuck.code == 1, stuck.out + stuck.err
    assert "dev: not healthy after 1s: Deployment/nlp-platform-dev/support-chat Degraded" \
        in stuck.out


def test_a_rejected_object_blocks_the_whole_pass(emulator: RunningEmulator) -> None:
    """As on the real server (test_kube_real): one 422 in the dry run applies nothing."""
    act = kube.KubernetesActuator(KubeSettings(), repoconfig.Cluster(
        kubeconfig=str(emulator.kubeconfig), context="emulator"), sleep=lambda s: None,
        repository="test://rejected")
    good = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "good", "namespace": "default"}, "data": {"a": "b"}}
    bad = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "bad", "namespace": "default"},
           "spec": {"ports": [{"port": 70000}]}}
    desired = {ResourceKey.of(good): good, ResourceKey.of(bad): bad}
    emulator.server.reset_counters()
    result = act.act(ActPlan("dev", "abc", desired, dict.fromkeys(desired, "created")))
    assert result.outcomes[ResourceKey.of(bad)].outcome is Outcome.FAILED
    assert "spec.ports[0].port" in result.outcomes[ResourceKey.of(bad)].message
    assert result.outcomes[ResourceKey.of(good)].outcome is Outcome.SKIPPED
    assert emulator.server.write_count() == 0
    assert emulator.server.get("v1", "ConfigMap", "good", "default") is None


def test_a_pass_with_nothing_to_write_keeps_the_health_it_lists(
        store: Store, template_git_repo: Path, tmp_path: Path,
        emulator: RunningEmulator) -> None:
    """A no-op pass records each object's health as listed (it fell back to Unknown):
    the workloads the first pass left Progressing (as their applies returned them) turn
    Healthy, and stay so."""
    point_at_emulator(template_git_repo, emulator.kubeconfig)
    commit(template_git_repo, "apply with the kubernetes actuator")
    h = KubeHarness(store, template_git_repo, tmp_path, emulator, envs=("dev",))

    def spec_health() -> dict[Any, str]:
        return {s.key: s.health for s in state.list_spec_status(store)
                if s.key.environment == "dev"}

    h.run()
    assert "Progressing" in spec_health().values()
    assert h.run()["dev"].result is RunResult.NOOP
    listed = spec_health()
    assert set(listed.values()) == {"Healthy"}
    assert h.run()["dev"].result is RunResult.NOOP
    assert spec_health() == listed
