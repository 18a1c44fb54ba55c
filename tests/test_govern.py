"""Governance: every policy rule allows what it should and denies with a reason."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from conftest import MINIMAL_CONFIG, write_repo
from llmops.engine.plan import govern
from llmops.engine.plan.govern import Decision, Rule
from llmops.engine.spec import validate
from llmops.engine.spec.validate import SpecSet
from llmops.engine.types import Kind, SpecKey


def model(name: str, version: str, stage: str = "approved", cls: str = "internal",
          team: str = "nlp") -> str:
    return f"""\
apiVersion: llmops.io/v1alpha1
kind: Model
metadata: {{name: {name}}}
spec:
  version: {version}
  type: base
  ownerTeam: {team}
  storageUri: s3://models/models/{name}/{version}/
  framework: transformers
  dataClassification: {cls}
  stage: {stage}
  files:
    - {{name: config.json, sha256: {"c" * 64}, size: 654}}
"""


def endpoint(env: str, name: str, model_ref: str, version: str, *, gpu: int = 1,
             max_replicas: int = 2, team: str | None = None) -> str:
    owner = f"\n  ownerTeam: {team}" if team else ""
    return f"""\
apiVersion: llmops.io/v1alpha1
kind: ServingEndpoint
metadata: {{name: {name}}}
spec:
  environment: {env}{owner}
  modelRef: {{name: {model_ref}, version: {version}}}
  route: /v1/{name}
  replicas: {{min: 1, max: {max_replicas}}}
  resources: {{gpu: {gpu}}}
"""


def dataset(name: str, cls: str) -> str:
    return f"""\
apiVersion: llmops.io/v1alpha1
kind: Dataset
metadata: {{name: {name}}}
spec:
  uri: s3://data/datasets/{name}/
  dataClassification: {cls}
  ownerTeam: nlp
"""


def job(env: str, name: str, base: str, data: str, gpu: int = 4) -> str:
    return f"""\
apiVersion: llmops.io/v1alpha1
kind: TrainingJob
metadata: {{name: {name}}}
spec:
  environment: {env}
  baseModelRef: {{name: {base}, version: 1.0.0}}
  datasetRef: {data}
  image: ghcr.io/acme/trainer:1.0
  resources: {{gpu: {gpu}}}
  outputModel: {{name: {name}-out, version: 1.0.0}}
"""


GOVERNANCE = """\
apiVersion: llmops.io/v1alpha1
kind: Policy
metadata: {name: governance}
spec:
  promotion:
    - environment: prod
      requireStage: approved
      requirePriorEnvironment: stg
  dataClassification:
    confidential: [stg, prod]
    restricted: [prod]
  gpuBudgets:
    - {team: nlp, environment: prod, gpus: 4, pricePerGpuHour: 2.0}
    - {team: nlp, environment: dev, gpus: 8}
  changeWindows:
    - environments: [prod]
      days: [mon, tue, wed, thu, fri]
      start: "08:00"
      end: "18:00"
      timezone: Europe/Berlin
    - environments: [stg]
      days: [tue]
      start: "23:00"
      end: "02:00"
      timezone: UTC
