"""The callback deliverer as the worker runs it beside the task loop."""

from __future__ import annotations

import asyncio

from kling_gateway.callbacks.delivery import CallbackDeliverer
from kling_gateway.callbacks.secrets import secret_store_for
from kling_gateway.infra.notify import CALLBACK_WAKEUP, TaskEvents, relay
from kling_gateway.runtime.settings import Settings
from kling_gateway.storage.base import Store


async def run_deliverer(
    settings: Settings, store: Store, events: TaskEvents, worker_id: str, stop: asyncio.Event
) -> None:
    """Deliver due callbacks until ``stop`` is set, woken when the worker enqueues one."""
    wake = asyncio.Event()
    relays = [
        asyncio.create_task(relay(events, CALLBACK_WAKEUP, wake)),
        asyncio.create_task(_set_on(stop, wake)),
    ]
    try:
        await _deliver(settings, store, worker_id, stop, wake)
    finally:
        for task in relays:
            task.cancel()


async def _set_on(stop: asyncio.Event, wake: asyncio.Event) -> None:
    await stop.wait()
    wake.set()


async def _deliver(
    settings: Settings, store: Store, worker_id: str, stop: asyncio.Event, wake: asyncio.Event
) -> None:
    async with CallbackDeliverer(
        store,
        secret_store_for(store),
        schedule=settings.retry_schedule,
        timeout=settings.callback_timeout,
        allow_private=settings.callback_allow_private,
        worker_id=worker_id,
    ) as deliverer:
        await deliverer.run(stop, settings.idle_poll_seconds, wake)
