"""What a ServingEndpoint's pods need to really serve: model download, runtime arguments, LoRA,
GPU placement, probes, rollouts, autoscaling and routes (and the same for training Jobs).

Each test renders a small repo (``specs()`` after an edit) for ``dev`` and reads
the objects as a cluster operator would: which flags the server starts with,
where its model comes from, where the pod lands and how traffic reaches it.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmops.engine import manifest
from llmops.engine.errors import SpecError
from llmops.engine.spec import validate
from llmops.engine.spec.validate import SpecSet
from llmops.engine.types import KubeObject
from llmops.renderers import RenderCache, render_environment

GIB = 1024**3
FILES = [{"name": "config.json", "sha256": "a" * 64, "size": 700},
         {"name": "model.safetensors", "sha256": "b" * 64, "size": 8 * GIB}]
ADAPTER_FILES = [{"name": "adapter_config.json", "sha256": "c" * 64, "size": 600},
                 {"name": "adapter_model.safetensors", "sha256": "d" * 64, "size": 100_000}]
L4 = {"nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-L4"}, "gpusPerNode": 4}


def spec(kind: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "llmops.io/v1alpha1", "kind": kind, "metadata": {"name": name},
            "spec": body}


def model(name: str, **extra: Any) -> dict[str, Any]:
    return spec("Model", name, {
        "version": "1.0.0", "type": "base", "ownerTeam": "nlp",
        "storageUri": f"s3://models/models/{name}/1.0.0/", "framework": "transformers",
        "dataClassification": "internal", "stage": "approved", "files": FILES, **extra})


def specs() -> dict[str, Any]:
    return {
        "llmops.yaml": {"apiVersion": "llmops.io/v1alpha1", "kind": "Repository",
                        "environments": {"dev": {"namespace": "{team}-dev", "serving": {
                            "gpuTypes": {"l4": L4},
                            "storage": {"secretName": "model-store", "region": "eu-west-1"},
                            "ingressClassName": "nginx"}}}},
        "models/base.yaml": model("base"),
        "models/sql.yaml": model("sql", type="adapter", framework="peft", files=ADAPTER_FILES,
                                 baseModel={"name": "base", "version": "1.0.0"}, loraRank=16),
        "datasets/d.yaml": spec("Dataset", "tickets", {
            "uri": "s3://data/datasets/tickets/", "dataClassification": "internal",
            "ownerTeam": "nlp"}),
        "endpoints/dev/chat.yaml": spec("ServingEndpoint", "chat", {
            "environment": "dev", "ownerTeam": "nlp",
            "modelRef": {"name": "base", "version": "1.0.0"}, "route": "/v1/chat",
            "runtime": {"args": ["--max-model-len=8192"]}, "replicas": {"min": 2, "max": 3},
            "resources": {"gpu": 1, "gpuType": "l4", "cpu": "4", "memory": "32Gi"}}),
        "training/sft.yaml": spec("TrainingJob", "sft", {
            "environment": "dev", "ownerTeam": "nlp",
            "baseModelRef": {"name": "base", "version": "1.0.0"}, "datasetRef": "tickets",
            "image": "ghcr.io/acme/trainer:1.0", "resources": {"gpu": 4, "gpuType": "l4"},
            "outputModel": {"name": "base", "version": "1.1.0"},
            "experimentUrl": "https://mlflow.example.com/#/experiments/3",
            "activeDeadlineSeconds": 7200}),
    }


Edit = Callable[[dict[str, Any]], None]


def write(root: Path, files: dict[str, Any]) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(yaml.safe_dump(data, sort_keys=False))
    return root


@pytest.fixture
def repo(tmp_path: Path) -> Callable[..., SpecSet]:
    counter = iter(range(100))

    def make(edit: Edit | None = None) -> SpecSet:
        files = copy.deepcopy(specs())
        if edit is not None:
            edit(files)
        return validate.load_and_validate(write(tmp_path / f"repo{next(counter)}", files))

    return make


def rendered(repo: Callable[..., SpecSet], edit: Edit | None = None) -> list[KubeObject]:
    return list(render_environment(repo(edit), "dev", revision="c0ffee"))


def find(objs: list[KubeObject], kind: str, name: str = "chat") -> KubeObject:
    (found,) = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def pod(objs: list[KubeObject], kind: str = "Deployment", name: str = "chat") -> dict[str, Any]:
    obj = find(objs, kind, name) if kind == "Deployment" else next(
        o for o in objs if o["kind"] == kind)
    spec_: dict[str, Any] = obj["spec"]["template"]["spec"]
    return spec_


def server(objs: list[KubeObject]) -> dict[str, Any]:
    (container,) = [c for c in pod(objs)["containers"] if c["name"] == "server"]
    return container


def env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"]}


def endpoint_edit(**changes: Any) -> Edit:
    def edit(files: dict[str, Any]) -> None:
        files["endpoints/dev/chat.yaml"]["spec"].update(changes)

    return edit


def issues(repo: Callable[..., SpecSet], edit: Edit) -> list[tuple[str, str, str]]:
    with pytest.raises(SpecError) as caught:
        repo(edit)
    return [(i.file, i.field, i.message) for i in caught.value.issues]


# --------------------------------------------------------------------------- model loading


def test_model_is_fetched_verified_and_served_from_the_volume(
        repo: Callable[..., SpecSet]) -> None:
    objs = rendered(repo)
    (fetch,) = pod(objs)["initContainers"]
    dest = fetch["command"][fetch["command"].index("--dest") + 1]
    assert fetch["command"][:2] == ["llmops", "fetch-model"]
    assert dest.startswith("/models/base/1.0.0/")
    assert json.loads(env(fetch)["LLMOPS_MODEL_FILES"]) == FILES
    assert env(fetch)["LLMOPS_MODEL_URI"] == "s3://models/models/base/1.0.0/"
    assert server(objs)["args"] == ["--model", dest, "--served-model-name", "chat",
                                    "--port", "8000", "--max-model-len=8192"]
    volumes = {v["name"]: v for v in pod(objs)["volumes"]}
    assert volumes["models"] == {"name": "models", "emptyDir": {"sizeLimit": "10Gi"}}
    assert {"name": "models", "mountPath": "/models", "readOnly": True} in server(objs)[
        "volumeMounts"]


def test_credentials_come_from_the_named_secret_by_reference(
        repo: Callable[..., SpecSet]) -> None:
    objs = rendered(repo)
    (fetch,) = pod(objs)["initContainers"]
    assert fetch["envFrom"] == [{"secretRef": {"name": "model-store"}}]
    assert env(fetch)["LLMOPS_S3__REGION"] == "eu-west-1"
    text = json.dumps(objs)
    assert "AWS_SECRET_ACCESS_KEY" not in text
    assert "AWS_ACCESS_KEY_ID" not in text


def test_workload_identity_endpoint_and_model_cache(repo: Callable[..., SpecSet]) -> None:
    def edit(files: dict[str, Any]) -> None:
        files["llmops.yaml"]["environments"]["dev"]["serving"]["storage"] = {
            "serviceAccountName": "model-reader", "endpointUrl": "https://minio.internal:9000",
            "cacheClaim": "model-cache"}

    objs = rendered(repo, edit)
    spec_ = pod(objs)
    assert spec_["serviceAccountName"] == "model-reader"
    assert "envFrom" not in spec_["initContainers"][0]
    assert env(spec_["initContainers"][0])["LLMOPS_S3__ENDPOINT_URL"] == (
        "https://minio.internal:9000")
    volumes = {v["name"]: v for v in spec_["volumes"]}
    assert volumes["models"]["persistentVolumeClaim"] == {"claimName": "model-cache"}


def test_a_model_without_recorded_files_cannot_be_served(repo: Callable[..., SpecSet]) -> None:
    def edit(files: dict[str, Any]) -> None:
        del files["models/base.yaml"]["spec"]["files"]

    found = issues(repo, edit)
    assert ("endpoints/dev/chat.yaml", "spec.modelRef",
            "model base 1.0.0 lists no files (name, sha256, size): its download could not be "
            "verified; upload its files first") in found
    assert any(f == "training/sft.yaml" and field == "spec.baseModelRef"
               for f, field, _ in found)


def test_a_new_model_version_rolls_the_pods(repo: Callable[..., SpecSet]) -> None:
    def edit(files: dict[str, Any]) -> None:
        files["models/base.yaml"]["spec"]["files"][1]["sha256"] = "e" * 64

    before, after = pod(rendered(repo)), pod(rendered(repo, edit))
    assert before != after
    assert before["containers"][0]["args"][1] != after["containers"][0]["args"][1]


# --------------------------------------------------------------------------- LoRA


def sql_edit(**runtime: Any) -> Edit:
    def edit(files: dict[str, Any]) -> None:
        files["endpoints/dev/chat.yaml"]["spec"]["modelRef"] = {"name": "sql",
                                                                "version": "1.0.0"}
        files["endpoints/dev/chat.yaml"]["spec"]["runtime"].update(runtime)

    return edit


def test_adapter_loads_its_base_and_registers_the_lora_module(
        repo: Callable[..., SpecSet]) -> None:
    objs = rendered(repo, sql_edit())
    base, adapter = pod(objs)["initContainers"]
    assert (base["name"], adapter["name"]) == ("fetch-base-model", "fetch-adapter")
    base_dir, adapter_dir = (c["command"][-1] for c in (base, adapter))
    assert base_dir.startswith("/models/base/1.0.0/")
    assert adapter_dir.startswith("/models/sql/1.0.0/")
    assert server(objs)["args"][:11] == [
        "--model", base_dir, "--served-model-name", "chat-base", "--port", "8000",
        "--enable-lora", "--lora-modules", f"chat={adapter_dir}", "--max-lora-rank", "16"]


@pytest.mark.parametrize(("rank", "flag"), [(8, "8"), (20, "32"), (64, "64")])
def test_max_lora_rank_holds_the_adapter(repo: Callable[..., SpecSet], rank: int,
                                         flag: str) -> None:
    def edit(files: dict[str, Any]) -> None:
        sql_edit()(files)
        files["models/sql.yaml"]["spec"]["loraRank"] = rank

    args = server(rendered(repo, edit))["args"]
    assert args[args.index("--max-lora-rank") + 1] == flag


def test_adapter_rank_over_max_lora_rank_is_rejected(repo: Callable[..., SpecSet]) -> None:
    def edit(files: dict[str, Any]) -> None:
        sql_edit(maxLoraRank=16)(files)
        files["models/sql.yaml"]["spec"]["loraRank"] = 64

    assert issues(repo, edit) == [(
        "endpoints/dev/chat.yaml", "spec.runtime.maxLoraRank",
        "adapter sql has rank 64, more than --max-lora-rank 16; raise maxLoraRank to at "
        "least 64")]


def test_adapter_whose_base_is_missing_is_rejected(repo: Callable[..., SpecSet]) -> None:
    def edit(files: dict[str, Any]) -> None:
        sql_edit()(files)
        files["models/sql.yaml"]["spec"]["baseModel"]["version"] = "9.9.9"

    assert issues(repo, edit) == [("models/sql.yaml", "spec.baseModel",
                                   "model base 9.9.9 is not defined (known versions: 1.0.0)")]


def test_flags_llmops_sets_are_refused_in_runtime_args(repo: Callable[..., SpecSet]) -> None:
    found = issues(repo, endpoint_edit(runtime={"args": ["--max-model-len=4096",
                                                         "--served-model-name=x"]}))
    ((file, field, message),) = found
    assert (file, field) == ("endpoints/dev/chat.yaml", "spec.runtime.args")
    assert message.startswith("[1] --served-model-name is set by llmops")


# --------------------------------------------------------------------------- runtimes


def test_vllm_probes_metrics_and_tensor_parallelism(repo: Callable[..., SpecSet]) -> None:
    objs = rendered(repo, endpoint_edit(resources={"gpu": 4, "gpuType": "l4"}))
    container = server(objs)
    assert container["image"] == "vllm/vllm-openai:v0.8.5"
    assert container["args"][6:8] == ["--tensor-parallel-size", "4"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["startupProbe"]["failureThreshold"] * container["startupProbe"][
        "periodSeconds"] == 1800
    # Scraped through the prompt router beside it, whose /metrics carries the server's too.
    annotations = find(objs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": "8081",
                           "prometheus.io/path": "/metrics"}
    assert env(container)["HF_HUB_OFFLINE"] == "1"


def test_tgi_runtime_has_its_own_arguments(repo: Callable[..., SpecSet]) -> None:
    objs = rendered(repo, endpoint_edit(
        runtime={"kind": "tgi", "port": 8080, "args": ["--max-input-tokens=4096"]},
        resources={"gpu": 2, "gpuType": "l4"}))
    container = server(objs)
    path = pod(objs)["initContainers"][0]["command"][-1]
    assert container["image"] == "ghcr.io/huggingface/text-generation-inference:3.0.1"
    assert container["args"] == ["--model-id", path, "--port", "8080", "--num-shard", "2",
                                 "--max-input-tokens=4096"]
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    hpa = find(objs, "HorizontalPodAutoscaler")["spec"]
    assert hpa["metrics"][0]["pods"]["metric"] == {"name": "tgi_queue_size"}


def test_tgi_loads_an_adapter_with_lora_adapters(repo: Callable[..., SpecSet]) -> None:
    args = server(rendered(repo, sql_edit(kind="tgi")))["args"]
    assert args[args.index("--lora-adapters") + 1].startswith("chat=/models/sql/1.0.0/")
    found = issues(repo, endpoint_edit(runtime={"kind": "tgi", "args": ["--num-shard=2"]}))
    assert found[0][1:] == ("spec.runtime.args", found[0][2])
    assert "--num-shard is set by llmops" in found[0][2]


def test_startup_allowance_is_configurable(repo: Callable[..., SpecSet]) -> None:
    objs = rendered(repo, endpoint_edit(runtime={"startupSeconds": 3600}))
    assert server(objs)["startupProbe"]["failureThreshold"] == 360
    assert find(objs, "Deployment")["spec"]["progressDeadlineSeconds"] == 4200


# --------------------------------------------------------------------------- placement


def test_gpu_placement_follows_the_environment(repo: Callable[..., SpecSet]) -> None:
    spec_ = pod(rendered(repo))
    assert spec_["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L4"}
    assert spec_["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists",
                                     "effect": "NoSchedule"}]
    assert [t["topologyKey"] for t in spec_["topologySpreadConstraints"]] == [
        "kubernetes.io/hostname", "topology.kubernetes.io/zone"]
    volumes = {v["name"]: v for v in spec_["volumes"]}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "2Gi"}


def test_unlisted_gpu_type_uses_the_configured_node_label(repo: Callable[..., SpecSet]) -> None:
    def edit(files: dict[str, Any]) -> None:
        files["llmops.yaml"]["environments"]["dev"]["serving"] = {
            "gpuNodeLabel": "cloud.google.com/gke-accelerator"}
        files["endpoints/dev/chat.yaml"]["spec"]["resources"]["gpuType"] = "nvidia-l4"

    assert pod(rendered(repo, edit))["nodeSelector"] == {
        "cloud.google.com/gke-accelerator": "nvidia-l4"}


def test_gpus_beyond_one_node_or_undeclared_types_are_rejected(
        repo: Callable[..., SpecSet]) -> None:
    assert issues(repo, endpoint_edit(resources={"gpu": 8, "gpuType": "l4"})) == [(
        "endpoints/dev/chat.yaml", "spec.resources.gpu",
        "8 GPUs do not fit on one l4 node (4 per node in llmops.yaml); one pod runs on one "
        "node")]
    ((_, field, message),) = issues(repo, endpoint_edit(resources={"gpu": 1, "gpuType": "a100"}))
    assert field == "spec.resources.gpuType"
    assert message.startswith("GPU type 'a100' is not declared for this environment")


def test_pods_are_locked_down_and_drain_before_stopping(repo: Callable[..., SpecSet]) -> None:
    objs = rendered(repo)
    spec_ = pod(objs)
    assert spec_["securityContext"]["runAsNonRoot"] is True
    assert spec_["automountServiceAccountToken"] is False
    for container in [*spec_["initContainers"], *spec_["containers"]]:
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert server(objs)["lifecycle"] == {"preStop": {"exec": {"command": ["sleep", "15"]}}}
    assert spec_["terminationGracePeriodSeconds"] == 600 + 15


# --------------------------------------------------------------------------- rollouts


def test_rollout_surges_when_the_gpu_budget_allows(repo: Callable[..., SpecSet]) -> None:
    def budget(gpus: int) -> Edit:
        def edit(files: dict[str, Any]) -> None:
            files["policies/b.yaml"] = spec("Policy", "b", {"gpuBudgets": [
                {"team": "nlp", "environment": "dev", "gpus": gpus}]})

        return edit

    def strategy(edit: Edit | None) -> dict[str, Any]:
        value: dict[str, Any] = find(rendered(repo, edit), "Deployment")["spec"]["strategy"]
        return value

    surge = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    assert strategy(None) == surge
    assert strategy(budget(4)) == surge  # 3 at max + 1 surge pod
    assert strategy(budget(3)) == {"type": "RollingUpdate",
                                   "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}


def test_a_cached_render_follows_the_teams_gpu_headroom(repo: Callable[..., SpecSet]) -> None:
    """Another endpoint of the team growing takes away this one's surge room: the render
    cache must not hand out the Deployment rendered when there was room."""
    def with_neighbour(max_replicas: int) -> Edit:
        def edit(files: dict[str, Any]) -> None:
            files["policies/b.yaml"] = spec("Policy", "b", {"gpuBudgets": [
                {"team": "nlp", "environment": "dev", "gpus": 6}]})
            neighbour = copy.deepcopy(files["endpoints/dev/chat.yaml"])
            neighbour["metadata"]["name"] = "other"
            neighbour["spec"]["route"] = "/v1/other"
            neighbour["spec"]["replicas"] = {"min": 1, "max": max_replicas}
            files["endpoints/dev/other.yaml"] = neighbour

        return edit

    cache = RenderCache()

    def surge(edit: Edit) -> int:
        objs = render_environment(repo(edit), "dev", revision="c0ffee", cache=cache)
        return int(find(list(objs), "Deployment")["spec"]["strategy"]["rollingUpdate"][
            "maxSurge"])

    assert surge(with_neighbour(1)) == 1  # 3 + 1 at max, 1 to surge: 5 of 6
    assert surge(with_neighbour(3)) == 0  # 3 + 3 at max: no room left
    assert cache.hits > 0  # the neighbour-independent objects came from the cache


def test_a_cached_adapter_render_follows_its_base_model(repo: Callable[..., SpecSet]) -> None:
    """An adapter endpoint fetches its base model's files too: a new base checksum must
    not come back as the Deployment cached before it."""
    def adapter_on_base(digest: str) -> Edit:
        def edit(files: dict[str, Any]) -> None:
            files["endpoints/dev/chat.yaml"]["spec"]["modelRef"] = {"name": "sql",
                                                                    "version": "1.0.0"}
            files["models/base.yaml"]["spec"]["files"] = [
                {**f, "sha256": digest} for f in FILES]

        return edit

    cache = RenderCache()

    def base_fetch(edit: Edit) -> Any:
        objs = render_environment(repo(edit), "dev", revision="c0ffee", cache=cache)
        return pod(list(objs))["initContainers"][0]

    assert base_fetch(adapter_on_base("e" * 64)) != base_fetch(adapter_on_base("f" * 64))


def test_disruption_budget_only_for_two_or_more_replicas(repo: Callable[..., SpecSet]) -> None:
    pdb = find(rendered(repo), "PodDisruptionBudget")["spec"]
    assert pdb["maxUnavailable"] == 1
    assert pdb["selector"] == find(rendered(repo), "Deployment")["spec"]["selector"]
    objs = rendered(repo, endpoint_edit(replicas={"min": 1, "max": 3}))
    assert not [o for o in objs if o["kind"] == "PodDisruptionBudget"]


# --------------------------------------------------------------------------- autoscaling


def test_default_autoscaling_follows_the_request_queue(repo: Callable[..., SpecSet]) -> None:
    hpa = find(rendered(repo), "HorizontalPodAutoscaler")["spec"]
    assert hpa["metrics"] == [{"type": "Pods", "pods": {
        "metric": {"name": "vllm_num_requests_waiting"},
        "target": {"type": "AverageValue", "averageValue": "5"}}}]
    cpu = find(rendered(repo, endpoint_edit(autoscale={"cpuUtilization": 70})),
               "HorizontalPodAutoscaler")["spec"]["metrics"]
    assert cpu[0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}


def keda(files: dict[str, Any]) -> None:
    files["llmops.yaml"]["environments"]["dev"]["serving"].update(
        autoscaler="keda", prometheusUrl="http://prometheus.monitoring:9090")


def test_keda_scales_on_the_queue_and_to_zero(repo: Callable[..., SpecSet]) -> None:
    def edit(files: dict[str, Any]) -> None:
        keda(files)
        endpoint_edit(replicas={"min": 0, "max": 2}, autoscale={"queueDepth": 3})(files)

    objs = rendered(repo, edit)
    assert not [o for o in objs if o["kind"] == "HorizontalPodAutoscaler"]
    assert "replicas" not in find(objs, "Deployment")["spec"], "KEDA owns the count"
    scaled = find(objs, "ScaledObject")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (0, 2)
    assert scaled["spec"]["triggers"] == [{"type": "prometheus", "metadata": {
        "serverAddress": "http://prometheus.monitoring:9090",
        "query": 'sum(vllm:num_requests_waiting{namespace="nlp-dev",'
                 'pod=~"chat-[a-z0-9]+-[a-z0-9]+"})',
        "threshold": "3"}}]


@pytest.mark.parametrize(("target", "threshold"), [("800m", "0.8"), ("2k", "2000"), ("7", "7")])
def test_keda_threshold_is_a_plain_number(repo: Callable[..., SpecSet], target: str,
                                          threshold: str) -> None:
    def edit(files: dict[str, Any]) -> None:
        keda(files)
        endpoint_edit(autoscale={"customMetric": {"name": "vllm:gpu_cache_usage_perc",
                                                  "targetAverageValue": target}})(files)

    (trigger,) = find(rendered(repo, edit), "ScaledObject")["spec"]["triggers"]
    assert trigger["metadata"]["threshold"] == threshold
    assert trigger["metadata"]["query"].startswith("sum(vllm:gpu_cache_usage_perc{")


def test_keda_needs_a_prometheus_address(repo: Callable[..., SpecSet]) -> None:
    def edit(files: dict[str, Any]) -> None:
        files["llmops.yaml"]["environments"]["dev"]["serving"]["autoscaler"] = "keda"

    ((file, field, message),) = issues(repo, edit)
    assert (file, field) == ("llmops.yaml", "environments.dev.serving")
    assert "autoscaler keda needs prometheusUrl" in message


def test_with_the_hpa_min_zero_still_parks(repo: Callable[..., SpecSet]) -> None:
    objs = rendered(repo, endpoint_edit(replicas={"min": 0, "max": 2}))
    assert find(objs, "Deployment")["spec"]["replicas"] == 0
    assert not [o for o in objs if o["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")]


# --------------------------------------------------------------------------- routes


def test_ingress_rewrites_the_public_prefix_to_the_server_paths(
        repo: Callable[..., SpecSet]) -> None:
    objs = rendered(repo, endpoint_edit(route="/teams/v1.chat", host="llm.example.com"))
    api, chat = find(objs, "Ingress"), find(objs, "Ingress", "chat-chat")
    annotations = api["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/rewrite-target"] == "/$1"
    assert annotations["nginx.ingress.kubernetes.io/use-regex"] == "true"
    assert annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "600"
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert api["spec"]["ingressClassName"] == "nginx"
    (rule,) = api["spec"]["rules"]
    assert rule["host"] == "llm.example.com"
    assert [p["path"] for p in rule["http"]["paths"]] == [
        "/llm-ops/v1/serve/chat/(v1/.*)", r"/teams/v1\.chat/(v1/.*)"]
    assert chat["metadata"]["annotations"]["nginx.ingress.kubernetes.io/rewrite-target"] == (
        "/v1/chat/completions")
    assert [p["path"] for p in chat["spec"]["rules"][0]["http"]["paths"]] == [
        "/llm-ops/v1/serve/chat/chat$"]


def test_seed_route_alone_when_spec_route_is_the_seed_shape(
        repo: Callable[..., SpecSet]) -> None:
    objs = rendered(repo, endpoint_edit(route="/llm-ops/v1/serve/chat"))
    paths = find(objs, "Ingress")["spec"]["rules"][0]["http"]["paths"]
    assert [p["path"] for p in paths] == ["/llm-ops/v1/serve/chat/(v1/.*)"]


def test_gateway_api_route_rewrites_with_url_rewrite(repo: Callable[..., SpecSet]) -> None:
    def edit(files: dict[str, Any]) -> None:
        files["llmops.yaml"]["environments"]["dev"]["serving"].update(
            routing="gateway-api", gateway={"name": "public", "namespace": "gateways"})

    objs = rendered(repo, edit)
    assert not [o for o in objs if o["kind"] == "Ingress"]
    route = find(objs, "HTTPRoute")["spec"]
    assert route["parentRefs"] == [{"name": "public", "namespace": "gateways"}]
    seed, own, chat = route["rules"]
    assert seed["matches"] == [{"path": {"type": "PathPrefix",
                                         "value": "/llm-ops/v1/serve/chat/v1"}}]
    assert seed["filters"] == [{"type": "URLRewrite", "urlRewrite": {"path": {
        "type": "ReplacePrefixMatch", "replacePrefixMatch": "/v1"}}}]
    assert own["matches"][0]["path"]["value"] == "/v1/chat/v1"
    assert chat["filters"][0]["urlRewrite"]["path"] == {
        "type": "ReplaceFullPath", "replaceFullPath": "/v1/chat/completions"}
    assert seed["timeouts"] == {"request": "600s"}
    assert seed["backendRefs"] == [{"name": "chat", "port": 80}]


# --------------------------------------------------------------------------- training


def test_training_job_gets_model_secrets_placement_and_deadline(
        repo: Callable[..., SpecSet]) -> None:
    objs = rendered(repo)
    (job,) = [o for o in objs if o["kind"] == "Job"]
    spec_ = job["spec"]["template"]["spec"]
    (fetch,) = spec_["initContainers"]
    (trainer,) = spec_["containers"]
    assert env(trainer)["BASE_MODEL_PATH"] == fetch["command"][-1]
    assert trainer["envFrom"] == [{"secretRef": {"name": "model-store"}}]
    assert env(trainer)["AWS_REGION"] == "eu-west-1"
    assert spec_["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L4"}
    assert job["spec"]["activeDeadlineSeconds"] == 7200
    assert job["spec"]["backoffLimit"] == 2
    assert job["metadata"]["annotations"]["llmops.io/experiment-url"] == (
        "https://mlflow.example.com/#/experiments/3")
    volumes = {v["name"]: v for v in spec_["volumes"]}
    assert volumes["dshm"]["emptyDir"]["sizeLimit"] == "8Gi"


def ttl_edit(seconds: int | None) -> Edit:
    def edit(files: dict[str, Any]) -> None:
        files["llmops.yaml"]["environments"]["dev"]["serving"][
            "trainingTtlSecondsAfterFinished"] = seconds

    return edit


def test_finished_training_jobs_are_cleaned_up_after_a_configurable_ttl(
        repo: Callable[..., SpecSet]) -> None:
    default = next(o for o in rendered(repo) if o["kind"] == "Job")
    assert default["spec"]["ttlSecondsAfterFinished"] == 7 * 24 * 3600
    day = next(o for o in rendered(repo, ttl_edit(86400)) if o["kind"] == "Job")
    assert day["spec"]["ttlSecondsAfterFinished"] == 86400
    # The TTL is mutable on a Job: a new one configures it, it does not run it again.
    assert day["metadata"]["name"] == default["metadata"]["name"]
    kept = next(o for o in rendered(repo, ttl_edit(None)) if o["kind"] == "Job")
    assert "ttlSecondsAfterFinished" not in kept["spec"]


@pytest.mark.parametrize("seconds", [0, 599, 2**31])
def test_a_ttl_the_reconciler_could_miss_is_rejected(repo: Callable[..., SpecSet],
                                                     seconds: int) -> None:
    ((file, field, _),) = issues(repo, ttl_edit(seconds))
    assert (file, field) == ("llmops.yaml",
                             "environments.dev.serving.trainingTtlSecondsAfterFinished")


def test_training_gpus_must_fit_one_node(repo: Callable[..., SpecSet]) -> None:
    def edit(files: dict[str, Any]) -> None:
        files["training/sft.yaml"]["spec"]["resources"]["gpu"] = 8

    ((file, field, _),) = issues(repo, edit)
    assert (file, field) == ("training/sft.yaml", "spec.resources.gpu")


def test_a_dataset_that_lists_its_files_is_fetched_like_a_model(
        repo: Callable[..., SpecSet]) -> None:
    data_files = [{"name": "train.jsonl", "sha256": "f" * 64, "size": 2 * GIB}]

    def edit(files: dict[str, Any]) -> None:
        files["datasets/d.yaml"]["spec"]["files"] = data_files

    before = next(o for o in rendered(repo) if o["kind"] == "Job")
    job = next(o for o in rendered(repo, edit) if o["kind"] == "Job")
    assert job["metadata"]["name"] != before["metadata"]["name"], "a new Job, not a patch"
    spec_ = job["spec"]["template"]["spec"]
    base, data = spec_["initContainers"]
    assert base["name"] == "fetch-base-model"
    assert data["name"] == "fetch-dataset"
    assert json.loads(env(data)["LLMOPS_MODEL_FILES"]) == data_files
    assert env(data)["LLMOPS_MODEL_URI"] == "s3://data/datasets/tickets/"
    (trainer,) = spec_["containers"]
    assert env(trainer)["DATASET_PATH"] == data["command"][-1]
    assert env(trainer)["DATASET_PATH"].startswith("/data/tickets/")
    assert {"name": "data", "mountPath": "/data"} in trainer["volumeMounts"]
    volumes = {v["name"]: v for v in spec_["volumes"]}
    assert volumes["data"] == {"name": "data", "emptyDir": {"sizeLimit": "4Gi"}}
    assert "DATASET_PATH" not in env(before["spec"]["template"]["spec"]["containers"][0])


def test_dataset_file_names_are_checked(repo: Callable[..., SpecSet]) -> None:
    def edit(files: dict[str, Any]) -> None:
        files["datasets/d.yaml"]["spec"]["files"] = [
            {"name": "../etc/passwd", "sha256": "f" * 64, "size": 1}]

    ((file, field, _),) = issues(repo, edit)
    assert (file, field) == ("datasets/d.yaml", "spec.files[0].name")


# --------------------------------------------------------------------------- golden variants


GOLDEN = Path(__file__).parent / "golden"


def _tgi_keda_gateway(files: dict[str, Any]) -> None:
    """The options the template does not use, in one environment."""
    keda(files)
    files["llmops.yaml"]["environments"]["dev"]["serving"].update(
        routing="gateway-api", gateway={"name": "public", "namespace": "gateways"},
        storage={"serviceAccountName": "model-reader", "cacheClaim": "model-cache",
                 "endpointUrl": "https://minio.internal:9000"})
    endpoint_edit(runtime={"kind": "tgi", "port": 8080}, replicas={"min": 0, "max": 4},
                  resources={"gpu": 2, "gpuType": "l4"})(files)
    files["endpoints/dev/sql.yaml"] = spec("ServingEndpoint", "sql", {
        "environment": "dev", "ownerTeam": "nlp", "modelRef": {"name": "sql", "version": "1.0.0"},
        "route": "/v1/sql", "runtime": {"maxLoraRank": 32}, "replicas": {"min": 1, "max": 2},
        "autoscale": {"customMetric": {"name": "vllm:gpu_cache_usage_perc",
                                       "targetAverageValue": "800m"}},
        "resources": {"gpu": 1, "gpuType": "l4"}})
    files["datasets/d.yaml"]["spec"]["files"] = [
        {"name": "train.jsonl", "sha256": "f" * 64, "size": 2 * GIB}]


@pytest.mark.parametrize(("golden", "edit"), [("serving-options.yaml", _tgi_keda_gateway)])
def test_golden_serving_options(repo: Callable[..., SpecSet], golden: str, edit: Edit) -> None:
    """TGI, LoRA with a set rank, KEDA, Gateway API, a model cache PVC, workload identity and
    a fetched dataset, rendered; ``LLMOPS_UPDATE_GOLDEN=1`` rewrites the file (review it)."""
    text = manifest.to_yaml(render_environment(repo(edit), "dev", revision="0" * 40))
    path = GOLDEN / golden
    if os.environ.get("LLMOPS_UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    expected = path.read_text(encoding="utf-8")
    if text != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(keepends=True),
                                            text.splitlines(keepends=True), golden, "rendered"))
        pytest.fail(f"rendered differs from golden/{golden} (LLMOPS_UPDATE_GOLDEN=1 "
                    f"regenerates it):\n{diff}", pytrace=False)
