"""The render stage and `llmops render`: specs in, Kubernetes objects out.

Golden files: ``tests/golden/<env>.yaml`` hold what ``specs_repo_template``
renders to per environment (source commit ``GOLDEN_COMMIT``). After an
intended change to the renderers or the template repo, regenerate them with

    LLMOPS_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_render.py -k golden

and review the diff like any other change. Without the variable a changed
output fails with a unified diff of the manifests.

Schema checks use the OpenAPI schemas bundled with ``kubernetes-validate``
(its newest Kubernetes version, strict: unknown fields are errors), with one
validator per kind built once per session.
"""

from __future__ import annotations

import base64
import copy
import difflib
import hashlib
import importlib.resources
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import jinja2
import jinja2.nodes
import jsonschema
import kubernetes_validate
import pytest
import referencing
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import TEMPLATE, CliResult
from llmops.engine import manifest
from llmops.engine.errors import SpecError
from llmops.engine.spec import validate
from llmops.engine.spec.validate import SpecSet
from llmops.engine.types import KubeObject, ResourceKey, content_hash
from llmops.renderers import RenderError, manifests, objects, render_environment, templating

GOLDEN = Path(__file__).parent / "golden"
GOLDEN_COMMIT = "0123456789abcdef0123456789abcdef01234567"
ENVIRONMENTS = ("dev", "stg", "prod")
LLMOPS = [sys.executable, "-c", "from llmops.cli import main; main()"]
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


# --------------------------------------------------------------------------- helpers


class KubeSchemas:
    """Strict OpenAPI validators of the newest Kubernetes version kubernetes-validate ships.

    ``kubernetes_validate.validate()`` re-reads the 1.8 MB definitions on every
    call; this reads them once and keeps one validator per kind.
    """

    def __init__(self) -> None:
        self.version = kubernetes_validate.utils.latest_version()
        self.root = (importlib.resources.files("kubernetes_validate")
                     / "kubernetes-json-schema" / f"v{self.version}-local-strict")
        definitions = json.loads((self.root / "_definitions.json").read_text())
        self.registry: referencing.Registry[Any] = (
            referencing.Resource.from_contents(definitions) @ referencing.Registry())
        self.validators: dict[str, jsonschema.protocols.Validator] = {}

    def validator(self, obj: KubeObject) -> jsonschema.protocols.Validator:
        group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", obj["apiVersion"])
        name = f"{obj['kind'].lower()}-{group_version}.json"
        if name not in self.validators:
            schema = json.loads((self.root / name).read_text())
            registry = referencing.Resource.from_contents(schema) @ self.registry
            self.validators[name] = jsonschema.Draft202012Validator(schema, registry=registry)
        return self.validators[name]

    def errors(self, obj: KubeObject) -> list[str]:
        return sorted(f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
                      for e in self.validator(obj).iter_errors(obj))


@pytest.fixture(scope="session")
def kube_schemas() -> KubeSchemas:
    return KubeSchemas()


@pytest.fixture(scope="module")
def template_set() -> SpecSet:
    return validate.load_and_validate(TEMPLATE)


def find(objs: tuple[KubeObject, ...] | list[KubeObject], kind: str, name: str) -> KubeObject:
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def pod_spec(deployment: KubeObject) -> dict[str, Any]:
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"]}


def table_of(configmap: KubeObject) -> dict[str, Any]:
    table: dict[str, Any] = json.loads(configmap["data"]["experiment.json"])
    return table


# --------------------------------------------------------------------------- fixture repo


def base_specs() -> dict[str, Any]:
    """A small repo as data: one model, three prompts, a dev endpoint with an A/B/n
    experiment, a training job and a GPU budget."""

    def spec(kind: str, name: str, body: dict[str, Any], **meta: Any) -> dict[str, Any]:
        return {"apiVersion": "llmops.io/v1alpha1", "kind": kind,
                "metadata": {"name": name, **meta}, "spec": body}

    prompts = {f"prompts/p-{x}.yaml": spec("PromptTemplate", f"p-{x}", {
        "version": "1.0.0", "template": f"Hello {{{{ user }}}} from {x}\n",
        "variables": ["user"]}) for x in "abc"}
    return {
        "llmops.yaml": {"apiVersion": "llmops.io/v1alpha1", "kind": "Repository",
                        "environments": {"dev": {"namespace": "{team}-dev"},
                                         "prod": {"namespace": "{team}-prod"}}},
        "models/chat.yaml": spec("Model", "chat-model", {
            "version": "1.2.0", "type": "base", "ownerTeam": "nlp",
            "storageUri": "s3://models/models/chat-model/1.2.0/", "framework": "transformers",
            "dataClassification": "internal", "stage": "approved",
            "files": [{"name": "config.json", "sha256": "a" * 64, "size": 700},
                      {"name": "model.safetensors", "sha256": "b" * 64, "size": 3 * 1024**3}]}),
        "datasets/d.yaml": spec("Dataset", "tickets", {
            "uri": "s3://data/datasets/tickets/", "dataClassification": "internal",
            "ownerTeam": "nlp"}),
        **prompts,
        "endpoints/dev/chat.yaml": spec("ServingEndpoint", "chat", {
            "environment": "dev", "modelRef": {"name": "chat-model", "version": "1.2.0"},
            "route": "/v1/chat", "promptTemplateRef": "p-a",
            "runtime": {"args": ["--max-model-len=8192"], "env": {"LOG": "info"}},
            "replicas": {"min": 1, "max": 3},
            "autoscale": {"customMetric": {"name": "queue_depth", "targetAverageValue": "4"}},
            "resources": {"gpu": 2, "gpuType": "nvidia-a100", "cpu": "8", "memory": "64Gi"}},
            labels={"team": "nlp"}),
        "experiments/abc.yaml": spec("PromptExperiment", "chat-abc", {
            "environment": "dev", "endpointRef": "chat",
            "variants": [{"templateRef": "p-a", "weight": 50},
                         {"templateRef": "p-b", "weight": 30},
                         {"templateRef": "p-c", "weight": 20}],
            "metric": "latency_ms", "stickiness": {"cookie": "variant"}}),
        "training/sft.yaml": spec("TrainingJob", "sft", {
            "environment": "dev", "baseModelRef": {"name": "chat-model", "version": "1.2.0"},
            "datasetRef": "tickets", "image": "ghcr.io/acme/trainer:1.0",
            "command": ["python", "-m", "train"],
            "hyperparameters": {"learning_rate": 0.0001, "epochs": 3, "bf16": True,
                                "sched": "cosine"},
            "resources": {"gpu": 4, "cpu": "16", "memory": "128Gi"},
            "outputModel": {"name": "chat-model", "version": "1.3.0"},
            "experimentUrl": "https://mlflow.example.com/#/experiments/3",
            "backoffLimit": 1}),
        "policies/budget.yaml": spec("Policy", "budgets", {"gpuBudgets": [
            {"team": "nlp", "environment": "dev", "gpus": 12},
            {"team": "search", "environment": "dev", "gpus": 2},
            {"team": "nlp", "environment": "prod", "gpus": 40}]}),
    }


