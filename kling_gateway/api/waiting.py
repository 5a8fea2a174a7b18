"""Waiting for a task to finish, woken by task notifications rather than a sleep loop.

Every waiting request (a blocking create, a long-poll ``wait``, an events stream) is held by
``Waiters``, which ends the wait at once when the client disconnects (it watches for
``http.disconnect``) or when the server shuts down (the request is then answered 503).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from kling_gateway.api.asgi import Receive
from kling_gateway.infra.notify import TaskEvents
from kling_gateway.protocol.errors import ServiceUnavailable
from kling_gateway.storage.base import Store

T = TypeVar("T")
OnRead = Callable[[bytes], Awaitable[None]]

# A waiter re-reads the store at least this often, so a lost notification (or a worker in
# another process with no shared notifier) costs latency, never a wrong answer.
RECHECK_SECONDS = 2.0
_FINISHED_AT = b',"finished_at":'
SHUTDOWN_RETRY_AFTER = 5


class ClientGone(Exception):
    """The client disconnected while its request waited: there is nobody to answer."""


def shutting_down() -> ServiceUnavailable:
    return ServiceUnavailable(
        "the gateway is shutting down; retry shortly", retry_after=SHUTDOWN_RETRY_AFTER
    )


class Waiters:
    """The waiting requests of one app: how many there are, and their end at shutdown."""

    def __init__(self) -> None:
        self.active = 0  # requests waiting now (blocking creates, long-polls)
        self.streams = 0  # open events streams
        self._closing = asyncio.Event()

    @property
    def closing(self) -> bool:
        return self._closing.is_set()

    def close(self) -> None:
        """Shut down: every waiting request ends now, and no new one starts to wait."""
        self._closing.set()

    async def closed(self) -> None:
        await self._closing.wait()

    async def hold(self, receive: Receive | None, wait: Coroutine[Any, Any, T]) -> T:
        """``wait``'s result; ``ClientGone`` when the client leaves first, 503 at shutdown.

        ``receive`` must have delivered the whole request body already: what it gives next
        is ``http.disconnect``. None where the request's transport is someone else's (the MCP
        SDK's, which cancels the wait itself when its client leaves).
        """
        if self.closing:
            wait.close()
            raise shutting_down()
        work = asyncio.ensure_future(wait)
        gone = asyncio.ensure_future(
            _disconnected(receive) if receive is not None else asyncio.Event().wait()
        )
        closing = asyncio.ensure_future(self._closing.wait())
        self.active += 1
        try:
            await asyncio.wait((work, gone, closing), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.active -= 1
            for task in (work, gone, closing):
                task.cancel()
            await asyncio.gather(work, gone, closing, return_exceptions=True)
        if work.done() and not work.cancelled():
            return work.result()
        if gone.done() and not gone.cancelled():
            raise ClientGone()
        raise shutting_down()

    async def unless_closing(self, wait: Coroutine[Any, Any, object]) -> bool:
        """Run ``wait`` to its end, or until shutdown; False when the server shuts down."""
        if self.closing:
            wait.close()
            return False
        work = asyncio.ensure_future(wait)
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            await asyncio.wait((work, closing), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (work, closing):
                task.cancel()
            await asyncio.gather(work, closing, return_exceptions=True)
        return not self.closing


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass  # a request with its body read has nothing else to say


def is_finished(record: bytes) -> bool:
    """Whether a stored record is of a finished task, without decoding it.

    ``finished_at`` is the record's last key and only finished tasks have it at the top level.
    The same key nested inside ``request`` is followed by further keys (so by a quote); a
    string value cannot hold it at all, since JSON escapes its quotes.
    """
    at = record.rfind(_FINISHED_AT)
    return at != -1 and record.find(b'"', at + len(_FINISHED_AT)) == -1


async def wait_until_finished(
    store: Store,
    events: TaskEvents,
    user_id: str,
    task_id: str,
    timeout: float,
    on_read: OnRead | None = None,
) -> bytes | None:
    """The task's record once finished, or as it stands when ``timeout`` runs out; None for a
    missing (or foreign) task. ``on_read`` is told each unfinished record read on the way
    (at least every ``RECHECK_SECONDS``): the MCP wait reports progress from it.

    Subscribes before it reads: a task that finishes between the read and the wait still
    wakes it (reading first would lose that notification until the next re-read).
    """
    deadline = time.monotonic() + timeout
    with events.subscribe(task_id) as changes:
        record = await store.get_task_record(user_id, task_id)
        while record is not None and not is_finished(record):
            if on_read is not None:
                await on_read(record)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            await changes.wait(min(remaining, RECHECK_SECONDS))
            record = await store.get_task_record(user_id, task_id)
    return record
