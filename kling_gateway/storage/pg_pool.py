"""The PostgreSQL store's pool, bounded in time: every call fails fast with a typed error.

asyncpg applies ``command_timeout`` to each statement but waits for a pooled connection, and
for a new connection to open, as long as it takes: through a blackholed network every call
would hang. Here every acquire has a deadline, a connection whose statement timed out is
dropped at once (asyncpg would otherwise wait, on release, for a cancel request sent over that
same dead network), and driver errors that mean "down" or "full" become ``StoreUnavailable``
or ``StorageFull``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from kling_gateway.storage.errors import classify


@dataclass(frozen=True, slots=True)
class PoolLimits:
    """Size and deadlines of a PostgreSQL pool (settings ``postgres_*``)."""

    max_size: int = 10
    min_size: int = 2
    # Seconds one statement may run before it is abandoned (asyncpg's command_timeout).
    command_timeout: float = 10.0
    # Seconds a call waits for a pooled connection, or for a new one to open.
    acquire_timeout: float = 5.0


class GuardedPool:
    """An asyncpg pool's calls (``fetch``, ``fetchrow``, ``fetchval``, ``execute``,
    ``executemany``, ``acquire``) with deadlines and typed errors."""

    def __init__(self, pool: Any, limits: PoolLimits) -> None:
        self._pool = pool
        self._limits = limits

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[Any]:
        try:
            async with self._pool.acquire(timeout=self._limits.acquire_timeout) as conn:
                try:
                    yield conn
                except TimeoutError:
                    conn.terminate()  # its statement is stuck: do not wait for it on release
                    raise
        except Exception as exc:
            typed = classify(exc)
            if typed is None or typed is exc:
                raise
            raise typed from exc

    async def fetch(self, query: str, *args: Any) -> Any:
        async with self.acquire() as conn:
            return await conn.fetch(query, *args)

    async def fetchrow(self, query: str, *args: Any) -> Any:
        async with self.acquire() as conn:
            return await conn.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        async with self.acquire() as conn:
            return await conn.fetchval(query, *args)

    async def execute(self, query: str, *args: Any) -> Any:
        async with self.acquire() as conn:
            return await conn.execute(query, *args)

    async def executemany(self, query: str, args: Any) -> Any:
        async with self.acquire() as conn:
            return await conn.executemany(query, args)

    async def close(self) -> None:
        """Close the pool, giving in-flight calls ``acquire_timeout`` to finish, then cut."""
        try:
            await asyncio.wait_for(self._pool.close(), self._limits.acquire_timeout)
        except TimeoutError:
            self._pool.terminate()
