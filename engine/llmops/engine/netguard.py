"""The address guard: no outbound connection of llmops reaches a link-local or cloud
metadata address, however the address is spelled or resolved.

Role: decide whether an IP address may be connected to (``refusal``), read a
host the way the C library would (``literal``: dotted quads, but also the
legacy forms ``2852039166``, ``0xA9FEA9FE``, ``0251.0376.0251.0376`` and
``169.254.43518`` that ``inet_aton`` and so curl, git and ssh accept, and
IPv6 with IPv4-mapped, IPv4-compatible, 6to4 and NAT64 forms unwrapped to
the IPv4 address inside), and check the addresses a name resolves to
(``resolve``) right before a connection, so a DNS name pointing at
169.254.169.254 is refused like the address itself. Refused: link-local
(169.254.0.0/16, fe80::/10, which holds every cloud's metadata service),
the metadata addresses outside it (``METADATA``), multicast, unspecified,
reserved and, when the caller says so, loopback. Input: a host (and port),
or an address. Output: the addresses (``BlockedAddress`` naming the host,
the address and the rule otherwise). Callers: ``llmops.engine.source.gitcli``
(URLs when parsed, names right before git connects, then pinned for curl) and
``GuardedTransport`` users (``llmops.engine.actuate.argocd``,
``llmops.engine.service.experiments``, the API's model-server probe), whose
check runs at connect time.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import anyio.to_thread
import httpcore
import httpx

from llmops.engine.errors import InvalidInput

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[..., Sequence[tuple[Any, ...]]]

METADATA = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254"))
"""Cloud metadata endpoints (AWS, ECS, Alibaba, AWS IPv6); most are link-local anyway."""
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NUMERIC_V4 = re.compile(r"(?i)^(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}$")


class BlockedAddress(InvalidInput):
    """A host that is, or resolves to, an address llmops never connects to."""


def unwrap(address: Address) -> Address:
    """The IPv4 address inside an IPv4-mapped, -compatible, 6to4 or NAT64 IPv6 address."""
    if isinstance(address, ipaddress.IPv4Address):
        return address
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or (int(address) >> 32 == 0 and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)  # NAT64, ::a.b.c.d
    return address


def refusal(address: Address, *, allow_loopback: bool = True) -> str | None:
    """Why ``address`` may not be connected to, or None."""
    inner = unwrap(address)  # an IPv6 wrapping of an IPv4 address is judged as that
    if inner in METADATA:
        return "a cloud metadata address"
    if inner.is_link_local:
        return "link-local (where cloud metadata services live)"
    if inner.is_loopback:
        return None if allow_loopback else "loopback"
    if inner.is_multicast or inner.is_unspecified or inner.is_reserved:
        return "multicast, unspecified or reserved"
    return None


def literal(host: str) -> Address | None:
    """``host`` as the address the C library would read it as, or None for a name."""
    bare = host.strip().removeprefix("[").removesuffix("]")
    try:
        return ipaddress.ip_address(bare.split("%", 1)[0])
    except ValueError:
        pass
    if _NUMERIC_V4.match(bare):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(bare))
        except OSError:
            return None
    return None


def check_literal(host: str, *, allow_loopback: bool = True) -> Address | None:
    """``literal(host)`` after ``refusal``; ``BlockedAddress`` for a refused address."""
    address = literal(host)
    if address is not None:
        why = refusal(address, allow_loopback=allow_loopback)
        if why is not None:
            raise BlockedAddress(f"host {host[:80]!r} is {address}: {why}; llmops never "
                                 "connects there")
    return address


def resolve(host: str, port: int, *, allow_loopback: bool = True,
            resolver: Resolver = socket.getaddrinfo) -> list[Address]:
    """Every address ``host`` resolves to, each one allowed; ``BlockedAddress`` if any is
    refused, ``OSError`` (``socket.gaierror``) when the name does not resolve."""
    check_literal(host, allow_loopback=allow_loopback)
    found: list[Address] = []
    for *_, sockaddr in resolver(host.strip("[]"), port, type=socket.SOCK_STREAM):
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        why = refusal(address, allow_loopback=allow_loopback)
        if why is not None:
            raise BlockedAddress(f"host {host[:80]!r} resolves to {address}: {why}; "
                                 "llmops never connects there")
        if address not in found:
            found.append(address)
    return found


# --------------------------------------------------------------------------- HTTP clients


class _Backend(httpcore.NetworkBackend):
    """httpcore's sockets, but only to the checked addresses of the host asked for."""

    def __init__(self, allow_loopback: bool, resolver: Resolver) -> None:
        self._inner = httpcore.SyncBackend()
        self._allow_loopback, self._resolver = allow_loopback, resolver

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        try:
            addresses = resolve(host, port, allow_loopback=self._allow_loopback,
                                resolver=self._resolver)
        except OSError as err:
            raise httpcore.ConnectError(f"cannot resolve {host}: {err}") from err
        except BlockedAddress as err:
            raise httpcore.ConnectError(str(err)) from err
        failure: Exception = httpcore.ConnectError(f"{host} has no address")
        for address in addresses:  # pinned: the checked address is the one connected to
            try:
                return self._inner.connect_tcp(str(address), port, timeout, local_address,
                                               socket_options)
            except httpcore.ConnectError as err:
                failure = err
        raise failure

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None
                            ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("unix sockets are not used by guarded clients")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _AsyncBackend(httpcore.AsyncNetworkBackend):
    """The asynchronous ``_Backend`` (name resolution in a worker thread)."""

    def __init__(self, allow_loopback: bool, resolver: Resolver) -> None:
        self._sync = _Backend(allow_loopback, resolver)
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None
                          ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await anyio.to_thread.run_sync(functools.partial(
                resolve, host, port, allow_loopback=self._sync._allow_loopback,
                resolver=self._sync._resolver))
        except OSError as err:
            raise httpcore.ConnectError(f"cannot resolve {host}: {err}") from err
        except BlockedAddress as err:
            raise httpcore.ConnectError(str(err)) from err
        failure: Exception = httpcore.ConnectError(f"{host} has no address")
        for address in addresses:
            try:
                return await self._inner.connect_tcp(str(address), port, timeout,
                                                     local_address, socket_options)
            except httpcore.ConnectError as err:
                failure = err
        raise failure

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None
                                  ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not used by guarded clients")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def transport(*, verify: bool = True, allow_loopback: bool = True,
              resolver: Resolver = socket.getaddrinfo) -> httpx.HTTPTransport:
    """An httpx transport whose every connection goes to an address checked at connect
    time (no proxy: a proxy would connect to addresses this process never sees)."""
    guarded = httpx.HTTPTransport(verify=verify, trust_env=False)
    guarded._pool = httpcore.ConnectionPool(  # the only way to give httpx a backend
        ssl_context=httpx.create_ssl_context(verify=verify),
        network_backend=_Backend(allow_loopback, resolver))
    return guarded


def async_transport(*, verify: bool = True, allow_loopback: bool = True,
                    resolver: Resolver = socket.getaddrinfo) -> httpx.AsyncHTTPTransport:
    """The asynchronous ``transport``."""
    guarded = httpx.AsyncHTTPTransport(verify=verify, trust_env=False)
    guarded._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(verify=verify),
        network_backend=_AsyncBackend(allow_loopback, resolver))
    return guarded
