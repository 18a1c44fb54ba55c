"""The write use cases: roll back, conclude, promote, upload; each one audited git commit.

Role: the few changes llmops makes on request, all by committing to the specs
repo (``settings.git.repo``: a local clone, or a remote URL written through a
pushed mirror) with ``llmops.engine.source.writeback``, on a review branch
``llmops/<action>/<name>-<8 hex>`` or on the tracked branch when the
environment sets ``directCommits``:

- ``rollback_endpoint``: the endpoint's spec file back to its content before
  the applied change (``git log`` on the file from the environment's last
  applied revision); ``NothingToWrite`` (a ``Conflict``) with no earlier version;
- ``conclude_experiment``: ``state: concluded``, the winner (a variant's
  template, by name or UUID; another UUID is ``InvalidWinner``) and notes;
- ``promote_model``: the model version's ``stage``;
- uploads (``llmops.engine.service.uploads``) commit through ``_commit_edit``.

Each acts only on a spec owned by one of the caller's teams, unless the
caller holds ``*`` (``access.authorize_owner``: audited, ``NotOwner``, before
anything else is written). Before the commit, the edited spec set passes the
policy verdicts ``llmops plan`` runs (``llmops.engine.service.admission``): a
denial the edit brings is ``PolicyDenied`` (a ``Forbidden``) and nothing is
committed; a change outside a change window is committed with a note
(``notes``: windows gate applying, not proposing). Every write is audited: an ``intent`` row before
anything happens, then ``succeeded`` (with the commit) or ``failed`` (with
the reason); action ``write``, the spec as target. The commit message ends in
``Llmops-Action``, ``Llmops-Spec`` and ``Llmops-Requested-By`` trailers.

An edit the edited specs refuse is ``refused``: not a 422 (the request was
well-formed) but ``NoSuchEnvironment`` (404) for an environment ``llmops.yaml``
does not declare, else ``RepoRefuses`` (409), naming the request field.

Input: plain values (a ``Caller``, ids, request fields) and, once, the
settings and the store. Output: ``Committed`` / ``Uploaded``. Errors: the
categories of ``llmops.engine.errors`` (``NotFound``, ``Conflict``,
``InvalidInput`` with issues, ``Forbidden``, ``TooLarge``, ``Unavailable``).
Callers: the REST API's write routes (``llmops.api.routes.writes``); built by
``llmops.engine.service.compose``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from llmops.engine import errors
from llmops.engine.service import access, admission, lookup
from llmops.engine.service.access import Caller
from llmops.engine.settings import Settings
from llmops.engine.source import rollback, specedits, writeback
from llmops.engine.spec import schema
from llmops.engine.store import audit, catalog, pending, state
from llmops.engine.store.db import Store
from llmops.engine.store.models import RunResult
from llmops.engine.types import Kind, SpecKey

EditFor = Callable[[writeback.Target], writeback.Edit]


def find(store: Store, kind: Kind, ident: str, *,
         environment: str | None = None) -> catalog.CatalogEntry:
    """The spec ``ident`` names: from the catalog, else one the API wrote and the
    catalog does not hold yet (``store.pending``); ``NoSuchSpec`` otherwise."""
    try:
        return lookup.one(store, kind, ident, environment=environment)
    except lookup.NoSuchSpec:
        parsed = lookup.as_uuid(ident)
        if parsed is not None:
            found = pending.get(store, str(parsed))
            if found is not None and found.key.kind == kind:
                return found.as_entry()
        else:
            named = pending.named(store, kind, ident, environment)
            if len(named) == 1:
                return named[0].as_entry()
        raise


class RepoRefuses(errors.Conflict):
    """A well-formed write the specs repo as it stands does not take: the edited specs do
    not validate (a reference to a spec that is not on the branch the commit goes to, a
    route another endpoint serves, a recorded file list without config.json, ...). 409;
    ``details``: ``field``, the request field of the first issue in the written file
    (when the use case knows it), and ``issues`` (file, line, field, message)."""


class NoSuchEnvironment(errors.NotFound):
    """The spec names an environment ``llmops.yaml`` does not declare (404; ``details``:
    ``field``, ``issues``)."""


def refused(exc: writeback.EditRejected, file: str,
            fields: Mapping[str, str]) -> errors.LlmopsError:
    """What an edit the repo does not take (``EditRejected``) is to the caller: the
    environment it names is not declared (``NoSuchEnvironment``), or it clashes with the
    repo (``RepoRefuses``). ``fields``: spec field path (``spec.replicas``) -> the request
    field it comes from (``minReplicas``); the message names that field."""
    issues = exc.issues or ()
    own = [i for i in issues if i.file == file] or list(issues)
    first = next((i for i in own if i.field == "spec.environment"), own[0] if own else None)
    if first is None:
        return RepoRefuses(f"{exc}; nothing was committed")
    field = next((name for path, name in fields.items()
                  if first.field == path or first.field.startswith((f"{path}.", f"{path}["))),
                 None)
    details = {**({"field": field} if field else {}),
               "issues": [i.as_dict() for i in issues]}
    where = field or f"{first.file}: {first.field}".rstrip(": ")
    message = f"{where}: {first.message}"
    if first.field == "spec.environment":
        return NoSuchEnvironment(f"{message}; nothing was committed", details=details)
    return RepoRefuses(f"{message}: the specs repo as it stands does not take this write; "
                       "nothing was committed", details=details)


class InvalidWinner(errors.Conflict):
    """The winner named by UUID is not a prompt template, so not a variant either (409,
    as a winner named by a template that is not a variant)."""


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class Committed(writeback.WriteResult):
    """The commit a write made and where it is (``WriteResult``), and the spec's ``name``."""

    name: str

    @classmethod
    def of(cls, name: str, result: writeback.WriteResult) -> Committed:
        return cls(**asdict(result), name=name)


