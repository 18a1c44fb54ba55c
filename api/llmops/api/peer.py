"""The socket peer, pinned before any forwarded header is read, and the uvicorn settings
that keep it so.

Role: the trusted-proxy check (``llmops.api.auth``) must look at the address
that actually opened the connection, never at an ``X-Forwarded-For`` value.
uvicorn's ``--proxy-headers`` (on by default, trusting 127.0.0.1) rewrites
``scope["client"]`` to the forwarded address before the app runs, which made
signed requests from a trusted proxy fail (the forwarded client is not a
proxy) and let a local process choose the address the check looked at. So
uvicorn is started with ``proxy_headers=False`` (``server_config``) and the
app's outermost layer, ``PinPeer``, records the socket peer under
``PEER_KEY`` in the scope and only then applies uvicorn's own
``ProxyHeadersMiddleware``, trusting the configured ``api.trusted_proxies``
only, so ``request.client`` and the access log still show the forwarded
client. Input: the ASGI scope; the settings. Output: ``peer_host(scope)``,
the socket peer's host (``None`` when unknown: never trusted). Callers:
``llmops.api.app.create_app`` (the middleware), ``llmops.api.auth`` (the
check), ``llmops serve`` and ``llmops up`` (``server_config``).
"""

from __future__ import annotations

from typing import Any, cast

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from llmops.engine.settings import ApiSettings

PEER_KEY = "llmops.peer"
"""Scope key of the socket peer ``(host, port)``, set before any header is believed."""


class PinPeer:
    """Pin the socket peer, then let the configured proxies' forwarded headers through."""

    def __init__(self, app: ASGIApp, *, trusted_proxies: list[str]) -> None:
        self.app = app
        # an empty list trusts no one: X-Forwarded-For is then never read (nor parsed)
        self.forwarded = (cast(ASGIApp, ProxyHeadersMiddleware(
            app, trusted_hosts=list(trusted_proxies))) if trusted_proxies else app)  # type: ignore[arg-type]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        scope[PEER_KEY] = scope.get("client")
        await self.forwarded(scope, receive, send)


def peer_host(scope: Scope) -> str | None:
    """The host of the socket peer pinned by ``PinPeer``; ``None`` when not pinned."""
    pinned = scope.get(PEER_KEY)
    return str(pinned[0]) if pinned else None


def server_config(app: ASGIApp | str, api: ApiSettings, *, host: str, port: int,
                  **options: Any) -> uvicorn.Config:
    """uvicorn's settings for ``app`` (or its import string, as several workers need): no
    client rewriting by uvicorn (``PinPeer`` does it, after pinning), ``forwarded_allow_ips``
    the configured proxies only, no server header."""
    return uvicorn.Config(app, host=host, port=port, proxy_headers=False,
                          forwarded_allow_ips=list(api.trusted_proxies),
                          server_header=False, log_config=None, **options)
