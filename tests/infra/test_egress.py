"""The SSRF guard of callback URLs (``kling_gateway.infra.egress``). No traffic is sent:
only literal addresses and ``localhost`` are resolved (neither asks a DNS server)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from kling_gateway.infra import egress
from kling_gateway.infra.egress import UnsafeTarget, check_address, check_callback_url

REFUSED = {
    "loopback v4": "127.0.0.1",
    "loopback v4 other": "127.8.9.10",
    "loopback v6": "::1",
    "private 10/8": "10.0.0.1",
    "private 172.16/12": "172.16.5.4",
    "private 192.168/16": "192.168.1.1",
    "unique local v6": "fd00::1",
    "link-local metadata": "169.254.169.254",
    "link-local v6": "fe80::1",
    "link-local v6 scoped": "fe80::1%eth0",
    "multicast v4": "224.0.0.1",
    "multicast v6": "ff02::1",
    "unspecified v4": "0.0.0.0",
    "unspecified v6": "::",
    "reserved": "240.0.0.1",
    "broadcast": "255.255.255.255",
    "mapped loopback": "::ffff:127.0.0.1",
    "mapped private": "::ffff:10.0.0.1",
    "mapped metadata": "::ffff:169.254.169.254",
    "documentation v6": "2001:db8::1",
}
PUBLIC = ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("address", REFUSED.values(), ids=REFUSED.keys())
def test_non_public_addresses_are_refused(address: str) -> None:
    with pytest.raises(UnsafeTarget):
        check_address(address, allow_private=False)


@pytest.mark.parametrize("address", REFUSED.values(), ids=REFUSED.keys())
def test_allow_private_lets_them_through(address: str) -> None:
    check_address(address, allow_private=True)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    check_address(address, allow_private=False)


@pytest.mark.parametrize("address", ["100.100.100.200", "2002:a00:1::1", "fec0::1", "192.0.0.8"])
def test_non_global_ranges_are_refused(address: str) -> None:
    # Shared address space (a cloud metadata service), 6to4 of 10.0.0.1, site-local, IETF.
    with pytest.raises(UnsafeTarget):
        check_address(address, allow_private=False)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:9000/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://0.0.0.0:8000/",
        "https://localhost/hook",
    ],
)
async def test_urls_reaching_private_addresses_are_refused(url: str) -> None:
    with pytest.raises(UnsafeTarget, match="not public"):
        await check_callback_url(url, allow_private=False)


@pytest.mark.parametrize(
    "url", ["ftp://example.com/x", "file:///etc/passwd", "gopher://a/", "http://", "hook"]
)
async def test_only_http_and_https_urls(url: str) -> None:
    for allow_private in (False, True):
        with pytest.raises(UnsafeTarget, match="http or https"):
            await check_callback_url(url, allow_private=allow_private)


async def test_public_literal_url_passes() -> None:
    await check_callback_url("https://8.8.8.8/hook", allow_private=False)


async def test_allow_private_skips_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_dns(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("resolved although private targets are allowed")

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", no_dns)
    await check_callback_url("http://localhost:1/hook", allow_private=True)


async def test_one_private_answer_among_public_ones_is_enough_to_refuse(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def answers(host: str, port: int, **kwargs: Any) -> list[Any]:
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("8.8.8.8", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", port)),
        ]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", answers)
    with pytest.raises(UnsafeTarget, match=r"10\.1\.2\.3"):
        await check_callback_url("https://hooks.example.test/x", allow_private=False)


async def test_a_name_that_does_not_resolve_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    async def nxdomain(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", nxdomain)
    with pytest.raises(UnsafeTarget, match="does not resolve"):
        await check_callback_url("https://nowhere.example.test/x", allow_private=False)


async def test_a_hanging_resolver_is_given_up_on_at_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """getaddrinfo waits in a thread pool: a resolver that never answers (or a full pool)
    must cost a create a bounded wait, then a refusal, never a hang."""
    never = asyncio.Event()

    async def hanging_getaddrinfo(*args: Any, **kwargs: Any) -> Any:
        await never.wait()

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", hanging_getaddrinfo)
    with pytest.raises(UnsafeTarget, match=r"did not resolve within 0\.05 s"):
        await egress.resolve("hook.example", 443, timeout=0.05)
    monkeypatch.setattr(egress, "DNS_TIMEOUT", 0.05)
    with pytest.raises(UnsafeTarget, match="did not resolve"):
        await check_callback_url("https://hook.example/x", allow_private=False)
