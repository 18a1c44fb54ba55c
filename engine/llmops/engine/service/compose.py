"""The composition root: settings -> store, status cache, use cases, source, actuators.

Role: the one place that builds the long-lived parts of a process, once:

- ``services(settings)`` -> ``Services``: the store (opened and migrated),
  the Redis ``StatusCache`` (when ``settings.redis_url`` is set; it connects
  lazily) and the ``WriteService`` over them. ``llmops serve`` and ``llmops
  up`` hand it to ``llmops.api.app.create_app``; ``llmops daemon`` and ``up``
  take the store and the cache for the reconciler loop (one Redis client per
  process, shared by the daemon and the API);
- ``build_reconciler(settings, ...)`` -> ``Reconciler``: the source opened
  at the repo and branch, an actuator per environment
  (``actuator_factory``), over a given store or a newly opened one, anchoring
  the audit chain in the configured specs repo (``repo_anchors``, which
  ``llmops audit verify`` reads back).

Input: ``Settings`` and the command line's overrides (repo, branch, output
directory, environments). Output: ``Services`` and ``Reconciler`` values.
Callers: the CLI (``serve``, ``up``, ``daemon``, ``reconcile``, ``status``,
``prune``) and ``llmops.api.app.create_app`` (given only a store, it composes
the rest here); nothing in the engine imports this module.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from llmops.engine import errors
from llmops.engine.actuate import kube
from llmops.engine.actuate.base import Actuator, ActuatorError, NoneActuator
from llmops.engine.actuate.branch import HydrateBranchActuator
from llmops.engine.actuate.hydrate import HydrateActuator
from llmops.engine.run import anchoring, reconciler
from llmops.engine.service.writes import WriteService
from llmops.engine.settings import Settings
from llmops.engine.source import gitcli, snapshots, writeback
from llmops.engine.spec import repoconfig
from llmops.engine.store import audit, seal
from llmops.engine.store.cache import StatusCache
from llmops.engine.store.db import Store

CACHE_TIMEOUT_SECONDS = 0.5
"""Connect/read timeout of the Redis status cache: an outage costs a caller at most this
per Redis call (then the API falls back to the store)."""


def store_at(url: str, settings: Settings) -> Store:
    """A ``Store`` on ``url`` with the timeouts of ``settings.db`` (not migrated)."""
    limits = settings.db
    return Store(url, connect_timeout=limits.connect_timeout_seconds,
                 statement_timeout=limits.statement_timeout_seconds,
                 lock_timeout=limits.lock_timeout_seconds,
                 idle_in_transaction_timeout=limits.idle_in_transaction_timeout_seconds,
                 busy_timeout=limits.busy_seconds)


def open_store(settings: Settings) -> Store:
    """The configured store, migrated to the current schema, its audit chain keyed and
    anchored (the key file is created in the home when there is none)."""
    store = store_at(settings.effective_database_url, settings)
    store.migrate()
    _seal(store, settings)
    return store


def _seal(store: Store, settings: Settings) -> None:
    """Key and anchor ``store``'s audit chain, refusing a key that is not the chain's own
    (a process with its own key would break the chain for every verifier)."""
    sealed = store.audit_seal = seal.from_settings(settings, create=True)
    head = audit.AuditLog(store).head()
    if (sealed is not None and head is not None and head.key_id
            and sealed.keys.get(head.key_id) is None):
        store.close()
        raise seal.AuditKeyError(
            f"the audit chain is keyed with key id {head.key_id}, this process has "
            f"{', '.join(sealed.keys.key_ids)}: give every llmops process the chain's key "
            "(LLMOPS_AUDIT__KEY, or the same audit-key file; a rotated-out key stays in "
            "audit-key.<key id> or LLMOPS_AUDIT__PREVIOUS_KEYS)")


class NoState(errors.NotFound):
    """A command that reads llmops' state found none (it never creates it)."""


def existing_database_url(settings: Settings) -> str:
    """The configured database, for a command that only reads (or adds to) recorded
    state: with the embedded default, ``NoState`` instead of an empty SQLite file created
    where none was recorded (an explicit LLMOPS_DATABASE_URL is taken as given)."""
    if not settings.database_url:  # the embedded default: SQLite under the home
        path = settings.home / "llmops.db"
        if not path.is_file():
            raise NoState(f"no llmops state at {path.absolute()}: no .llmops with a "
                          "database in this folder or above; run `llmops up` (or `llmops "
                          "reconcile --once`) first, or set LLMOPS_HOME or "
                          "LLMOPS_DATABASE_URL")
    return settings.effective_database_url


