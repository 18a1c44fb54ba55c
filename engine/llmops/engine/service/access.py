"""Who is asking, and may they act on this spec: the caller value and tenant scoping.

Role: ``Caller`` is the identity a use case receives, as a plain value (the
REST API builds it from its authenticated principal). ``authorize_owner`` is
the tenant rule of every write: a caller acts only on a spec owned by one of
their teams (``owner_team``: a model's ``ownerTeam``; an endpoint's or a
training job's ``ownerTeam``, else its model's; an experiment's, its
endpoint's), unless their roles grant ``*`` (through the ``rbac.roles`` of
the recorded Policies). A refusal is written to the audit log first (action
``access``, result ``denied``, reason ``team <teams> does not own <spec>``)
and then raised as ``NotOwner`` (a ``Forbidden``). Input: the store (its
catalog), the audit log, the caller, the catalog entry. Output: nothing, or
the error. Callers: ``llmops.engine.service.writes``.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmops.engine import errors
from llmops.engine.spec.schema import Permission
from llmops.engine.store import audit, catalog
from llmops.engine.types import Kind, SpecKey

UNOWNED = "unowned"


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller: user, roles, teams, how it was established, through what.

    ``via`` names the door it came through for the audit trail (the API's
    ``METHOD /route/{template}``, never a raw client-chosen path).
    """

    user: str
    roles: tuple[str, ...] = ()
    teams: tuple[str, ...] = ()
    method: str = ""
    via: str = ""


class NotOwner(errors.Forbidden):
    """No team of the caller owns the spec; details name the owner and the caller's teams."""


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def owner_team(store: catalog.Db, entry: catalog.CatalogEntry) -> str:
    """The team owning ``entry`` (as ``SpecSet.team_of``), or ``UNOWNED``."""
    body = entry.body
    if entry.kind == Kind.MODEL:
        return _text(body.get("ownerTeam")) or UNOWNED
    if entry.kind in (Kind.SERVING_ENDPOINT, Kind.TRAINING_JOB):
        if _text(body.get("ownerTeam")):
            return _text(body.get("ownerTeam"))
        ref = body.get("modelRef" if entry.kind == Kind.SERVING_ENDPOINT else "baseModelRef")
        if not isinstance(ref, dict):
            return UNOWNED
        model = catalog.get_key(store, SpecKey(
            Kind.MODEL, "", f"{_text(ref.get('name'))}@{_text(ref.get('version'))}"))
        return owner_team(store, model) if model is not None else UNOWNED
    if entry.kind == Kind.PROMPT_EXPERIMENT:
        endpoint = catalog.get_key(store, SpecKey(
            Kind.SERVING_ENDPOINT, entry.environment, _text(body.get("endpointRef"))))
        return owner_team(store, endpoint) if endpoint is not None else UNOWNED
    return _text(body.get("ownerTeam")) or UNOWNED


def authorize_owner(store: catalog.Db, log: audit.AuditLog, caller: Caller,
                    entry: catalog.CatalogEntry) -> None:
    """Let ``caller`` act on ``entry`` if a team of theirs owns it (or they hold ``*``).

    Otherwise the denial is audited (action ``access``, result ``denied``) and
    ``NotOwner`` raised.
    """
    if Permission.ALL.value in catalog.permissions_of(store, caller.roles):
        return
    owner = owner_team(store, entry)
    if owner != UNOWNED and owner in caller.teams:
        return
    teams = ",".join(caller.teams) or "(none)"
    reason = f"team {teams} does not own {entry.key}"
    log.append(audit.AuditEntry(
        actor=caller.user, action=audit.AuditAction.ACCESS, target=str(entry.key),
        environment=entry.environment, result=audit.AuditResult.DENIED, reason=reason[:1000],
        details={"route": caller.via, "ownerTeam": owner,
                 "teams": list(caller.teams), "roles": list(caller.roles),
                 "authenticatedBy": caller.method, "specId": entry.id}))
    raise NotOwner(f"{caller.user}: {reason}",
                   details={"ownerTeam": owner, "teams": list(caller.teams)})
