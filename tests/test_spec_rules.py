"""Field rules and cross-references a user expects, each reported at the right field."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import MINIMAL_ENDPOINT, MINIMAL_MODEL, TEMPLATE, write_repo
from llmops.engine.errors import SpecError, SpecIssue
from llmops.engine.spec import validate

TEMPLATES = """\
apiVersion: llmops.io/v1alpha1
kind: PromptTemplate
metadata: {name: greet-a}
spec: {version: 1.0.0, template: "Hello {{ name }}", variables: [name]}
---
apiVersion: llmops.io/v1alpha1
kind: PromptTemplate
metadata: {name: greet-b}
spec: {version: 1.0.0, template: "Hi {{ name }}", variables: [name]}
"""

EXPERIMENT = """\
apiVersion: llmops.io/v1alpha1
kind: PromptExperiment
metadata: {name: greet-ab}
spec:
  environment: dev
  endpointRef: chat
  variants:
    - {templateRef: greet-a, weight: 50}
    - {templateRef: greet-b, weight: 50}
"""

DATASET = """\
apiVersion: llmops.io/v1alpha1
kind: Dataset
metadata: {name: tickets}
spec: {uri: "s3://data/datasets/tickets/", dataClassification: internal, ownerTeam: nlp}
"""

JOB = """\
apiVersion: llmops.io/v1alpha1
kind: TrainingJob
metadata: {name: tune}
spec:
  environment: dev
  baseModelRef: {name: chat-model, version: 1.2.0}
  datasetRef: tickets
  image: ghcr.io/acme/trainer:1.0
  outputModel: {name: chat-tuned, version: 0.1.0}
