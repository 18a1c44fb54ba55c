"""Applying to a real kube-apiserver: kubectl beside llmops' kubernetes actuator (by hand).

    .venv/bin/python bench/bench_apply.py [N]             # default 100; 1000 when asked

Starts the control-plane bundle of ``../shared/kube`` (kube-apiserver v1.28,
etcd, kube-controller-manager; found as ``tests/realkube.py`` finds it, and
stopped at the end), generates a specs repo of N endpoints with
``bench/synth.py``, and applies the same objects twice each way, as whole
processes:

- **kubectl**: the objects of every environment from ``llmops render``
  (namespaces ``<team>-<env>-kubectl``), sent by ``kubectl apply
  --server-side -f`` (kubectl v1.33 from ``bench/peers.py``); first apply,
  then the same file again (a no-op);
- **llmops**: ``llmops reconcile --once`` with the ``kubernetes`` actuator on
  the same repo (namespaces ``<team>-<env>-llmops``): the first pass, then a
  second pass of the same revision (a no-op).

Each line gives the wall time, peak RSS and the API requests the server
received from that process: counted in the apiserver's audit log
(``ResponseComplete`` events by user agent, ``kubectl/...`` or
``llmops/...``, inside the run's time window), with the writes among them;
for kubectl also its own ``-v=6`` request log lines. The controllers that
would act on the applied objects (deployment, replicaset, job, HPA) are off,
so the 2 cores go to the applies, not to making Pods that never run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import measure
import peers
import synth

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from realkube import BUNDLE_CANDIDATES, START_TIMEOUT

LLMOPS = Path(sys.executable).with_name("llmops")
OFF = "-deployment,-replicaset,-job,-horizontalpodautoscaling,-cronjob"
WRITES = frozenset({"create", "update", "patch", "delete", "deletecollection"})
KLOG_REQUEST = re.compile(r'"Response" verb="\w+"|\] (GET|POST|PUT|PATCH|DELETE) https?://')


@contextmanager
def cluster() -> Iterator[Path]:
    """A throw-away control plane; yields its folder (kubeconfig, audit.log)."""
    bundle = next((d for d in BUNDLE_CANDIDATES if (d / "start.sh").is_file()), None)
    if bundle is None:
        raise SystemExit("error: no control plane bundle at "
                         + " or ".join(str(d) for d in BUNDLE_CANDIDATES))
    env = dict(os.environ, KUBE_KCM_ARGS=f"--controllers={OFF}")
    done = subprocess.run(["bash", str(bundle / "start.sh")], env=env,
                          capture_output=True, text=True, timeout=START_TIMEOUT, check=False)
    if done.returncode != 0:
        raise SystemExit(f"error: {bundle}/start.sh failed: {done.stderr[-2000:]}")
    directory = Path(done.stdout.strip().splitlines()[-1])
    try:
        yield directory
    finally:
        subprocess.run(["bash", str(bundle / "stop.sh"), "--rm", str(directory)],
                       capture_output=True, timeout=60, check=False)


def audited(directory: Path, agent: str, since: datetime, until: datetime) -> Counter[str]:
    """Requests by verb that the server completed for user agents starting with ``agent``."""
    verbs: Counter[str] = Counter()
    for log in sorted(directory.glob("audit*.log")):
        with log.open() as lines:
            for line in lines:
                if agent not in line or '"ResponseComplete"' not in line:
                    continue
                event = json.loads(line)
                at = datetime.fromisoformat(event["stageTimestamp"].replace("Z", "+00:00"))
                if event.get("userAgent", "").startswith(agent) and since <= at <= until:
                    verbs[event["verb"]] += 1
    return verbs


def _requests(verbs: Counter[str]) -> str:
    writes = sum(n for verb, n in verbs.items() if verb in WRITES)
    each = " ".join(f"{verb} {n}" for verb, n in verbs.most_common())
    return f"{sum(verbs.values()):6d} requests, {writes} writes ({each})"


def _point(repo: Path, suffix: str, kubeconfig: Path | None) -> None:
    """Namespaces ``<team>-<env>-<suffix>``; with a kubeconfig, the kubernetes actuator."""
    path = repo / "llmops.yaml"
    text = re.sub(r'namespace: "\{team\}-(\w+)"', rf'namespace: "{{team}}-\1-{suffix}"',
                  path.read_text())
    if kubeconfig is not None:
        text = text.replace("actuator: hydrate", "actuator: kubernetes\n"
                            f"    cluster: {{kubeconfig: {json.dumps(str(kubeconfig))}}}")
    path.write_text(text)


def timed(label: str, kube: Path, agent: str, command: list[str | Path],
          env: dict[str, str]) -> measure.Sample:
    since = datetime.now().astimezone()
    out = Path(env["HOME"]) / "stdout.txt"
    sample = measure.run(command, env=env, stdout=out)
    until = datetime.now().astimezone()
    extra = ""
    if agent == "kubectl":
        extra = f", {len(KLOG_REQUEST.findall(sample.stderr))} in kubectl's -v=6 log"
    verbs = audited(kube, agent, since, until)
    print(f"  {label:<44} {sample.seconds:8.2f} s {sample.peak_mb:6.0f} MB "
          f"{_requests(verbs)}{extra}")
    if agent == "llmops":  # the pass's line per environment: created, unchanged, ...
        print("".join(f"      {line}\n" for line in out.read_text().splitlines()), end="")
    return sample


def bench(n: int, tmp: Path, kubectl: Path) -> None:
    repo = synth.generate(tmp / "specs", n)
    with cluster() as kube:
        kubeconfig = kube / "kubeconfig"
        env = dict(os.environ, KUBECONFIG=str(kubeconfig), HOME=str(tmp),
                   LLMOPS_HOME=str(tmp / "home"))
        _point(repo, "kubectl", None)
        manifest = tmp / "all.yaml"
        with manifest.open("wb") as out:
            for name in synth.ENVS:
                out.write(subprocess.run([LLMOPS, "render", repo, "--env", name], check=True,
                                         capture_output=True, timeout=600).stdout)
        objects = len(re.findall(rb"^kind: ", manifest.read_bytes(), re.MULTILINE))
        subprocess.run(["git", "-C", repo, "checkout", "-q", "llmops.yaml"], check=True)
        print(f"N={n}: {objects} objects in {len(synth.ENVS)} environments")
        apply: list[str | Path] = [kubectl, "apply", "--server-side",
                                   "--field-manager=bench-kubectl", "-v=6", "-f", manifest]
        first = timed("kubectl apply --server-side, first", kube, "kubectl", apply, env)
        again = timed("kubectl apply --server-side, again (no-op)", kube, "kubectl", apply, env)
        _point(repo, "llmops", kubeconfig)
        subprocess.run(["git", "-C", repo, "-c", "user.name=bench", "-c",
                        "user.email=bench@localhost", "commit", "-qam", "apply to the bench "
                        "cluster"], check=True)
        reconcile: list[str | Path] = [LLMOPS, "reconcile", "--once", "--repo", repo,
                                       "--branch", "main"]
        ours = timed("llmops reconcile --once, first pass", kube, "llmops", reconcile, env)
        resync = timed("llmops reconcile --once, same revision (no-op)", kube, "llmops",
                       reconcile, env)
        print(f"  {'ratio llmops / kubectl, first':<44} {ours.seconds / first.seconds:8.1f} x")
        print(f"  {'ratio llmops / kubectl, no-op':<44} {resync.seconds / again.seconds:8.1f} x")


def main(args: list[str]) -> int:
    n = int(args[0]) if args else 100
    try:
        kubectl = peers.tool("kubectl")
    except peers.PeerMissing as exc:
        print(f"error: kubectl is needed as the peer: {exc}", file=sys.stderr)
        return 1
    print(f"llmops: {LLMOPS}; kubectl: {kubectl}; load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="bench-apply-") as tmp:
        bench(n, Path(tmp), kubectl)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