"""


def spec_set(tmp_path: Path, files: dict[str, str]) -> SpecSet:
    base = {"llmops.yaml": MINIMAL_CONFIG, "policies/governance.yaml": GOVERNANCE}
    return validate.load_and_validate(write_repo(tmp_path / "repo", {**base, **files}))


def verdicts(s: SpecSet, env: str, rule: Rule, **kw: object) -> list[govern.Verdict]:
    return [v for v in govern.evaluate(s, env, **kw) if v.rule == rule]  # type: ignore[arg-type]


EP_PROD = SpecKey(Kind.SERVING_ENDPOINT, "prod", "chat")


# --------------------------------------------------------------------------- promotion


def test_promotion_allows_approved_model_that_ran_in_stg(tmp_path: Path) -> None:
    s = spec_set(tmp_path, {
        "models/chat.yaml": model("chat", "1.2.0"),
        "endpoints/stg/chat.yaml": endpoint("stg", "chat", "chat", "1.2.0"),
        "endpoints/prod/chat.yaml": endpoint("prod", "chat", "chat", "1.2.0"),
    })
    [v] = verdicts(s, "prod", Rule.PROMOTION)
    assert (v.decision, v.spec) == (Decision.ALLOW, EP_PROD)
    assert "approved" in v.reason
    assert "stg" in v.reason
    # Environments without a promotion rule are not judged by it.
    assert verdicts(s, "stg", Rule.PROMOTION) == []


def test_promotion_denies_a_draft_model(tmp_path: Path) -> None:
    s = spec_set(tmp_path, {
        "models/chat.yaml": model("chat", "1.3.0", stage="draft"),
        "endpoints/stg/chat.yaml": endpoint("stg", "chat", "chat", "1.3.0"),
        "endpoints/prod/chat.yaml": endpoint("prod", "chat", "chat", "1.3.0"),
    })
    [v] = verdicts(s, "prod", Rule.PROMOTION)
    assert v.decision == Decision.DENY
    assert v.spec == EP_PROD
    assert "model chat 1.3.0 is draft, prod requires approved" in v.reason
    assert "does not run" not in v.reason  # it does run in stg


def test_promotion_denies_a_model_that_never_ran_in_stg(tmp_path: Path) -> None:
    s = spec_set(tmp_path, {
        "models/chat-1.2.0.yaml": model("chat", "1.2.0"),
        "models/chat-1.3.0.yaml": model("chat", "1.3.0"),
        "endpoints/stg/chat.yaml": endpoint("stg", "chat", "chat", "1.2.0"),
        "endpoints/prod/chat.yaml": endpoint("prod", "chat", "chat", "1.3.0"),
    })
    [v] = verdicts(s, "prod", Rule.PROMOTION)
    assert v.decision == Decision.DENY
    assert v.reason == ("model chat 1.3.0 does not run in stg (no stg endpoint serves it), "
                        "prod requires it to run there first")


# --------------------------------------------------------------------------- classification


def test_classification_allows_listed_and_unlisted_classes(tmp_path: Path) -> None:
    s = spec_set(tmp_path, {
        "models/chat.yaml": model("chat", "1.2.0", cls="confidential"),
        "models/open.yaml": model("open", "1.0.0", cls="public"),
        "endpoints/stg/chat.yaml": endpoint("stg", "chat", "chat", "1.2.0"),
        "endpoints/dev/open.yaml": endpoint("dev", "open", "open", "1.0.0"),
    })
    [stg] = verdicts(s, "stg", Rule.DATA_CLASSIFICATION)
    assert stg.decision == Decision.ALLOW
    assert "confidential" in stg.reason
    [dev] = verdicts(s, "dev", Rule.DATA_CLASSIFICATION)
    assert dev.decision == Decision.ALLOW
    assert "public" in dev.reason


def test_classification_denies_endpoint_outside_allowed_environments(tmp_path: Path) -> None:
    s = spec_set(tmp_path, {
        "models/chat.yaml": model("chat", "1.2.0", cls="confidential"),
        "endpoints/dev/chat.yaml": endpoint("dev", "chat", "chat", "1.2.0"),
    })
    [v] = verdicts(s, "dev", Rule.DATA_CLASSIFICATION)
    assert v.decision == Decision.DENY
    assert v.spec == SpecKey(Kind.SERVING_ENDPOINT, "dev", "chat")
    assert v.reason == "model chat 1.2.0 is confidential, allowed only in prod, stg"


def test_classification_denies_training_job_on_restricted_dataset(tmp_path: Path) -> None:
    s = spec_set(tmp_path, {
        "models/base.yaml": model("base", "1.0.0", cls="public"),
        "datasets/pii.yaml": dataset("pii", "restricted"),
        "training/tune.yaml": job("stg", "tune", "base", "pii"),
    })
    [v] = verdicts(s, "stg", Rule.DATA_CLASSIFICATION)
    assert v.decision == Decision.DENY
    assert v.spec == SpecKey(Kind.TRAINING_JOB, "stg", "tune")
    assert "dataset pii is restricted, allowed only in prod" in v.reason


def test_classification_of_merged_policies_is_the_intersection(tmp_path: Path) -> None:
    stricter = """\
apiVersion: llmops.io/v1alpha1
kind: Policy
metadata: {name: stricter}
spec:
  dataClassification:
    confidential: [prod]
