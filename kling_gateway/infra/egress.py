"""Server-side request forgery guard: callbacks, image fetches and result downloads.

A callback URL is checked when the task is created and again at delivery, on the address
actually connected to, so a DNS answer that changes in between (rebinding) cannot reach a
private network. ``GuardedBackend`` does that for every connection of an httpx client built
with ``GuardedTransport``: it resolves the host once (within ``DNS_TIMEOUT``), refuses unless
every address is public, and connects to the checked address, while the Host header and TLS
SNI stay the URL's name. ``trusted`` origins (host, port) skip the check: the Kling provider
trusts its own ``--kling-base-url`` so that a loopback fake upstream still works.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Origin = tuple[str, int]

# A resolver that hangs (or a thread pool that is full) must not hold a create or a delivery:
# getaddrinfo runs in the loop's default executor, and its wait is bounded here.
DNS_TIMEOUT = 5.0


class UnsafeTarget(ValueError):
    """The URL may not be called: wrong scheme, or it reaches a non-public address."""


# IETF protocol assignments: not covered by is_private on every Python version.
_IETF_V4 = ipaddress.ip_network("192.0.0.0/24")


def is_public_address(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None:  # an IPv4 address in IPv6 clothing is judged as itself
            return is_public_address(embedded)
        if address.is_site_local:
            return False
    elif address in _IETF_V4:
        return False
    # is_global also rules out shared address space (100.64.0.0/10, home of some cloud
    # metadata services), 6to4 and site-local ranges that the named checks let through.
    return address.is_global and not (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_unspecified
        or address.is_reserved
    )


def check_address(address: str, allow_private: bool) -> None:
    if allow_private:
        return
    if not is_public_address(ipaddress.ip_address(address.split("%", 1)[0])):
        raise UnsafeTarget(f"callback address {address} is not public")


async def resolve(host: str, port: int, *, timeout: float | None = None) -> list[str]:
    """The addresses of ``host``, within ``timeout`` seconds (default ``DNS_TIMEOUT``;
    UnsafeTarget when it passes)."""
    timeout = DNS_TIMEOUT if timeout is None else timeout
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except TimeoutError as exc:
        raise UnsafeTarget(f"callback host {host} did not resolve within {timeout:g} s") from exc
    except (socket.gaierror, UnicodeError) as exc:  # UnicodeError: an invalid IDNA label
        raise UnsafeTarget(f"callback host {host} does not resolve") from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def check_callback_url(url: str, allow_private: bool) -> None:
    """Refuse ``url`` unless it is http(s) and every address its host resolves to is public."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise UnsafeTarget(f"callback URL is malformed: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeTarget("callback URL must be http or https")
    if allow_private:
        return
    for address in await resolve(parts.hostname, port):
        check_address(address, allow_private)


def origin_of(url: str) -> Origin:
    """``(host, port)`` of an http(s) URL, the host lower-cased (what ``trusted`` holds)."""
    parts = httpx.URL(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.host.lower(), port


# -- the guarded connection ----------------------------------------------------------------


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolve once, check every address, connect to a checked address (never the name)."""

    def __init__(
        self,
        allow_private: bool,
        inner: httpcore.AsyncNetworkBackend | None = None,
        *,
        trusted: Iterable[Origin] = (),
    ) -> None:
        self._allow_private = allow_private
        self._inner = inner if inner is not None else httpcore.AnyIOBackend()
        self._trusted = frozenset((host.lower(), port) for host, port in trusted)

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if (host.lower(), port) in self._trusted:
            return await self._inner.connect_tcp(
                host,
                port,
                timeout=timeout,
                local_address=local_address,
                socket_options=socket_options,
            )
        addresses = await self._resolve(host, port, timeout)
        for address in addresses:
            check_address(address, self._allow_private)
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None  # resolve() never returns an empty list
        raise failure

    async def _resolve(self, host: str, port: int, timeout: float | None) -> list[str]:
        try:
            async with asyncio.timeout(timeout):
                addresses = await resolve(host, port)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from exc
        except UnsafeTarget as exc:
            # A name that does not resolve (now) is a connection failure, retried later.
            raise httpcore.ConnectError(str(exc)) from exc
        if not addresses:
            raise httpcore.ConnectError(f"callback host {host} has no address")
        return addresses

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise UnsafeTarget("callbacks never use unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """An httpx transport whose every connection goes through ``GuardedBackend``.

    No proxies (``trust_env`` off: a proxy would connect on our behalf, unchecked), no retries.
    """

    def __init__(
        self,
        allow_private: bool,
        *,
        backend: httpcore.AsyncNetworkBackend | None = None,
        trusted: Iterable[Origin] = (),
        max_connections: int = 100,
    ) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=max_connections,
            keepalive_expiry=5.0,
            network_backend=GuardedBackend(allow_private, backend, trusted=trusted),
        )