# --------------------------------------------------------------------------- audit trail


class Trail:
    """The audit rows of one write: intent first, then the outcome."""

    def __init__(self, log: audit.AuditLog, caller: Caller, key: SpecKey, reason: str) -> None:
        self.log, self.caller, self.key, self.reason = log, caller, key, reason
        self._entry(audit.AuditResult.INTENT, reason, {})

    def _entry(self, result: audit.AuditResult, reason: str, details: dict[str, Any],
               commit: str = "") -> None:
        self.log.append(audit.AuditEntry(
            actor=self.caller.user, action=audit.AuditAction.WRITE, target=str(self.key),
            environment=self.key.environment, result=result, source_commit=commit,
            reason=reason[:1000], details={"specId": str(self.key.id), **details}))

    def failed(self, exc: BaseException) -> None:
        self._entry(audit.AuditResult.FAILED, f"{self.reason}: {exc}"[:1000]
                    if str(exc) else f"{self.reason}: {type(exc).__name__}", {})

    def succeeded(self, result: writeback.WriteResult, **details: Any) -> None:
        self._entry(audit.AuditResult.SUCCEEDED, self.reason,
                    {"branch": result.branch, "direct": result.direct, "file": result.file,
                     "parent": result.parent, **details}, commit=result.commit)


def _message(subject: str, body: str, action: str, key: SpecKey, caller: Caller) -> str:
    """The commit message: subject, optional body, then the ``Llmops-*`` trailers."""
    return (f"{subject}\n\n{body + chr(10) + chr(10) if body else ''}"
            f"Llmops-Action: {action}\nLlmops-Spec: {key}\n"
            f"Llmops-Requested-By: {' '.join(caller.user.split())}\n")


# --------------------------------------------------------------------------- the service


