"""POST /kling/elements and POST /kling/voices: a user's elements and voices (docs/contract.md
§6.1), with ``action`` create | list | retrieve | delete.

A create stores the asset (``processing``) before anyone learns its id (an ``Idempotency-Key``
header as on /kling/videos, §8.3: a repeat answers the first asset), then drives its
provider (``providers.assets``) step by step until it is ready or the blocking wait runs out
(``async: true``: one step, then the answer). An asset still processing is taken a step further
whenever it is retrieved or listed, so an interrupted create finishes later. Every read names
the caller: another user's id answers exactly as a missing one (retrieve ``{}``, delete
``deleted: false``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import msgspec

from kling_gateway.api.asgi import Receive, Reply, Scope
from kling_gateway.api.context import AppContext
from kling_gateway.api.requests import decode_body
from kling_gateway.api.routes.videos import idempotency_key
from kling_gateway.domain.assets import (
    ELEMENT,
    ID_FIELD,
    VOICE,
    Asset,
    AssetQuery,
    element_query,
    new_asset,
    voice_query,
)
from kling_gateway.domain.outcomes import ProviderError
from kling_gateway.protocol.assets import ElementsRequestBody, VoicesRequestBody
from kling_gateway.protocol.errors import BadGateway, BadRequest, ServiceUnavailable
from kling_gateway.protocol.task import API_VIDEOS
from kling_gateway.storage.base import IdempotencyConflict, Principal

EMPTY = b"{}"
# Unfinished assets of one list page taken a step further (each step is an upstream call).
LIST_REFRESH = 5
MIN_POLL_SECONDS = 0.05


def _element(body: bytes) -> AssetQuery:
    return element_query(decode_body(body, ElementsRequestBody))


def _voice(body: bytes) -> AssetQuery:
    return voice_query(decode_body(body, VoicesRequestBody))


class AssetsEndpoint:
    """One endpoint per kind; the same four actions. Authorised with the videos grant: an
    element or a voice exists to be used in a video."""

    def __init__(self, ctx: AppContext, kind: str, decode: Callable[[bytes], AssetQuery]) -> None:
        self.ctx, self.kind, self._decode = ctx, kind, decode

    async def __call__(self, scope: Scope, receive: Receive, trace_id: str) -> Reply:
        principal, body = await self.ctx.admit(scope, receive, API_VIDEOS)
        query = self._decode(body)
        if query.action == "create":
            return await self.create(scope, principal, query, receive, trace_id)
        if query.action == "list":
            return await self.list(principal, query)
        assert query.id is not None  # the domain requires it for retrieve and delete
        if query.action == "retrieve":
            return await self.retrieve(principal, query.id)
        return await self.delete(principal, query.id)

    # --- the actions ---------------------------------------------------------------------

    async def create(
        self, scope: Scope, principal: Principal, query: AssetQuery, receive: Receive, trace_id: str
    ) -> Reply:
        pinned = await self._pinned(principal.user_id, query.spec)
        asset = new_asset(principal.user_id, self.kind, query.spec, time.time())
        try:
            await self.ctx.assets.place(asset, pinned)
        except ProviderError as exc:
            raise ServiceUnavailable(f"cannot create the {self.kind} now: {exc.message}") from exc
        try:
            asset = await self.ctx.store.insert_asset(asset, idempotency_key(scope))
        except IdempotencyConflict as exc:
            raise BadRequest(f"header `Idempotency-Key`: {exc}") from exc
        if asset.finished:
            return _json({**asset.view(), "trace_id": trace_id})  # a repeat of a finished create
        if query.asynchronous:
            asset = await self._step(asset)
        else:
            wait = self.ctx.settings.blocking_wait_seconds
            asset = await self.ctx.waiters.hold(receive, self._settle(asset, wait))
        return _json({**asset.view(), "trace_id": trace_id})

    async def retrieve(self, principal: Principal, asset_id: str) -> Reply:
        asset = await self.ctx.store.get_asset(principal.user_id, self.kind, asset_id)
        if asset is None:
            return Reply(200, EMPTY)
        if not asset.finished:
            asset = await self._step(asset)
        return _json(asset.view())

    async def list(self, principal: Principal, query: AssetQuery) -> Reply:
        store = self.ctx.store
        items, total = await store.list_assets(
            principal.user_id, self.kind, query.limit, query.offset
        )
        unfinished = [i for i, a in enumerate(items) if not a.finished][:LIST_REFRESH]
        for i in unfinished:
            items[i] = await self._step(items[i])
        return _json({"items": [a.view() for a in items], "count": total})

    async def delete(self, principal: Principal, asset_id: str) -> Reply:
        store, key = self.ctx.store, ID_FIELD[self.kind]
        asset = await store.get_asset(principal.user_id, self.kind, asset_id)
        if asset is None:
            return _json({key: asset_id, "deleted": False})
        try:
            await self.ctx.assets.remove(asset)
        except ProviderError as exc:
            # Kept here while it may still exist upstream: a retry of the delete finds it.
            if exc.retryable:
                raise ServiceUnavailable(f"the upstream is unavailable: {exc.message}") from exc
            raise BadGateway(f"the upstream refused the delete: {exc.message}") from exc
        deleted = await store.delete_asset(principal.user_id, self.kind, asset_id)
        return _json({key: asset_id, "deleted": deleted})

    # --- helpers -------------------------------------------------------------------------

    async def _pinned(self, user_id: str, spec: dict[str, Any]) -> str | None:
        """The upstream account the new asset must live on (its voice's, or the account its
        source video was made on), after checking that those are the caller's own."""
        store = self.ctx.store
        voice = spec.get("element_voice_id")
        if isinstance(voice, str):
            found = await store.find_user_assets(user_id, VOICE, [voice])
            if voice not in found:
                raise BadRequest(f"field `element_voice_id`: no voice of yours has id {voice!r}")
            return found[voice].account
        video_id = spec.get("video_id")
        if isinstance(video_id, str):
            task_id = await store.find_user_video(user_id, video_id)
            if task_id is None:
                message = f"no finished video of yours has video_id {video_id!r}"
                raise BadRequest(f"field `video_id`: {message}")
            stored = await store.load_task(task_id)
            return None if stored is None else stored.account
        return None

    async def _settle(self, asset: Asset, wait: float) -> Asset:
        """Steps until the asset is finished or ``wait`` seconds have passed."""
        deadline = time.monotonic() + wait
        interval = max(MIN_POLL_SECONDS, self.ctx.settings.check_interval)
        while True:
            asset = await self._step(asset)
            left = deadline - time.monotonic()
            if asset.finished or left <= 0:
                return asset
            await asyncio.sleep(min(interval, left))

    async def _step(self, asset: Asset) -> Asset:
        """One provider step, saved (compare-and-set) when it changed something; the stored
        asset when another request finished it first."""
        before = (asset.state, asset.job_id, asset.account)
        version = asset.version
        try:
            await self.ctx.assets.advance(asset)
        except ProviderError as exc:
            if exc.retryable:
                return asset  # still processing: the next step tries again
            asset.fail(exc.code, exc.message, time.time())
        if (asset.state, asset.job_id, asset.account) == before:
            return asset
        if await self.ctx.store.save_asset(asset, expected_version=version):
            return asset
        fresh = await self.ctx.store.get_asset(asset.user_id, self.kind, asset.id)
        return fresh if fresh is not None else asset


def asset_handlers(ctx: AppContext) -> dict[str, AssetsEndpoint]:
    """The two endpoints, by path (registered in ``api.app``)."""
    return {
        "/kling/elements": AssetsEndpoint(ctx, ELEMENT, _element),
        "/kling/voices": AssetsEndpoint(ctx, VOICE, _voice),
    }


def _json(body: dict[str, Any]) -> Reply:
    return Reply(200, msgspec.json.encode(body))
