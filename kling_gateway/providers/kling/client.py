"""A thin async client of the official Kling API over one shared ``httpx.AsyncClient``.

Every call has a deadline; every failure is a ``ProviderError`` (transport failures, timeouts
and unreadable bodies are retryable). Answers are read as a stream and capped
(``max_response_bytes``): an upstream (or a proxy before it) that answers hundreds of
megabytes costs the worker that much in memory otherwise. The ``{code, message, request_id,
data}`` envelope is unwrapped here, so callers see only ``data``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from kling_gateway.domain.outcomes import ProviderError
from kling_gateway.providers.kling.auth import KlingTokenSource
from kling_gateway.providers.kling.mapping import (
    KINDS,
    error_from_response,
    is_auth_error,
    is_not_found,
)

log = logging.getLogger("kling_gateway.worker.kling")

DEFAULT_BASE_URL = "https://api-singapore.klingai.com"
MAX_PAGE_SIZE = 500
MAX_PAGE_NUM = 1000
# A list page of 500 tasks is some 500 KB; nothing the API answers comes near this.
MAX_RESPONSE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class KlingClientConfig:
    access_key: str
    secret_key: str
    base_url: str = DEFAULT_BASE_URL
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    write_timeout: float = 30.0
    pool_timeout: float = 5.0
    token_refresh_margin: float = 60.0
    # Upstream calls in flight at once; more wait their turn here, not in httpx's pool (whose
    # queue costs time proportional to its length on every request). ``check_connections`` of
    # them are kept for checks (get, list), so a burst of creates never holds up the checks.
    max_connections: int = 16
    check_connections: int = 6
    # The largest answer body read (see the module docstring).
    max_response_bytes: int = MAX_RESPONSE_BYTES

    def timeout(self) -> httpx.Timeout:
        return httpx.Timeout(
            connect=self.connect_timeout,
            read=self.read_timeout,
            write=self.write_timeout,
            pool=self.pool_timeout,
        )


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    code: int | None
    message: str | None
    data: Any
    retry_after: str | None


class KlingClient:
    """Calls of the official API: create, get, get by external id, list."""

    def __init__(
        self,
        config: KlingClientConfig,
        *,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._owns_http = http is None
        limits = httpx.Limits(
            max_connections=config.max_connections,
            max_keepalive_connections=config.max_connections,
        )
        self._http = (
            http if http is not None else httpx.AsyncClient(timeout=config.timeout(), limits=limits)
        )
        if not 0 < config.check_connections < config.max_connections:
            raise ValueError("need 0 < check_connections < max_connections")
        self._check_lane = asyncio.Semaphore(config.check_connections)
        self._submit_lane = asyncio.Semaphore(config.max_connections - config.check_connections)
        self._tokens = KlingTokenSource(
            config.access_key,
            config.secret_key,
            clock=clock,
            refresh_margin=config.token_refresh_margin,
        )

    @property
    def http(self) -> httpx.AsyncClient:
        """The shared HTTP client (also used to download results)."""
        return self._http

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    # --- the API -------------------------------------------------------------------------

    async def create(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /v1/videos/{kind}``; returns the created task's ``data``."""
        answer = await self._call(self._submit_lane, "POST", _path(kind), json_body=body)
        return _task_data(self._checked(answer))

    async def call(self, path: str, body: dict[str, Any]) -> Any:
        """``POST path`` of a synchronous call (identify-face, tts); its ``data``."""
        answer = await self._call(self._submit_lane, "POST", path, json_body=body)
        return self._checked(answer)

    async def costs(self, start_ms: int, end_ms: int) -> list[dict[str, Any]]:
        """``GET /account/costs``: the account's resource packs (free, QPS <= 1)."""
        params = {"start_time": str(start_ms), "end_time": str(end_ms)}
        answer = await self._call(self._check_lane, "GET", "/account/costs", params=params)
        data = self._checked(answer)
        infos = data.get("resource_pack_subscribe_infos") if isinstance(data, dict) else None
        return [info for info in infos or [] if isinstance(info, dict)]

    async def get(self, kind: str, task_id: str) -> dict[str, Any]:
        """``GET /v1/videos/{kind}/{task_id}``."""
        answer = await self._call(self._check_lane, "GET", f"{_path(kind)}/{_segment(task_id)}")
        return _task_data(self._checked(answer))

    async def get_by_external_id(self, kind: str, external_task_id: str) -> dict[str, Any] | None:
        """The task created with ``external_task_id``, or None when the upstream has none.

        Uses the path form ``GET /v1/videos/{kind}/{external_task_id}`` of the reference.
        """
        path = f"{_path(kind)}/{_segment(external_task_id)}"
        answer = await self._call(self._submit_lane, "GET", path)
        if answer.code != 0 and is_not_found(answer.status, answer.code):
            return None
        return _task_data(self._checked(answer))

    async def list(self, kind: str, page_num: int = 1, page_size: int = 30) -> list[dict[str, Any]]:
        """``GET /v1/videos/{kind}?pageNum=&pageSize=``: one page of tasks, newest first."""
        if not 1 <= page_num <= MAX_PAGE_NUM or not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"pageNum 1..{MAX_PAGE_NUM}, pageSize 1..{MAX_PAGE_SIZE}")
        params = {"pageNum": str(page_num), "pageSize": str(page_size)}
        answer = await self._call(self._check_lane, "GET", _path(kind), params=params)
        data = self._checked(answer)
        if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
            raise ProviderError(
                "upstream list data is not an array of tasks",
                code="upstream_bad_response",
                retryable=True,
            )
        return data

    # --- plumbing ------------------------------------------------------------------------

    async def _call(
        self,
        lane: asyncio.Semaphore,
        method: str,
        path: str,
        *,
        json_body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> _Answer:
        async with lane:
            answer = await self._send(method, path, json_body, params)
            if _refused_us(answer):
                self._tokens.invalidate()
                answer = await self._send(method, path, json_body, params)
        if _refused_us(answer):
            log.error(
                "the Kling API refused our credentials (HTTP %s, code %s): %s; "
                "check kling_access_key and kling_secret_key",
                answer.status,
                answer.code,
                answer.message or "no message",
            )
        return answer

    async def _send(
        self,
        method: str,
        path: str,
        json_body: dict[str, Any] | None,
        params: dict[str, str] | None,
    ) -> _Answer:
        url = self._config.base_url.rstrip("/") + path
        headers = {"Authorization": self._tokens.authorization(), "Accept": "application/json"}
        try:
            async with self._http.stream(
                method,
                url,
                json=json_body,
                params=params,
                headers=headers,
                timeout=self._config.timeout(),
            ) as response:
                body = await _read_capped(response, self._config.max_response_bytes)
        except httpx.TimeoutException as exc:
            raise ProviderError(
                f"the upstream did not answer {method} {path} in time",
                code="upstream_timeout",
                retryable=True,
            ) from exc
        except httpx.HTTPError as exc:
            raise ProviderError(
                f"the upstream could not be reached: {type(exc).__name__}",
                code="upstream_unreachable",
                retryable=True,
            ) from exc
        except httpx.InvalidURL as exc:
            raise ProviderError(
                f"the upstream URL is not valid: {exc}", code="upstream_misconfigured"
            ) from exc
        return _parse(response, body)

    def _checked(self, answer: _Answer) -> Any:
        if answer.code != 0 or answer.status >= 400:
            raise error_from_response(
                answer.status, answer.code, answer.message, retry_after=answer.retry_after
            )
        return answer.data


def _refused_us(answer: _Answer) -> bool:
    return answer.status == 401 or is_auth_error(answer.code)


def _path(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown kling kind {kind!r}")
    return f"/v1/videos/{kind}"


def _segment(value: str) -> str:
    if not value or "/" in value or value in (".", ".."):
        raise ValueError(f"not a valid task id: {value!r}")
    return urllib.parse.quote(value, safe="")


async def _read_capped(response: httpx.Response, limit: int) -> bytes:
    """The body of ``response``, or a retryable ProviderError once it passes ``limit`` bytes
    (announced or counted while streaming; counted after decoding, so a gzip bomb stops too)."""
    length = response.headers.get("content-length", "").strip()
    if length.isdigit() and int(length) > limit:
        raise _too_large(response, limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise _too_large(response, limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(response: httpx.Response, limit: int) -> ProviderError:
    # Retryable: a misbehaving proxy or a passing upstream fault; the task's deadline bounds
    # how long that is tried, and memory stays bounded by the cap meanwhile.
    return ProviderError(
        f"the upstream answered HTTP {response.status_code} with a body over {limit} bytes",
        code="upstream_bad_response",
        retryable=True,
    )


def _bad_body(response: httpx.Response, what: str) -> ProviderError:
    return ProviderError(
        f"the upstream answered HTTP {response.status_code} with {what}",
        code="upstream_bad_response",
        retryable=True,
    )


def _parse(response: httpx.Response, body: bytes) -> _Answer:
    retry_after = response.headers.get("retry-after")
    try:
        envelope = json.loads(body)
    except ValueError as exc:
        if response.status_code >= 400:
            # A proxy's HTML error page: classify by the HTTP status alone.
            return _Answer(response.status_code, None, None, None, retry_after)
        raise _bad_body(response, "a body that is not JSON") from exc
    code = envelope.get("code") if isinstance(envelope, dict) else None
    if not isinstance(envelope, dict) or not isinstance(code, int) or isinstance(code, bool):
        if response.status_code >= 400:
            return _Answer(response.status_code, None, None, None, retry_after)
        raise _bad_body(response, "JSON that is not the {code, message, data} envelope")
    message = envelope.get("message")
    return _Answer(
        response.status_code,
        code,
        message if isinstance(message, str) else None,
        envelope.get("data"),
        retry_after,
    )


def _task_data(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ProviderError(
            "upstream data is not a task object", code="upstream_bad_response", retryable=True
        )
    return data
