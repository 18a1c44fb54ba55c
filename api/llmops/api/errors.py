"""The API's errors and the one place that maps every error to HTTP and the envelope.

Role: ``ApiError`` and its subclasses (part of the ``LlmopsError``
hierarchy) are the HTTP-specific errors routes and dependencies raise (a
malformed header, no identity, no trigger); ``install`` registers the
exception handlers that turn them, the engine's error categories, and
everything else that can go wrong in a request, into a ``fail`` envelope
with a meaningful status code:

- ``ApiError`` -> its own code (400, 401, 403, 404, 409, 411, 415, 503, ...;
  ``NotConfigured``, an optional part this server runs without, is a 409);
- an engine error category (``llmops.engine.errors``) -> ``STATUS_OF``:
  ``InvalidInput`` 422 (data ``{"issues": [...]}`` when it carries spec
  issues), ``Malformed`` 400, ``NotFound`` 404, ``Conflict`` 409,
  ``Forbidden`` 403, ``TooLarge`` 413, ``Unavailable`` 503 (data
  ``{"retryable": true}``); the message is the error's, the data its
  ``details``;
- ``StoreUnavailable`` -> 503 (the detail is logged, not returned: it names
  the database host);
- Starlette/FastAPI ``HTTPException`` (unknown path 404, 405 with its
  ``Allow`` header, 413 from the body guard) -> its code;
- ``RequestValidationError`` -> 422, naming each failing request field (a
  body that is not JSON: field ``body``, with its line and column);
- anything else (an uncategorised ``LlmopsError`` too) -> 500 whose data is
  only ``{"errorId": ...}``; the error is logged with that id, the method,
  the path and the principal (when one is known). No stack trace or
  exception text ever reaches a response.

Input: exceptions raised while serving a request. Output: ``JSONResponse``
objects. Caller: ``llmops.api.app.create_app`` (``install``), the routes
and dependencies (the ``ApiError`` classes), the ASGI guard
(``fail_response``).
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from llmops.api.envelope import Failure
from llmops.engine import errors as engine_errors
from llmops.engine.errors import LlmopsError
from llmops.engine.store.db import StoreUnavailable

log = logging.getLogger("llmops.api")

MAX_REPORTED_ISSUES = 20

STATUS_OF: dict[type[LlmopsError], HTTPStatus] = {
    engine_errors.InvalidInput: HTTPStatus.UNPROCESSABLE_ENTITY,
    engine_errors.Malformed: HTTPStatus.BAD_REQUEST,
    engine_errors.NotFound: HTTPStatus.NOT_FOUND,
    engine_errors.Conflict: HTTPStatus.CONFLICT,
    engine_errors.Forbidden: HTTPStatus.FORBIDDEN,
    engine_errors.TooLarge: HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    engine_errors.Unavailable: HTTPStatus.SERVICE_UNAVAILABLE,
}
"""The HTTP status of each engine error category (``llmops.engine.errors.CATEGORIES``)."""


class ApiError(LlmopsError):
    """An error a route raises on purpose; ``status_code`` is its HTTP status."""

    status_code = HTTPStatus.BAD_REQUEST
    headers: Mapping[str, str] | None = None

    def __init__(self, message: str, data: Any = None) -> None:
        self.message = message
        self.data = data
        super().__init__(message)


class BadRequest(ApiError):
    status_code = HTTPStatus.BAD_REQUEST


class Unauthorized(ApiError):
    """No usable identity: none given, or one that cannot be trusted."""

    status_code = HTTPStatus.UNAUTHORIZED
    headers: Mapping[str, str] | None = {"WWW-Authenticate": 'Bearer realm="llmops"'}


class Forbidden(ApiError):
    """An identified principal without the permission the route needs."""

    status_code = HTTPStatus.FORBIDDEN


class NotFound(ApiError):
    status_code = HTTPStatus.NOT_FOUND


class Conflict(ApiError):
    """A name that matches several resources (the data lists their ids)."""

    status_code = HTTPStatus.CONFLICT


class ServiceUnavailable(ApiError):
    status_code = HTTPStatus.SERVICE_UNAVAILABLE


class NotConfigured(ApiError):
    """A request for an optional part this server runs without (no Redis, no webhook
    secret, no reconciler attached): 409, since asking again cannot succeed until the
    server is configured otherwise; a part that is configured but down is a 503."""

    status_code = HTTPStatus.CONFLICT


class BodyTooLarge(StarletteHTTPException):
    """A request body that grew past the limit while it was read (raised by the guard).

    An ``HTTPException`` so that FastAPI's body reader lets it through
    unchanged (it turns other errors into a 400) to the handler below.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                         f"request body larger than {limit} bytes")
        self.data = {"maxBodyBytes": limit}


