"""`llmops reconcile`, `llmops status` and `llmops prune confirm`: the reconciler by hand.

Role: thin commands over the composition root (``llmops.engine.service.compose``:
``build_reconciler`` for a pass, ``open_store`` for status and prune
confirmations) and the store. Input: settings (``LLMOPS_*``, a config file)
and the options. Output: one line per environment on stdout; exit 0 on
success, 1 on a failed or blocked pass (or an unhealthy ``--wait``). Errors
are reported by ``llmops.cli.main``. Caller: the ``llmops`` group registers
the commands (this module does not import ``llmops.cli``).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from llmops.engine import settings
from llmops.engine.actuate import argocd
from llmops.engine.actuate.health import HealthStatus
from llmops.engine.run import reconciler
from llmops.engine.service import compose
from llmops.engine.store import state


@click.command("reconcile")
@click.option("--once", is_flag=True, required=True, help="Run one pass and exit.")
@click.option("--repo", default="", help="Specs repo URL or path (default: LLMOPS_GIT__REPO "
              "or the current directory).")
@click.option("--branch", default="", help="Branch to follow (default: main).")
@click.option("--env", "envs", multiple=True, help="Only these environments (repeatable).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Hydrate into this directory (forces the hydrate actuator).")
@click.option("--confirm-prune", is_flag=True, help="Allow this pass to prune past "
              "maxPrunePercent.")
@click.option("--wait", is_flag=True, help="After the pass, wait until every object of each "
              "environment is Healthy (actuators that can observe health).")
@click.option("--timeout", type=click.FloatRange(min=0), default=300.0, show_default=True,
              help="Seconds --wait waits.")
def reconcile(once: bool, repo: str, branch: str, envs: tuple[str, ...], out: Path | None,
              confirm_prune: bool, wait: bool, timeout: float) -> None:
    """Reconcile every environment (or --env) once; exit 1 if any pass fails or is blocked."""
    cfg = settings.load()
    rec = compose.build_reconciler(cfg, repo=repo, branch=branch, out=out, environments=envs,
                                   actuator="hydrate" if out else None,
                                   confirm_prune=confirm_prune)
    results = rec.run_once()
    for r in results:
        counts = r.counts
        line = (f"{r.environment}: {r.result.value} at {r.revision[:12] or '-'}"
                f" (created {counts.created}, configured {counts.configured}, "
                f"deleted {counts.deleted}, unchanged {counts.unchanged}, failed {counts.failed})")
        if not r.ok:
            line += f"\n  {r.reason}: {r.message}"
        click.echo(line)
    if not results or not all(r.ok for r in results):
        sys.exit(1)
    if wait and not _wait(rec, [r.environment for r in results], timeout):
        sys.exit(1)


def _wait(rec: reconciler.Reconciler, envs: list[str], timeout: float) -> bool:
    """Wait for health per environment; False when any is still not Healthy at the end."""
    deadline = time.monotonic() + timeout
    healthy = True
    for env in envs:
        health = rec.wait_healthy(env, timeout=max(0.0, deadline - time.monotonic()))
        if health is None:
            click.echo(f"{env}: health is not observable with this actuator; not waiting")
            continue
        bad = {k: h for k, h in health.items() if h is not HealthStatus.HEALTHY}
        if bad:
            healthy = False
            shown = ", ".join(f"{k} {h.value}" for k, h in sorted(bad.items())[:10])
            click.echo(f"{env}: not healthy after {timeout:g}s: {shown}")
        else:
            click.echo(f"{env}: all {len(health)} objects Healthy")
    return healthy


@click.command("status")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def status(fmt: str) -> None:
    """Per-environment revision, conditions and last errors, from the store; with
    LLMOPS_ARGOCD__URL set, each environment's Argo CD Application sync and health."""
    cfg = settings.load()
    store = compose.open_existing_store(cfg)
    rows = state.list_environment_status(store)
    apps = (argocd.statuses(cfg.argocd, [s.environment for s in rows])
            if cfg.argocd.url and rows else {})
    if fmt == "json":
        out = []
        for s in rows:
            item: dict[str, object] = {
                "environment": s.environment, "observedRevision": s.observed_revision,
                "lastAppliedRevision": s.last_applied_revision,
                "lastAttemptedRevision": s.last_attempted_revision,
                "source": s.source_state.value,
                "lastSuccess": s.last_success_at.isoformat() if s.last_success_at else None,
                "conditions": [c.as_dict() for c in s.conditions],
                "health": _health_line(cfg, s.environment, state.list_spec_status(
                    store, environment=s.environment))}
            app = apps.get(s.environment)
            if app is not None:
                item["argocd"] = {"application": app.application, "sync": app.sync,
                                  "health": app.health, "revision": app.revision,
                                  "operationPhase": app.operation, "error": app.error}
            out.append(item)
        click.echo(json.dumps(out, indent=2))
        return
    if not rows:
        click.echo("no environment reconciled yet")
        return
    for s in rows:
        ready = s.condition(state.ConditionType.READY)
        flag = "Ready" if ready and ready.status is state.ConditionStatus.TRUE else (
            f"NotReady ({ready.reason})" if ready else "Unknown")
        click.echo(f"{s.environment}: {flag}; applied {s.last_applied_revision[:12] or '-'}, "
                   f"attempted {s.last_attempted_revision[:12] or '-'}; source "
                   f"{s.source_state.value}")
        if ready and ready.message:
            click.echo(f"  {ready.message}")
        app = apps.get(s.environment)
        if app is not None:
            click.echo(f"  argocd {app.summary()}")
        specs = state.list_spec_status(store, environment=s.environment)
        click.echo(f"  health: {_health_line(cfg, s.environment, specs)}")
        specs_down = [x for x in specs if x.last_error]
        for x in specs_down:
            click.echo(f"  {x.key}: {x.last_error}")


def _health_line(cfg: settings.Settings, env: str, specs: list[state.SpecStatus]) -> str:
    """The specs' health in one line; ``NotObserved`` says why and where to look instead."""
    counts: dict[str, int] = {}
    for x in specs:
        counts[x.health] = counts.get(x.health, 0) + 1
    if counts and set(counts) == {HealthStatus.NOT_OBSERVED.value}:
        published = cfg.hydrate_dir.resolve() / env
        where = (f"; what it publishes: {published}/" if published.exists() else "")
        return (f"not observed (hydrate actuator: llmops publishes, Argo CD or Flux "
                f"applies){where}")
    return ", ".join(f"{n} {h}" for h, n in sorted(counts.items())) or "no specs assessed"


@click.group("prune")
def prune() -> None:
    """Confirm a blocked mass prune."""


@prune.command("confirm")
@click.option("--env", required=True)
@click.option("--revision", required=True, help="The blocked revision (full SHA).")
@click.option("--actor", default="cli", help="Who confirms (recorded in the audit log).")
def confirm(env: str, revision: str, actor: str) -> None:
    """Let REVISION prune past maxPrunePercent in ENV on the next pass (audited)."""
    store = compose.open_existing_store(settings.load())
    reconciler.confirm_prune(store, env, revision, actor)
    click.echo(f"prune of {revision[:12]} in {env} confirmed")