def write_specs(root: Path, files: dict[str, Any]) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return root


@pytest.fixture
def make_repo(tmp_path: Path) -> Callable[..., SpecSet]:
    """Write ``base_specs()`` after ``edit(files)`` into a fresh folder and validate it."""
    counter = iter(range(1000))

    def make(edit: Callable[[dict[str, Any]], None] | None = None) -> SpecSet:
        files = base_specs()
        if edit is not None:
            edit(files)
        return validate.load_and_validate(write_specs(tmp_path / f"repo{next(counter)}", files))

    return make


@pytest.fixture
def dev(make_repo: Callable[..., SpecSet]) -> tuple[KubeObject, ...]:
    return render_environment(make_repo(), "dev", revision="c0ffee")


# --------------------------------------------------------------------------- golden


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_golden_manifests(template_set: SpecSet, env: str) -> None:
    text = manifest.to_yaml(render_environment(template_set, env, revision=GOLDEN_COMMIT))
    path = GOLDEN / f"{env}.yaml"
    if os.environ.get("LLMOPS_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"{path} is missing; run with LLMOPS_UPDATE_GOLDEN=1 to create it"
    expected = path.read_text(encoding="utf-8")
    if text != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(keepends=True),
                                            text.splitlines(keepends=True),
                                            f"golden/{env}.yaml", f"rendered {env}", n=2))
        pytest.fail(f"rendered {env} differs from golden/{env}.yaml "
                    f"(LLMOPS_UPDATE_GOLDEN=1 regenerates it):\n{diff}", pytrace=False)


_AWKWARD = st.sampled_from([
    "yes", "no", "on", "null", "~", "1.0", "12:30", "2020-01-01", "1e3", "0x1f", ".inf", "<<",
    "=", "-", "- a", "a:", "a: b", "a #b", "a#b", "...", "--- x", "x\n", "x\n\n", "\n",
    " x\ny", "\tx", "é", "\x85", "\u2028", "a  b", "True", "8000", "+1", "-1", "1_000",
    "s3://bucket/key", "vllm/vllm-openai:v0.6.3", "Delete=false,Prune=false", "{\"a\": 1}"])
_TEXT = st.one_of(st.text(max_size=30), _AWKWARD,
                  st.text(alphabet="ab :#-\n '\"{}[],.0123456789tyn~|>!&*\u2028", max_size=12))
_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), _TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(_TEXT, inner, max_size=4)),
    max_leaves=25)


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.dictionaries(_TEXT, _VALUES, max_size=5))
def test_manifest_text_is_what_pyyaml_writes_and_reads_back(obj: dict[str, Any]) -> None:
    # The fast writer must give PyYAML's own bytes (published files, plans and golden
    # files stay the same) for any value, however awkward its strings.
    text = manifest.dump_object(obj)
    assert text == yaml.dump(manifest.ordered(obj), **manifest._DUMP_OPTIONS)
    assert yaml.safe_load(text) == obj


def test_template_renders_what_each_environment_needs(template_set: SpecSet) -> None:
    kinds = {env: sorted({o["kind"] for o in render_environment(template_set, env)})
             for env in ENVIRONMENTS}
    assert "Job" in kinds["stg"]
    assert "Job" not in kinds["prod"]
    for env in ENVIRONMENTS:
        assert {"Deployment", "Service", "HorizontalPodAutoscaler", "Ingress", "ConfigMap",
                "Namespace", "ResourceQuota"} <= set(kinds[env])


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_object_is_valid_for_kubernetes(template_set: SpecSet, kube_schemas: KubeSchemas,
                                              env: str) -> None:
    objs = render_environment(template_set, env, revision=GOLDEN_COMMIT)
    assert objs
    problems = {str(ResourceKey.of(o)): kube_schemas.errors(o) for o in objs}
    assert {k: v for k, v in problems.items() if v} == {}


