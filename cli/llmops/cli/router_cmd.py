"""`llmops router`: the prompt router (``llmops.router``) under uvicorn.

Role: build the router's config from options (each with an ``LLMOPS_*``
environment default: the ServingEndpoint renderer sets ``LLMOPS_ENDPOINT``,
``LLMOPS_ENVIRONMENT``, ``LLMOPS_PROMPT_DIR``, ``LLMOPS_EXPERIMENT_FILE`` and
``LLMOPS_ROUTER_UPSTREAM`` on the router container), load the mounted
routing table once (a malformed file, or part of a template, stops the start
with a message naming the file and field; an absent template or table is none)
and serve until SIGINT/SIGTERM; uvicorn lets requests in flight finish on
shutdown. Input: options. Output: an HTTP server. Caller: the ``llmops`` group,
which registers ``router``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import click
import uvicorn

from llmops.engine import errors
from llmops.router import proxy, table

FILE = click.Path(dir_okay=False, path_type=Path)
FOLDER = click.Path(file_okay=False, path_type=Path)


@click.command("router")
@click.option(
    "--upstream",
    envvar="LLMOPS_ROUTER_UPSTREAM",
    default="http://127.0.0.1:8000",
    show_default=True,
    help="Base URL of the OpenAI-compatible model server.",
)
@click.option("--host", envvar="LLMOPS_ROUTER_HOST", default="127.0.0.1", show_default=True)
@click.option(
    "--port",
    envvar="LLMOPS_ROUTER_PORT",
    type=click.IntRange(0, 65535),
    default=8081,
    show_default=True,
    help="Port to listen on; the renderers run the sidecar on this one (the API has 8080).",
)
@click.option(
    "--endpoint",
    envvar="LLMOPS_ENDPOINT",
    default="default",
    show_default=True,
    help="The endpoint's name (the metrics' endpoint label).",
)
@click.option(
    "--environment",
    envvar="LLMOPS_ENVIRONMENT",
    default="",
    help="The endpoint's environment (the metrics' environment label).",
)
@click.option(
    "--prompt-dir",
    envvar="LLMOPS_PROMPT_DIR",
    type=FOLDER,
    default=None,
    help="Mounted prompt ConfigMap (files name, version, template, variables; none: no "
    "template).",
)
@click.option(
    "--experiment-file",
    envvar="LLMOPS_EXPERIMENT_FILE",
    type=FILE,
    default=None,
    help="Mounted experiment.json (the variant table), read while it exists; wins over "
    "--prompt-dir.",
)
@click.option(
    "--connect-timeout",
    type=click.FloatRange(0.1, 600),
    default=5.0,
    show_default=True,
    help="Seconds to connect to the model server.",
)
@click.option(
    "--read-timeout",
    type=click.FloatRange(0.1, 3600),
    default=300.0,
    show_default=True,
    help="Seconds the model server may stay silent.",
)
@click.option(
    "--max-body-bytes",
    type=click.IntRange(1024, 1 << 30),
    default=8 << 20,
    show_default=True,
    help="Largest request body (413 beyond).",
)
@click.option(
    "--max-concurrency",
    type=click.IntRange(1, 100000),
    default=512,
    show_default=True,
    help="Requests served at once (503 beyond).",
)
@click.option(
    "--max-connections",
    type=click.IntRange(1, 10000),
    default=256,
    show_default=True,
    help="Connections to the model server.",
)
@click.option(
    "--reload-interval",
    type=click.FloatRange(0.05, 3600),
    default=2.0,
    show_default=True,
    help="Seconds between checks of the mounted files.",
)
@click.option(
    "--merge-upstream-metrics/--no-merge-upstream-metrics",
    envvar="LLMOPS_ROUTER_MERGE_METRICS",
    default=False,
    show_default=True,
    help="Append the model server's /metrics to the router's (as a sidecar).",
)
def router(
    upstream: str,
    host: str,
    port: int,
    endpoint: str,
    environment: str,
    prompt_dir: Path | None,
    experiment_file: Path | None,
    connect_timeout: float,
    read_timeout: float,
    max_body_bytes: int,
    max_concurrency: int,
    max_connections: int,
    reload_interval: float,
    merge_upstream_metrics: bool,
) -> None:
    """Serve the prompt router: templates, A/B/n variants and metrics per variant."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for chatty in ("httpx", "httpcore"):  # one line per proxied request otherwise
        logging.getLogger(chatty).setLevel(logging.WARNING)
    if not upstream.startswith(("http://", "https://")):
        raise errors.InvalidInput(f"--upstream must be an http(s) URL, not {upstream!r}")
    config = proxy.RouterConfig(
        endpoint=endpoint,
        environment=environment,
        upstream=upstream.rstrip("/"),
        paths=table.TablePaths(prompt_dir=prompt_dir, experiment_file=experiment_file),
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_body_bytes=max_body_bytes,
        max_concurrency=max_concurrency,
        max_connections=max_connections,
        reload_interval=reload_interval,
        merge_upstream_metrics=merge_upstream_metrics,
    )
    try:
        app = proxy.create_app(config)
    except table.TableError as exc:
        raise errors.InvalidInput(f"cannot load the routing table: {exc}") from exc
    uvicorn.run(
        app,
        host=host,
        port=port,
        server_header=False,
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=30,
    )
