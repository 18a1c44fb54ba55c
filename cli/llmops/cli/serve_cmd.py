"""`llmops serve`: the REST API (``llmops.api``) under uvicorn.

Role: compose the process once (``llmops.engine.service.compose.services``:
the store, opened and migrated, the Redis status cache and the write use
cases), build the app over it with ``llmops.api.app.create_app`` and serve
it until SIGINT/SIGTERM. Input: settings (``LLMOPS_*``, a config
file) and ``--host`` / ``--port`` (default ``Settings.api.host`` /
``Settings.api.port``, 127.0.0.1:8080). Output: an HTTP server. The trigger
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

import logging
from collections.abc import Callable

import click
import uvicorn

from llmops.api import errors, peer
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


@click.command("serve")
@click.option("--host", default=None, help="Interface to listen on (default: "
              "LLMOPS_API__HOST or 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Port to listen on (default: LLMOPS_API__PORT or 8080).")
def serve(host: str | None, port: int | None) -> None:
    """Serve the REST API (/llm-ops/v1) over the configured store."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # migrations: detail, not news
    cfg = settings.load()
    services = compose.services(cfg)
    app = create_app(services, trigger=redis_trigger(services.status_cache))
    try:
        uvicorn.Server(peer.server_config(
            app, cfg.api, host=host or cfg.api.host,
            port=cfg.api.port if port is None else port)).run()
    finally:
        services.close()