def fail_response(status_code: int, message: str, data: Any = None,
                  headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The ``fail`` envelope as a response (also used by the ASGI guard)."""
    body = Failure(message=message, data=data).model_dump(mode="json")
    return JSONResponse(body, status_code=status_code, headers=dict(headers or {}))


# --------------------------------------------------------------------------- handlers


async def _api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return fail_response(exc.status_code, exc.message, exc.data, headers=exc.headers)


def category_data(exc: LlmopsError) -> Any:
    """The envelope's data for a categorised engine error: its details (and issues)."""
    data: dict[str, Any] | None = dict(exc.details) if exc.details is not None else None
    if isinstance(exc, engine_errors.InvalidInput) and exc.issues is not None:
        data = {"issues": [issue.as_dict() for issue in exc.issues], **(data or {})}
    if isinstance(exc, engine_errors.Unavailable):
        data = {"retryable": True, **(data or {})}
    return data


def category_response(exc: LlmopsError) -> JSONResponse | None:
    """The ``fail`` response of a categorised engine error; None when it has no category."""
    kind = engine_errors.category(exc)
    if kind is None:
        return None
    return fail_response(STATUS_OF[kind], str(exc), category_data(exc))


async def _categorised(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LlmopsError)
    response = category_response(exc)
    return response if response is not None else await _unexpected(request, exc)


async def _store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("store unavailable during %s %s: %s", request.method, request.url.path, exc)
    return fail_response(HTTPStatus.SERVICE_UNAVAILABLE, "store unavailable; retry later",
                         {"retryable": True}, headers={"Retry-After": "5"})


def _allowed(request: Request) -> str:
    """Every method the API documents at this path (its routes may sit in several
    routers; Starlette's own ``Allow`` names only the first one's)."""
    path = request.url.path
    methods: set[str] = set()
    for template, operations in request.app.openapi().get("paths", {}).items():
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path):
            methods |= {m.upper() for m in operations if m.isalpha()}
    return ", ".join(sorted(methods))


async def _http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail
    if isinstance(detail, str) and detail:
        message, data = detail, getattr(exc, "data", None)
    else:
        message, data = _phrase(exc.status_code), detail
    headers = dict(exc.headers or {})
    if exc.status_code == HTTPStatus.METHOD_NOT_ALLOWED:
        headers["Allow"] = _allowed(request) or headers.get("Allow", "")
    return fail_response(exc.status_code, message, data, headers=headers)


def _phrase(status_code: int) -> str:
    try:
        return HTTPStatus(status_code).phrase
    except ValueError:
        return f"HTTP {status_code}"


def _line_column(doc: Any, pos: int) -> tuple[int, int]:
    """1-based line and column of character ``pos`` of ``doc`` (as ``json`` counts them)."""
    text = doc.decode("utf-8", "replace") if isinstance(doc, bytes) else str(doc)
    pos = max(0, min(pos, len(text)))
    line = text.count("\n", 0, pos) + 1
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1


def _json_issue(error: Mapping[str, Any], body: Any) -> dict[str, Any]:
    """A body that is not JSON: named ``body``, with the line and column (never a
    character offset as a field, never the text itself)."""
    loc = list(error.get("loc", ()))
    pos = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else 0
    line, column = _line_column(body if body is not None else "", pos)
    reason = str((error.get("ctx") or {}).get("error") or "JSON decode error")
    return {"location": "body", "field": "body",
            "message": f"not valid JSON at line {line}, column {column}: {reason}",
            "type": "json_invalid", "line": line, "column": column}


def _issue(error: Mapping[str, Any], body: Any = None) -> dict[str, Any]:
    if error.get("type") == "json_invalid":
        return _json_issue(error, body)
    loc = [str(part) for part in error.get("loc", ())]
    location = loc[0] if loc else "request"
    field_path = loc[1:] if len(loc) > 1 else loc
    return {"location": location, "field": ".".join(field_path) or location,
            "message": str(error.get("msg", "invalid")), "type": str(error.get("type", ""))}


def _validation_message(issues: Sequence[Mapping[str, Any]]) -> str:
    shown = "; ".join(f"{i['location']}"
                      f"{'' if i['field'] == i['location'] else ' field ' + repr(i['field'])}"
                      f": {i['message']}" for i in issues[:3])
    more = f" (and {len(issues) - 3} more)" if len(issues) > 3 else ""
    return f"invalid request: {shown}{more}"


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Built from loc/msg/type only: the rejected input is not echoed back.
    issues = [_issue(error, exc.body) for error in exc.errors()][:MAX_REPORTED_ISSUES]
    return fail_response(HTTPStatus.UNPROCESSABLE_ENTITY, _validation_message(issues),
                         {"errors": issues})


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    error_id = str(uuid.uuid4())
    principal = getattr(request.state, "principal", None)
    log.error("unhandled error %s during %s %s%s: %s", error_id, request.method,
              request.url.path, f" (principal {principal})" if principal else "",
              type(exc).__name__, exc_info=exc,
              extra={"error_id": error_id, "method": request.method,
                     "path": request.url.path, "principal": principal})
    return fail_response(HTTPStatus.INTERNAL_SERVER_ERROR,
                         "internal error; quote the error id when reporting it",
                         {"errorId": error_id})


def install(app: FastAPI) -> None:
    """Register every handler on ``app`` (the only place errors become HTTP)."""
    app.add_exception_handler(ApiError, _api_error)
    for kind in STATUS_OF:
        app.add_exception_handler(kind, _categorised)
    app.add_exception_handler(StoreUnavailable, _store_unavailable)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
