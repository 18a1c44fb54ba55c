"""`llmops daemon` and `llmops up`: the reconciler as a long-running service.

`daemon` follows a specs repo, leader-elected, with Prometheus metrics on its
own port. `up` is the embedded default in one command: a specs repo from the
template (unless one is given), SQLite under LLMOPS_HOME, the hydrate
actuator into LLMOPS_HOME/rendered, a first pass, then the daemon and the
REST API on localhost (its trigger wakes the daemon in the same process).

Both compose the process once with ``llmops.engine.service.compose.services``
(store, Redis status cache, write use cases): the reconciler, the leader
lease, the daemon's wake-up listener and result publisher, and in ``up`` the
REST API all share that store and that one Redis client. Registered on the
``llmops`` group by ``llmops.cli``.
"""

from __future__ import annotations

import getpass
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path

import click
import uvicorn
from pydantic import SecretStr

from llmops.api import tokens
from llmops.api.app import create_app
from llmops.engine import settings
from llmops.engine.run import daemon, leader
from llmops.engine.run.metrics import PrometheusMetrics
from llmops.engine.run.reconciler import PassResult
from llmops.engine.service import compose
from llmops.engine.settings import Settings
from llmops.engine.source import scaffold
from llmops.engine.store import cache


def _watch_path(repo: str) -> Path | None:
    """A local specs repo is watched for changes; a URL is polled."""
    path = Path(repo)
    return path.resolve() if repo and "://" not in repo and path.is_dir() else None


def _build(services: compose.Services, repo: str, branch: str, envs: tuple[str, ...],
           out: Path | None, metrics_port: int | None) -> tuple[daemon.Daemon, int]:
    cfg, store, status_cache = services.settings, services.store, services.status_cache
    metrics = PrometheusMetrics()
    port = metrics.serve(cfg.daemon.metrics_port if metrics_port is None else metrics_port,
                         host=cfg.daemon.metrics_host)
    rec = compose.build_reconciler(cfg, repo=repo, branch=branch, out=out, environments=envs,
                                   store=store, metrics=metrics,
                                   actuator="hydrate" if out else None)
    # PostgreSQL's advisory lock when the store is PostgreSQL (so Redis being down never
    # stops reconciling); Redis' lock otherwise, with a ttl that outlives a whole interval.
    cycle = cfg.daemon.interval_seconds + cfg.daemon.jitter_seconds
    lease = leader.lease_for(store, "" if store.dialect == "postgresql" else cfg.redis_url,
                             ttl=max(30.0, 3 * cycle))
    loop = daemon.Daemon(
        rec, lease=lease,
        interval=cfg.daemon.interval_seconds, jitter=cfg.daemon.jitter_seconds,
        watch=_watch_path(repo or cfg.git.repo or "."), debounce=cfg.daemon.debounce_seconds,
        wait_for_wake=status_cache.listen_wake if status_cache else None,
        on_leader=lambda leading: metrics.leader.set(1 if leading else 0),
        on_results=_publisher(status_cache) if status_cache else None)
    return loop, port


def _publisher(status_cache: cache.StatusCache) -> Callable[[list[PassResult]], None]:
    """Status and finished runs to Redis for the API; Redis errors never stop the daemon."""

    def publish(results: list[PassResult]) -> None:
        for r in results:
            data = {"environment": r.environment, "revision": r.revision,
                    "result": r.result.value, "reason": r.reason, "message": r.message[:2000],
                    "runId": r.run_id, "counts": r.counts.as_dict()}
            status_cache.put_environment(r.environment, data)
            if r.run_id is not None:
                status_cache.publish_run(data)

    return publish


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s")


@click.command("daemon")
@click.option("--repo", default="", help="Specs repo URL or path (default: LLMOPS_GIT__REPO "
              "or the current directory).")
@click.option("--branch", default="")
@click.option("--env", "envs", multiple=True, help="Only these environments (repeatable).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Hydrate into this directory (forces the hydrate actuator).")
@click.option("--metrics-port", type=int, default=None, help="Default: LLMOPS_DAEMON__"
              "METRICS_PORT or 9464; 0 picks a free port.")
