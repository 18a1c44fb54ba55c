"""Processes and files for the router tests: the fake model server, ``llmops router``, ConfigMaps.

``upstream()`` runs ``fake_openai.py`` on a free loopback port, ``router()``
runs ``llmops router`` (the real CLI) in front of it; both are stopped when
their ``with`` block ends. ``ConfigMapDir`` lays files out the way kubelet
mounts a ConfigMap (``<key> -> ..data/<key>``, ``..data -> ..<timestamp>``)
and updates them by swapping the ``..data`` link, as kubelet does.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from conftest import SERVER_START_SECONDS

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(url: str, proc: subprocess.Popen[bytes], log: Path, what: str) -> None:
    deadline = time.monotonic() + SERVER_START_SECONDS
    while True:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            if proc.poll() is not None:
                out = log.read_text(encoding="utf-8", errors="replace")
                raise AssertionError(f"{what} exited: {out}") from None
            assert time.monotonic() < deadline, f"{what} did not start"
            time.sleep(0.05)


@contextmanager
def _process(argv: list[str], probe: str, what: str) -> Iterator[subprocess.Popen[bytes]]:
    """A process whose output goes to a file (a pipe nobody reads would block it when full)."""
    with tempfile.NamedTemporaryFile(prefix="llmops-router-test-", suffix=".log") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        try:
            _wait(probe, proc, Path(out.name), what)
            yield proc
        finally:
            _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@contextmanager
def upstream() -> Iterator[str]:
    """The fake OpenAI-compatible server's base URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with _process(
        [sys.executable, str(HERE / "fake_openai.py"), str(port)],
        f"{base}/v1/models",
        "the fake model server",
    ):
        yield base


@contextmanager
def router(upstream_url: str, *args: str | Path) -> Iterator[str]:
    """``llmops router`` in front of ``upstream_url``; yields its base URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [
        sys.executable,
        "-c",
        "from llmops.cli.router_cmd import router; router()",
        "--upstream",
        upstream_url,
        "--port",
        str(port),
        "--endpoint",
        "support-chat",
        "--reload-interval",
        "0.1",
        *map(str, args),
    ]
    with _process(argv, f"{base}/healthz", "llmops router"):
        yield base


class ConfigMapDir:
    """A folder laid out as kubelet mounts a ConfigMap, updated the way kubelet updates it."""

    def __init__(self, root: Path, data: dict[str, str]) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.generation = 0
        self.update(data)
        for key in data:
            (root / key).symlink_to(f"..data/{key}")

    def update(self, data: dict[str, str]) -> None:
        """Swap ``..data`` to a new generation; then, as kubelet's atomic writer, add the
        links of keys that are new and remove those of keys that went."""
        self.generation += 1
        target = self.root / f"..gen{self.generation}"
        target.mkdir()
        for key, value in data.items():
            (target / key).write_text(value, encoding="utf-8")
        link = self.root / "..data_tmp"
        link.symlink_to(target.name)
        os.replace(link, self.root / "..data")
        for path in self.root.iterdir():
            if not path.name.startswith("..") and path.name not in data:
                path.unlink()
        for key in data:
            if self.generation > 1 and not (self.root / key).is_symlink():
                (self.root / key).symlink_to(f"..data/{key}")


def experiment(
    weights: dict[str, int],
    *,
    state: str = "running",
    winner: str | None = None,
    stickiness: dict[str, str] | None = None,
    texts: dict[str, str] | None = None,
) -> str:
    """An ``experiment.json`` as the renderer writes it."""
    variants: list[dict[str, Any]] = []
    for name, weight in weights.items():
        text = (texts or {}).get(name, f"You are {name} for {{{{ product }}}}.")
        variants.append(
            {
                "template": name,
                "version": "1.0.0",
                "weight": weight,
                "declaredWeight": weight,
                "variables": ["product"],
                "text": text,
            }
        )
    return json.dumps(
        {
            "experiment": "greeting-test",
            "endpoint": "support-chat",
            "environment": "prod",
            "state": state,
            "winner": winner,
            "metric": "latency_ms",
            "stickiness": stickiness,
            "variants": variants,
        }
    )


def chat(
    base: str,
    *,
    headers: dict[str, str] | None = None,
    stream: bool = False,
    variables: dict[str, str] | None = None,
    timeout: float = 10,
) -> httpx.Response:
    body: dict[str, Any] = {
        "model": "fake",
        "messages": [{"role": "user", "content": "hi there"}],
        "variables": {"product": "Acme"} if variables is None else variables,
    }
    if stream:
        body["stream"] = True
    return httpx.post(
        f"{base}/v1/chat/completions", json=body, headers=headers or {}, timeout=timeout
    )


def stats(upstream_url: str) -> dict[str, Any]:
    doc: dict[str, Any] = httpx.get(f"{upstream_url}/_stats", timeout=5).json()
    return doc


def metric(base: str, name: str, **labels: str) -> float:
    """The value of one series on the router's ``/metrics`` (0 when absent)."""
    text = httpx.get(f"{base}/metrics", timeout=5).text
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        series, _, value = line.rpartition(" ")
        got = dict(part.split("=", 1) for part in series[len(name) + 1 : -1].split(",") if part)
        if all(got.get(k) == f'"{v}"' for k, v in labels.items()):
            total += float(value)
    return total


@contextmanager
def prometheus_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Debian's Prometheus on loopback, scraping every 1 s the targets of the file it yields."""
    binary = shutil.which("prometheus")
    assert binary, "prometheus is not installed: run .ci/bootstrap (Debian package prometheus)"
    targets = tmp_path / "targets.json"
    targets.write_text("[]", encoding="utf-8")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: llmops-router\n"
        f'    file_sd_configs: [{{files: ["{targets}"], refresh_interval: 1s}}]\n',
        encoding="utf-8",
    )
    port = free_port()
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    url = f"http://127.0.0.1:{port}"
    with _process(argv, f"{url}/-/ready", "prometheus"):
        deadline = time.monotonic() + 30
        while httpx.get(f"{url}/-/ready", timeout=2).status_code != 200:
            assert time.monotonic() < deadline, "prometheus did not become ready"
            time.sleep(0.1)
        yield url, targets
