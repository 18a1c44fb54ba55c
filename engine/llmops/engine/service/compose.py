"""Wiring: settings -> a ready ``Reconciler`` (store migrated, source opened, actuators).

Input: ``Settings`` and the command line's overrides (repo, branch, output
directory, environments). Output: a ``Reconciler``. Called by the CLI
(`reconcile`, `daemon`, `up`); nothing else builds one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

from llmops.engine.actuate import kube
from llmops.engine.actuate.base import Actuator, ActuatorError, NoneActuator
from llmops.engine.actuate.branch import HydrateBranchActuator
from llmops.engine.actuate.hydrate import HydrateActuator
from llmops.engine.run import reconciler
from llmops.engine.settings import Settings
from llmops.engine.source import gitcli, snapshots
from llmops.engine.spec import schema
from llmops.engine.store.db import Store


def open_store(settings: Settings) -> Store:
    """The configured store, migrated to the current schema."""
    store = Store(settings.effective_database_url)
    store.migrate()
    return store


def _local_repo(repo: str) -> Path | None:
    """The local directory of the specs repo (a path or a file:// URL), else None."""
    try:
        remote = gitcli.parse_url(repo)
    except gitcli.SourceConfigError:
        return None
    if remote.protocol != "file":
        return None
    if gitcli.SCHEME.match(repo):
        return Path(unquote(urlsplit(repo).path)).resolve()
    return Path(remote.url)


def actuator_factory(settings: Settings, out: Path | None = None,
                     force: str | None = None, repo: str = "") -> reconciler.ActuatorFactory:
    """Actuator per environment: its ``actuator`` setting, or ``force`` for every one.

    ``repo`` is the specs repo the reconciler follows (default: the configured
    one); ``hydrate-branch`` commits to branches of it, so it must be local.
    """
    hydrate_root = (out or settings.hydrate_dir).resolve()
    published = HydrateActuator(hydrate_root)  # one, so its parse cache survives passes
    clusters: dict[tuple[str, schema.Cluster, bool], kube.KubernetesActuator] = {}
    specs_repo = repo or settings.git.repo or "."

    def make(env: str, config: schema.Environment) -> Actuator:
        name = force or config.actuator.value
        if name == schema.ActuatorName.HYDRATE:
            return published
        if name == schema.ActuatorName.HYDRATE_BRANCH:
            target = config.hydrateBranch or schema.HydrateBranch()
            return HydrateBranchActuator(
                _local_repo(specs_repo), target.branch or f"environments/{env}",
                env if target.path is None else target.path, repo_shown=specs_repo)
        if name == schema.ActuatorName.NONE:
            return NoneActuator()
        if name == schema.ActuatorName.KUBERNETES:
            # One client (and discovery cache) per environment's cluster, kept across passes.
            key = (env, config.cluster, config.forceConflicts)
            if key not in clusters:
                clusters[key] = kube.KubernetesActuator(
                    settings.kube, config.cluster, force_conflicts=config.forceConflicts)
            return clusters[key]
        raise ActuatorError(f"environment {env}: actuator {name!r} is not available "
                            "in this build")

    return make


def build_reconciler(settings: Settings, *, repo: str = "", branch: str = "",
                     out: Path | None = None, environments: Sequence[str] = (),
                     actuator: str | None = None, store: Store | None = None,
                     confirm_prune: bool = False,
                     metrics: reconciler.Metrics | None = None) -> reconciler.Reconciler:
    repo = repo or settings.git.repo or "."
    src = snapshots.open_source(repo, branch or settings.git.branch, settings.work_dir,
                             timeout=settings.git.timeout_seconds,
                             allowed_hosts=settings.git.allowed_hosts)
    return reconciler.Reconciler(
        store or open_store(settings), src, actuator_factory(settings, out, actuator, repo),
        environments=environments, confirm_prune=confirm_prune, metrics=metrics)
