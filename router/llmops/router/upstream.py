"""The router's client to the model server: one bounded connection pool, explicit timeouts.

Input: a base URL, limits and timeouts. Output: ``Answer``s (status,
headers, the body whole or chunk by chunk). Built on aiohttp's client (a
dependency through the kubernetes client): at 500 requests/s on 2 shared
cores httpx's pool cost 2-3 ms of CPU per request (it checks every pooled
connection's socket on each request) and made the router the bottleneck
(docs/benchmarks.md). Every failure becomes an ``HttpError``: a timeout (no
connection from the pool or no byte from the server within the read
timeout) 504, anything else 502; a request is sent once, never retried.
Closing an unfinished answer closes its connection, which is how a client
that left cancels the model server's work. Caller: ``llmops.router.proxy``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp

from llmops.router.exchange import HttpError

SKIP_HEADERS = ("User-Agent", "Accept-Encoding", "Content-Type")


def failure(exc: BaseException) -> HttpError:
    """The answer to a failed call to the model server: 504 on a timeout, 502 otherwise."""
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return HttpError(
            504,
            f"the model server did not answer in time ({type(exc).__name__})",
            "upstream_timeout",
            reason="timeout",
        )
    if isinstance(exc, aiohttp.ClientConnectorError):
        return HttpError(
            502, "cannot connect to the model server", "upstream_error", reason="connect"
        )
    return HttpError(
        502,
        f"the model server broke the connection ({type(exc).__name__})",
        "upstream_error",
        reason="protocol",
    )


FAILURES = (aiohttp.ClientError, asyncio.TimeoutError)


@dataclass
class Answer:
    """The model server's answer, its status line and headers read, its body not yet."""

    response: aiohttp.ClientResponse

    @property
    def status(self) -> int:
        return self.response.status

    def header(self, name: str) -> str | None:
        return self.response.headers.get(name)

    async def read(self) -> bytes:
        try:
            return await self.response.read()
        except FAILURES as exc:
            raise failure(exc) from exc

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as the server sends it; a failure midway raises ``HttpError``."""
        try:
            async for chunk in self.response.content.iter_any():
                yield chunk
        except FAILURES as exc:
            raise failure(exc) from exc

    def close(self) -> None:
        """Release a finished answer's connection to the pool; close an unfinished one's."""
        if self.response.content.at_eof():
            self.response.release()
        else:
            self.response.close()


class Client:
    def __init__(
        self, base: str, *, connect_timeout: float, read_timeout: float, max_connections: int
    ) -> None:
        self.base = base.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_read=read_timeout
        )
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def open(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.max_connections, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self.timeout,
            auto_decompress=False,
            trust_env=False,
            skip_auto_headers=SKIP_HEADERS,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(
        self, method: str, path: str, headers: list[tuple[str, str]], body: bytes | None = None
    ) -> Answer:
        """Send once; the answer's headers are read, its body is not."""
        assert self._session is not None, "the router's lifespan opens the client"
        try:
            response = await self._session.request(
                method, self.base + path, data=body, headers=headers, allow_redirects=False
            )
        except FAILURES as exc:
            raise failure(exc) from exc
        return Answer(response)
