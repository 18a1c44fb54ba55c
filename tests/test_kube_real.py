"""The ``kubernetes`` actuator against a real API server (the real-server tier, see
``tests/realkube.py``): the reconciler applies the template repo to kube-apiserver v1.28,
where defaulting, quantity normalisation, field managers, dry-run and RBAC are the real
thing. Each test has its own namespaces (a suffix on the environment's) and its own
specs repo, so its own ApplySet."""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import peers
import pytest
from kubernetes import client as k8s_client
from kubernetes.client import rest
from kubernetes.client.exceptions import ApiException
from realkube import RealKube
from test_reconcile import WEDNESDAY, commit

from conftest import edit
from llmops.engine.actuate import kube, kube_applyset
from llmops.engine.actuate.base import ActPlan, ActuatorError, Outcome
from llmops.engine.actuate.health import HealthStatus
from llmops.engine.run import reconciler
from llmops.engine.settings import KubeSettings
from llmops.engine.source import snapshots
from llmops.engine.spec import repoconfig
from llmops.engine.store import state
from llmops.engine.store.db import Store
from llmops.engine.store.models import RunResult
from llmops.engine.types import ResourceKey

# The kubeconfig's CA verifies the server: an unverified request would be an error here.
pytestmark = pytest.mark.filterwarnings("error::urllib3.exceptions.InsecureRequestWarning")

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass
class Requests:
    """Every request the official client sent in this process (method, path, query)."""

    seen: list[tuple[str, str, str]] = field(default_factory=list)

    def writes(self) -> list[tuple[str, str, str]]:
        return [r for r in self.seen if r[0] in WRITES]

    def real_writes(self) -> list[tuple[str, str, str]]:
        return [r for r in self.writes() if "dryRun" not in r[2]]

    def clear(self) -> None:
        self.seen.clear()


