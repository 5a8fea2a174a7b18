"""Assets (elements, voices, ...) on memory:// (as storage/assets_sql.py)."""

from __future__ import annotations

import copy
import time

from kling_gateway.domain.assets import Asset, registered
from kling_gateway.storage.memory_rows import (
    MemoryBase,
)
from kling_gateway.storage.rows import (
    dump_json,
    replay_is_due,
)


class MemoryAssets(MemoryBase):
    """The asset flows of ``MemoryStore``."""

    async def add_asset(self, *, user_id: str, kind: str, upstream_id: str, now: float) -> str:
        asset = registered(user_id, kind, upstream_id, now)
        await self.insert_asset(asset)
        return asset.id

    async def insert_asset(self, asset: Asset, idempotency_key: str | None = None) -> Asset:
        slot = (asset.user_id, asset.kind, idempotency_key or "")
        earlier = self._s.asset_keys.get(slot) if idempotency_key else None
        found = self._s.assets.get(earlier) if earlier is not None else None
        if found is not None and replay_is_due(
            found.created_at, dump_json(found.spec), dump_json(asset.spec), time.time()
        ):
            return copy.deepcopy(found)
        self._s.assets[asset.id] = copy.deepcopy(asset)
        if idempotency_key:
            self._s.asset_keys[slot] = asset.id
        return asset

    def _asset(self, user_id: str, kind: str, asset_id: str) -> Asset | None:
        found = self._s.assets.get(asset_id)
        if found is None or (found.user_id, found.kind) != (user_id, kind):
            return None
        return found

    async def get_asset(self, user_id: str, kind: str, asset_id: str) -> Asset | None:
        found = self._asset(user_id, kind, asset_id)
        return None if found is None else copy.deepcopy(found)

    async def list_assets(
        self, user_id: str, kind: str, limit: int, offset: int
    ) -> tuple[list[Asset], int]:
        mine = [a for a in self._s.assets.values() if (a.user_id, a.kind) == (user_id, kind)]
        mine.sort(key=lambda a: (-a.created_at, a.id))
        return [copy.deepcopy(a) for a in mine[offset : offset + limit]], len(mine)

    async def save_asset(self, asset: Asset, *, expected_version: int) -> bool:
        stored = self._s.assets.get(asset.id)
        if stored is None or stored.version != expected_version or stored.finished:
            return False
        asset.version = expected_version + 1
        self._s.assets[asset.id] = copy.deepcopy(asset)
        return True

    async def delete_asset(self, user_id: str, kind: str, asset_id: str) -> bool:
        if self._asset(user_id, kind, asset_id) is None:
            return False
        del self._s.assets[asset_id]
        return True

    async def find_user_assets(self, user_id: str, kind: str, ids: list[str]) -> dict[str, Asset]:
        found = {i: self._asset(user_id, kind, i) for i in ids}
        return {
            i: copy.deepcopy(a) for i, a in found.items() if a is not None and a.state == "succeed"
        }
