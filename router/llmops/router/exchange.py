"""The ASGI plumbing of one proxied request: bounded body, errors, disconnects, streaming.

Input: ASGI ``receive``/``send`` and an upstream ``httpx.Response``. Output:
what the client gets. ``read_body`` reads at most ``limit`` bytes (413
beyond); ``until_disconnect`` returns when the client goes away;
``cancel_on_disconnect`` runs an upstream call and cancels it (closing the
upstream connection) when the client leaves first; ``relay_stream`` passes
an upstream body through chunk by chunk, watching for a disconnect the whole
time, and always closes the upstream response. Errors are ``HttpError``s,
answered as OpenAI-style ``{"error": {...}}`` bodies by ``send_error``.
Caller: ``llmops.router.proxy``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import httpx
import orjson

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
T = TypeVar("T")

CLIENT_CLOSED = 499
"""The status recorded (never sent) for a request whose client left before the answer."""


class HttpError(Exception):
    """An answer other than the upstream's: status, message, OpenAI error type, request field."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str = "invalid_request_error",
        param: str | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.param = status, message, kind, param
        self.reason = reason
        """For upstream failures: ``timeout``, ``connect``, ``5xx`` or ``protocol``."""

    def body(self) -> bytes:
        return orjson.dumps(
            {
                "error": {
                    "message": self.message,
                    "type": self.kind,
                    "param": self.param,
                    "code": self.status,
                }
            }
        )


class Disconnected(Exception):
    """The client went away before the answer."""


def header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def read_body(receive: Receive, scope: dict[str, Any], limit: int) -> bytes:
    declared = header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HttpError(413, f"request body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise HttpError(413, f"request body is larger than {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def cancel_on_disconnect(receive: Receive, call: Callable[[], Awaitable[T]]) -> T:
    """``call()``'s result, or ``Disconnected`` (with ``call`` cancelled) if the client left."""
    result: list[T] = []
    failed: list[Exception] = []
    async with anyio.create_task_group() as group:

        async def run() -> None:
            try:
                result.append(await call())
            except Exception as exc:  # handed to the caller below, outside the task group
                failed.append(exc)
            group.cancel_scope.cancel()

        group.start_soon(run)
        await until_disconnect(receive)
        group.cancel_scope.cancel()
    if failed:
        raise failed[0]
    if not result:
        raise Disconnected
    return result[0]


def upstream_error(exc: httpx.TransportError) -> HttpError:
    """The answer to a failed upstream call: 504 on a timeout, 502 otherwise."""
    if isinstance(exc, httpx.PoolTimeout):
        return HttpError(
            503,
            "the router's connection pool to the model server is exhausted",
            "server_error",
            reason="pool",
        )
    if isinstance(exc, httpx.TimeoutException):
        return HttpError(
            504,
            f"the model server did not answer in time ({type(exc).__name__})",
            "upstream_timeout",
            reason="timeout",
        )
    if isinstance(exc, httpx.ConnectError):
        return HttpError(
            502, "cannot connect to the model server", "upstream_error", reason="connect"
        )
    return HttpError(
        502,
        f"the model server broke the connection ({type(exc).__name__})",
        "upstream_error",
        reason="protocol",
    )


def raw_headers(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


async def send_body(send: Send, status: int, body: bytes, headers: dict[str, str]) -> None:
    out = [*raw_headers(headers), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def send_error(send: Send, error: HttpError, headers: dict[str, str]) -> None:
    extra = {"retry-after": "1"} if error.status == 503 else {}
    await send_body(
        send, error.status, error.body(), {**headers, **extra, "content-type": "application/json"}
    )


async def relay_stream(
    receive: Receive,
    send: Send,
    upstream: httpx.Response,
    headers: dict[str, str],
    on_chunk: Callable[[bytes], None],
) -> bool:
    """Pass the upstream body through as it comes; False if the client left first.

    A failure of the upstream mid-stream raises ``HttpError`` after the
    client got an SSE ``error`` event (the status line is already sent).
    """
    failure: list[HttpError] = []
    try:
        async with anyio.create_task_group() as group:

            async def pump() -> None:
                await send(
                    {
                        "type": "http.response.start",
                        "status": upstream.status_code,
                        "headers": raw_headers(headers),
                    }
                )
                try:
                    async for chunk in upstream.aiter_raw():
                        on_chunk(chunk)
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                except httpx.TransportError as exc:
                    failure.append(upstream_error(exc))
                    event = b"data: " + failure[0].body() + b"\n\n"
                    await send({"type": "http.response.body", "body": event, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                group.cancel_scope.cancel()

            group.start_soon(pump)
            await until_disconnect(receive)
            group.cancel_scope.cancel()
            return False
    finally:
        with anyio.CancelScope(shield=True):
            await upstream.aclose()
        if failure:
            raise failure[0]
    return True
