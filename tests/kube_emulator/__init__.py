"""A stateful Kubernetes API emulator for tests: a documented test double.

Serves the Kubernetes REST API over HTTP on 127.0.0.1 so the official
`kubernetes` client (or kubectl) reaches it through a kubeconfig exactly as it
would a cluster. What it models and what it does not: `docs/kube-emulator.md`.

Use from a test::

    with running_emulator(tmp_path) as kube:
        cfg = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(config_file=str(kube.kubeconfig),
                                           client_configuration=cfg)
        ...
        assert kube.server.write_count() == 0

Modules: `catalog` (served types, discovery), `store` (verbs, state),
`ssa` + `fields` (server-side apply, managedFields), `patches`, `admission`
(defaults, validation), `selectors`, `controllers` (status simulation),
`faults` (injection, counters), `tables`, `server` (HTTP).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .faults import Fault
from .server import EmulatorServer, wait_for
from .store import Write


@dataclass(frozen=True)
class RunningEmulator:
    url: str
    kubeconfig: Path
    server: EmulatorServer

    def api_client(self) -> Any:
        """A fresh `kubernetes.client.ApiClient` for this emulator (never the global
        default configuration)."""
        from kubernetes import client, config

        cfg = client.Configuration()
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(self.kubeconfig), client_configuration=cfg)
        return client.ApiClient(cfg)


@contextmanager
def running_emulator(tmp_path: Path, **options: Any) -> Iterator[RunningEmulator]:
    """Start an emulator, write `tmp_path/kubeconfig`, stop it on exit.

    `options` go to `EmulatorServer` (`controllers=False`, `controller_delay=0.5`,
    `token=None`, ...).
    """
    server = EmulatorServer(**options).start()
    try:
        kubeconfig = server.write_kubeconfig(Path(tmp_path) / "kubeconfig")
        yield RunningEmulator(url=server.url, kubeconfig=kubeconfig, server=server)
    finally:
        server.stop()


__all__ = ["EmulatorServer", "Fault", "RunningEmulator", "Write", "running_emulator", "wait_for"]
