"""Authentication and RBAC: who is calling (``PrincipalDep``) and may they (``require``).

Role: every route except the probes, ``/metrics`` and the OpenAPI documents
declares the permission it needs with ``dependencies=[require(...)]``. The
principal comes from one of two places, default deny:

1. Identity headers ``X-User-Id`` / ``X-User-Roles`` (comma-separated) and
   optionally ``X-User-Teams`` (comma-separated), set by an authenticating
   proxy. They are believed only when the request's socket peer address
   (pinned by ``llmops.api.peer.PinPeer`` before any ``X-Forwarded-For`` is
   applied) is in
   ``settings.api.trusted_proxies`` (IPs or CIDRs) AND
   ``X-Proxy-Signature`` is the hex HMAC-SHA256, keyed with
   ``settings.api.proxy_secret``, of ``"<user>\\n<roles>\\n<teams>"`` when
   ``X-User-Teams`` is sent, of ``"<user>\\n<roles>"`` (no teams) when it is
   not (compared in constant time). Identity headers in any other case are a 401, never a
   fall-through to another method. A header name given twice in the raw
   ASGI header list, or an underscore spelling (``X_User_Id``, which some
   servers fold into the dash form), is a 400 before anything else.
2. Otherwise ``Authorization: Bearer <JWT>`` verified by ``llmops.api.tokens``
   (HS256 with ``settings.api.jwt_secret``, or RS256/ES256 with the keys of
   ``settings.api.jwks_file``; ``exp``, ``iss`` and ``aud``); the user is
   ``sub``, the roles the ``roles`` claim, the teams the ``teams`` claim.

No identity is a 401. Roles map to permissions through the ``rbac.roles`` of
the ``Policy`` specs in the store's catalog (``catalog.permissions_of``: the
table is cached per catalog revision, and the revision is read on every
request), so a Policy change is enforced as soon as its revision is recorded. A 403, a 401
and a 400 of the identity headers are first written to the audit log (action
``access``, result ``denied``, the user as actor (``unverified:<name>`` as
claimed, for a 401/400), method and route template as target, the missing
permission or the refusal as reason, the client address in the details),
through the per-client-and-route rate limit of ``llmops.api.denials``; if that
write fails the request fails too (503).

Tenant scoping is a use-case rule (``llmops.engine.service.access``): the
write routes hand the use cases the principal as a plain ``Caller``
(``CallerDep``, which also names the route template for the audit trail),
and a spec no team of the caller owns is a 403 there, audited like a missing
permission. Input: the request, the settings, the store. Output:
``Principal`` and ``Caller``. Callers: the modules of
``llmops.api.routes``; ``llmops.api.app`` builds ``TrustedPeers`` once from
the settings.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, cast

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from llmops.api import denials, errors, peer, tokens
from llmops.api.deps import AuditLogDep, SettingsDep, StoreDep
from llmops.api.envelope import Failure
from llmops.api.metrics import RouteTemplates
from llmops.engine.service.access import Caller
from llmops.engine.settings import ApiSettings, Settings
from llmops.engine.spec.schema import Permission
from llmops.engine.store import audit, catalog
from llmops.engine.store.db import Store

USER_HEADER = "x-user-id"
ROLES_HEADER = "x-user-roles"
TEAMS_HEADER = "x-user-teams"
SIGNATURE_HEADER = "x-proxy-signature"
IDENTITY_HEADERS = (USER_HEADER, ROLES_HEADER, TEAMS_HEADER, SIGNATURE_HEADER)
GUARDED_HEADERS = (*IDENTITY_HEADERS, "authorization")
MAX_USER_CHARS = 255
MAX_ROLES_CHARS = 1024
MAX_ROLES = 32
_ROLE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}$")
_USER = re.compile(r"^[^\x00-\x1f\x7f]+$")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: user, roles, and how it was established."""

    user: str
    roles: tuple[str, ...]
    method: str  # "proxy" or "jwt"
    teams: tuple[str, ...] = ()

    def __str__(self) -> str:
        teams = f"; teams {','.join(self.teams)}" if self.teams else ""
        return f"{self.user} ({self.method}; roles {','.join(self.roles) or '-'}{teams})"


class TrustedPeers:
    """The networks whose identity headers may be believed (no names, only addresses)."""

    def __init__(self, networks: Iterable[Network]) -> None:
        self.networks = tuple(networks)

    @classmethod
    def parse(cls, entries: Sequence[str]) -> TrustedPeers:
        """Networks from IPs and CIDRs; a malformed entry is a ``ValueError`` naming it."""
        networks: list[Network] = []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError as err:
                raise ValueError(f"api.trusted_proxies: {entry!r} is not an IP address "
                                 "or CIDR") from err
        return cls(networks)

    def __contains__(self, host: object) -> bool:
        if not isinstance(host, str) or not self.networks:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.networks)


# --------------------------------------------------------------------------- headers


