"""Argo CD Application status: a small read-only client over Argo CD's REST API.

Input: ``ArgoCdSettings`` (server URL, bearer token, Application name
template, timeout) and environment names. Output: one ``AppStatus`` per
environment, read from ``GET /api/v1/applications/{name}``: the
Application's ``status.sync.status`` and ``status.sync.revision``,
``status.health.status`` and ``status.operationState.phase``. Called by
``llmops status`` and ``GET /reconcile/status`` when ``LLMOPS_ARGOCD__URL``
is set; the reconcile pass never depends on it.

Never raises into its callers: every failure (unreachable server, timeout,
401, 403, 404, a body that is not an Application) becomes a status whose
sync and health read ``unknown (<reason>)``. After a transport failure the
remaining environments get the same reason without further requests, so a
down server costs one timeout, not one per environment.

The token is sent only as ``Authorization: Bearer`` to the configured
server; redirects are not followed (a redirect is reported, never chased
with the token), and no reason, log line or repr contains it.
"""

from __future__ import annotations

import logging
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from llmops.engine import netguard
from llmops.engine.settings import ArgoCdSettings

log = logging.getLogger(__name__)

UNKNOWN = "Unknown"
"""Argo CD's own word for a sync or health status it could not determine."""
MAX_MESSAGE = 200
MAX_NAME = 253


@dataclass(frozen=True, slots=True)
class AppStatus:
    """What Argo CD says about one environment's Application."""

    environment: str
    application: str
    sync: str
    """``Synced``, ``OutOfSync``, ``Unknown``, or ``unknown (<reason>)`` when not read."""
    health: str
    """``Healthy``, ``Progressing``, ``Degraded``, ``Suspended``, ``Missing``, ``Unknown``,
    or ``unknown (<reason>)`` when not read."""
    revision: str = ""
    """The revision Argo CD compared against (``status.sync.revision``)."""
    operation: str = ""
    """Phase of the last sync operation (``Running``, ``Succeeded``, ``Failed``, ...)."""
    error: str = ""
    """Why the status could not be read; empty when it was."""

    @classmethod
    def unknown(cls, environment: str, application: str, reason: str) -> AppStatus:
        value = f"unknown ({reason})"
        return cls(environment, application, sync=value, health=value, error=reason)

    @property
    def known(self) -> bool:
        return not self.error

    def summary(self) -> str:
        """One line for people: ``llmops-prod: Synced, Healthy at 1a2b3c4d5e6f (Succeeded)``."""
        if not self.known:
            return f"{self.application}: {self.sync}"
        line = f"{self.application}: {self.sync}, {self.health}"
        if self.revision:
            line += f" at {self.revision[:12]}"
        if self.operation:
            line += f" (last sync {self.operation})"
        return line


