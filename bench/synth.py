"""A synthetic specs repo of N serving endpoints, as a git repo with history (for bench/).

    .venv/bin/python bench/synth.py N DEST [COMMITS]

Writes DEST (a new folder) with the template repo's kinds in fixed proportions
per N endpoints, spread evenly over dev, stg and prod and over N/100 teams
(at least one):

- N/10 models (base, with files and digests as uploads record them) and
  N/50 LoRA adapters on them;
- N/5 prompt templates; every fourth endpoint uses one;
- N/20 prompt experiments (two variants, 80/20, sticky by header);
- N/50 training jobs on N/100 datasets;
- one governance policy: promotion, data classification and a GPU budget per
  team and environment that every endpoint fits in (no change window, so a
  run does not depend on the wall clock).

History: the specs land in COMMITS commits (default 5, the endpoints in equal
slices), then one commit changes one endpoint's replicas, as a pull request
would. ``generate`` is what the benchmarks import; the output is the same for
the same N and COMMITS.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ENVS = ("dev", "stg", "prod")
DIGEST = "ab" * 32

CONFIG = """apiVersion: llmops.io/v1alpha1
kind: Repository
environments:
""" + "".join(f"""  {env}:
    namespace: "{{team}}-{env}"
    serving:
      gpuTypes:
        nvidia-l4: {{nodeSelector: {{nvidia.com/gpu.product: NVIDIA-L4}}, gpusPerNode: 8}}
      storage: {{region: eu-central-1, secretName: llmops-model-storage}}
      ingressClassName: nginx
    actuator: hydrate
""" for env in ENVS) + "promotionOrder: [dev, stg, prod]\n"

MODEL = """apiVersion: llmops.io/v1alpha1
kind: Model
metadata: {{name: model-{i}, labels: {{team: {team}}}}}
spec:
  version: 1.0.0
  type: base
  ownerTeam: {team}
  storageUri: s3://models/models/model-{i}/1.0.0/
  framework: transformers
  dataClassification: internal
  stage: approved
  files:
    - {{name: config.json, sha256: {digest}, size: 654}}
    - {{name: model.safetensors, sha256: {digest}, size: 4976698672}}
"""

ADAPTER = """apiVersion: llmops.io/v1alpha1
kind: Model
metadata: {{name: adapter-{i}, labels: {{team: {team}}}}}
spec:
  version: 1.0.0
  type: adapter
  ownerTeam: {team}
  storageUri: s3://models/models/adapter-{i}/1.0.0/
  framework: peft
  dataClassification: internal
  stage: approved
  baseModel: {{name: model-{base}, version: 1.0.0}}
  loraRank: 16
  files:
    - {{name: adapter_config.json, sha256: {digest}, size: 721}}
    - {{name: adapter_model.safetensors, sha256: {digest}, size: 167832240}}
"""

TEMPLATE = """apiVersion: llmops.io/v1alpha1
kind: PromptTemplate
metadata: {{name: template-{i}}}
spec:
  version: 1.0.{i}
  template: |
    You are a support assistant for {{{{ product }}}} (variant {i}).
    Customer question:
    {{{{ question }}}}
  variables: [product, question]
"""

ENDPOINT = """apiVersion: llmops.io/v1alpha1
kind: ServingEndpoint
metadata:
  name: endpoint-{i}
  labels: {{team: {team}, tier: gold}}
spec:
  environment: {env}
  ownerTeam: {team}
  modelRef: {{name: {model}, version: 1.0.0}}
  route: /v1/endpoint-{i}
{template}  runtime:
    image: vllm/vllm-openai:v0.8.5
    args: ["--max-model-len=8192", "--gpu-memory-utilization=0.9"]
  replicas: {{min: 1, max: 4}}
  autoscale:
    customMetric: {{name: vllm_num_requests_waiting, targetAverageValue: "5"}}
  resources: {{gpu: 1, gpuType: nvidia-l4, cpu: "4", memory: 24Gi}}
"""

EXPERIMENT = """apiVersion: llmops.io/v1alpha1
kind: PromptExperiment
metadata: {{name: experiment-{i}}}
spec:
  environment: {env}
  endpointRef: endpoint-{endpoint}
  variants:
    - {{templateRef: template-{a}, weight: 80}}
    - {{templateRef: template-{b}, weight: 20}}
  metric: latency_ms
  stickiness: {{header: X-Session-Id}}
  state: running
"""

DATASET = """apiVersion: llmops.io/v1alpha1
kind: Dataset
metadata: {{name: dataset-{i}}}
spec:
  uri: s3://data/datasets/dataset-{i}/
  dataClassification: internal
  ownerTeam: {team}