def open_existing_store(settings: Settings) -> Store:
    """The recorded store (``existing_database_url``), migrated to the current schema."""
    store = store_at(existing_database_url(settings), settings)
    store.migrate()
    _seal(store, settings)
    return store


@dataclass(frozen=True, slots=True)
class Services:
    """The parts of one process the interfaces share, built once by ``services``."""

    settings: Settings
    store: Store
    status_cache: StatusCache | None
    """Redis status cache, wake-up channel and run stream; None without Redis."""
    writes: WriteService

    def close(self) -> None:
        if self.status_cache is not None:
            self.status_cache.close()
        self.store.close()


def services(settings: Settings, *, store: Store | None = None) -> Services:
    """The store (``open_store`` unless given), the status cache and the use cases."""
    store = store if store is not None else open_store(settings)
    if settings.git.repo and not settings.git.branch:
        # The branch writes and webhooks name: the repo's default one when none is set.
        with contextlib.suppress(writeback.WriteError):
            writeback.tracked_branch(settings)
    status_cache = (StatusCache(settings.redis_url, timeout=CACHE_TIMEOUT_SECONDS)
                    if settings.redis_url else None)
    return Services(settings=settings, store=store, status_cache=status_cache,
                    writes=WriteService(settings, store))


def _repository_identity(repo: str) -> str:
    """The specs repo as its ApplySet names it: the resolved path of a local repo, else
    its URL without credentials. Two repos never share it."""
    local = _local_repo(repo)
    if local is not None:
        return local.resolve().as_uri()
    return gitcli.redact(repo)


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
    clusters: dict[tuple[repoconfig.Cluster, bool], kube.KubernetesActuator] = {}
    specs_repo = repo or settings.git.repo or "."

    def make(env: str, config: repoconfig.Environment) -> Actuator:
        name = force or config.actuator.value
        if name == repoconfig.ActuatorName.HYDRATE:
            return published
        if name == repoconfig.ActuatorName.HYDRATE_BRANCH:
            target = config.hydrateBranch or repoconfig.HydrateBranch()
            return HydrateBranchActuator(
                _local_repo(specs_repo), target.branch or f"environments/{env}",
                env if target.path is None else target.path, repo_shown=specs_repo)
        if name == repoconfig.ActuatorName.NONE:
            return NoneActuator()
        if name == repoconfig.ActuatorName.KUBERNETES:
            # One client (and API discovery) per cluster, shared by the environments on
            # it and kept across passes: the actuator holds no state of an environment.
            key = (config.cluster, config.forceConflicts)
            if key not in clusters:
                clusters[key] = kube.KubernetesActuator(
                    settings.kube, config.cluster, force_conflicts=config.forceConflicts,
                    repository=_repository_identity(specs_repo))
            return clusters[key]
        raise ActuatorError(f"environment {env}: actuator {name!r} is not available "
                            "in this build")

    return make


def build_reconciler(settings: Settings, *, repo: str = "", branch: str = "",
                     out: Path | None = None, environments: Sequence[str] = (),
                     actuator: str | None = None, store: Store | None = None,
                     confirm_prune: bool = False,
                     metrics: reconciler.Metrics | None = None) -> reconciler.Reconciler:
    """A reconciler following ``repo``/``branch`` (default: the settings') over ``store``."""
    repo = repo or settings.git.repo or "."
    # No branch configured: the source follows the repo's default branch (its HEAD).
    src = snapshots.open_source(repo, branch or settings.git.branch, settings.work_dir,
                             timeout=settings.git.timeout_seconds,
                             allowed_hosts=settings.git.allowed_hosts)
    built = reconciler.Reconciler(
        store or open_store(settings), src, actuator_factory(settings, out, actuator, repo),
        environments=environments, confirm_prune=confirm_prune, metrics=metrics)
    built.repo_anchors = repo_anchors(settings)
    return built


def repo_anchors(settings: Settings) -> anchoring.RepoAnchors | None:
    """The audit chain's anchors in the configured specs repo (a remote one through
    write-back's mirror under the home); None when no git repo is configured."""
    try:
        repo = writeback.repo_for(settings)
    except writeback.WriteError:
        return None
    if isinstance(repo, Path) and not snapshots.is_git_repo(repo):
        return None
    return anchoring.RepoAnchors(repo, interval=settings.audit.repo_anchor_interval_seconds)