def test_fast_validator_agrees_with_kubernetes_validate(template_set: SpecSet,
                                                        kube_schemas: KubeSchemas) -> None:
    deployment = find(render_environment(template_set, "prod"), "Deployment", "support-chat")
    kubernetes_validate.validate(deployment, kube_schemas.version, strict=True)
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    assert kube_schemas.errors(broken)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, kube_schemas.version, strict=True)


def test_fixture_repo_objects_are_valid_for_kubernetes(dev: tuple[KubeObject, ...],
                                                       kube_schemas: KubeSchemas) -> None:
    assert {str(ResourceKey.of(o)): kube_schemas.errors(o) for o in dev
            if kube_schemas.errors(o)} == {}


# --------------------------------------------------------------------------- determinism


def test_rendering_is_deterministic(template_set: SpecSet) -> None:
    again = validate.load_and_validate(TEMPLATE)
    for env in ENVIRONMENTS:
        first = manifest.to_yaml(render_environment(template_set, env, revision="abc"))
        second = manifest.to_yaml(render_environment(again, env, revision="abc"))
        assert first == second
        assert manifests.layout(render_environment(template_set, env)) == manifests.layout(
            render_environment(again, env))


def test_objects_are_in_hydrator_order(template_set: SpecSet) -> None:
    objs = render_environment(template_set, "prod")
    keys = [(k.namespace, k.name, k.group, k.kind) for k in map(ResourceKey.of, objs)]
    assert keys == sorted(keys)
    assert objs[0]["kind"] == "Namespace"
    assert len(set(keys)) == len(keys)


def test_unknown_environment_is_an_error(template_set: SpecSet) -> None:
    with pytest.raises(RenderError, match=r"unknown environment 'qa' \(declared: dev, stg, prod\)"):
        render_environment(template_set, "qa")


# --------------------------------------------------------------------------- injection


def test_hostile_values_stay_literal(make_repo: Callable[..., SpecSet],
                                     kube_schemas: KubeSchemas) -> None:
    payloads = ["--x=1\nnamespace: kube-system", '"}, "namespace": "kube-system", "x": {"',
                "}\n---\napiVersion: v1\nkind: Secret", "{{ 7*7 }}", "{% raw %}"]

    def edit(files: dict[str, Any]) -> None:
        endpoint = files["endpoints/dev/chat.yaml"]
        endpoint["spec"]["runtime"]["args"] = payloads
        endpoint["spec"]["runtime"]["env"] = {"EVIL": payloads[1]}
        endpoint["metadata"]["annotations"] = {"note": payloads[2]}

    spec_set = make_repo(edit)
    objs = render_environment(spec_set, "dev")
    deployment = find(objs, "Deployment", "chat")
    container = pod_spec(deployment)["containers"][0]
    assert container["args"][-len(payloads):] == payloads
    assert env_of(container)["EVIL"] == payloads[1]
    assert {o["metadata"].get("namespace") for o in objs} == {None, "nlp-dev", "search-dev"}
    assert all(o["metadata"]["annotations"]["note"] == payloads[2]
               for o in objs if o["metadata"]["labels"]["llmops.io/spec"] == "chat")
    assert not [o for o in objs if o["kind"] == "Secret"]
    text = manifest.to_yaml(objs)
    assert list(yaml.safe_load_all(text)) == list(objs)
    assert {str(ResourceKey.of(o)): kube_schemas.errors(o) for o in objs
            if kube_schemas.errors(o)} == {}


def test_jinja_in_prompt_text_is_carried_literally(make_repo: Callable[..., SpecSet]) -> None:
    text = "{{ 7*7 }} {{ ''.__class__.__mro__ }} {% for x in range(3) %}{{x}}{% endfor %}\n"

    def edit(files: dict[str, Any]) -> None:
        files["prompts/p-a.yaml"]["spec"]["template"] = text

    objs = render_environment(make_repo(edit), "dev")
    assert find(objs, "ConfigMap", "chat-prompt")["data"]["template"] == text
    variants = table_of(find(objs, "ConfigMap", "chat-abc-experiment"))["variants"]
    assert variants[0]["text"] == text
    assert "49" not in json.dumps(find(objs, "ConfigMap", "chat-prompt")["data"])


def test_undefined_variable_names_spec_file_and_template() -> None:
    tiny = templating.environment().from_string(
        '{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": {{ foo | tojson }}}}',
    )
    with pytest.raises(RenderError) as caught:
        templating.render_object(tiny, {"bar": 1}, file="endpoints/prod/chat.yaml",
                                 subject="ServingEndpoint/chat")
    assert caught.value.file == "endpoints/prod/chat.yaml"
    assert caught.value.template == "<string>"
    assert str(caught.value) == ("endpoints/prod/chat.yaml: ServingEndpoint/chat: "
                                 "template <string>: 'foo' is undefined")


def test_named_template_errors_name_the_template() -> None:
    with pytest.raises(RenderError, match=r"^e\.yaml: ServingEndpoint/e: template "
                                          r"deployment\.json\.j2: '\w+' is undefined$"):
        templating.render_object("deployment.json.j2", {}, file="e.yaml",
                                 subject="ServingEndpoint/e")