"""

TRAINING = """apiVersion: llmops.io/v1alpha1
kind: TrainingJob
metadata: {{name: training-{i}}}
spec:
  environment: {env}
  ownerTeam: {team}
  baseModelRef: {{name: model-{model}, version: 1.0.0}}
  datasetRef: dataset-{dataset}
  image: ghcr.io/acme/llm-trainer:2.4.1
  command: [torchrun, --nproc-per-node=1, -m, trainer.sft]
  resources: {{gpu: 1, gpuType: nvidia-l4, cpu: "8", memory: 64Gi}}
  outputModel: {{name: trained-{i}, version: 1.0.0}}
  backoffLimit: 1
"""


def _policy(teams: int, gpus_per_team_env: int) -> str:
    budgets = "".join(f"    - {{team: team-{t}, environment: {env}, gpus: {gpus_per_team_env}, "
                      "pricePerGpuHour: 0.85}\n" for t in range(teams) for env in ENVS)
    return f"""apiVersion: llmops.io/v1alpha1
kind: Policy
metadata: {{name: governance}}
spec:
  promotion:
    - {{environment: prod, requireStage: approved}}
  dataClassification:
    public: [dev, stg, prod]
    internal: [dev, stg, prod]
  gpuBudgets:
{budgets}"""


def _git(repo: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.com",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.com",
           "GIT_AUTHOR_DATE": "2026-11-25T09:00:00Z", "GIT_COMMITTER_DATE": "2026-11-25T09:00:00Z"}
    subprocess.run(["git", "-C", str(repo), *args], check=True, env=env, timeout=600,
                   capture_output=True)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _catalog(root: Path, n: int, teams: int) -> None:
    """Everything but the endpoints and their experiments."""
    models, adapters = max(1, n // 10), max(1, n // 50)
    templates, datasets = max(2, n // 5), max(1, n // 100)
    for i in range(models):
        _write(root / "models" / f"model-{i}.yaml",
               MODEL.format(i=i, team=f"team-{i % teams}", digest=DIGEST))
    for i in range(adapters):
        _write(root / "models" / f"adapter-{i}.yaml",
               ADAPTER.format(i=i, team=f"team-{i % teams}", base=i % models, digest=DIGEST))
    for i in range(templates):
        _write(root / "prompts" / f"template-{i}.yaml", TEMPLATE.format(i=i))
    for i in range(datasets):
        _write(root / "datasets" / f"dataset-{i}.yaml",
               DATASET.format(i=i, team=f"team-{i % teams}"))
    for i in range(max(1, n // 50)):
        _write(root / "training" / f"training-{i}.yaml",
               TRAINING.format(i=i, env=ENVS[i % 3], team=f"team-{i // len(ENVS) % teams}",
                               model=i % models, dataset=i % datasets))
    per_team_env = -(-n // (teams * len(ENVS)))
    _write(root / "policies" / "governance.yaml", _policy(teams, 4 * per_team_env + 8))


def _endpoint(root: Path, i: int, n: int, teams: int) -> None:
    models, adapters, templates = max(1, n // 10), max(1, n // 50), max(2, n // 5)
    env = ENVS[i % 3]
    # Every fifth endpoint serves an adapter; every fourth has a prompt template.
    model = f"adapter-{i % adapters}" if i % 5 == 4 else f"model-{i % models}"
    template = f"  promptTemplateRef: template-{i % templates}\n" if i % 4 == 0 else ""
    _write(root / "endpoints" / env / f"endpoint-{i}.yaml",
           ENDPOINT.format(i=i, env=env, team=f"team-{i // len(ENVS) % teams}", model=model,
                           template=template))
    if i % 20 == 0:
        _write(root / "experiments" / f"experiment-{i // 20}.yaml",
               EXPERIMENT.format(i=i // 20, env=env, endpoint=i, a=i % templates,
                                 b=(i + 1) % templates))


def changed_endpoint(root: Path) -> Path:
    """The endpoint the last commit changes (a one-file pull request)."""
    return root / "endpoints" / "stg" / "endpoint-1.yaml"


def generate(root: Path, n: int, commits: int = 5) -> Path:
    """Write and commit the repo at ``root`` (see the module doc); returns ``root``."""
    teams = max(1, n // 100)
    root.mkdir(parents=True)
    _write(root / "llmops.yaml", CONFIG)
    _git(root, "init", "-q", "-b", "main")
    _catalog(root, n, teams)
    slices = max(1, commits)
    for part in range(slices):
        for i in range(part, n, slices):
            _endpoint(root, i, n, teams)
        _git(root, "add", "-A")
        _git(root, "commit", "-q", "-m", f"specs: part {part + 1} of {slices}")
    changed = changed_endpoint(root)
    changed.write_text(changed.read_text().replace("max: 4", "max: 5"))
    _git(root, "commit", "-q", "-am", "endpoint-1: up to 5 replicas")
    return root


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out = generate(Path(sys.argv[2]), int(sys.argv[1]),
                   int(sys.argv[3]) if len(sys.argv) > 3 else 5)
    print(f"{out}: {sum(1 for _ in out.rglob('*.yaml'))} spec files")
