"""The ASGI plumbing of one proxied request: bounded body, errors, disconnects, streaming.

Input: ASGI ``receive``/``send`` and a model server's ``Answer``. Output:
what the client gets. ``read_body`` reads at most ``limit`` bytes (413
beyond); ``ClientWatch.race`` awaits a call to the model server and cancels
it (closing its connection) when the client leaves first; ``relay_stream``
passes a body through chunk by chunk, watching for a disconnect the whole
time, and always closes the answer. Errors are ``HttpError``s,
answered as OpenAI-style ``{"error": {...}}`` bodies by ``send_error``.
Caller: ``llmops.router.proxy``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

if TYPE_CHECKING:
    from llmops.router.upstream import Answer

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


class ClientWatch:
    """Watches for the client going away while the router waits on the model server."""

    def __init__(self, receive: Receive) -> None:
        self.gone = asyncio.ensure_future(until_disconnect(receive))

    async def race(self, work: Awaitable[T]) -> T:
        """``work``'s result, or ``Disconnected`` (with ``work`` cancelled) if the client left."""
        task = asyncio.ensure_future(work)
        done, _ = await asyncio.wait({task, self.gone}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            return task.result()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise Disconnected

    def stop(self) -> None:
        self.gone.cancel()


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
    watch: ClientWatch,
    send: Send,
    answer: Answer,
    headers: dict[str, str],
    on_chunk: Callable[[bytes], None],
) -> bool:
    """Pass the model server's body through as it comes; False if the client left first.

    A failure of the model server midway raises ``HttpError`` after the client
    got an SSE ``error`` event (the status line is already sent).
    """
    start = {
        "type": "http.response.start",
        "status": answer.status,
        "headers": raw_headers(headers),
    }
    await send(start)
    chunks = answer.chunks()
    try:
        while True:
            try:
                chunk = await watch.race(anext(chunks))
            except StopAsyncIteration:
                break
            except HttpError as error:
                event = b"data: " + error.body() + b"\n\n"
                await send({"type": "http.response.body", "body": event, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                raise
            on_chunk(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except Disconnected:
        return False
    finally:
        answer.close()
    await send({"type": "http.response.body", "body": b"", "more_body": False})
    return True