"""
    s = spec_set(tmp_path, {
        "policies/stricter.yaml": stricter,
        "models/chat.yaml": model("chat", "1.2.0", cls="confidential"),
        "endpoints/stg/chat.yaml": endpoint("stg", "chat", "chat", "1.2.0"),
    })
    [v] = verdicts(s, "stg", Rule.DATA_CLASSIFICATION)
    assert v.decision == Decision.DENY
    assert "allowed only in prod" in v.reason


# --------------------------------------------------------------------------- GPU budgets


def test_gpu_budget_allows_within_budget(tmp_path: Path) -> None:
    s = spec_set(tmp_path, {
        "models/chat.yaml": model("chat", "1.2.0"),
        "endpoints/stg/chat.yaml": endpoint("stg", "chat", "chat", "1.2.0"),
        "endpoints/prod/chat.yaml": endpoint("prod", "chat", "chat", "1.2.0", gpu=2,
                                             max_replicas=2),
    })
    [v] = verdicts(s, "prod", Rule.GPU_BUDGET)
    assert v.decision == Decision.ALLOW
    assert v.target == "team nlp"
    assert "uses 4 GPUs" in v.reason
    assert "budget of 4" in v.reason


def test_gpu_budget_denies_endpoints_plus_jobs_over_budget(tmp_path: Path) -> None:
    s = spec_set(tmp_path, {
        "models/base.yaml": model("base", "1.0.0", cls="public"),
        "datasets/chats.yaml": dataset("chats", "internal"),
        "endpoints/dev/a.yaml": endpoint("dev", "a", "base", "1.0.0", gpu=1, max_replicas=3),
        "endpoints/dev/b.yaml": endpoint("dev", "b", "base", "1.0.0", gpu=1, max_replicas=2),
        "training/tune.yaml": job("dev", "tune", "base", "chats", gpu=4),
    })
    [v] = verdicts(s, "dev", Rule.GPU_BUDGET)
    assert v.decision == Decision.DENY
    assert "team nlp uses 9 GPUs in dev" in v.reason
    assert "over its budget of 8" in v.reason
    assert govern.team_gpus(s, "dev") == {"nlp": 9}


# --------------------------------------------------------------------------- change windows


def _window_set(tmp_path: Path) -> SpecSet:
    return spec_set(tmp_path, {
        "models/chat.yaml": model("chat", "1.2.0"),
        "endpoints/stg/chat.yaml": endpoint("stg", "chat", "chat", "1.2.0"),
        "endpoints/prod/chat.yaml": endpoint("prod", "chat", "chat", "1.2.0"),
    })


@pytest.mark.parametrize(("now", "decision"), [
    # Wednesday 10:00 in Berlin (09:00 UTC in winter): inside mon-fri 08:00-18:00.
    (datetime(2026, 1, 14, 9, 0, tzinfo=UTC), Decision.ALLOW),
    # Wednesday 18:30 Berlin: after the window closes.
    (datetime(2026, 1, 14, 17, 30, tzinfo=UTC), Decision.DENY),
    # Saturday noon.
    (datetime(2026, 1, 17, 12, 0, tzinfo=UTC), Decision.DENY),
    # 07:30 UTC is 08:30 in Berlin: the zone matters.
    (datetime(2026, 1, 14, 7, 30, tzinfo=UTC), Decision.ALLOW),
])
def test_change_window_in_its_timezone(tmp_path: Path, now: datetime,
                                       decision: Decision) -> None:
    s = _window_set(tmp_path)
    [v] = verdicts(s, "prod", Rule.CHANGE_WINDOW, changed={EP_PROD}, now=now)
    assert v.decision == decision
    assert v.spec == EP_PROD
    if decision == Decision.DENY:
        assert "outside every prod change window" in v.reason
        assert "mon,tue,wed,thu,fri 08:00-18:00 Europe/Berlin" in v.reason


@pytest.mark.parametrize(("now", "decision"), [
    (datetime(2026, 1, 13, 23, 30, tzinfo=UTC), Decision.ALLOW),  # Tuesday night
    (datetime(2026, 1, 14, 1, 30, tzinfo=UTC), Decision.ALLOW),   # Wednesday, after midnight
    (datetime(2026, 1, 14, 23, 30, tzinfo=UTC), Decision.DENY),   # Wednesday night
    (datetime(2026, 1, 13, 1, 30, tzinfo=UTC), Decision.DENY),    # Tuesday, after Monday
])
def test_overnight_change_window(tmp_path: Path, now: datetime, decision: Decision) -> None:
    s = _window_set(tmp_path)
    key = SpecKey(Kind.SERVING_ENDPOINT, "stg", "chat")
    [v] = verdicts(s, "stg", Rule.CHANGE_WINDOW, changed={key}, now=now)
    assert v.decision == decision


def test_change_window_needs_changes_and_windows(tmp_path: Path) -> None:
    s = _window_set(tmp_path)
    saturday = datetime(2026, 1, 17, 12, 0, tzinfo=UTC)
    assert verdicts(s, "prod", Rule.CHANGE_WINDOW, changed=set(), now=saturday) == []
    dev_key = SpecKey(Kind.SERVING_ENDPOINT, "dev", "chat")
    assert verdicts(s, "dev", Rule.CHANGE_WINDOW, changed={dev_key}, now=saturday) == []


def test_no_policy_no_verdicts(tmp_path: Path) -> None:
    s = validate.load_and_validate(write_repo(tmp_path / "bare", {
        "llmops.yaml": MINIMAL_CONFIG,
        "models/chat.yaml": model("chat", "1.2.0", stage="draft", cls="restricted"),
        "endpoints/prod/chat.yaml": endpoint("prod", "chat", "chat", "1.2.0", gpu=8),
    }))
    assert govern.evaluate(s, "prod", changed={EP_PROD}) == ()