class WriteService:
    """The write use cases over one store and one specs repo (see the module docstring)."""

    def __init__(self, settings: Settings, store: Store,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.settings = settings
        self.store = store
        self.log = audit.AuditLog(store)
        self.clock = clock
        """The time the policy verdicts are checked at (change windows)."""

    # -- plumbing

    def find_for(self, caller: Caller, kind: Kind, ident: str,
                 environment: str | None = None) -> catalog.CatalogEntry:
        """The spec ``ident`` names, once the caller may act on it."""
        return self._entry(caller, kind, ident, environment)

    def _entry(self, caller: Caller, kind: Kind, ident: str,
               environment: str | None = None) -> catalog.CatalogEntry:
        """The spec ``ident`` names, once the caller may act on it."""
        entry = find(self.store, kind, ident, environment=environment)
        self.authorize(caller, entry)
        return entry

    def authorize(self, caller: Caller, entry: catalog.CatalogEntry) -> None:
        """``NotOwner`` (audited) unless a team of ``caller`` owns ``entry``."""
        access.authorize_owner(self.store, self.log, caller, entry)

    def _commit_edit(self, repo: writeback.Repo, caller: Caller, entry: catalog.CatalogEntry,
                     action: str, edit: EditFor, subject: str, body: str = "", *,
                     create: bool = False,
                     fields: Mapping[str, str] | None = None) -> writeback.WriteResult:
        """Commit ``edit`` of ``entry``'s file (stacked on its open review branch, if any)
        and remember where it went (``store.pending``). An edit the repo does not take is
        ``refused`` (``fields``: spec field -> request field, for its message)."""
        target = writeback.Target(kind=entry.kind, name=entry.base_name, file=entry.file,
                                  environment=entry.environment, spec_name=entry.name)
        earlier = pending.get(self.store, entry.id)
        onto = earlier.branch if earlier is not None and not earlier.direct else ""
        try:
            result = writeback.commit_edit(
                repo, writeback.tracked_branch(self.settings), target, edit(target),
                action=action, author=writeback.Author(caller.user),
                message=_message(subject, body, action, entry.key, caller), create=create,
                onto=onto, admit=admission.admit_for(entry.key, self.clock))
        except writeback.EditRejected as exc:
            raise refused(exc, target.file, fields or {}) from None
        pending.put(self.store, pending.Pending(
            key=entry.key, file=result.file, branch=result.branch, commit=result.commit,
            direct=result.direct, spec=result.spec or entry.spec))
        return result

    def commit(self, trail: Trail, entry: catalog.CatalogEntry, action: str, edit: EditFor,
               subject: str, body: str = "", *, create: bool = False,
               fields: Mapping[str, str] | None = None) -> Committed:
        """Audited commit of ``edit`` to ``entry``'s file (``create``: a new file)."""
        try:
            result = self._commit_edit(writeback.repo_for(self.settings), trail.caller, entry,
                                       action, edit, subject, body, create=create,
                                       fields=fields)
        except Exception as exc:
            trail.failed(exc)
            raise
        trail.succeeded(result)
        return Committed.of(entry.name, result)

    # -- use cases

    def rollback_endpoint(self, caller: Caller, endpoint_id: str, *,
                          environment: str | None = None) -> Committed:
        """The endpoint's spec file as it was before the change now applied, committed."""
        entry = self._entry(caller, Kind.SERVING_ENDPOINT, endpoint_id, environment)
        status = state.get_environment_status(self.store, entry.environment)
        applied = (status.last_applied_revision if status is not None else "") or entry.revision
        trail = Trail(self.log, caller, entry.key, f"rollback from {applied[:12]}")
        target = writeback.Target(kind=entry.kind, name=entry.name, file=entry.file,
                                  environment=entry.environment)
        history = [run.revision for run in state.list_runs(
            self.store, environment=entry.environment, result=RunResult.SUCCEEDED,
            limit=writeback.MAX_HISTORY)]
        try:
            previous = rollback.previous_version(writeback.repo_for(self.settings), target,
                                                 applied, writeback.tracked_branch(self.settings),
                                                 history)
        except writeback.WriteError as exc:
            trail.failed(exc)
            raise
        trail.reason = (f"rollback from {applied[:12]} to {previous.revision[:12]} "
                        f"(undoes {previous.changed_by[:12]})")
        return self.commit(
            trail, entry, "rollback", lambda _t: rollback.restore(previous),
            f"Roll back {entry.kind} {entry.environment}/{entry.name} to "
            f"{previous.revision[:12]}",
            f"Restores {entry.file} as it was before {previous.changed_by}\n"
            f"(applied revision {applied}).")

    def _winner_name(self, ident: str) -> str:
        parsed = lookup.as_uuid(ident)
        if parsed is None:
            return ident
        found = catalog.get(self.store, str(parsed))
        if found is None or found.kind != Kind.PROMPT_TEMPLATE:
            raise InvalidWinner(f"winnerTemplateId {ident!r} is not a prompt template",
                                details={"field": "winnerTemplateId"})
        return found.name

    def conclude_experiment(self, caller: Caller, experiment_id: str, winner_template_id: str,
                            notes: str | None = None, *,
                            environment: str | None = None) -> Committed:
        """``state: concluded``, the winner (one of the variants) and the notes, committed."""
        entry = self._entry(caller, Kind.PROMPT_EXPERIMENT, experiment_id, environment)
        winner = self._winner_name(winner_template_id)
        trail = Trail(self.log, caller, entry.key, f"conclude with winner {winner[:80]}")
        return self.commit(
            trail, entry, "conclude",
            lambda t: specedits.conclude_experiment(t.name, winner, notes),
            f"Conclude experiment {entry.environment}/{entry.name}: {winner} wins")

    def promote_model(self, caller: Caller, model_id: str,
                      stage: schema.ModelStage) -> Committed:
        """The model version's ``stage`` (``model_id``: a UUID or ``name@version``), committed."""
        entry = self._entry(caller, Kind.MODEL, model_id)
        version = str(entry.body.get("version", ""))
        old = str(entry.body.get("stage", ""))
        trail = Trail(self.log, caller, entry.key, f"stage {old} -> {stage.value}")
        return self.commit(trail, entry, "promote",
                            lambda t: specedits.set_model_stage(t.name, version, stage),
                            f"Set model {entry.name} stage to {stage.value}")
