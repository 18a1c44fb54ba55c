"""`llmops serve`: the REST API (``llmops.api``) under uvicorn.

Role: compose the process once (``llmops.engine.service.compose.services``:
the store, opened and migrated, the Redis status cache and the write use
cases), build the app over it with ``llmops.api.app.create_app`` and serve
it until SIGINT/SIGTERM. Input: settings (``LLMOPS_*``, a config
file) and ``--host`` / ``--port`` (default ``Settings.api.host`` /
``Settings.api.port``, 127.0.0.1:8080), ``--workers`` (default ``Settings.api.workers``,
else min(4, CPUs)). Output: an HTTP server. With several workers, uvicorn's supervisor
runs them on one listening socket, each building its own app (``worker_app``: its own
store pool and Redis client) after this process migrated the store once; they share the
dashboard's CSRF key and sum their metrics (``llmops.api.metrics``, multiprocess mode). The trigger
route wakes daemons through Redis when ``LLMOPS_REDIS_URL`` is set (the
daemon listens on the same wake-up channel); without Redis this process has
no reconciler to wake and the route answers 409. The wake-ups go through
the same ``StatusCache`` the status routes read (one Redis client). uvicorn rewrites no
client address (``llmops.api.peer.server_config``); the app honours ``X-Forwarded-For``
only from ``Settings.api.trusted_proxies``, after pinning the socket peer. Caller: the ``llmops``
group, which registers ``serve`` (this module does not import
``llmops.cli``).
"""

from __future__ import annotations

import atexit
import logging
import os
import secrets
import tempfile
from collections.abc import Callable

import click
import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors import Multiprocess

from llmops.api import errors, metrics, peer
from llmops.api.app import create_app
from llmops.engine import settings
from llmops.engine.service import compose
from llmops.engine.store import cache


def redis_trigger(status_cache: cache.StatusCache | None) -> Callable[[], None] | None:
    """A trigger that publishes a wake-up to the daemons on Redis, or None without Redis."""
    if status_cache is None:
        return None

    def wake() -> None:
        if not status_cache.wake():
            raise errors.ServiceUnavailable("could not reach Redis to wake the reconciler",
                                            {"triggered": False})

    return wake


WORKER_KEY_ENV = "LLMOPS_SERVE_DASHBOARD_KEY"
"""How the parent hands its workers the one dashboard CSRF key they share (each worker
takes it out of its environment, so nothing it starts inherits it)."""


def default_workers() -> int:
    """min(4, CPUs): a process per core, up to four (each holds its own connection pool)."""
    return max(1, min(4, os.cpu_count() or 1))


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # migrations: detail, not news


def worker_app() -> FastAPI:
    """The app of one worker process (uvicorn's factory ``llmops.cli.serve_cmd:worker_app``):
    its own store pool and Redis client, the key its parent shares for the dashboard."""
    _logging()
    cfg = settings.load()
    services = compose.services(cfg)
    atexit.register(services.close)
    key = os.environ.pop(WORKER_KEY_ENV, "")
    return create_app(services, trigger=redis_trigger(services.status_cache),
                      dashboard_key=bytes.fromhex(key) if key else None)


def _serve_workers(cfg: settings.Settings, host: str, port: int, workers: int) -> None:
    """``workers`` processes on one listening socket (uvicorn's supervisor), the store
    migrated once first, metrics summed over the workers (prometheus_client's multiprocess
    mode, in a private folder removed at exit)."""
    compose.open_store(cfg).close()  # migrate before any worker starts
    os.environ[WORKER_KEY_ENV] = secrets.token_hex(32)
    with tempfile.TemporaryDirectory(prefix="llmops-metrics-") as folder:
        os.environ[metrics.MULTIPROC_ENV] = folder
        config = peer.server_config(f"{__name__}:worker_app", cfg.api, host=host, port=port,
                                    factory=True, workers=workers)
        sock = config.bind_socket()
        try:
            Multiprocess(config, sockets=[sock]).run()
        finally:
            sock.close()


@click.command("serve")
@click.option("--host", default=None, help="Interface to listen on (default: "
              "LLMOPS_API__HOST or 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Port to listen on (default: LLMOPS_API__PORT or 8080).")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Worker processes (default: LLMOPS_API__WORKERS, else min(4, CPUs)).")
def serve(host: str | None, port: int | None, workers: int | None) -> None:
    """Serve the REST API (/llm-ops/v1) over the configured store."""
    _logging()
    cfg = settings.load()
    host = host or cfg.api.host
    port = cfg.api.port if port is None else port
    count = workers or cfg.api.workers or default_workers()
    if count > 1:
        _serve_workers(cfg, host, port, count)
        return
    services = compose.services(cfg)
    app = create_app(services, trigger=redis_trigger(services.status_cache))
    try:
        uvicorn.Server(peer.server_config(app, cfg.api, host=host, port=port)).run()
    finally:
        services.close()
