"""Benchmark of the local pipeline stages on a generated specs repo (run by hand).

    .venv/bin/python bench/bench_pipeline.py [ENDPOINTS]

Generates a repo of ENDPOINTS serving endpoints (default 2000) spread over
dev/stg/prod plus their models, then times: a cold load (parse every file), a
warm load (every file served from the blob-SHA cache), validation, rendering one
environment, and the 300-byte billion-laughs file. Prints one line per figure.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from llmops.engine.errors import SpecError
from llmops.engine.spec import loader, validate
from llmops.renderers import render_environment

CONFIG = """apiVersion: llmops.io/v1alpha1
kind: Repository
environments:
  dev: {namespace: "{team}-dev"}
  stg: {namespace: "{team}-stg"}
  prod: {namespace: "{team}-prod"}
"""

MODEL = """apiVersion: llmops.io/v1alpha1
kind: Model
metadata: {{name: model-{i}}}
spec:
  version: 1.0.{i}
  type: base
  ownerTeam: team-{t}
  storageUri: s3://models/models/model-{i}/1.0.{i}/
  framework: transformers
  dataClassification: internal
  stage: approved
"""

ENDPOINT = """apiVersion: llmops.io/v1alpha1
kind: ServingEndpoint
metadata:
  name: endpoint-{i}
  labels: {{tier: gold}}
spec:
  environment: {env}
  modelRef: {{name: model-{m}, version: 1.0.{m}}}
  route: /v1/endpoint-{i}
  runtime:
    image: vllm/vllm-openai:v0.8.5
    args: ["--max-model-len", "8192", "--gpu-memory-utilization", "0.9"]
  replicas: {{min: 1, max: 4}}
  autoscale: {{cpuUtilization: 70}}
  resources: {{gpu: 1, gpuType: nvidia-l4, cpu: "4", memory: 24Gi}}
"""

BOMB = (
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    + "".join(f"{c}: &{c} [" + ",".join([f"*{p}"] * 9) + "]\n"
              for p, c in zip("abcdef", "bcdefg", strict=True))
)


def timed(label: str, fn, n: int = 1):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = None
    for _ in range(n):
        result = fn()
    elapsed = (time.perf_counter() - start) / n
    print(f"{label:<44} {elapsed * 1000:10.2f} ms")
    return result


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "llmops.yaml").write_text(CONFIG)
        models = max(1, count // 10)
        for i in range(models):
            (root / "models").mkdir(exist_ok=True)
            (root / "models" / f"model-{i}.yaml").write_text(MODEL.format(i=i, t=i % 5))
        envs = ("dev", "stg", "prod")
        for i in range(count):
            env = envs[i % 3]
            folder = root / "endpoints" / env
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"endpoint-{i}.yaml").write_text(ENDPOINT.format(i=i, env=env,
                                                                       m=i % models))
        files = count + models + 1
        print(f"repo: {count} endpoints, {models} models, {files} files")
        cache = loader.ParseCache()
        loaded = timed("load, cold (parse every file)", lambda: loader.load_repo(root,
                                                                                  cache=cache))
        per_file = 0.0
        timed("load, warm (blob-SHA cache hits)", lambda: loader.load_repo(root, cache=cache))
        spec_set = timed("validate (models + cross-references)",
                         lambda: validate.validate(loaded))
        objects = timed("render prod", lambda: render_environment(spec_set, "prod"))
        print(f"{'objects rendered in prod':<44} {len(objects):10d}")
        start = time.perf_counter()
        loader.load_repo(root, cache=loader.ParseCache())
        per_file = (time.perf_counter() - start) / files
        print(f"{'cold load per file':<44} {per_file * 1000:10.3f} ms")

        def bomb() -> None:
            try:
                loader.load_bytes(BOMB.encode(), "bomb.yaml", cache=None)
            except SpecError:
                return
            raise AssertionError("the bomb loaded")

        timed(f"billion laughs ({len(BOMB)} bytes) rejected", bomb, n=100)


if __name__ == "__main__":
    main()