def test_templates_print_nothing_but_serialised_values() -> None:
    env = templating.environment()
    names = env.list_templates()
    assert "deployment.json.j2" in names
    for name in names:
        source = (templating.TEMPLATE_DIR / name).read_text(encoding="utf-8")
        for output in env.parse(source).find_all(jinja2.nodes.Output):
            for node in output.nodes:
                assert isinstance(node, jinja2.nodes.TemplateData) or (
                    isinstance(node, jinja2.nodes.Filter) and node.name == "tojson"), (
                    f"{name}:{node.lineno} prints a value without '| tojson'")


def test_values_printed_without_tojson_are_refused() -> None:
    pasted = templating.environment().from_string('{"kind": "{{ name }}"}')
    with pytest.raises(RenderError, match=r"without '\| tojson'"):
        templating.render_object(pasted, {"name": "x"}, file="f.yaml", subject="K/x")


def test_duplicate_keys_in_rendered_output_are_refused() -> None:
    twice = templating.environment().from_string(
        '{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "name": "b"}}')
    with pytest.raises(RenderError, match="repeats the key 'name'"):
        templating.render_object(twice, {}, file="f.yaml", subject="K/x")


def test_sandbox_blocks_python_internals() -> None:
    probe = templating.environment().from_string(
        '{"x": {{ "".__class__.__mro__[1].__subclasses__() | tojson }}}')
    with pytest.raises(RenderError):
        templating.render_object(probe, {}, file="f.yaml", subject="K/x")


def test_invalid_label_in_a_spec_is_a_spec_error(make_repo: Callable[..., SpecSet]) -> None:
    """Caught at validate, with its line, before anything renders (or reaches a cluster)."""
    def edit(files: dict[str, Any]) -> None:
        files["endpoints/dev/chat.yaml"]["metadata"]["labels"] = {
            "team": "nlp\nnamespace: kube-system"}

    with pytest.raises(SpecError, match=r"^endpoints/dev/chat\.yaml:\d+:\d+: "
                                        r"ServingEndpoint/chat: metadata\.labels\.team: .* not "
                                        r"a Kubernetes label value"):
        make_repo(edit)


def test_runtime_env_cannot_override_what_llmops_sets(make_repo: Callable[..., SpecSet]) -> None:
    def edit(files: dict[str, Any]) -> None:
        files["endpoints/dev/chat.yaml"]["spec"]["runtime"]["env"] = {"MODEL_URI": "s3://x/"}

    with pytest.raises(RenderError, match=r"spec\.runtime\.env\.MODEL_URI: this variable is "
                                          "set by llmops"):
        render_environment(make_repo(edit), "dev")


# --------------------------------------------------------------------------- behaviour


def test_endpoint_deployment(dev: tuple[KubeObject, ...]) -> None:
    deployment = find(dev, "Deployment", "chat")
    assert deployment["metadata"]["namespace"] == "nlp-dev"
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    pod = pod_spec(deployment)
    container, router_container = pod["containers"]  # the prompt router beside the server
    assert router_container["name"] == "router"
    assert container["image"] == "vllm/vllm-openai:v0.8.5"
    assert container["args"][-1] == "--max-model-len=8192"
    assert container["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    env = env_of(container)
    assert env["MODEL_URI"] == "s3://models/models/chat-model/1.2.0/"
    assert (env["MODEL_NAME"], env["MODEL_VERSION"], env["LOG"]) == ("chat-model", "1.2.0", "info")
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}
    assert deployment["spec"]["selector"]["matchLabels"].items() <= (
        deployment["spec"]["template"]["metadata"]["labels"].items())


def test_gpu_resources_and_scheduling(dev: tuple[KubeObject, ...]) -> None:
    pod = pod_spec(find(dev, "Deployment", "chat"))
    resources = pod["containers"][0]["resources"]
    assert resources["limits"] == {"cpu": "8", "memory": "64Gi", "nvidia.com/gpu": "2"}
    assert resources["requests"] == resources["limits"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "nvidia-a100"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists",
                                   "effect": "NoSchedule"}]


def test_no_gpu_means_no_gpu_resources(make_repo: Callable[..., SpecSet]) -> None:
    def edit(files: dict[str, Any]) -> None:
        files["endpoints/dev/chat.yaml"]["spec"]["resources"] = {"cpu": "2", "memory": "8Gi"}

    pod = pod_spec(find(render_environment(make_repo(edit), "dev"), "Deployment", "chat"))
    assert "nvidia.com/gpu" not in pod["containers"][0]["resources"]["limits"]
    assert "nodeSelector" not in pod
    assert "tolerations" not in pod


def test_service_and_ingress(dev: tuple[KubeObject, ...]) -> None:
    service = find(dev, "Service", "chat")
    assert service["spec"]["type"] == "ClusterIP"
    # The endpoint has a prompt template: the Service reaches the model through the router.
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "router",
                                         "protocol": "TCP"}]
    assert service["spec"]["selector"] == find(dev, "Deployment", "chat")["spec"]["selector"][
        "matchLabels"]
    (rule,) = find(dev, "Ingress", "chat")["spec"]["rules"]
    assert "host" not in rule
    assert [(p["path"], p["pathType"]) for p in rule["http"]["paths"]] == [
        ("/llm-ops/v1/serve/chat/(v1/.*)", "ImplementationSpecific"),
        ("/v1/chat/(v1/.*)", "ImplementationSpecific")]
    for path in rule["http"]["paths"]:
        assert path["backend"]["service"] == {"name": "chat", "port": {"name": "http"}}


