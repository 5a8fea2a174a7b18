"""The callback deliverer as the worker runs it beside the task loop."""

from __future__ import annotations

import asyncio

from kling_gateway.callbacks.delivery import CallbackDeliverer
from kling_gateway.callbacks.secrets import secret_store_for
from kling_gateway.settings import Settings
from kling_gateway.store.base import Store


async def run_deliverer(
    settings: Settings, store: Store, worker_id: str, stop: asyncio.Event
) -> None:
    """Deliver due callbacks until ``stop`` is set."""
    async with CallbackDeliverer(
        store,
        secret_store_for(store),
        schedule=settings.retry_schedule,
        timeout=settings.callback_timeout,
        allow_private=settings.callback_allow_private,
        worker_id=worker_id,
    ) as deliverer:
        await deliverer.run(stop, settings.idle_poll_seconds)