@pytest.fixture
def requests_seen(monkeypatch: pytest.MonkeyPatch) -> Requests:
    found = Requests()
    original = rest.RESTClientObject.request

    def request(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        params = kwargs.get("query_params") or (args[0] if args else None) or []
        query = "&".join(f"{k}={v}" for k, v in params)
        found.seen.append((method, url.split("?")[0], query + url.partition("?")[2]))
        return original(self, method, url, *args, **kwargs)

    monkeypatch.setattr(rest.RESTClientObject, "request", request)
    return found


def point_at(repo: Path, kubeconfig: Path, suffix: str) -> None:
    """Every environment applies to the real server, into namespaces ending in ``suffix``."""
    path = repo / "llmops.yaml"
    text = re.sub(
        r"cluster:\n\s+context: [\w-]+\n",
        f'cluster: {{kubeconfig: "{kubeconfig}"}}\n',
        path.read_text(),
    )
    text = re.sub(r'namespace: "\{team\}-(\w+)"', rf'namespace: "{{team}}-\1-{suffix}"', text)
    path.write_text(text.replace("actuator: hydrate", "actuator: kubernetes"))


class RealHarness:
    """The reconciler with kubernetes actuators on the real server."""

    def __init__(
        self,
        store: Store,
        repo: Path,
        work: Path,
        real: RealKube,
        suffix: str,
        envs: tuple[str, ...] = ("dev",),
    ) -> None:
        self.store, self.repo, self.real, self.suffix = store, repo, real, suffix
        self.actuators: dict[str, kube.KubernetesActuator] = {}
        self.src = snapshots.open_source(str(repo), "main", work)
        self.rec = reconciler.Reconciler(
            store, self.src, self.actuator_for, environments=envs, clock=lambda: WEDNESDAY
        )

    def actuator_for(self, env: str, config: repoconfig.Environment) -> kube.KubernetesActuator:
        if env not in self.actuators:
            self.actuators[env] = kube.KubernetesActuator(
                KubeSettings(),
                config.cluster,
                force_conflicts=config.forceConflicts,
                sleep=lambda s: None,
                repository=self.repo.resolve().as_uri(),
            )
        return self.actuators[env]

    def run(self, env: str = "dev") -> reconciler.PassResult:
        return {r.environment: r for r in self.rec.run_once()}[env]

    def ns(self, team: str, env: str = "dev") -> str:
        return f"{team}-{env}-{self.suffix}"

    def deployment(self, team: str, name: str) -> Any:
        apps = k8s_client.AppsV1Api(self.real.api_client())
        return apps.read_namespaced_deployment(name, self.ns(team), _request_timeout=30)

    def image(self, team: str, name: str) -> str:
        return str(self.deployment(team, name).spec.template.spec.containers[0].image)


def _cleanup(real: RealKube, suffix: str) -> None:
    core = real.core()
    for ns in core.list_namespace(_request_timeout=30).items:
        if ns.metadata.name.endswith(f"-{suffix}"):
            real.delete_namespace(ns.metadata.name)


@pytest.fixture
def suffix(real_kube: RealKube) -> Iterator[str]:
    value = secrets.token_hex(3)
    yield value
    _cleanup(real_kube, value)


@pytest.fixture
def rh(
    store: Store, template_git_repo: Path, tmp_path: Path, real_kube: RealKube, suffix: str
) -> RealHarness:
    point_at(template_git_repo, real_kube.kubeconfig, suffix)
    commit(template_git_repo, "apply to the real server")
    return RealHarness(store, template_git_repo, tmp_path / "work", real_kube, suffix)


# --------------------------------------------------------------------------- the fixture


def test_the_server_is_real(real_kube: RealKube, kube_namespace: str) -> None:
    version = k8s_client.VersionApi(real_kube.api_client()).get_code()
    assert (version.major, int(version.minor.rstrip("+")) >= 28) == ("1", True)
    assert real_kube.core().read_namespace(kube_namespace).status.phase == "Active"


# --------------------------------------------------------------------------- create, no-op


def test_first_pass_creates_namespaces_and_objects_then_a_second_pass_writes_nothing(
    rh: RealHarness, requests_seen: Requests
) -> None:
    first = rh.run()
    assert first.result is RunResult.SUCCEEDED, first.message
    inventory = {i.key for i in state.read_inventory(rh.store, "dev")}
    assert first.counts.created == len(inventory) > 10
    for team in ("nlp-platform", "data-science"):
        ns = rh.real.core().read_namespace(rh.ns(team))
        assert ns.status.phase == "Active"
    dep = rh.deployment("nlp-platform", "support-chat")
    assert [m.manager for m in dep.metadata.managed_fields if m.operation == "Apply"] == ["llmops"]
    assert set(rh.actuators["dev"].observe("dev")) == inventory
    requests_seen.clear()
    second = rh.run()
    assert second.result is RunResult.NOOP, second.message
    assert requests_seen.writes() == []
    assert second.counts.unchanged == len(inventory)


ONE_OBJECT = re.compile(r"/apis?/(?:[^/]+/)?v[^/]+/namespaces/[^/]+(?:/[^/]+/[^/]+)?$")
"""The URL of one object (a Namespace, or an object in one); not discovery, not a list."""


def test_a_first_pass_sends_one_apply_per_object_and_reads_none(
    rh: RealHarness, requests_seen: Requests
) -> None:
    """Into new namespaces: a dry run of each namespace (answered 201: it would be
    created), then one apply per object; nothing but the ApplySet parent is read, and
    health comes from what each apply returned."""
    first = rh.run()
    assert first.result is RunResult.SUCCEEDED, first.message
    by_object = [
        (method, "dryRun" in query, path.rsplit("/", 2)[-2])
        for method, path, query in requests_seen.seen
        if ONE_OBJECT.search(path) and "/secrets/llmops-dev-" not in path
    ]
    assert [r for r in by_object if r[0] != "PATCH"] == []
    assert sorted(kind for _, dry, kind in by_object if dry) == ["namespaces", "namespaces"]
    assert len([r for r in by_object if not r[1]]) == first.counts.created
    health = {s.key.kind: s.health for s in state.list_object_status(rh.store, "dev")}
    assert (health["Deployment"], health["ConfigMap"]) == ("Progressing", "Healthy")


def test_objects_are_applied_in_dependency_order_after_a_dry_run_of_all(
    rh: RealHarness, requests_seen: Requests
) -> None:
    assert rh.run().result is RunResult.SUCCEEDED
    patches = [
        (path, "dryRun" in query)
        for method, path, query in requests_seen.writes()
        if method == "PATCH" and "/secrets/llmops-dev-" not in path
    ]
    dry = [p for p, is_dry in patches if is_dry]
    real = [p for p, is_dry in patches if not is_dry]
    first_real = patches.index((real[0], False))
    assert all(is_dry for _, is_dry in patches[:first_real])
    assert len(dry) >= len([p for p in real if "/namespaces/" in p and p.count("/") <= 4])
    kinds = [p.split("/")[-2] for p in real]
    order = [
        "namespaces",
        "configmaps",
        "deployments",
        "services",
        "ingresses",
        "horizontalpodautoscalers",
    ]
    ranks = [order.index(k) for k in kinds if k in order]
    assert ranks == sorted(ranks)


# --------------------------------------------------------------------------- drift, conflicts


def test_a_kubectl_edit_is_drift_and_is_corrected(rh: RealHarness) -> None:
    rh.run()
    apps = k8s_client.AppsV1Api(rh.real.api_client())
    apps.patch_namespaced_deployment(
        "support-chat",
        rh.ns("nlp-platform"),
        {
            "spec": {
                "template": {"spec": {"containers": [{"name": "server", "image": "evil/miner:1"}]}}
            }
        },
        field_manager="kubectl-edit",
        _request_timeout=30,
    )
    assert rh.image("nlp-platform", "support-chat") == "evil/miner:1"
    result = rh.run()
    assert result.result is RunResult.SUCCEEDED, result.message
    assert result.counts.configured == 1
    assert rh.image("nlp-platform", "support-chat") == "vllm/vllm-openai:v0.8.5"


def test_a_conflicting_field_manager_is_reported_by_name(rh: RealHarness, tmp_path: Path) -> None:
    rh.run()
    other = rh.real.dynamic(tmp_path)
    deployments = other.resources.get(api_version="apps/v1", kind="Deployment")
    other.server_side_apply(
        deployments,
        name="support-chat",
        namespace=rh.ns("nlp-platform"),
        field_manager="sre-team",
        force_conflicts=True,
        body={
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "support-chat", "namespace": rh.ns("nlp-platform")},
            "spec": {
                "template": {
                    "spec": {"containers": [{"name": "server", "image": "vllm/vllm-openai:v0.9.0"}]}
                }
            },
        },
    )
    before = state.get_environment_status(rh.store, "dev")
    assert before is not None
    assert before.last_success_at is not None
    edit(
        rh.repo,
        "endpoints/dev/sql-assistant.yaml",
        "--max-model-len",
        "--max-num-seqs=8\n      - --max-model-len",
    )
    commit(rh.repo, "dev: sql-assistant takes fewer sequences")
    result = rh.run()
    assert (result.result, result.reason) == (RunResult.FAILED, "ApplyFailed")
    assert 'conflict with "sre-team"' in result.message
    assert rh.image("nlp-platform", "support-chat") == "vllm/vllm-openai:v0.9.0"
    # Nothing was applied (the dry run of every write came first), so no success either.
    after = state.get_environment_status(rh.store, "dev")
    assert after is not None
    assert after.last_success_at == before.last_success_at
    args = rh.deployment("data-science", "sql-assistant").spec.template.spec.containers[0].args
    assert "--max-num-seqs=8" not in args