"""


def issues_for(repo: Path) -> list[SpecIssue]:
    with pytest.raises(SpecError) as caught:
        validate.load_and_validate(repo, cache=None)
    return list(caught.value.issues)


def only_issue(repo: Path) -> SpecIssue:
    found = issues_for(repo)
    assert len(found) == 1, [str(i) for i in found]
    return found[0]


def test_template_repo_is_valid() -> None:
    spec_set = validate.load_and_validate(TEMPLATE, cache=None)
    kinds = {item.spec.kind for item in spec_set.items}
    assert kinds == {"Model", "PromptTemplate", "ServingEndpoint", "PromptExperiment",
                     "TrainingJob", "Dataset", "Policy"}
    assert set(spec_set.config.environments) == {"dev", "stg", "prod"}


def test_full_fixture_is_valid(minimal_repo: Path) -> None:
    write_repo(minimal_repo, {"prompts/greet.yaml": TEMPLATES, "experiments/ab.yaml": EXPERIMENT,
                              "datasets/t.yaml": DATASET, "training/tune.yaml": JOB})
    assert len(validate.load_and_validate(minimal_repo, cache=None).items) == 7


# (file to overwrite, original text, replacement, expected field, words, expected line)
FIELD_CASES = {
    "bad-name": ("endpoints/dev/chat.yaml", MINIMAL_ENDPOINT, ("{name: chat}", "{name: Chat_1}"),
                 "metadata.name", "DNS-1123", 3),
    "bad-semver": ("models/chat-model.yaml", MINIMAL_MODEL, ("version: 1.2.0", "version: v1.2"),
                   "spec.version", "semantic version", 5),
    "replicas-order": ("endpoints/dev/chat.yaml", MINIMAL_ENDPOINT,
                       ("{min: 1, max: 2}", "{min: 5, max: 2}"), "spec.replicas",
                       "min (5) is greater than max (2)", 8),
    "replicas-negative": ("endpoints/dev/chat.yaml", MINIMAL_ENDPOINT,
                          ("{min: 1, max: 2}", "{min: -1, max: 2}"), "spec.replicas.min",
                          "greater than or equal to 0", 8),
    "relative-route": ("endpoints/dev/chat.yaml", MINIMAL_ENDPOINT,
                       ("route: /v1/chat", "route: v1/chat"), "spec.route", "absolute", 7),
    "storage-uri": ("models/chat-model.yaml", MINIMAL_MODEL,
                    ("s3://models/models/chat-model/1.2.0/", "https://x/models/"),
                    "spec.storageUri", "s3://bucket/prefix/", 8),
    "storage-uri-no-slash": ("models/chat-model.yaml", MINIMAL_MODEL,
                             ("chat-model/1.2.0/", "chat-model/1.2.0"), "spec.storageUri",
                             "s3://", 8),
    "unknown-field": ("endpoints/dev/chat.yaml", MINIMAL_ENDPOINT,
                      ("route: /v1/chat", "route: /v1/chat\n  replica: 3"), "spec.replica",
                      "unknown field", 8),
    "undeclared-env": ("endpoints/dev/chat.yaml", MINIMAL_ENDPOINT,
                       ("environment: dev", "environment: qa"), "spec.environment",
                       "not declared in llmops.yaml", 5),
    "missing-model-version": ("endpoints/dev/chat.yaml", MINIMAL_ENDPOINT,
                              ("version: 1.2.0}", "version: 1.3.0}"), "spec.modelRef",
                              "model chat-model 1.3.0 is not defined (known versions: 1.2.0)", 6),
    "missing-field": ("endpoints/dev/chat.yaml", MINIMAL_ENDPOINT, ("  route: /v1/chat\n", ""),
                      "spec.route", "required field is missing", 5),
    "wrong-enum": ("models/chat-model.yaml", MINIMAL_MODEL, ("stage: approved", "stage: live"),
                   "spec.stage", "'draft', 'approved' or 'deprecated'", 11),
    # What the API server would refuse at apply is a spec error at validate.
    "host-empty-label": ("endpoints/dev/chat.yaml", MINIMAL_ENDPOINT,
                         ("route: /v1/chat", "route: /v1/chat\n  host: llm..dev.example.com"),
                         "spec.host", "RFC 1123 host name", 8),
    "host-long-label": ("endpoints/dev/chat.yaml", MINIMAL_ENDPOINT,
                        ("route: /v1/chat", f"route: /v1/chat\n  host: {'a' * 64}.example.com"),
                        "spec.host", "each 1-63", 8),
    "label-value": ("endpoints/dev/chat.yaml", MINIMAL_ENDPOINT,
                    ("{name: chat}", '{name: chat, labels: {app: "support chat"}}'),
                    "metadata.labels.app", "Kubernetes label value", 3),
    "namespace-too-long": ("endpoints/dev/chat.yaml", MINIMAL_ENDPOINT,
                           ("route: /v1/chat", f"route: /v1/chat\n  ownerTeam: {'a' * 60}"),
                           "spec.ownerTeam", "is 64 characters; Kubernetes takes at most 63", 8),
    "label-value-long": ("endpoints/dev/chat.yaml", MINIMAL_ENDPOINT,
                         ("{name: chat}", f"{{name: chat, labels: {{app: {'a' * 64}}}}}"),
                         "metadata.labels.app", "63", 3),
}


@pytest.mark.parametrize("case", sorted(FIELD_CASES))
def test_field_rule(case: str, minimal_repo: Path) -> None:
    rel, text, (old, new), field, words, line = FIELD_CASES[case]
    assert old in text
    write_repo(minimal_repo, {rel: text.replace(old, new)})
    issue = only_issue(minimal_repo)
    assert (issue.file, issue.field, issue.line) == (rel, field, line), str(issue)
    assert words in issue.message
    assert str(issue).startswith(f"{rel}:{line}:")


EXPERIMENT_CASES = {
    "weights-sum": (("weight: 50}\n    - {templateRef: greet-b, weight: 50}",
                     "weight: 50}\n    - {templateRef: greet-b, weight: 40}"),
                    "variant weights sum to 90, not 100"),
    "one-variant": (("    - {templateRef: greet-b, weight: 50}\n", ""), "at least two variants"),
    "same-template": (("{templateRef: greet-b", "{templateRef: greet-a"), "distinct templates"),
    "float-weight": (("{templateRef: greet-b, weight: 50}", "{templateRef: greet-b, weight: 49.5}"),
                     "valid integer"),
    "concluded-no-winner": (("  variants:", "  state: concluded\n  variants:"),
                            "names its winner"),
    "winner-not-variant": (("  variants:", "  state: concluded\n  winner: greet-c\n  variants:"),
                           "is not one of the variants"),
    "winner-while-running": (("  variants:", "  winner: greet-a\n  variants:"),
                             "only a concluded experiment has a winner"),
    "missing-endpoint": (("endpointRef: chat", "endpointRef: chat2"),
                         "endpoint chat2 is not defined in environment dev"),
    "missing-template": (("{templateRef: greet-b", "{templateRef: greet-z"),
                         "prompt template greet-z is not defined"),
}


@pytest.mark.parametrize("case", sorted(EXPERIMENT_CASES))
def test_experiment_rule(case: str, minimal_repo: Path) -> None:
    (old, new), words = EXPERIMENT_CASES[case]
    assert old in EXPERIMENT
    write_repo(minimal_repo, {"prompts/greet.yaml": TEMPLATES,
                              "experiments/ab.yaml": EXPERIMENT.replace(old, new)})
    issue = only_issue(minimal_repo)
    assert issue.file == "experiments/ab.yaml"
    assert (issue.kind, issue.name) == ("PromptExperiment", "greet-ab")
    assert words in issue.message, str(issue)
    assert issue.line > 1


def test_concluded_experiment_with_winner_routes_all_traffic(minimal_repo: Path) -> None:
    text = EXPERIMENT.replace("  variants:", "  state: concluded\n  winner: greet-b\n  variants:")
    write_repo(minimal_repo, {"prompts/greet.yaml": TEMPLATES, "experiments/ab.yaml": text})
    spec_set = validate.load_and_validate(minimal_repo, cache=None)
    (experiment,) = spec_set.sourced("PromptExperiment")
    assert experiment.spec.spec.effective_weights() == {"greet-a": 0, "greet-b": 100}  # type: ignore[union-attr]


def test_the_running_experiment_routes_the_endpoint_then_the_first_by_name(
        minimal_repo: Path) -> None:
    concluded = EXPERIMENT.replace("  variants:", "  state: concluded\n  winner: greet-b\n"
                                                  "  variants:")
    write_repo(minimal_repo, {
        "prompts/greet.yaml": TEMPLATES,
        "experiments/ab.yaml": EXPERIMENT.replace("name: greet-ab", "name: z-running"),
        "experiments/a-old.yaml": concluded.replace("name: greet-ab", "name: a-old"),
        "experiments/b-old.yaml": concluded.replace("name: greet-ab", "name: b-old")})
    spec_set = validate.load_and_validate(minimal_repo, cache=None)
    endpoint = spec_set.endpoint("dev", "chat")
    assert endpoint is not None
    found = spec_set.experiment_for(endpoint)
    assert (found.name if found else None) == "z-running"
    (minimal_repo / "experiments/ab.yaml").unlink()
    spec_set = validate.load_and_validate(minimal_repo, cache=None)
    found = spec_set.experiment_for(endpoint)
    assert (found.name if found else None) == "a-old"
    other = endpoint.model_copy(update={"metadata": endpoint.metadata.model_copy(
        update={"name": "other"})})
    assert spec_set.experiment_for(other) is None


def test_training_job_references(minimal_repo: Path) -> None:
    job = JOB.replace("version: 1.2.0}", "version: 9.9.9}").replace("tickets", "nothing")
    write_repo(minimal_repo, {"training/tune.yaml": job})
    found = {(i.field, i.message) for i in issues_for(minimal_repo)}
    assert found == {
        ("spec.baseModelRef", "model chat-model 9.9.9 is not defined (known versions: 1.2.0)"),
        ("spec.datasetRef", "dataset nothing is not defined"),
    }


def test_same_identity_twice_names_both_files(minimal_repo: Path) -> None:
    write_repo(minimal_repo, {"endpoints/dev/copy.yaml": MINIMAL_ENDPOINT})
    issue = only_issue(minimal_repo)
    assert "endpoints/dev/chat.yaml" in issue.message
    assert issue.file == "endpoints/dev/copy.yaml"
    assert "ServingEndpoint dev/chat is defined twice" in issue.message


def test_same_name_in_two_environments_is_fine(minimal_repo: Path) -> None:
    write_repo(minimal_repo, {"endpoints/stg/chat.yaml":
                              MINIMAL_ENDPOINT.replace("environment: dev", "environment: stg")})
    assert len(validate.load_and_validate(minimal_repo, cache=None).items) == 3


def test_two_versions_of_a_model_are_two_specs(minimal_repo: Path) -> None:
    write_repo(minimal_repo, {"models/v2.yaml": MINIMAL_MODEL.replace("1.2.0", "1.3.0")})
    spec_set = validate.load_and_validate(minimal_repo, cache=None)
    assert len(list(spec_set.sourced("Model"))) == 2


def test_every_error_of_the_repo_in_one_run(minimal_repo: Path) -> None:
    write_repo(minimal_repo, {
        "endpoints/dev/chat.yaml": MINIMAL_ENDPOINT.replace("/v1/chat", "v1"),
        "models/chat-model.yaml": MINIMAL_MODEL.replace("type: base", "type: huge"),
        "prompts/broken.yaml": "a: [\n",
        "llmops.yaml": "environments: {}\n",
    })
    files = sorted({i.file for i in issues_for(minimal_repo)})
    assert files == ["endpoints/dev/chat.yaml", "llmops.yaml", "models/chat-model.yaml",
                     "prompts/broken.yaml"]


def test_missing_repo_config(minimal_repo: Path) -> None:
    (minimal_repo / "llmops.yaml").unlink()
    issue = only_issue(minimal_repo)
    assert "llmops.yaml is missing" in issue.message


def test_repo_config_rules(minimal_repo: Path) -> None:
    write_repo(minimal_repo, {"llmops.yaml": """\
        environments:
          dev: {namespace: "Dev Space"}
          stg: {namespace: stg, actuator: ftp}
        safety: {maxPrunePercent: 130}
        """})
    found = {(i.field, i.line) for i in issues_for(minimal_repo)}
    assert found == {("environments.dev", 2), ("environments.stg.actuator", 3),
                     ("safety.maxPrunePercent", 4)}


def test_model_rules(minimal_repo: Path) -> None:
    text = MINIMAL_MODEL.replace("type: base", "type: fine-tuned") + (
        "  files:\n    - {name: ../../etc/passwd, sha256: abc, size: 1}\n"
        "    - {name: model.exe, sha256: " + "a" * 64 + ", size: 1}\n")
    write_repo(minimal_repo, {"models/chat-model.yaml": text})
    messages = {(i.field, i.message) for i in issues_for(minimal_repo)}
    assert ("spec.files[0].name", "value '../../etc/passwd' is not a plain file name "
            "(no '/' or '..')") in messages
    assert any(f == "spec.files[1]" and "disallowed extension" in m for f, m in messages)


def test_fine_tuned_model_needs_base_model_and_config_json(minimal_repo: Path) -> None:
    text = MINIMAL_MODEL.replace("type: base", "type: fine-tuned")
    write_repo(minimal_repo, {"models/chat-model.yaml": text})
    assert "a fine-tuned model needs baseModel" in only_issue(minimal_repo).message
    text = MINIMAL_MODEL + "  files:\n    - {name: model.safetensors, sha256: " + "a" * 64 + (
        ", size: 1}\n")
    write_repo(minimal_repo, {"models/chat-model.yaml": text})
    assert "needs config.json" in only_issue(minimal_repo).message
