"""Composing the worker: its provider and config from settings, and the callback deliverer
beside it, run inside `serve` or on its own (the worker package itself reads no settings)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from kling_gateway.callbacks.runner import DeliveryConfig, run_deliverer
from kling_gateway.domain.transitions import Policy
from kling_gateway.infra.files import VideoFiles
from kling_gateway.infra.notify import TaskEvents
from kling_gateway.providers.base import Provider
from kling_gateway.runtime.settings import Settings
from kling_gateway.storage.base import Store
from kling_gateway.storage.upstream_keys import Sealer
from kling_gateway.worker.loop import Worker, WorkerConfig
from kling_gateway.worker.retention import run_retention

log = logging.getLogger("kling_gateway.worker")

Stop = Callable[[], Awaitable[None]]


def video_files(settings: Settings) -> VideoFiles:
    """``file://DATA_DIR/videos`` (the runtime passes the configured store instead)."""
    return VideoFiles(settings.videos_dir, settings.resolved_files_url)


def server_sealer(settings: Settings) -> Sealer:
    """The box of the server key (``--secret-key``/KLING_GATEWAY_SECRET_KEY, else
    DATA_DIR/secret.key): it seals the accounts' secret keys, as it seals webhook secrets."""
    from kling_gateway.storage.crypto import load_server_key

    # getattr: the setting arrives with the storage-hardening work; until then the key file.
    return load_server_key(str(getattr(settings, "secret_key", "") or ""), settings.data_dir)


def build_provider(settings: Settings, store: Store, files: VideoFiles | None = None) -> Provider:
    files = files or video_files(settings)
    if settings.provider == "kling":
        from kling_gateway.providers.kling.factory import kling_pool

        return kling_pool(settings, files, store, server_sealer(settings))
    from kling_gateway.providers.local.provider import LocalProvider

    return LocalProvider(
        files=files,
        store=store,
        delay=settings.local_delay,
        render=settings.local_render,
        max_side=settings.local_max_side or None,
        image_max_bytes=settings.image_max_bytes,
        fetch_timeout=min(settings.provider_timeout, 30.0),
        allow_private=settings.callback_allow_private,
        render_threads=settings.local_render_threads,
    )


def worker_config(settings: Settings) -> WorkerConfig:
    return WorkerConfig(
        concurrency=settings.worker_concurrency,
        lease_seconds=settings.lease_seconds,
        idle_poll_seconds=settings.idle_poll_seconds,
        call_timeout=settings.provider_timeout,
        policy=Policy(
            check_interval=settings.check_interval,
            check_max_interval=settings.check_max_interval,
            deadline_seconds=settings.task_deadline_seconds,
            prices=settings.price_table,
        ),
    )


async def start_worker(
    settings: Settings, store: Store, events: TaskEvents, files: VideoFiles | None = None
) -> Stop:
    """Start the task worker, the callback deliverer and (with ``--retention-days``) the
    retention sweep; return how to stop them."""
    files = files or video_files(settings)
    provider = build_provider(settings, store, files)
    claim = None
    if settings.provider == "kling":
        from kling_gateway.providers.kling.pool import KlingPool, claim_pooled

        assert isinstance(provider, KlingPool)
        await provider.start(
            settings.kling_access_key, settings.kling_secret_key, settings.kling_max_concurrency
        )
        claim = claim_pooled
    worker = Worker(store, provider, events, worker_config(settings), claim=claim)
    loops = [asyncio.create_task(worker.run(), name="worker")]
    deliverer_stop = asyncio.Event()
    loops.append(
        asyncio.create_task(
            run_deliverer(
                delivery_config(settings), store, events, worker.worker_id, deliverer_stop
            )
        )
    )
    if settings.retention_days > 0:
        sweep = run_retention(
            store, files, settings.retention_days, settings.retention_sweep_seconds, deliverer_stop
        )
        loops.append(asyncio.create_task(sweep, name="retention"))
    log.info("worker %s started with the %s provider", worker.worker_id, provider.name)

    async def stop() -> None:
        await worker.stop()
        deliverer_stop.set()
        await asyncio.gather(*loops, return_exceptions=True)
        await provider.aclose()

    return stop


def delivery_config(settings: Settings) -> DeliveryConfig:
    return DeliveryConfig(
        retry_schedule=settings.retry_schedule,
        timeout=settings.callback_timeout,
        allow_private=settings.callback_allow_private,
        idle_poll_seconds=settings.idle_poll_seconds,
    )
