"""A Helm chart equivalent to a specs repo, for ``helm template`` as a peer of ``llmops render``.

    .venv/bin/python bench/helmchart.py SPECS_REPO DEST

``write_chart(repo, dest)`` reads the repo's spec files (as ``bench/synth.py``
writes them) and writes one chart into DEST: ``bench/chart/`` (``Chart.yaml`` and the
templates); its values, a file ``DEST-values.yaml`` beside it passed with ``helm template
-f`` (helm refuses a chart file over 5 MiB, which they are at N=10000), hold the same specs with
the same fields (``endpoints`` and ``trainingJobs`` as lists, the models,
prompt templates and environments they refer to as maps, the experiments and
the policy's GPU budgets), and the templates resolve those references the way
the renderers do and produce the same kinds: per endpoint a Deployment (model
fetch init containers, the server, the prompt-router sidecar, probes, security,
volumes), a Service, a HorizontalPodAutoscaler, two Ingresses and the always-mounted
prompt ConfigMap (the template when there is one, the running experiment's name: the
renderer writes its whole variant table there); a ConfigMap per experiment; a Job per
training job; a Namespace and a GPU ResourceQuota per team and environment. Every
object carries the same labels and a spec-hash annotation. The chart is a fair peer,
not a copy: some defaults llmops derives (storage sizes from file sizes, spread
constraints) are fixed here.

Caller: ``bench_render.py``; ``tests/test_bench_peers.py`` checks its shape.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parent / "chart"
"""The chart's Chart.yaml and templates; ``write_chart`` adds the values."""
LLMOPS_IMAGE = "ghcr.io/llmops/llmops:0.1.0"


def _docs(folder: Path) -> list[dict[str, Any]]:
    return [yaml.load(p.read_text(), Loader=yaml.CSafeLoader)
            for p in sorted(folder.rglob("*.yaml"), key=lambda p: (len(p.name), p.name))]


def _by_name(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return {d["metadata"]["name"]: d["spec"] for d in docs}


def values(repo: Path) -> dict[str, Any]:
    """The chart's values: the repo's specs, with the same fields."""
    config = yaml.load((repo / "llmops.yaml").read_text(), Loader=yaml.CSafeLoader)
    endpoints = _docs(repo / "endpoints")
    experiments = _docs(repo / "experiments")
    policy = next(d for d in _docs(repo / "policies") if d["kind"] == "Policy")
    return {
        "llmopsImage": LLMOPS_IMAGE,
        "environments": config["environments"],
        "models": _by_name(_docs(repo / "models")),
        "prompts": _by_name(_docs(repo / "prompts")),
        "datasets": _by_name(_docs(repo / "datasets")),
        "endpoints": endpoints,
        "endpointTeam": {f"{e['spec']['environment']}/{e['metadata']['name']}":
                         e["spec"]["ownerTeam"] for e in endpoints},
        "experiments": experiments,
        "experimentByEndpoint": {f"{x['spec']['environment']}/{x['spec']['endpointRef']}":
                                 x["metadata"]["name"] for x in experiments
                                 if x["spec"].get("state") == "running"},
        "trainingJobs": _docs(repo / "training"),
        "gpuBudgets": policy["spec"]["gpuBudgets"],
    }


def write_chart(repo: Path, dest: Path) -> tuple[Path, Path]:
    """Write the chart for the specs repo ``repo`` into the new folder ``dest`` and its
    values beside it; returns both paths."""
    shutil.copytree(CHART, dest)
    values_file = dest.with_name(f"{dest.name}-values.yaml")
    values_file.write_text(yaml.dump(values(repo), Dumper=yaml.CSafeDumper, sort_keys=False))
    return dest, values_file


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    print(write_chart(Path(sys.argv[1]), Path(sys.argv[2])))
