"""The callback deliverer as the worker runs it beside the task loop."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from kling_gateway.callbacks.delivery import CallbackDeliverer
from kling_gateway.callbacks.secrets import secret_store_for
from kling_gateway.domain.links import Links
from kling_gateway.infra.notify import CALLBACK_WAKEUP, TaskEvents, relay
from kling_gateway.storage.base import Store
from kling_gateway.storage.upstream_keys import Sealer


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    """What the deliverer needs of the settings (the composition root fills it in)."""

    retry_schedule: tuple[float, ...]
    timeout: float
    allow_private: bool
    idle_poll_seconds: float
    files_url: str  # what the stored links in bodies are resolved against (domain/links.py)


async def run_deliverer(
    config: DeliveryConfig,
    store: Store,
    sealer: Sealer,
    events: TaskEvents,
    worker_id: str,
    stop: asyncio.Event,
) -> None:
    """Deliver due callbacks until ``stop`` is set, woken when the worker enqueues one."""
    wake = asyncio.Event()
    relays = [
        asyncio.create_task(relay(events, CALLBACK_WAKEUP, wake)),
        asyncio.create_task(_set_on(stop, wake)),
    ]
    try:
        await _deliver(config, store, sealer, worker_id, stop, wake)
    finally:
        for task in relays:
            task.cancel()


async def _set_on(stop: asyncio.Event, wake: asyncio.Event) -> None:
    await stop.wait()
    wake.set()


async def _deliver(
    config: DeliveryConfig,
    store: Store,
    sealer: Sealer,
    worker_id: str,
    stop: asyncio.Event,
    wake: asyncio.Event,
) -> None:
    async with CallbackDeliverer(
        store,
        secret_store_for(store, sealer),
        schedule=config.retry_schedule,
        timeout=config.timeout,
        allow_private=config.allow_private,
        worker_id=worker_id,
        links=Links(config.files_url),
    ) as deliverer:
        await deliverer.run(stop, config.idle_poll_seconds, wake)
