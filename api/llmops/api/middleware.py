"""Request guard: a small pure ASGI middleware that refuses bodies no route accepts.

Role: before any route runs (and before anything is buffered), answer

- 415 for form and multipart bodies (``application/x-www-form-urlencoded``,
  ``multipart/*``) under ``/llm-ops/``: no route of the REST API reads a
  form, so none is parsed (but the upload route takes multipart/form-data;
  the dashboard's pages, outside that prefix, post small forms and check
  their CSRF token themselves);
- 413 when ``Content-Length`` is above the limit, and 400 when it is not a
  number (the limit is ``max_body_bytes``, except for the raw-body model
  upload route in ``LARGE_BODY_ROUTES``: 10 GiB, the route checks the rest);

and, for bodies sent without a length (chunked), count the bytes as the app
reads them and raise ``errors.BodyTooLarge`` (an ``HTTPException``, mapped to
a 413 envelope by ``errors``) once they pass the limit. Input: the ASGI
scope, ``receive`` and ``send`` of each HTTP request. Output: the app's
response, or a ``fail`` envelope. Caller: ``llmops.api.app.create_app``,
with ``Settings.api.max_body_bytes`` as the limit.
"""

from __future__ import annotations

import re
from http import HTTPStatus

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmops.api import errors
from llmops.engine.service.uploads import MAX_FILES_PER_CALL
from llmops.engine.spec.schema import MAX_MODEL_FILE_BYTES

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/")
# Routes that stream large bodies get their own limit (the upload route: up to
# MAX_FILES_PER_CALL files of at most 10 GB, raw or multipart); the route itself
# enforces the exact per-file limit and Content-Length rules. Only these may take
# multipart/form-data, which they parse as a stream.
LARGE_BODY_ROUTES = ((re.compile(r"^(/llm-ops/v1)?/catalog/models/[^/]+/upload$"),
                      MAX_MODEL_FILE_BYTES * MAX_FILES_PER_CALL),)
MULTIPART = "multipart/form-data"
FORMS_REFUSED_UNDER = "/llm-ops/"


def _is_form(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == FORM_TYPES[0] or media_type.startswith(FORM_TYPES[1])


class RequestGuard:
    """Refuse form bodies (415) and bodies over ``max_body_bytes`` (413)."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        if max_body_bytes < 0:
            raise ValueError("max_body_bytes must not be negative")
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        path = str(scope.get("path", ""))
        limit, large = self._limit(path)
        refusal = self._refusal(headers, limit, multipart=large,
                                forms=path.startswith(FORMS_REFUSED_UNDER))
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        received = 0
        response_started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise errors.BodyTooLarge(limit)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except errors.BodyTooLarge as exc:
            # Normally the exception handlers answer; this covers a read outside them.
            if response_started:
                raise
            response = errors.fail_response(exc.status_code, str(exc.detail), exc.data)
            await response(scope, receive, send)

    def _limit(self, path: str) -> tuple[int, bool]:
        """The body limit of ``path``, and whether it is a large-body (upload) route."""
        for pattern, limit in LARGE_BODY_ROUTES:
            if pattern.match(path):
                return limit, True
        return self.max_body_bytes, False

    def _refusal(self, headers: Headers, limit: int, *, multipart: bool = False,
                 forms: bool = True) -> JSONResponse | None:
        content_type = headers.get("content-type", "")
        media = content_type.split(";", 1)[0].strip().lower()
        if (forms and content_type and _is_form(content_type)
                and not (multipart and media == MULTIPART)):
            return errors.fail_response(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                "form and multipart bodies are not accepted; send JSON",
                {"contentType": content_type.split(";", 1)[0].strip()})
        length = headers.get("content-length")
        if length is None:
            return None
        try:
            declared = int(length)
        except ValueError:
            return errors.fail_response(HTTPStatus.BAD_REQUEST,
                                        "Content-Length is not a number")
        if declared > limit:
            return errors.fail_response(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"request body larger than {limit} bytes", {"maxBodyBytes": limit})
        return None