def daemon_command(repo: str, branch: str, envs: tuple[str, ...], out: Path | None,
                   metrics_port: int | None) -> None:
    """Reconcile continuously: poll, wake on triggers, self-heal; stop with SIGTERM."""
    _logging()
    cfg = settings.load()
    loop, port = _build(compose.services(cfg), repo, branch, envs, out, metrics_port)
    click.echo(f"llmops daemon: metrics on http://127.0.0.1:{port}/metrics", err=True)
    loop.run()


def _local_token(cfg: Settings) -> Path:
    """With no JWT secret configured, a fresh one for this run and an admin token for the
    local user, written to LLMOPS_HOME/api-token (mode 0600): the API never runs open."""
    if cfg.api.jwt_secret is None:
        cfg.api.jwt_secret = SecretStr(secrets.token_urlsafe(32))
    token = tokens.encode({"sub": f"local:{getpass.getuser()}", "roles": ["admin"],
                           "exp": int(time.time()) + 30 * 86400},
                          cfg.api.jwt_secret.get_secret_value())
    path = cfg.home / "api-token"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(token + "\n")
    return path


def _start_api(services: compose.Services, loop: daemon.Daemon,
               port: int) -> tuple[uvicorn.Server, int]:
    """The REST API in a background thread, its trigger waking this process' daemon."""
    cfg = services.settings
    app = create_app(services, trigger=loop.trigger)
    server = uvicorn.Server(uvicorn.Config(app, host=cfg.api.host, port=port, log_config=None,
                                           server_header=False))
    thread = threading.Thread(target=server.run, name="llmops-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise click.ClickException(f"the API could not listen on {cfg.api.host}:{port}")
        time.sleep(0.05)
    return server, int(server.servers[0].sockets[0].getsockname()[1])


@click.command("up")
@click.option("--repo", default="", help="A specs repo to follow (default: a new one from "
              "the template under LLMOPS_HOME/specs).")
@click.option("--metrics-port", type=int, default=0, show_default=True,
              help="0 picks a free port.")
@click.option("--api-port", type=int, default=None,
              help="Default: LLMOPS_API__PORT or 8080; 0 picks a free port.")
@click.option("--once", is_flag=True, help="Stop after the first pass (for scripts).")
def up(repo: str, metrics_port: int, api_port: int | None, once: bool) -> None:
    """Everything on the embedded default: template repo, SQLite, hydrate, daemon and API."""
    _logging()
    cfg = settings.load()
    if not repo:
        specs_dir = cfg.home / "specs"
        if not (specs_dir / ".git").is_dir():
            scaffold.init_repo(specs_dir)
            click.echo(f"created specs repo {specs_dir} from the template")
        repo = str(specs_dir)
    services = compose.services(cfg)
    loop, port = _build(services, repo, "", (), None, metrics_port)
    results = loop.run_once()
    if results is None:
        click.echo("another llmops daemon holds the leader lease on this store; standing by")
    for r in results or []:
        click.echo(f"{r.environment}: {r.result.value} at {r.revision[:12] or '-'}"
                   + ("" if r.ok else f" ({r.reason}: {r.message.splitlines()[0]})"))
    click.echo(f"""
specs repo      {Path(repo).resolve()}   (edit, commit: the daemon picks it up)
rendered        {cfg.hydrate_dir.resolve()}/<env>/
state           {cfg.effective_database_url}
metrics         http://127.0.0.1:{port}/metrics
status          llmops status    audit: llmops audit verify""")
    if once:
        loop.release()
        return
    token = _local_token(cfg)
    server, bound = _start_api(services, loop, cfg.api.port if api_port is None else api_port)
    click.echo(f"API             http://{cfg.api.host}:{bound}/llm-ops/v1/reconcile/status "
               f"(docs: /llm-ops/v1/docs)")
    click.echo(f"Dashboard       http://{cfg.api.host}:{bound}/   (sign in with the API token)")
    click.echo(f"API token       {token}   (curl -H \"Authorization: Bearer $(cat {token})\" "
               "...; role admin of the repo's Policy)")
    click.echo("reconciling every change; Ctrl-C to stop")
    try:
        loop.run()
    finally:
        server.should_exit = True
