"""The store's elements and voices (migrations 0008, 0010), written once for every SQL dialect.

Every read names the user: another user's asset is not found, exactly like a missing one.
A save is a compare-and-set on ``version`` that only an unfinished asset takes, so two requests
refreshing one asset at once (or a refresh racing a delete) never both finish it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from kling_gateway.domain.assets import Asset, registered
from kling_gateway.protocol.assets import ASSET_PROCESSING
from kling_gateway.storage.base import StoreError
from kling_gateway.storage.rows import dump_json, load_json, replay_is_due

if TYPE_CHECKING:
    from kling_gateway.storage.engine import Dialect, Tx

T = TypeVar("T")

ASSET_COLUMNS = (
    "id, user_id, kind, upstream_id, created_at, state, account, job_id, spec, result, error, "
    "updated_at, version"
)
_INSERT = (
    f"INSERT INTO assets ({ASSET_COLUMNS}, idempotency_key) VALUES ({', '.join(['?'] * 14)}) "
    # A concurrent create with the same key wins; we then answer with its asset.
    "ON CONFLICT (user_id, kind, idempotency_key) WHERE idempotency_key IS NOT NULL "
    "DO NOTHING RETURNING id"
)
_SAVE = (
    "UPDATE assets SET upstream_id = ?, state = ?, account = ?, job_id = ?, result = ?, "
    "error = ?, updated_at = ?, version = version + 1 "
    f"WHERE id = ? AND version = ? AND state = '{ASSET_PROCESSING}'"
)


def asset_values(asset: Asset) -> tuple[object, ...]:
    return (
        asset.id,
        asset.user_id,
        asset.kind,
        asset.upstream_id,
        float(asset.created_at),
        asset.state,
        asset.account,
        asset.job_id,
        dump_json(asset.spec),
        dump_json(asset.result),
        dump_json(asset.error),
        float(asset.updated_at),
        asset.version,
    )


def asset_from_row(row: Any) -> Asset:
    return Asset(
        id=row["id"],
        user_id=row["user_id"],
        kind=row["kind"],
        created_at=float(row["created_at"]),
        state=row["state"],
        spec=load_json(row["spec"]) or {},
        upstream_id=row["upstream_id"],
        account=row["account"],
        job_id=row["job_id"],
        result=load_json(row["result"]) or {},
        error=load_json(row["error"]),
        updated_at=float(row["updated_at"]),
        version=int(row["version"]),
    )


class AssetFlows:
    """The asset flows of ``SQLStore`` (mixed in; see ``engine.py``)."""

    dialect: Dialect

    @property
    def _point(self) -> Tx:
        raise NotImplementedError

    async def _read_bulk(self, flow: Callable[[Tx], Coroutine[Any, Any, T]]) -> T:
        raise NotImplementedError

    async def _write_one(self, flow: Callable[[Tx], Coroutine[Any, Any, T]]) -> T:
        raise NotImplementedError

    async def _write(self, flow: Callable[[Tx], Coroutine[Any, Any, T]]) -> T:
        raise NotImplementedError

    async def add_asset(self, *, user_id: str, kind: str, upstream_id: str, now: float) -> str:
        asset = registered(user_id, kind, upstream_id, now)
        await self.insert_asset(asset)
        return asset.id

    async def insert_asset(self, asset: Asset, idempotency_key: str | None = None) -> Asset:
        return await self._write(lambda tx: self._insert_asset(tx, asset, idempotency_key))

    async def _insert_asset(self, tx: Tx, asset: Asset, key: str | None) -> Asset:
        if key is not None and (earlier := await self._keyed(tx, asset, key)) is not None:
            return earlier
        if await tx.fetchval(_INSERT, *asset_values(asset), key) is not None:
            return asset
        # Lost the race for the key to a create committed since (PostgreSQL): answer with it.
        earlier = None if key is None else await self._keyed(tx, asset, key)
        if earlier is None:
            raise StoreError("idempotency key conflict could not be resolved; try again")
        return earlier

    async def _keyed(self, tx: Tx, asset: Asset, key: str) -> Asset | None:
        """The asset created earlier with ``key``; None (and the key freed) once it expired.
        Raises IdempotencyConflict when it was created from another body."""
        # assets_idempotency unique index.
        row = await tx.fetchrow(
            f"SELECT {ASSET_COLUMNS} FROM assets WHERE user_id = ? AND kind = ? "
            f"AND idempotency_key = ?{self.dialect.for_update}",
            asset.user_id,
            asset.kind,
            key,
        )
        if row is None:
            return None
        earlier = asset_from_row(row)
        if replay_is_due(
            earlier.created_at, dump_json(earlier.spec), dump_json(asset.spec), time.time()
        ):
            return earlier
        await tx.execute("UPDATE assets SET idempotency_key = NULL WHERE id = ?", earlier.id)
        return None

    async def get_asset(self, user_id: str, kind: str, asset_id: str) -> Asset | None:
        # Primary key; the user and kind checks make a foreign asset look missing.
        row = await self._point.fetchrow(
            f"SELECT {ASSET_COLUMNS} FROM assets WHERE id = ? AND user_id = ? AND kind = ?",
            asset_id,
            user_id,
            kind,
        )
        return None if row is None else asset_from_row(row)

    async def list_assets(
        self, user_id: str, kind: str, limit: int, offset: int
    ) -> tuple[list[Asset], int]:
        return await self._read_bulk(lambda tx: self._list(tx, user_id, kind, limit, offset))

    @staticmethod
    async def _list(
        tx: Tx, user_id: str, kind: str, limit: int, offset: int
    ) -> tuple[list[Asset], int]:
        # assets_user_kind index on (user_id, kind, created_at DESC): newest first.
        where = "WHERE user_id = ? AND kind = ?"
        total = await tx.fetchval(f"SELECT count(*) FROM assets {where}", user_id, kind)
        rows = await tx.fetch(
            f"SELECT {ASSET_COLUMNS} FROM assets {where} ORDER BY created_at DESC, id "
            "LIMIT ? OFFSET ?",
            user_id,
            kind,
            limit,
            offset,
        )
        return [asset_from_row(row) for row in rows], int(total)

    async def save_asset(self, asset: Asset, *, expected_version: int) -> bool:
        args = (
            asset.upstream_id,
            asset.state,
            asset.account,
            asset.job_id,
            dump_json(asset.result),
            dump_json(asset.error),
            float(asset.updated_at),
            asset.id,
            expected_version,
        )
        if not await self._write_one(lambda tx: tx.execute(_SAVE, *args)):
            return False
        asset.version = expected_version + 1
        return True

    async def delete_asset(self, user_id: str, kind: str, asset_id: str) -> bool:
        sql = "DELETE FROM assets WHERE id = ? AND user_id = ? AND kind = ?"
        return await self._write_one(lambda tx: tx.execute(sql, asset_id, user_id, kind)) > 0

    async def find_user_assets(self, user_id: str, kind: str, ids: list[str]) -> dict[str, Asset]:
        sql = (
            f"SELECT {ASSET_COLUMNS} FROM assets WHERE id {self.dialect.ids_in} "
            "AND user_id = ? AND kind = ? AND state = 'succeed'"
        )
        rows = await self._point.fetch(sql, self.dialect.ids_param(ids), user_id, kind)
        return {str(row["id"]): asset_from_row(row) for row in rows}
