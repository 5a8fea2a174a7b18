"""A small, capped HTTP download: the local provider's way of getting a request's images.

The URLs come from clients, so nothing about the answer is trusted: the size is capped before
(``Content-Length``) and while (counted bytes) reading, the whole fetch (redirects included)
runs under one deadline so a server dripping bytes cannot hold a worker, and redirects are
followed by hand so that every hop is checked to stay on http or https.

Where the client may connect is the client's business: the local provider gives it the
egress guard's transport (``egress.GuardedTransport``), whose refusal of a non-public address
(``UnsafeTarget``, raised while connecting, so on every hop) ends up here as a FetchError like
any other.
"""

from __future__ import annotations

import asyncio

import httpx

from kling_gateway.infra.egress import UnsafeTarget

MAX_REDIRECTS = 5
_SCHEMES = frozenset({"http", "https"})


class FetchError(Exception):
    """The download failed; the message says why in words fit for a task's error."""


async def fetch_bytes(
    client: httpx.AsyncClient, url: str, *, max_bytes: int, timeout: float
) -> bytes:
    """The body of a GET of ``url``: at most ``max_bytes`` bytes within ``timeout`` seconds.

    Follows up to ``MAX_REDIRECTS`` redirects, each to an http(s) URL only. Raises FetchError
    for an error status, a body over the cap, a timeout, a bad URL, an address the client's
    transport refuses (``UnsafeTarget``) or a transport failure.
    """
    try:
        async with asyncio.timeout(timeout):
            return await _follow(client, url, max_bytes=max_bytes, timeout=timeout)
    except (TimeoutError, httpx.TimeoutException) as exc:
        raise FetchError(f"timed out after {timeout:g} s") from exc
    except UnsafeTarget as exc:
        # The guard's words are about callbacks; the address they name is what matters here.
        raise FetchError(f"refused: {str(exc).removeprefix('callback ')}") from exc
    except httpx.InvalidURL as exc:
        raise FetchError(f"invalid URL: {exc}") from exc
    except httpx.HTTPError as exc:
        raise FetchError(f"request failed: {_describe(exc)}") from exc


async def _follow(client: httpx.AsyncClient, url: str, *, max_bytes: int, timeout: float) -> bytes:
    current = _checked(httpx.URL(url))
    for _ in range(MAX_REDIRECTS + 1):
        # follow_redirects=False even if the client was built to follow: we check each hop.
        request = client.build_request("GET", current, timeout=timeout)
        response = await client.send(request, stream=True, follow_redirects=False)
        try:
            if response.is_redirect:
                current = _redirect_target(response)
                continue
            _check_response(response, max_bytes)
            return await _read_capped(response, max_bytes)
        finally:
            await response.aclose()
    raise FetchError(f"more than {MAX_REDIRECTS} redirects")


def _checked(url: httpx.URL) -> httpx.URL:
    if url.scheme not in _SCHEMES:
        raise FetchError(f"refusing a non-http(s) URL (scheme {url.scheme or 'missing'!r})")
    if not url.host:
        raise FetchError("the URL has no host")
    return url


def _redirect_target(response: httpx.Response) -> httpx.URL:
    location = response.headers.get("location", "")
    # Relative locations are resolved against the URL that answered.
    return _checked(response.url.join(location))


def _check_response(response: httpx.Response, max_bytes: int) -> None:
    if not response.is_success:
        reason = f" {response.reason_phrase}" if response.reason_phrase else ""
        raise FetchError(f"the server answered HTTP {response.status_code}{reason}")
    length = response.headers.get("content-length", "").strip()
    if length.isdigit() and int(length) > max_bytes:
        raise FetchError(f"it is {int(length)} bytes, over the limit of {max_bytes} bytes")


async def _read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    # Counted after content decoding, so a small gzip bomb is stopped at the cap as well.
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise FetchError(f"it is over the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _describe(exc: httpx.HTTPError) -> str:
    detail = str(exc)
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