# --------------------------------------------------------------------------- normalisation


def test_non_canonical_quantities_cause_no_drift(rh: RealHarness, requests_seen: Requests) -> None:
    spec = "endpoints/dev/support-chat.yaml"
    edit(rh.repo, spec, 'cpu: "4"', 'cpu: "4000m"')
    edit(rh.repo, spec, "memory: 24Gi", "memory: 24576Mi")
    edit(rh.repo, "endpoints/dev/sql-assistant.yaml", 'cpu: "4"', "cpu: 0.5")
    commit(rh.repo, "non-canonical quantities")
    first = rh.run()
    assert first.result is RunResult.SUCCEEDED, first.message
    chat = rh.deployment("nlp-platform", "support-chat").spec.template.spec.containers[0]
    assert (chat.resources.requests["cpu"], chat.resources.requests["memory"]) == ("4", "24Gi")
    sql = rh.deployment("data-science", "sql-assistant").spec.template.spec.containers[0]
    assert sql.resources.limits["cpu"] == "500m"
    requests_seen.clear()
    second = rh.run()
    assert second.result is RunResult.NOOP, second.message
    assert requests_seen.real_writes() == []
    key = ResourceKey("apps", "Deployment", rh.ns("nlp-platform"), "support-chat")
    assert rh.actuators["dev"].health("dev", [key]) == {key: HealthStatus.PROGRESSING}


# --------------------------------------------------------------------------- ownership