class _Unreadable(Exception):
    """One Application could not be read; ``transport`` when the server itself failed."""

    def __init__(self, reason: str, *, transport: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transport = transport


def app_name(template: str, environment: str) -> str:
    """``template`` with ``{env}`` filled in; ``ValueError`` for any other placeholder."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise ValueError(f"app_name_template {template[:80]!r}: {exc}") from None
    if any(f != "env" for f in fields):
        raise ValueError(f"app_name_template {template[:80]!r} may use only the placeholder "
                         "{env}")
    try:
        name = template.format(env=environment)
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        raise ValueError(f"app_name_template {template[:80]!r}: {exc}") from None
    if not name or len(name) > MAX_NAME or not name.isprintable():
        raise ValueError(f"app_name_template {template[:80]!r} gives no valid Application "
                         f"name for {environment!r}")
    return name


def _base_url(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("LLMOPS_ARGOCD__URL is not an http(s) URL")
    if parts.username or parts.password:
        raise ValueError("LLMOPS_ARGOCD__URL must not carry credentials (use the token)")
    return url.strip().rstrip("/")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _error_message(response: httpx.Response) -> str:
    """Argo CD's own error message (``{"error", "code", "message"}``), shortened."""
    try:
        body = response.json()
    except ValueError:
        return ""
    message = _text(body.get("message")) if isinstance(body, dict) else ""
    return " ".join(message.split())[:MAX_MESSAGE]


class ArgoCdClient:
    """Reads Applications from one Argo CD server; use as a context manager."""

    def __init__(self, settings: ArgoCdSettings, *,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.base = _base_url(settings.url)
        self.timeout = settings.timeout
        headers = {"Accept": "application/json", "User-Agent": "llmops"}
        if settings.token is not None and settings.token.get_secret_value():
            headers["Authorization"] = f"Bearer {settings.token.get_secret_value()}"
        self._http = httpx.Client(headers=headers, timeout=httpx.Timeout(settings.timeout),
                                  follow_redirects=False,
                                  transport=transport or netguard.transport())

    def __repr__(self) -> str:
        return f"ArgoCdClient({self.base!r})"

    def __enter__(self) -> ArgoCdClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def application(self, name: str) -> Mapping[str, Any]:
        """The Application object, or ``_Unreadable`` with a reason for people."""
        url = f"{self.base}/api/v1/applications/{quote(name, safe='')}"
        try:
            response = self._http.get(url)
        except httpx.TimeoutException:
            raise _Unreadable(f"Argo CD did not answer within {self.timeout:g}s",
                              transport=True) from None
        except httpx.ConnectError as exc:
            raise _Unreadable(f"cannot connect to Argo CD at {self.base} ({str(exc)[:200]})",
                              transport=True) from None
        except httpx.HTTPError as exc:
            raise _Unreadable(f"request to Argo CD failed ({type(exc).__name__})",
                              transport=True) from None
        code = response.status_code
        if code == httpx.codes.UNAUTHORIZED:
            raise _Unreadable("Argo CD rejected the token (401); check LLMOPS_ARGOCD__TOKEN",
                              transport=True)
        if code == httpx.codes.FORBIDDEN:
            raise _Unreadable(f"permission denied (403): application {name} does not exist "
                              "or the token may not get it")
        if code == httpx.codes.NOT_FOUND:
            raise _Unreadable(f"application {name} not found (404)")
        if response.is_redirect:
            raise _Unreadable(f"Argo CD redirected ({code}); set LLMOPS_ARGOCD__URL to the "
                              "server's final address", transport=True)
        if code != httpx.codes.OK:
            detail = _error_message(response)
            raise _Unreadable(f"Argo CD answered HTTP {code}" + (f": {detail}" if detail
                                                                 else ""))
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("metadata"), dict):
            raise _Unreadable("Argo CD's answer is not an Application")
        return body


def status_of(environment: str, name: str, app: Mapping[str, Any]) -> AppStatus:
    """The fields llmops shows, from an Application object."""
    status = _dict(app.get("status"))
    sync, health = _dict(status.get("sync")), _dict(status.get("health"))
    operation = _dict(status.get("operationState"))
    revision = _text(sync.get("revision"))
    if not revision and isinstance(sync.get("revisions"), list):  # multi-source
        revision = ",".join(r for r in sync["revisions"] if isinstance(r, str))
    return AppStatus(environment, name, sync=_text(sync.get("status")) or UNKNOWN,
                     health=_text(health.get("status")) or UNKNOWN, revision=revision,
                     operation=_text(operation.get("phase")))


def statuses(settings: ArgoCdSettings, environments: Iterable[str], *,
             transport: httpx.BaseTransport | None = None) -> dict[str, AppStatus]:
    """Each environment's Application status; failures are ``unknown (<reason>)`` values."""
    envs = list(dict.fromkeys(environments))
    names: dict[str, str] = {}
    found: dict[str, AppStatus] = {}
    for env in envs:
        try:
            names[env] = app_name(settings.app_name_template, env)
        except ValueError as exc:
            found[env] = AppStatus.unknown(env, "", str(exc))
    if not names:
        return found
    try:
        client = ArgoCdClient(settings, transport=transport)
    except ValueError as exc:
        return found | {env: AppStatus.unknown(env, name, str(exc))
                        for env, name in names.items()}
    down = ""
    with client:
        for env, name in names.items():
            if down:
                found[env] = AppStatus.unknown(env, name, down)
                continue
            try:
                found[env] = status_of(env, name, client.application(name))
            except _Unreadable as exc:
                log.warning("argocd: application %s: %s", name, exc.reason)
                found[env] = AppStatus.unknown(env, name, exc.reason)
                if exc.transport:
                    down = exc.reason
    return {env: found[env] for env in envs}
