"""Composing the element and voice provider of the API (docs/contract.md §6.1): the local one,
or with ``--provider kling`` the upstream accounts' clients (without result downloads: an
asset has no video)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace

from kling_gateway.api.app import Service
from kling_gateway.api.context import AppContext
from kling_gateway.providers.assets import AssetProvider, LocalAssets
from kling_gateway.runtime.settings import Settings
from kling_gateway.storage.base import Store


def build_assets(settings: Settings, store: Store) -> tuple[AssetProvider, Service | None]:
    """The provider and, for ``kling``, the service that loads its accounts at startup."""
    if settings.provider != "kling":
        return LocalAssets(), None
    from kling_gateway.providers.kling.assets import KlingAssets
    from kling_gateway.providers.kling.factory import provider_config
    from kling_gateway.providers.kling.pool import KlingPool
    from kling_gateway.runtime.worker import server_sealer

    config = replace(provider_config(settings), download_results=False)
    pool = KlingPool(config, store=store, sealer=server_sealer(settings))

    async def start(_: AppContext) -> Callable[[], Awaitable[None]]:
        # The implicit account of the old single key pair, stored once (as the worker does).
        await pool.start(
            settings.kling_access_key, settings.kling_secret_key, settings.kling_max_concurrency
        )

        async def stop() -> None:
            return None  # the app's lifespan closes the provider (and the pool with it)

        return stop

    return KlingAssets(pool, store), start
