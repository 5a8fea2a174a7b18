"""The blocking client: drives the shared flows of ``_base`` with ``httpx.Client``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import cast

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


class Client:
    """``Client(base_url, token=...)``: ``client.videos`` and ``client.tasks``.

    ``sleep`` and ``clock`` are hooks for tests (defaults ``time.sleep``, ``time.monotonic``).
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        token: str,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] | None = None,
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
        self._http = httpx.Client(transport=transport, timeout=self._core.timeout)
        self._sleep = sleep or time.sleep
        self.videos: Videos[Record, Iterator[Record]] = Videos(self._core, self)
        self.tasks: Tasks[Record, Iterator[Record]] = Tasks(self._core, self)
        # docs/contract.md §7
        self.motion: Motion[Record, Iterator[Record]] = Motion(self._core, self)
        self.lip_sync: LipSync[Record, Iterator[Record]] = LipSync(self._core, self)
        self.talking_photo: TalkingPhoto[Record, Iterator[Record]] = TalkingPhoto(self._core, self)

    def _run(self, flow: Flow[T]) -> T:
        """Drive a flow to its result, doing its I/O."""
        try:
            reply: Reply = None
            while True:
                reply = self._perform(flow.send(reply))
        except StopIteration as stop:
            return cast(T, stop.value)
        finally:
            flow.close()

    def _paginate(self, pages: Pager) -> Iterator[Record]:
        while (flow := pages.next_page()) is not None:
            yield from self._run(flow)

    def _perform(self, action: Action) -> Reply:
        if not isinstance(action, Send):
            self._sleep(action.seconds)
            return None
        try:
            return self._http.send(action.request)
        except httpx.TransportError as exc:
            return exc

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