def _raw_headers(request: Request) -> dict[str, list[bytes]]:
    """The guarded headers as sent (every occurrence), refusing ambiguous spellings."""
    found: dict[str, list[bytes]] = {}
    for raw_name, value in cast(list[tuple[bytes, bytes]], request.scope.get("headers", [])):
        name = raw_name.decode("latin-1").lower()
        folded = name.replace("_", "-")
        if folded not in GUARDED_HEADERS:
            continue
        if "_" in name:
            raise errors.BadRequest(f"header {name!r} is refused: use {folded!r}",
                                    {"header": name})
        found.setdefault(name, []).append(value)
    for name, values in found.items():
        if len(values) > 1:
            raise errors.BadRequest(f"header {name!r} is given {len(values)} times",
                                    {"header": name})
    return found


def _unauthorized(reason: str) -> errors.Unauthorized:
    return errors.Unauthorized(f"not authenticated: {reason}")


def _roles(raw: str, header: str = ROLES_HEADER) -> tuple[str, ...]:
    if len(raw) > MAX_ROLES_CHARS:
        raise errors.BadRequest(f"{header} is longer than {MAX_ROLES_CHARS} characters")
    roles = tuple(role.strip() for role in raw.split(",") if role.strip())
    if len(roles) > MAX_ROLES:
        raise errors.BadRequest(f"{header} names more than {MAX_ROLES} entries")
    if not all(_ROLE.match(role) for role in roles):
        raise errors.BadRequest(f"{header} holds a malformed name")
    return roles


def proxy_signature(user: str, roles: str, secret: str, teams: str | None = None) -> str:
    """The ``X-Proxy-Signature`` a trusted proxy sends for ``user``, ``roles`` (and ``teams``).

    ``teams=None`` (no ``X-User-Teams`` header) signs the two-line form.
    """
    message = (f"{user}\n{roles}" if teams is None else f"{user}\n{roles}\n{teams}")
    return hmac.new(secret.encode(), message.encode("latin-1"), hashlib.sha256).hexdigest()


def _from_proxy(request: Request, found: dict[str, list[bytes]],
                peers: TrustedPeers, secret: str) -> Principal:
    if peer.peer_host(request.scope) not in peers:  # the socket, never X-Forwarded-For
        raise _unauthorized("identity headers are accepted only from a trusted proxy")
    if not secret:
        raise _unauthorized("this server has no proxy secret to check identity headers")
    user = found.get(USER_HEADER, [b""])[0].decode("latin-1")
    roles = found.get(ROLES_HEADER, [b""])[0].decode("latin-1")
    teams = (found[TEAMS_HEADER][0].decode("latin-1") if TEAMS_HEADER in found else None)
    signature = found.get(SIGNATURE_HEADER, [b""])[0].strip().lower()
    expected = proxy_signature(user, roles, secret, teams).encode("ascii")
    if not hmac.compare_digest(expected, signature):
        raise _unauthorized("the proxy signature does not match the identity headers")
    user = user.strip()
    if not user or len(user) > MAX_USER_CHARS or not _USER.match(user):
        raise errors.BadRequest(f"{USER_HEADER} is empty, too long or has control characters")
    return Principal(user=user, roles=_roles(roles), method="proxy",
                     teams=_roles(teams, TEAMS_HEADER) if teams is not None else ())


def _from_bearer(value: bytes, settings: ApiSettings) -> Principal:
    scheme, _, token = value.decode("latin-1").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("the Authorization header must be 'Bearer <token>'")
    secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else ""
    jwks = tokens.jwks_file(settings.jwks_file) if settings.jwks_file else None
    try:
        claims = tokens.verify_bearer(token.strip(), secret, jwks=jwks,
                                      issuer=settings.jwt_issuer,
                                      audience=settings.jwt_audience)
    except tokens.TokenError as err:
        raise _unauthorized(str(err)) from err
    if len(claims.subject) > MAX_USER_CHARS or not _USER.match(claims.subject):
        raise _unauthorized("token subject is too long or has control characters")
    if len(claims.roles) > MAX_ROLES or not all(_ROLE.match(r) for r in claims.roles):
        raise _unauthorized("token roles are malformed")
    if len(claims.teams) > MAX_ROLES or not all(_ROLE.match(t) for t in claims.teams):
        raise _unauthorized("token teams are malformed")
    return Principal(user=claims.subject, roles=claims.roles, method="jwt",
                     teams=claims.teams)


def principal_from_token(token: str, settings: ApiSettings) -> Principal:
    """The principal of a bare bearer token (the dashboard's session cookie), verified
    exactly as an ``Authorization: Bearer`` header; 401 when it does not verify."""
    return _from_bearer(f"Bearer {token}".encode("latin-1", "replace"), settings)


# Declared for the OpenAPI document only (Swagger UI's "Authorize" takes a token such
# as `llmops up`'s .llmops/tokens/<role>); the header itself is read and verified below.
BEARER = HTTPBearer(auto_error=False, scheme_name="bearer", bearerFormat="JWT",
                    description="An API token, e.g. one that `llmops up` wrote to "
                                ".llmops/tokens/<role>. Behind an authenticating proxy, "
                                "the signed X-User-Id/X-User-Roles headers instead.")
BearerDoc = Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)]


