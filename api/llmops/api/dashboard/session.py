"""Who is looking at a page, what they may do, and how a page is answered.

Role: the dashboard's side of authentication, CSRF and rendering, over the
REST API's own rules (``llmops.api.auth``):

- the principal comes from the same trusted-proxy headers or bearer token as
  the REST API (``auth.identify``), or else from the session cookie
  ``llmops_token`` that the login page sets (HttpOnly, SameSite=Strict),
  verified exactly as a bearer token (``auth.principal_from_token``); with
  neither, a page redirects to ``/login``;
- permissions are the REST API's: ``Viewer.can`` decides what is offered,
  ``Viewer.need`` refuses (403, audited as ``access`` ``denied``) what is not
  held, whatever the page offered;
- CSRF: every form carries a token that is the HMAC (key made per app, at
  mount) of a random per-browser nonce (cookie ``llmops_csrf``, HttpOnly,
  SameSite=Strict) and the user; ``check_csrf`` refuses (403) a post whose
  token is missing or does not match, before anything else runs;
- ``render`` answers a page (Jinja2, autoescape, ``StrictUndefined``) with a
  strict Content-Security-Policy (scripts and styles only from ``/static``);
  ``PageRoute`` turns the API's errors into an HTML error page with the same
  status and message (and a missing identity into a redirect to the login).

Input: the request, the app's settings and store. Output: ``Viewer``,
``HTMLResponse``. Callers: ``llmops.api.dashboard.pages`` and ``.actions``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, cast
from urllib.parse import quote

import jinja2
from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute

from llmops.api import auth, errors
from llmops.api.dashboard import charts
from llmops.api.deps import SettingsDep, StoreDep
from llmops.engine import errors as engine_errors
from llmops.engine.errors import LlmopsError
from llmops.engine.spec.schema import Permission
from llmops.engine.store import audit
from llmops.engine.store.db import Store

TOKEN_COOKIE = "llmops_token"
CSRF_COOKIE = "llmops_csrf"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


class LoginRequired(Exception):
    """No identity on a page request: the answer is the login page."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = reason


def short(value: object, width: int = 8) -> str:
    return str(value)[:width]


def fields(mapping: Mapping[str, Any]) -> str:
    """``key=value`` pairs of a spec block, nested blocks as compact JSON, unset keys left out."""
    return " ".join(f"{key}={json.dumps(value, separators=(',', ':'))}"
                    if isinstance(value, dict | list) else f"{key}={value}"
                    for key, value in mapping.items() if value is not None)


TEMPLATES.filters["short"] = short
TEMPLATES.filters["fields"] = fields
TEMPLATES.filters["number"] = charts.number


# --------------------------------------------------------------------------- CSRF


def _nonce(request: Request) -> str:
    """The browser's CSRF nonce: its cookie, or a new one (set by ``render``)."""
    found = request.cookies.get(CSRF_COOKIE, "")
    if 16 <= len(found) <= 128 and found.isalnum():
        return found
    fresh = cast(str | None, getattr(request.state, "new_csrf_nonce", None))
    if fresh is None:
        fresh = secrets.token_hex(16)
        request.state.new_csrf_nonce = fresh
    return fresh


def csrf_token(request: Request, user: str) -> str:
    key = cast(bytes, request.app.state.dashboard_key)
    message = f"{_nonce(request)}\n{user}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def check_csrf(request: Request, user: str, sent: str | None) -> None:
    """403 unless ``sent`` is this browser's token for ``user`` (cookie nonce required)."""
    if not request.cookies.get(CSRF_COOKIE) or not sent:
        raise errors.Forbidden("the form has no CSRF token (or the browser sent no CSRF "
                               "cookie): reload the page and submit it again",
                               {"field": CSRF_FIELD})
    if not hmac.compare_digest(csrf_token(request, user).encode(), sent.encode()):
        raise errors.Forbidden("the form's CSRF token does not match this session: reload "
                               "the page and submit it again", {"field": CSRF_FIELD})


# --------------------------------------------------------------------------- who


def principal_of(request: Request, settings: SettingsDep) -> auth.Principal:
    """Proxy headers or bearer header as on the API; else the session cookie; else login."""
    if any(name in request.headers for name in auth.GUARDED_HEADERS):
        return auth.identify(request, settings)
    token = request.cookies.get(TOKEN_COOKIE)
    if not token:
        raise LoginRequired()
    try:
        principal = auth.principal_from_token(token, settings.api)
    except errors.Unauthorized as exc:
        raise LoginRequired(exc.message) from exc
    request.state.principal = str(principal)
    return principal


@dataclass(frozen=True, slots=True)
class Viewer:
    """The principal on a page, with what the page needs to decide what to offer."""

    principal: auth.Principal
    request: Request
    store: Store

    @property
    def user(self) -> str:
        return self.principal.user

    @property
    def csrf(self) -> str:
        return csrf_token(self.request, self.principal.user)

    def can(self, permission: str) -> bool:
        return auth.allowed(self.store, self.principal, permission)

    def need(self, permission: Permission) -> None:
        """403 (audited) unless the principal holds ``permission``."""
        auth.authorize(self.request, self.principal, self.store, audit.AuditLog(self.store),
                       permission)


def get_viewer(request: Request, store: StoreDep,
               principal: Annotated[auth.Principal, Depends(principal_of)]) -> Viewer:
    return Viewer(principal=principal, request=request, store=store)


ViewerDep = Annotated[Viewer, Depends(get_viewer)]


# --------------------------------------------------------------------------- answers


def render(request: Request, template: str, *, viewer: Viewer | None,
           status_code: int = 200, **context: Any) -> HTMLResponse:
    """The page ``template`` with ``context``, the security headers and the CSRF cookie."""
    if viewer is not None:
        _ = viewer.csrf  # makes the nonce, so the cookie below is set on first sight
    html = TEMPLATES.get_template(template).render(viewer=viewer, path=request.url.path,
                                                   **context)
    response = HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)
    fresh = cast(str | None, getattr(request.state, "new_csrf_nonce", None))
    if fresh is not None:
        response.set_cookie(CSRF_COOKIE, fresh, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https", path="/")
    return response


def error_page(request: Request, status_code: int, message: str,
               data: Mapping[str, Any] | None = None) -> HTMLResponse:
    issues = list((data or {}).get("issues") or []) if isinstance(data, Mapping) else []
    return render(request, "error.html", viewer=None, status_code=status_code,
                  message=message, issues=issues)


def _failure(request: Request, exc: Exception) -> Response | None:
    """The page answering ``exc``, or None when it is not one the pages answer."""
    if isinstance(exc, LoginRequired):
        target = quote(request.url.path + (f"?{request.url.query}" if request.url.query
                                           else ""), safe="")
        return RedirectResponse(f"/login?next={target}", status_code=303)
    if isinstance(exc, errors.ApiError):
        data = exc.data if isinstance(exc.data, Mapping) else None
        return error_page(request, exc.status_code, exc.message, data)
    if isinstance(exc, RequestValidationError):
        issues = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
                  for e in exc.errors()][:5]
        return error_page(request, 422, "invalid request: " + "; ".join(issues))
    if isinstance(exc, LlmopsError) and engine_errors.category(exc) is not None:
        kind = engine_errors.category(exc)
        assert kind is not None
        return error_page(request, errors.STATUS_OF[kind], str(exc),
                          errors.category_data(exc))
    return None


class PageRoute(APIRoute):
    """A route whose refusals and failures are pages, not JSON envelopes."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await original(request)
            except Exception as exc:
                page = _failure(request, exc)
                if page is None:
                    raise
                return page

        return handler
