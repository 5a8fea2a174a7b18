"""Task-change notifications: how a waiting request learns that a task moved.

In one process an ``asyncio.Event`` per waiter is enough. Across processes the Redis
implementation (``kling_gateway.infra.redis``) carries the same calls. A waiter never
depends on a notification alone: it re-reads the store when its wait slice ends, so a lost
message costs latency, never a wrong answer.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import TracebackType
from typing import Protocol

# The channels on which new tasks, and new callback deliveries, are announced to idle workers.
WORKER_WAKEUP = "__worker__"
CALLBACK_WAKEUP = "__callbacks__"
WAKEUPS = frozenset({WORKER_WAKEUP, CALLBACK_WAKEUP})


class Subscription:
    """Interest in one task's changes, registered from creation on: a change published after
    ``subscribe`` returns is never missed, so subscribe first, then read the store.

    Each ``wait`` that is woken re-registers before it returns, so a change published while
    the caller re-reads the store wakes the next ``wait`` at once.
    """

    def __init__(self, owner: LocalTaskEvents, task_id: str) -> None:
        self._owner = owner
        self.task_id = task_id
        self._event = owner._register(task_id)

    async def wait(self, timeout: float) -> bool:
        """Wait for a change since the last wake-up (or since subscribing); True when woken."""
        if not self._event.is_set():
            try:
                async with asyncio.timeout(timeout):
                    await self._event.wait()
            except TimeoutError:
                return False
        self._event = self._owner._register(self.task_id)
        return True

    def close(self) -> None:
        self._owner._discard(self.task_id, self._event)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class TaskEvents(Protocol):
    async def publish(self, task_id: str) -> None:
        """Say that ``task_id`` changed."""
        ...

    def subscribe(self, task_id: str) -> Subscription:
        """Start listening for changes of ``task_id`` (close it, or use it as a context)."""
        ...

    async def wait(self, task_id: str, timeout: float) -> bool:
        """Wait until ``task_id`` changes or ``timeout`` passes; True when it changed."""
        ...

    async def start(self) -> None: ...
    async def aclose(self) -> None: ...


class LocalTaskEvents:
    """Notifications within one process."""

    def __init__(self) -> None:
        self._waiters: defaultdict[str, set[asyncio.Event]] = defaultdict(set)

    @property
    def waiting(self) -> int:
        return sum(len(w) for w in self._waiters.values())

    async def publish(self, task_id: str) -> None:
        self.deliver(task_id)

    def deliver(self, task_id: str) -> None:
        for event in self._waiters.pop(task_id, ()):
            event.set()

    def deliver_all(self) -> None:
        """Wake every waiter: used when notifications may have been lost, so each re-checks."""
        waiters, self._waiters = self._waiters, defaultdict(set)
        for events in waiters.values():
            for event in events:
                event.set()

    def subscribe(self, task_id: str) -> Subscription:
        return Subscription(self, task_id)

    async def wait(self, task_id: str, timeout: float) -> bool:
        with self.subscribe(task_id) as subscription:
            return await subscription.wait(timeout)

    def _register(self, task_id: str) -> asyncio.Event:
        event = asyncio.Event()
        self._waiters[task_id].add(event)
        return event

    def _discard(self, task_id: str, event: asyncio.Event) -> None:
        waiters = self._waiters.get(task_id)
        if waiters is not None:
            waiters.discard(event)
            if not waiters:
                del self._waiters[task_id]

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


async def relay(events: TaskEvents, channel: str, wake: asyncio.Event) -> None:
    """Set ``wake`` whenever ``channel`` is announced; runs until cancelled."""
    while True:
        if await events.wait(channel, 60.0):
            wake.set()