def test_a_second_specs_repo_leaves_the_first_ones_objects_alone(
    rh: RealHarness, store: Store, tmp_path: Path
) -> None:
    assert rh.run().result is RunResult.SUCCEEDED
    mine = set(rh.actuators["dev"].observe("dev"))
    other_repo = tmp_path / "other-specs"
    shutil.copytree(rh.repo, other_repo)
    for path in (other_repo / "endpoints" / "dev").iterdir():
        if path.name != "support-chat.yaml":
            path.unlink()
    # Its own namespaces, the same cluster and environment name.
    edit(other_repo, "llmops.yaml", f"-dev-{rh.suffix}", f"-devb-{rh.suffix}")
    commit(other_repo, "the other team's repo: one endpoint")
    other_store = Store(f"sqlite:///{tmp_path / 'other.db'}")
    other_store.migrate()
    other = RealHarness(other_store, other_repo, tmp_path / "other-work", rh.real, rh.suffix)
    result = other.run()
    assert result.result is RunResult.SUCCEEDED, result.message
    assert result.counts.deleted == 0
    assert set(rh.actuators["dev"].observe("dev")) == mine
    assert rh.deployment("data-science", "sql-assistant") is not None


def test_a_look_alike_with_our_labels_is_left_alone(rh: RealHarness) -> None:
    assert rh.run().result is RunResult.SUCCEEDED
    act = rh.actuators["dev"]
    aset = act.applyset("dev")
    twin = rh.real.core().read_namespaced_config_map("support-chat-prompt", rh.ns("nlp-platform"))
    labels = dict(twin.metadata.labels)
    assert labels["applyset.kubernetes.io/part-of"] == aset.id
    rh.real.core().create_namespaced_config_map(
        rh.ns("nlp-platform"),
        {"metadata": {"name": "someone-elses", "labels": labels}, "data": {"k": "v"}},
    )
    result = rh.run()
    assert result.result in (RunResult.NOOP, RunResult.SUCCEEDED), result.message
    assert result.counts.deleted == 0
    assert rh.real.core().read_namespaced_config_map("someone-elses", rh.ns("nlp-platform"))
    assert ResourceKey("", "ConfigMap", rh.ns("nlp-platform"), "someone-elses") not in (
        act.observe("dev")
    )


# --------------------------------------------------------------------------- prune


def test_a_removed_spec_is_pruned(rh: RealHarness) -> None:
    rh.run()
    (rh.repo / "endpoints/dev/sql-assistant.yaml").unlink()
    edit(rh.repo, "llmops.yaml", "maxPrunePercent: 30", "maxPrunePercent: 50")
    commit(rh.repo, "drop dev sql-assistant")
    result = rh.run()
    assert result.result is RunResult.SUCCEEDED, result.message
    assert result.counts.deleted == 6  # Deployment, Service, HPA, 2 Ingresses, ConfigMap
    with pytest.raises(ApiException) as gone:
        rh.deployment("data-science", "sql-assistant")
    assert gone.value.status == 404
    assert rh.deployment("nlp-platform", "support-chat") is not None


def test_the_mass_delete_guard_blocks_without_a_write(
    rh: RealHarness, requests_seen: Requests
) -> None:
    rh.run()
    for path in (rh.repo / "endpoints" / "dev").iterdir():
        path.unlink()
    commit(rh.repo, "dev: remove every endpoint")
    requests_seen.clear()
    result = rh.run()
    assert (result.result, result.reason) == (RunResult.BLOCKED, "PruneThreshold")
    assert requests_seen.writes() == []
    assert rh.deployment("data-science", "sql-assistant") is not None


# --------------------------------------------------------------------------- rejection


def test_a_rejected_object_blocks_the_whole_pass(real_kube: RealKube, kube_namespace: str) -> None:
    act = kube.KubernetesActuator(
        KubeSettings(),
        repoconfig.Cluster(kubeconfig=str(real_kube.kubeconfig)),
        sleep=lambda s: None,
        repository="test://x",
    )
    good = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "good", "namespace": kube_namespace},
        "data": {"a": "b"},
    }
    bad = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "bad", "namespace": kube_namespace},
        "spec": {"ports": [{"port": 70000}]},
    }
    desired = {ResourceKey.of(good): good, ResourceKey.of(bad): bad}
    result = act.act(ActPlan("dev", "abc", desired, dict.fromkeys(desired, "created")))
    assert result.outcomes[ResourceKey.of(bad)].outcome is Outcome.FAILED
    assert "spec.ports[0].port" in result.outcomes[ResourceKey.of(bad)].message
    skipped = result.outcomes[ResourceKey.of(good)]
    assert skipped.outcome is Outcome.SKIPPED
    assert f"Service/{kube_namespace}/bad" in skipped.message
    with pytest.raises(ApiException) as absent:
        real_kube.core().read_namespaced_config_map("good", kube_namespace)
    assert absent.value.status == 404


