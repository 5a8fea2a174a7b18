"""``SecretStore`` over the PostgreSQL store's asyncpg pool (``PostgresStore.pool``)."""

from __future__ import annotations

import time
from typing import Any

from kling_gateway.callbacks.signing import new_secret

_CURRENT = "SELECT secret FROM webhook_secrets WHERE user_id = $1 AND retired_at IS NULL"
_INSERT = (
    "INSERT INTO webhook_secrets (secret, user_id, created_at) VALUES ($1, $2, $3) "
    "ON CONFLICT (user_id) WHERE retired_at IS NULL DO NOTHING"
)


class PostgresSecretStore:
    """Signing secrets in the ``webhook_secrets`` table; ``pool`` is an ``asyncpg.Pool``."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    async def find_user_id(self, user_name: str) -> str | None:
        value = await self._pool.fetchval("SELECT id FROM users WHERE name = $1", user_name)
        return None if value is None else str(value)

    async def get_or_create_secret(self, user_id: str, *, now: float | None = None) -> str:
        at = time.time() if now is None else now
        current = await self._pool.fetchval(_CURRENT, user_id)
        if current is not None:
            return str(current)
        # Two callers racing: the partial unique index lets one insert win; both read it back.
        await self._pool.execute(_INSERT, new_secret(), user_id, at)
        return str(await self._pool.fetchval(_CURRENT, user_id))

    async def rotate_secret(
        self, user_id: str, grace_seconds: float, *, now: float | None = None
    ) -> str:
        at = time.time() if now is None else now
        secret = new_secret()
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "DELETE FROM webhook_secrets WHERE user_id = $1 AND expires_at <= $2", user_id, at
            )
            await conn.execute(
                "UPDATE webhook_secrets SET retired_at = $2, expires_at = $3 "
                "WHERE user_id = $1 AND retired_at IS NULL",
                user_id,
                at,
                at + grace_seconds,
            )
            await conn.execute(
                "INSERT INTO webhook_secrets (secret, user_id, created_at) VALUES ($1, $2, $3)",
                secret,
                user_id,
                at,
            )
        return secret

    async def active_secrets(self, user_id: str, *, now: float | None = None) -> list[str]:
        at = time.time() if now is None else now
        rows = await self._pool.fetch(
            "SELECT secret FROM webhook_secrets WHERE user_id = $1 "
            "AND (retired_at IS NULL OR expires_at > $2) "
            "ORDER BY retired_at IS NOT NULL, created_at DESC",
            user_id,
            at,
        )
        return [str(row["secret"]) for row in rows]
