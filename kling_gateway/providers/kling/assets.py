"""Custom elements and voices on the official Kling API (docs/contract.md §6.1).

Creation is an upstream task: ``POST /v1/general/advanced-custom-elements`` (or
``custom-voices``) answers a ``task_id`` at once; ``GET .../{task_id}`` reports it until
``succeed`` (``task_result.elements[0].element_id``, ``task_result.voices[0].voice_id``) or
``failed``. The asset's gateway id is the ``external_task_id``, so a create interrupted before
its job id was stored is looked up rather than made twice. Upstream ids belong to one account:
each asset lives on the account it was placed on, and so does every call about it.
"""

from __future__ import annotations

import time
from typing import Any

from kling_gateway.domain.assets import ELEMENT, Asset
from kling_gateway.domain.outcomes import ProviderError
from kling_gateway.providers.kling.client import KlingClient
from kling_gateway.providers.kling.mapping import job_id_of
from kling_gateway.providers.kling.pool import KlingPool
from kling_gateway.storage.base import Store

RESOURCE = {ELEMENT: "advanced-custom-elements", "voice": "custom-voices"}
DELETE = {ELEMENT: ("delete-elements", "element_id"), "voice": ("delete-voices", "voice_id")}
RESULT_KEY = {ELEMENT: ("elements", "element_id"), "voice": ("voices", "voice_id")}
_LOOKUP_AFTER_CREATE_ERROR = frozenset({"invalid_request"})


class KlingAssets:
    """The ``AssetProvider`` over the stored upstream accounts (the pool's clients)."""

    name = "kling"

    def __init__(self, pool: KlingPool, store: Store) -> None:
        self._pool = pool
        self._store = store

    async def aclose(self) -> None:
        await self._pool.aclose()

    async def place(self, asset: Asset, pinned: str | None) -> None:
        if pinned is not None:
            asset.account = pinned
            return
        accounts = await self._pool.enabled_accounts()
        if not accounts:
            raise ProviderError(
                "no enabled upstream account", code="upstream_account_missing", retryable=True
            )
        # The heaviest account takes it (ties: by name): assets are few and need no slot.
        asset.account = min(accounts, key=lambda a: (-a.weight, a.name)).name

    async def advance(self, asset: Asset) -> None:
        client = await self._client(asset)
        resource = RESOURCE[asset.kind]
        if asset.job_id is None:
            data = await client.general_get(resource, asset.id)
            if data is None:
                data = await self._create(client, asset)
            asset.job_id = job_id_of(data)
        else:
            data = await client.general_get(resource, asset.job_id)
            if data is None:
                asset.fail("upstream_lost", "the upstream has no such creation task", time.time())
                return
        _apply(asset, data)

    async def remove(self, asset: Asset) -> None:
        if asset.upstream_id is None or asset.account is None:
            return  # nothing made upstream yet, or an id an operator registered
        resource, key = DELETE[asset.kind]
        await (await self._client(asset)).general_delete(resource, {key: asset.upstream_id})

    async def _client(self, asset: Asset) -> KlingClient:
        client = None if asset.account is None else await self._pool.account_client(asset.account)
        if client is None:
            raise ProviderError(
                f"the upstream account {asset.account!r} is not configured",
                code="upstream_account_missing",
                retryable=True,
            )
        return client

    async def _create(self, client: KlingClient, asset: Asset) -> dict[str, Any]:
        body = await self._body(asset)
        resource = RESOURCE[asset.kind]
        try:
            return await client.general_create(resource, body)
        except ProviderError as exc:
            # A concurrent create may have won the race for this external_task_id.
            if exc.code in _LOOKUP_AFTER_CREATE_ERROR:
                found = await client.general_get(resource, asset.id)
                if found is not None:
                    return found
            raise

    async def _body(self, asset: Asset) -> dict[str, Any]:
        body = {**asset.spec, "external_task_id": asset.id}
        voice = body.pop("element_voice_id", None)
        if isinstance(voice, str):
            # The spec names the caller's gateway voice; the upstream takes its own id.
            found = await self._store.find_user_assets(asset.user_id, "voice", [voice])
            if voice not in found or found[voice].upstream_id is None:
                raise ProviderError(
                    f"voice {voice!r} is no longer available", code="voice_not_found"
                )
            body["element_voice_id"] = found[voice].upstream_id
        return body


def _apply(asset: Asset, data: dict[str, Any]) -> None:
    """What an upstream creation task says about ``asset``."""
    status = data.get("task_status")
    now = time.time()
    if status == "failed":
        message = data.get("task_status_msg")
        text = message if isinstance(message, str) and message else "the upstream creation failed"
        asset.fail("upstream_failed", text, now)
        return
    if status != "succeed":
        return  # submitted / processing: look again later
    items_key, id_key = RESULT_KEY[asset.kind]
    result = data.get("task_result")
    items = result.get(items_key) if isinstance(result, dict) else None
    first = items[0] if isinstance(items, list) and items else None
    upstream_id = first.get(id_key) if isinstance(first, dict) else None
    if upstream_id in (None, ""):
        asset.fail("upstream_bad_response", f"the upstream answered no {id_key}", now)
        return
    assert isinstance(first, dict)
    trial = first.get("trial_url")
    asset.succeed(str(upstream_id), {"trial_url": trial} if isinstance(trial, str) else {}, now)