def identify(request: Request, settings: Settings) -> Principal:
    """The caller, or 400 (ambiguous headers) / 401 (no trustworthy identity), each
    refusal audited (rate-limited: ``llmops.api.denials``) before it answers. Blocks on
    the store for a refusal: for sync callers (the dashboard)."""
    try:
        return _identify(request, settings)
    except (errors.Unauthorized, errors.BadRequest) as err:
        _record_refusal(request, err)
        raise


async def get_principal(request: Request, settings: SettingsDep,
                        _: BearerDoc = None) -> Principal:
    """``identify`` as the routes' dependency: run on the event loop (headers and a
    signature, no I/O but a JWKS file's ``stat``), so a request costs no thread-pool
    hop for it; only a refusal's audit write goes to the thread pool."""
    try:
        return _identify(request, settings)
    except (errors.Unauthorized, errors.BadRequest) as err:
        await run_in_threadpool(_record_refusal, request, err)
        raise


def _record_refusal(request: Request, err: errors.Unauthorized | errors.BadRequest) -> None:
    record_denial(request, denials.claimed(_claimed_name(request)), err.message,
                  int(err.status_code), {"authenticatedBy": "none"})


def _claimed_name(request: Request) -> str:
    """Who an unauthenticated request says it is: its user header or its token's ``sub``
    (unverified; never the token itself)."""
    user = request.headers.get(USER_HEADER)
    if user is not None:
        return user
    scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
    return tokens.claimed_subject(token.strip()) if scheme.lower() == "bearer" else ""


def record_denial(request: Request, actor: str, reason: str, status: int,
                  details: dict[str, object], *, log: audit.AuditLog | None = None,
                  action: str = audit.AuditAction.ACCESS.value) -> bool:
    """Audit a refused request through the app's rate limiter (into ``log``, by default
    the app store's); whether a row was written."""
    limiter = cast(denials.DenialAudit, request.app.state.denials)
    if log is None:
        log = audit.AuditLog(cast(Store, request.app.state.store))
    client = peer.peer_host(request.scope) or (request.client.host if request.client
                                               else "unknown")
    return limiter.record(log, denials.Denial(
        actor=actor, route=_route_template(request), reason=reason, client=client,
        status=status, action=action, details=details))


def _identify(request: Request, settings: Settings) -> Principal:
    found = _raw_headers(request)
    api = settings.api
    if any(name in found for name in IDENTITY_HEADERS):
        peers = cast(TrustedPeers, request.app.state.trusted_peers)
        secret = api.proxy_secret.get_secret_value() if api.proxy_secret else ""
        principal = _from_proxy(request, found, peers, secret)
    elif "authorization" in found:
        principal = _from_bearer(found["authorization"][0], api)
    else:
        raise _unauthorized("send a bearer token or come through the authenticating proxy")
    request.state.principal = str(principal)
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


# --------------------------------------------------------------------------- permissions


def _route_template(request: Request) -> str:
    """``METHOD /llm-ops/v1/...{param}``: the template, never the raw (client-chosen) path."""
    templates = cast(RouteTemplates, request.app.state.route_templates)
    return f"{request.method} {templates.match(request.scope)}"


def require(permission: Permission | str) -> Any:
    """A dependency (for ``dependencies=[...]``) that lets through holders of ``permission``."""
    needed = Permission(permission).value

    def check(request: Request, principal: PrincipalDep, store: StoreDep,
              log: AuditLogDep) -> Principal:
        return authorize(request, principal, store, log, needed)

    check.__name__ = f"require_{needed.replace(':', '_').replace('*', 'all')}"
    return Depends(check)


def allowed(store: Store, principal: Principal, permission: Permission | str) -> bool:
    """Whether ``principal`` holds ``permission`` (no audit: for deciding what to offer)."""
    granted = catalog.permissions_of(store, principal.roles)
    return catalog.allows(granted, Permission(permission).value)


def authorize(request: Request, principal: Principal, store: Store, log: audit.AuditLog,
              permission: Permission | str) -> Principal:
    """``principal`` when it holds ``permission``; else the denial audited and a 403."""
    needed = Permission(permission).value
    if allowed(store, principal, needed):
        return principal
    record_denial(request, principal.user, needed, 403,
                  {"roles": list(principal.roles), "authenticatedBy": principal.method},
                  log=log)
    raise errors.Forbidden(f"{principal.user} lacks the permission {needed}",
                           {"permission": needed, "roles": list(principal.roles)})


# --------------------------------------------------------------------------- use cases


async def get_caller(request: Request, principal: PrincipalDep) -> Caller:
    """The principal as the use cases take it: a plain ``Caller`` naming the route template."""
    return Caller(user=principal.user, roles=principal.roles, teams=principal.teams,
                  method=principal.method, via=_route_template(request))


CallerDep = Annotated[Caller, Depends(get_caller)]


AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": Failure, "description": "Ambiguous identity headers."},
    401: {"model": Failure, "description": "No trustworthy identity."},
    403: {"model": Failure, "description": "The principal lacks the permission, or no "
                                            "team of theirs owns the spec."},
}
