"""The asyncio client: drives the shared flows of ``_base`` with ``httpx.AsyncClient``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, cast

import httpx

from kling_gateway.client._base import (
    DEFAULT_BASE_URL,
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    Action,
    Core,
    Flow,
    Pager,
    Reply,
    Send,
    T,
    Tasks,
    Videos,
)
from kling_gateway.client._kinds import LipSync, Motion, TalkingPhoto
from kling_gateway.client.types import Record

Result = Coroutine[Any, Any, Record]


class AsyncClient:
    """``AsyncClient(base_url, token=...)``: as ``Client``, with awaitable methods and
    ``tasks.list`` an async iterator. ``on_update`` callbacks stay plain functions.

    ``sleep`` and ``clock`` are hooks for tests (defaults ``asyncio.sleep``, ``time.monotonic``).
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        token: str,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._core = Core(
            base_url=base_url,
            token=token,
            timeout=timeout,
            max_retries=max_retries,
            max_batch_size=max_batch_size,
            clock=clock,
        )
        self._http = httpx.AsyncClient(transport=transport, timeout=self._core.timeout)
        self._sleep = sleep or asyncio.sleep
        self.videos: Videos[Result, AsyncIterator[Record]] = Videos(self._core, self)
        self.tasks: Tasks[Result, AsyncIterator[Record]] = Tasks(self._core, self)
        # docs/contract.md §7
        self.motion: Motion[Result, AsyncIterator[Record]] = Motion(self._core, self)
        self.lip_sync: LipSync[Result, AsyncIterator[Record]] = LipSync(self._core, self)
        self.talking_photo: TalkingPhoto[Result, AsyncIterator[Record]] = TalkingPhoto(
            self._core, self
        )

    async def _run(self, flow: Flow[T]) -> T:
        """Drive a flow to its result, doing its I/O."""
        try:
            reply: Reply = None
            while True:
                reply = await self._perform(flow.send(reply))
        except StopIteration as stop:
            return cast(T, stop.value)
        finally:
            flow.close()

    async def _paginate(self, pages: Pager) -> AsyncIterator[Record]:
        while (flow := pages.next_page()) is not None:
            for record in await self._run(flow):
                yield record

    async def _perform(self, action: Action) -> Reply:
        if not isinstance(action, Send):
            await self._sleep(action.seconds)
            return None
        try:
            return await self._http.send(action.request)
        except httpx.TransportError as exc:
            return exc

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
