"""Server-side request forgery guard for callback URLs.

A callback URL is checked when the task is created and again at delivery, on the address
actually connected to (see ``delivery.py``), so a DNS answer that changes in between
(rebinding) cannot reach a private network.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


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


async def resolve(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
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