# --------------------------------------------------------------------------- RBAC, health


def test_rbac_denial_of_the_limited_user_names_verb_resource_and_namespace(
    real_kube: RealKube, tmp_path: Path
) -> None:
    if real_kube.limited_kubeconfig is None:
        pytest.skip("real Kubernetes tier: no limited user's kubeconfig")
    act = kube.KubernetesActuator(
        KubeSettings(),
        repoconfig.Cluster(kubeconfig=str(real_kube.limited_kubeconfig)),
        sleep=lambda s: None,
        repository="test://limited",
    )
    with pytest.raises(ActuatorError) as denied:
        act.observe("dev")
    text = str(denied.value)
    assert "Forbidden" in text
    assert 'cannot get resource "secrets"' in text
    assert 'in the namespace "default"' in text


def test_a_deployment_is_progressing_while_its_replicaset_has_no_ready_pod(rh: RealHarness) -> None:
    rh.run()
    key = ResourceKey("apps", "Deployment", rh.ns("nlp-platform"), "support-chat")
    apps = k8s_client.AppsV1Api(rh.real.api_client())
    sets = apps.list_namespaced_replica_set(rh.ns("nlp-platform"), _request_timeout=30).items
    assert [s.metadata.owner_references[0].name for s in sets if s.metadata.owner_references] == [
        "support-chat"
    ]
    ingress = ResourceKey("networking.k8s.io", "Ingress", rh.ns("nlp-platform"), "support-chat")
    hpa = ResourceKey(
        "autoscaling", "HorizontalPodAutoscaler", rh.ns("nlp-platform"), "support-chat"
    )
    # No kubelet, ingress controller or metrics API here: none of them is Healthy yet.
    assert rh.actuators["dev"].health("dev", [key, ingress, hpa]) == {
        key: HealthStatus.PROGRESSING,
        ingress: HealthStatus.PROGRESSING,
        hpa: HealthStatus.PROGRESSING,
    }


# --------------------------------------------------------------------------- kubectl


def _kubectl_bin() -> Path:
    return peers.tool("kubectl")


def test_kubectl_reads_our_applyset_and_refuses_to_prune_it(
    real_kube: RealKube, kube_namespace: str, tmp_path: Path
) -> None:
    kubectl = _kubectl_bin()
    env = dict(real_kube.kubectl_env(tmp_path), KUBECTL_APPLYSET="true")
    act = kube.KubernetesActuator(
        KubeSettings(applyset_namespace=kube_namespace),
        repoconfig.Cluster(kubeconfig=str(real_kube.kubeconfig)),
        sleep=lambda s: None,
        repository="test://kubectl",
    )
    ours = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "ours", "namespace": kube_namespace},
        "data": {"a": "b"},
    }
    key = ResourceKey.of(ours)
    assert act.act(ActPlan("dev", "abc", {key: ours}, {key: "created"})).outcomes[key].outcome is (
        Outcome.CREATED
    )
    aset = act.applyset("dev")
    other = tmp_path / "other.yaml"
    other.write_text(
        f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: other, namespace: {kube_namespace}}}\n"
    )

    def kubectl_apply(applyset: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                str(kubectl),
                "apply",
                "--server-side",
                "--prune",
                f"--applyset={applyset}",
                "-n",
                kube_namespace,
                "-f",
                str(other),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    refused = kubectl_apply(f"secret/{aset.name}")
    assert refused.returncode != 0
    assert 'managed by tooling "llmops"' in refused.stderr
    assert real_kube.core().read_namespaced_config_map("ours", kube_namespace)
    # kubectl's own set: its parent's id is the one kube_applyset computes for it.
    made = kubectl_apply("secret/kubectl-made")
    assert made.returncode == 0, made.stderr
    parent = real_kube.core().read_namespaced_secret("kubectl-made", kube_namespace)
    assert parent.metadata.labels["applyset.kubernetes.io/id"] == kube_applyset.parent_id(
        "kubectl-made", kube_namespace, "Secret", ""
    )
    assert set(act.observe("dev")) == {key}
