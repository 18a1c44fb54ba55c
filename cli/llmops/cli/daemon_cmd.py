"""`llmops daemon`: the reconciler as a long-running service.

`daemon` follows a specs repo, leader-elected, with Prometheus metrics on its
own port; ``build`` makes its loop, also for `llmops up` (``llmops.cli.up_cmd``).

Both compose the process once with ``llmops.engine.service.compose.services``
(store, Redis status cache, write use cases): the reconciler, the leader
lease, the daemon's wake-up listener and result publisher, and in ``up`` the
REST API all share that store and that one Redis client. Registered on the
``llmops`` group by ``llmops.cli``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import click

from llmops.engine import settings
from llmops.engine.run import daemon, leader
from llmops.engine.run.metrics import PrometheusMetrics
from llmops.engine.run.reconciler import PassResult
from llmops.engine.service import compose
from llmops.engine.store import cache


def _watch_path(repo: str) -> Path | None:
    """A local specs repo is watched for changes; a URL is polled."""
    path = Path(repo)
    return path.resolve() if repo and "://" not in repo and path.is_dir() else None


def build(services: compose.Services, repo: str, branch: str, envs: tuple[str, ...],
          out: Path | None, metrics_port: int | None,
          report: Callable[[list[PassResult]], None] | None = None
          ) -> tuple[daemon.Daemon, int]:
    """The daemon loop over ``services`` (and its metrics server's port); ``report`` tells
    people about each pass (default: a log line per environment)."""
    cfg, store, status_cache = services.settings, services.store, services.status_cache
    metrics = PrometheusMetrics()
    port = metrics.serve(cfg.daemon.metrics_port if metrics_port is None else metrics_port,
                         host=cfg.daemon.metrics_host)
    rec = compose.build_reconciler(cfg, repo=repo, branch=branch, out=out, environments=envs,
                                   store=store, metrics=metrics,
                                   actuator="hydrate" if out else None)
    # Always the store's lease (PostgreSQL's advisory lock, SQLite's lock file), never
    # Redis': Redis is optional and its outage must not stop reconciling, and replicas
    # choosing a mechanism by what they can reach could lead twice. The ttl outlives a
    # whole interval (a leader checks at least once per cycle).
    cycle = cfg.daemon.interval_seconds + cfg.daemon.jitter_seconds
    lease = leader.lease_for(store, ttl=max(30.0, 3 * cycle))
    loop = daemon.Daemon(
        rec, lease=lease,
        interval=cfg.daemon.interval_seconds, jitter=cfg.daemon.jitter_seconds,
        watch=_watch_path(repo or cfg.git.repo or "."), debounce=cfg.daemon.debounce_seconds,
        wait_for_wake=status_cache.listen_wake if status_cache else None,
        on_leader=lambda leading: metrics.leader.set(1 if leading else 0),
        on_store=lambda up: metrics.store_up.set(1 if up else 0),
        on_results=_publisher(status_cache) if status_cache else None, report=report)
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
    # Alembic says what it migrates at INFO on every start: detail, not news.
    logging.getLogger("alembic").setLevel(logging.WARNING)


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
    loop, port = build(compose.services(cfg), repo, branch, envs, out, metrics_port)
    click.echo(f"llmops daemon: metrics on http://127.0.0.1:{port}/metrics", err=True)
    loop.run()
