"""The element and voice providers (docs/contract.md §6.1): what creates an asset upstream, step
by step, and removes it again. The API drives them (an asset is not a task: nothing is rendered
or billed), the store keeps the asset between steps.

``advance`` is idempotent per asset id, as a task's submit is: an asset without an upstream
job is first looked up by its id (the upstream's ``external_task_id``), so an interrupted
create is found again instead of made twice. Every failure is a ``ProviderError``: a retryable
one leaves the asset ``processing`` (the next retrieve tries again), any other fails it.
"""

from __future__ import annotations

import time
from typing import Protocol

from kling_gateway.domain.assets import Asset


class AssetProvider(Protocol):
    name: str

    async def place(self, asset: Asset, pinned: str | None) -> None:
        """Choose the upstream account of a new asset (``asset.account``): ``pinned`` when it
        must live beside an asset or video of that account."""
        ...

    async def advance(self, asset: Asset) -> None:
        """One step of the asset's creation (submit, or look at the upstream job); updates
        ``asset`` in place (the caller saves it)."""
        ...

    async def remove(self, asset: Asset) -> None:
        """Delete the asset upstream, if it exists there."""
        ...

    async def aclose(self) -> None: ...


class LocalAssets:
    """The local provider's assets: registered here, ready at once (the local renderer takes
    element and voice references without looking them up)."""

    name = "local"

    async def place(self, asset: Asset, pinned: str | None) -> None:
        asset.account = None

    async def advance(self, asset: Asset) -> None:
        asset.succeed(f"local-{asset.id}", {}, time.time())

    async def remove(self, asset: Asset) -> None:
        return None

    async def aclose(self) -> None:
        return None