def test_hpa_with_custom_metric(dev: tuple[KubeObject, ...]) -> None:
    hpa = find(dev, "HorizontalPodAutoscaler", "chat")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (1, 3)
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": "chat"}
    assert hpa["metrics"] == [{"type": "Pods", "pods": {
        "metric": {"name": "queue_depth"},
        "target": {"type": "AverageValue", "averageValue": "4"}}}]


def test_hpa_with_cpu_utilization(template_set: SpecSet) -> None:
    hpa = find(render_environment(template_set, "stg"), "HorizontalPodAutoscaler",
               "support-chat")["spec"]
    assert hpa["metrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]


def test_min_zero_parks_the_endpoint(make_repo: Callable[..., SpecSet]) -> None:
    def edit(files: dict[str, Any]) -> None:
        files["endpoints/dev/chat.yaml"]["spec"]["replicas"] = {"min": 0, "max": 2}

    objs = render_environment(make_repo(edit), "dev")
    assert find(objs, "Deployment", "chat")["spec"]["replicas"] == 0
    assert not [o for o in objs if o["kind"] == "HorizontalPodAutoscaler"]
    find(objs, "Service", "chat")


def test_prompt_configmap(dev: tuple[KubeObject, ...]) -> None:
    data = find(dev, "ConfigMap", "chat-prompt")["data"]
    assert data == {"name": "p-a", "version": "1.0.0", "template": "Hello {{ user }} from a\n",
                    "variables": '["user"]',
                    "experiment.json": find(dev, "ConfigMap", "chat-abc-experiment")["data"][
                        "experiment.json"]}
    pod = pod_spec(find(dev, "Deployment", "chat"))
    assert "prompt" not in json.dumps(pod["containers"][0]), "the router reads it, not the server"
    assert {"name": "prompt", "configMap": {"name": "chat-prompt"}} in pod["volumes"]


def test_experiment_table_holds_every_variant_and_weight(dev: tuple[KubeObject, ...]) -> None:
    configmap = find(dev, "ConfigMap", "chat-abc-experiment")
    assert configmap["metadata"]["namespace"] == "nlp-dev"
    table = table_of(configmap)
    assert [(v["template"], v["weight"]) for v in table["variants"]] == [
        ("p-a", 50), ("p-b", 30), ("p-c", 20)]
    assert table["variants"][1]["text"] == "Hello {{ user }} from b\n"
    assert (table["state"], table["metric"], table["stickiness"]) == (
        "running", "latency_ms", {"cookie": "variant"})
    pod = pod_spec(find(dev, "Deployment", "chat"))
    assert "chat-abc" not in json.dumps(pod), "the router reads it from its ConfigMap"
    # The router reads the same table from the endpoint's ConfigMap, always mounted.
    assert table_of(find(dev, "ConfigMap", "chat-prompt")) == table
    assert {"name": "prompt", "configMap": {"name": "chat-prompt"}} in pod["volumes"]
    assert env_of(pod["containers"][1])["LLMOPS_EXPERIMENT_FILE"] == (
        "/etc/llmops/prompt/experiment.json")


def test_template_experiments(template_set: SpecSet) -> None:
    prod = table_of(find(render_environment(template_set, "prod"), "ConfigMap",
                         "support-greeting-v2-vs-v3-experiment"))
    assert {v["template"]: v["weight"] for v in prod["variants"]} == {
        "support-greeting-v2": 80, "support-greeting-v3": 20}
    assert prod["stickiness"] == {"header": "X-Session-Id"}
    stg = table_of(find(render_environment(template_set, "stg"), "ConfigMap",
                        "support-greeting-v1-vs-v2-experiment"))
    assert stg["state"] == "concluded"
    assert stg["winner"] == "support-greeting-v2"
    assert {v["template"]: v["weight"] for v in stg["variants"]} == {
        "support-greeting-v1": 0, "support-greeting-v2": 100}


def test_concluded_experiment_routes_all_traffic_to_the_winner(
        make_repo: Callable[..., SpecSet]) -> None:
    def edit(files: dict[str, Any]) -> None:
        files["experiments/abc.yaml"]["spec"].update(state="concluded", winner="p-c")

    objs = render_environment(make_repo(edit), "dev")
    table = table_of(find(objs, "ConfigMap", "chat-abc-experiment"))
    assert [(v["template"], v["weight"], v["declaredWeight"]) for v in table["variants"]] == [
        ("p-a", 0, 50), ("p-b", 0, 30), ("p-c", 100, 20)]


def test_a_weight_change_changes_the_table_but_never_restarts_the_pods(
        make_repo: Callable[..., SpecSet]) -> None:
    # The prompt router reloads the mounted table in place: the (GPU) pods stay as they are.
    before = render_environment(make_repo(), "dev")

    def edit(files: dict[str, Any]) -> None:
        variants = files["experiments/abc.yaml"]["spec"]["variants"]
        variants[0]["weight"], variants[1]["weight"] = 40, 40

    after = render_environment(make_repo(edit), "dev")
    assert table_of(find(before, "ConfigMap", "chat-abc-experiment")) != table_of(
        find(after, "ConfigMap", "chat-abc-experiment"))
    assert find(before, "Deployment", "chat") == find(after, "Deployment", "chat")


def test_a_prompt_text_change_never_restarts_the_pods(make_repo: Callable[..., SpecSet]) -> None:
    def edit(files: dict[str, Any]) -> None:
        files["prompts/p-a.yaml"]["spec"]["template"] = "Hi {{ user }}\n"

    before, after = render_environment(make_repo(), "dev"), render_environment(make_repo(edit),
                                                                              "dev")
    assert find(before, "ConfigMap", "chat-prompt") != find(after, "ConfigMap", "chat-prompt")
    assert find(before, "Deployment", "chat") == find(after, "Deployment", "chat")


def test_the_router_fronts_every_endpoint(
        make_repo: Callable[..., SpecSet], dev: tuple[KubeObject, ...]) -> None:
    pod = pod_spec(find(dev, "Deployment", "chat"))
    server, router_container = pod["containers"]
    assert router_container["args"] == ["router", "--host", "0.0.0.0", "--port", "8081"]
    env = env_of(router_container)
    assert env["LLMOPS_ROUTER_UPSTREAM"] == "http://127.0.0.1:8000"
    assert (env["LLMOPS_ENDPOINT"], env["LLMOPS_ENVIRONMENT"]) == ("chat", "dev")
    assert env["LLMOPS_PROMPT_DIR"] == "/etc/llmops/prompt"
    assert {m["name"] for m in router_container["volumeMounts"]} == {"prompt"}
    assert "prompt" not in {m["name"] for m in server["volumeMounts"]}
    assert "LLMOPS_PROMPT_DIR" not in env_of(server)
    # One scrape target per pod: the router's /metrics also carries the model server's.
    annotations = find(dev, "Deployment", "chat")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == "8081"
    assert env["LLMOPS_ROUTER_MERGE_METRICS"] == "true"
    assert find(dev, "Service", "chat")["spec"]["ports"][0]["targetPort"] == "router"

    def plain(files: dict[str, Any]) -> None:
        del files["endpoints/dev/chat.yaml"]["spec"]["promptTemplateRef"]
        del files["experiments/abc.yaml"]

    # Without a template or an experiment it passes requests through, from the same pod.
    objs = render_environment(make_repo(plain), "dev")
    assert find(objs, "Deployment", "chat")["spec"]["template"] == find(
        dev, "Deployment", "chat")["spec"]["template"]
    assert "data" not in find(objs, "ConfigMap", "chat-prompt")
    assert find(objs, "Service", "chat")["spec"]["ports"][0]["targetPort"] == "router"


@pytest.mark.parametrize("goes", ["experiment", "template", "both"])
def test_a_template_or_experiment_that_comes_or_goes_never_restarts_the_pods(
        make_repo: Callable[..., SpecSet], dev: tuple[KubeObject, ...], goes: str) -> None:
    def edit(files: dict[str, Any]) -> None:
        if goes in ("experiment", "both"):
            del files["experiments/abc.yaml"]
        if goes in ("template", "both"):
            del files["endpoints/dev/chat.yaml"]["spec"]["promptTemplateRef"]

    def pod_template(objs: Iterable[KubeObject]) -> str:
        return json.dumps(find(objs, "Deployment", "chat")["spec"]["template"])

    objs = render_environment(make_repo(edit), "dev")
    assert pod_template(objs) == pod_template(dev)
    data = find(objs, "ConfigMap", "chat-prompt").get("data", {})
    assert ("experiment.json" in data) is (goes == "template")
    assert ("template" in data) is (goes == "experiment")


def test_training_job(dev: tuple[KubeObject, ...]) -> None:
    (job,) = [o for o in dev if o["kind"] == "Job"]
    assert re.fullmatch(r"sft-[0-9a-f]{8}", job["metadata"]["name"])
    assert job["metadata"]["namespace"] == "nlp-dev"
    assert job["metadata"]["annotations"]["llmops.io/experiment-url"] == (
        "https://mlflow.example.com/#/experiments/3")
    assert job["spec"]["backoffLimit"] == 1
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert container["command"] == ["python", "-m", "train"]
    assert container["args"] == ["--learning_rate=0.0001", "--epochs=3", "--bf16=true",
                                 "--sched=cosine"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "4"
    env = env_of(container)
    assert env["DATASET_URI"] == "s3://data/datasets/tickets/"
    assert env["BASE_MODEL_URI"] == "s3://models/models/chat-model/1.2.0/"
    assert (env["OUTPUT_MODEL_NAME"], env["OUTPUT_MODEL_VERSION"]) == ("chat-model", "1.3.0")
    assert env["OUTPUT_MODEL_URI"] == "s3://models/models/chat-model/1.3.0/"
    assert json.loads(env["HYPERPARAMETERS"]) == {"learning_rate": 0.0001, "epochs": 3,
                                                  "bf16": True, "sched": "cosine"}


def test_changed_training_job_is_a_new_job(make_repo: Callable[..., SpecSet]) -> None:
    def edit(files: dict[str, Any]) -> None:
        files["training/sft.yaml"]["spec"]["hyperparameters"]["epochs"] = 4

    def annotate(files: dict[str, Any]) -> None:
        files["training/sft.yaml"]["spec"]["experimentUrl"] = "https://mlflow.example.com/x"

    def name(objs: tuple[KubeObject, ...]) -> str:
        (job,) = [o for o in objs if o["kind"] == "Job"]
        value: str = job["metadata"]["name"]
        return value

    first = name(render_environment(make_repo(), "dev"))
    assert name(render_environment(make_repo(edit), "dev")) != first
    assert name(render_environment(make_repo(annotate), "dev")) == first


def test_gpu_budget_quota_per_team_namespace(dev: tuple[KubeObject, ...]) -> None:
    quotas = {o["metadata"]["namespace"]: o["spec"]["hard"]
              for o in dev if o["kind"] == "ResourceQuota"}
    assert quotas == {"nlp-dev": {"requests.nvidia.com/gpu": "12"},
                      "search-dev": {"requests.nvidia.com/gpu": "2"}}


def test_namespaces_for_every_namespace_used(dev: tuple[KubeObject, ...]) -> None:
    namespaces = [o for o in dev if o["kind"] == "Namespace"]
    assert [n["metadata"]["name"] for n in namespaces] == ["nlp-dev", "search-dev"]
    used = {o["metadata"]["namespace"] for o in dev if o["kind"] != "Namespace"}
    assert used == {"nlp-dev", "search-dev"}
    assert all("namespace" not in n["metadata"] for n in namespaces)
    assert namespaces[0]["metadata"]["annotations"]["llmops.io/prune-protected"] == "true"


def test_every_object_is_stamped(template_set: SpecSet) -> None:
    by_owner = {(str(i.spec.kind), i.spec.environment, i.spec.name): i.spec
                for i in template_set.items}
    for env in ENVIRONMENTS:
        applyset = "applyset-" + base64.urlsafe_b64encode(
            hashlib.sha256(f"llmops.{env}".encode()).digest()).decode().rstrip("=") + "-v1"
        for obj in render_environment(template_set, env, revision=GOLDEN_COMMIT):
            labels, annotations = obj["metadata"]["labels"], obj["metadata"]["annotations"]
            assert labels["app.kubernetes.io/managed-by"] == "llmops"
            for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance",
                        "app.kubernetes.io/part-of", "llmops.io/kind", "llmops.io/spec"):
                assert labels[key], (key, obj["metadata"])
            assert labels["applyset.kubernetes.io/part-of"] == applyset
            assert all(len(v) <= 63 and LABEL_VALUE.match(v) for v in labels.values())
            assert annotations["llmops.io/source-commit"] == GOLDEN_COMMIT
            kind, name = labels["llmops.io/kind"], labels["llmops.io/spec"]
            owner = by_owner.get((kind, env, name)) or by_owner.get((kind, "", name))
            if owner is not None:
                assert annotations["llmops.io/spec-hash"] == content_hash(
                    owner.model_dump(mode="json"))
            else:
                assert (labels["llmops.io/kind"], labels["llmops.io/spec"]) == (
                    "Environment", env)


def test_spec_labels_and_annotations_are_carried(template_set: SpecSet) -> None:
    deployment = find(render_environment(template_set, "prod"), "Deployment", "support-chat")
    assert deployment["metadata"]["labels"]["team"] == "nlp-platform"
    assert deployment["metadata"]["annotations"]["llmops.io/runbook"] == (
        "https://wiki.example.com/runbooks/support-chat")


def test_applyset_id_is_a_valid_label_value() -> None:
    for env in ("dev", "a" * 63):
        value = manifest.applyset_id(env)
        assert objects.is_label_value(value)
        assert len(value) == 55


def test_long_names_keep_labels_valid() -> None:
    value = objects.label_value("x" * 63 + "-prod")
    assert objects.is_label_value(value)
    assert value != objects.label_value("x" * 63 + "-stg")


# --------------------------------------------------------------------------- CLI


def test_cli_render_prints_the_objects(template_set: SpecSet,
                                       cli: Callable[..., CliResult]) -> None:
    result = cli("render", TEMPLATE, "--env", "prod", "--commit", GOLDEN_COMMIT)
    assert result.code == 0, result.err
    assert result.out.startswith("---\napiVersion: v1\nkind: Namespace\nmetadata:\n")
    docs = list(yaml.safe_load_all(result.out))
    assert docs == list(render_environment(template_set, "prod", revision=GOLDEN_COMMIT))
    assert result.out == (GOLDEN / "prod.yaml").read_text(encoding="utf-8")


def test_cli_render_writes_files(tmp_path: Path, cli: Callable[..., CliResult],
                                 template_set: SpecSet) -> None:
    out = tmp_path / "out"
    result = cli("render", TEMPLATE, "--env", "stg", "--out", out)
    assert result.code == 0, result.err
    assert result.out == ""
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.yaml"))
    objs = render_environment(template_set, "stg")
    assert files == sorted(manifests.relative_path(o) for o in objs)
    assert "_cluster/namespace-nlp-platform-stg.yaml" in files
    assert "nlp-platform-stg/deployment-support-chat.yaml" in files
    assert yaml.safe_load((out / "nlp-platform-stg/service-support-chat.yaml").read_text()) == (
        find(objs, "Service", "support-chat"))
    (out / "nlp-platform-stg" / "stale.yaml").write_text("old")
    assert cli("render", TEMPLATE, "--env", "dev", "--out", out).code == 0
    assert not (out / "nlp-platform-stg").exists()
    assert (out / "nlp-platform-dev" / "deployment-support-chat.yaml").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_cli_render_without_env_renders_every_environment_once(
        tmp_path: Path, cli: Callable[..., CliResult], template_set: SpecSet) -> None:
    result = cli("render", TEMPLATE, "--commit", GOLDEN_COMMIT)
    assert result.code == 0, result.err
    assert result.out == "".join((GOLDEN / f"{env}.yaml").read_text(encoding="utf-8")
                                 for env in ENVIRONMENTS)
    two = cli("render", TEMPLATE, "--env", "prod", "--env", "dev", "--commit", GOLDEN_COMMIT)
    assert two.out == "".join((GOLDEN / f"{env}.yaml").read_text(encoding="utf-8")
                              for env in ("prod", "dev"))
    out = tmp_path / "out"
    result = cli("render", TEMPLATE, "--out", out)
    assert result.code == 0, result.err
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.yaml"))
    assert files == sorted(f"{env}/{manifests.relative_path(o)}" for env in ENVIRONMENTS
                           for o in render_environment(template_set, env))
    assert "environments: [\"dev\", \"stg\", \"prod\"]" in (
        out / ".llmops-render").read_text()


def test_cli_render_refuses_to_replace_a_foreign_directory(
        tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    result = cli("render", TEMPLATE, "--env", "dev", "--out", tmp_path)
    assert result.code == 1
    assert "refusing to replace" in result.err
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_cli_invalid_repo_prints_nothing_on_stdout(template_copy: Path,
                                                   cli: Callable[..., CliResult]) -> None:
    path = template_copy / "endpoints/prod/support-chat.yaml"
    path.write_text(path.read_text().replace("max: 4", "max: 1"))
    expected = cli("validate", template_copy)
    result = cli("render", template_copy, "--env", "prod")
    assert (result.code, result.out) == (1, "")
    assert result.err == expected.out
    assert "endpoints/prod/support-chat.yaml:" in result.err


def test_cli_render_error_prints_nothing_on_stdout(tmp_path: Path,
                                                   cli: Callable[..., CliResult]) -> None:
    files = base_specs()
    files["endpoints/dev/chat.yaml"]["spec"]["runtime"]["env"] = {"MODEL_URI": "x"}
    result = cli("render", write_specs(tmp_path / "r", files), "--env", "dev")
    assert (result.code, result.out) == (1, "")
    assert result.err.startswith("error: endpoints/dev/chat.yaml: ServingEndpoint/chat: ")


def test_cli_unknown_environment(cli: Callable[..., CliResult]) -> None:
    result = cli("render", TEMPLATE, "--env", "qa")
    assert result.code != 0
    assert result.out == ""
    assert "unknown environment 'qa'" in result.err


@pytest.mark.slow
def test_cli_as_argo_cd_plugin_stamps_the_revision() -> None:
    env = {**os.environ, "ARGOCD_APP_REVISION": "feedface" * 5, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([*LLMOPS, "render", str(TEMPLATE), "--env", "dev"],
                          capture_output=True, text=True, check=False, env=env)
    assert proc.returncode == 0, proc.stderr
    docs: Iterator[KubeObject] = yaml.safe_load_all(proc.stdout)
    assert {d["metadata"]["annotations"]["llmops.io/source-commit"] for d in docs} == {
        "feedface" * 5}


def test_the_router_can_run_as_its_own_deployment(make_repo: Callable[..., SpecSet],
                                                  kube_schemas: KubeSchemas) -> None:
    def edit(files: dict[str, Any]) -> None:
        files["endpoints/dev/chat.yaml"]["spec"]["router"] = {"placement": "deployment",
                                                              "replicas": 3}

    objs = render_environment(make_repo(edit), "dev")
    server = find(objs, "Deployment", "chat")
    (only,) = pod_spec(server)["containers"]
    assert only["name"] == "server"
    assert "prompt" not in {v["name"] for v in pod_spec(server)["volumes"]}
    routers = find(objs, "Deployment", "chat-router")
    assert routers["spec"]["replicas"] == 3
    (router_container,) = pod_spec(routers)["containers"]
    assert env_of(router_container)["LLMOPS_ROUTER_UPSTREAM"] == "http://chat-model"
    assert {v["name"] for v in pod_spec(routers)["volumes"]} == {"prompt"}
    front, model = find(objs, "Service", "chat"), find(objs, "Service", "chat-model")
    router_pods = routers["spec"]["template"]["metadata"]["labels"]
    server_pods = server["spec"]["template"]["metadata"]["labels"]
    assert front["spec"]["selector"].items() <= router_pods.items()
    assert not front["spec"]["selector"].items() <= server_pods.items()
    assert front["spec"]["ports"][0]["targetPort"] == "router"
    assert model["spec"]["selector"].items() <= server_pods.items()
    assert model["spec"]["ports"][0]["targetPort"] == "http"
    assert routers["spec"]["selector"]["matchLabels"].items() <= router_pods.items()
    for obj in (server, routers, front, model):
        assert obj["metadata"]["labels"]["llmops.io/spec"] == "chat"
        assert kube_schemas.errors(obj) == []


def test_the_router_listens_by_default_where_its_sidecar_does_not_on_the_apis_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from click.testing import CliRunner

    from llmops.cli import cli
    from llmops.engine.settings import Settings
    from llmops.renderers import router as rendered

    monkeypatch.delenv("LLMOPS_ROUTER_PORT", raising=False)
    shown = CliRunner().invoke(cli, ["router", "--help"]).output
    assert "[default: 8081;" in " ".join(shown.split())
    assert rendered.PORT == 8081  # the sidecar's port, its Service target and scrape port
    assert Settings().api.port == 8080  # `llmops up` beside a local router: no clash
