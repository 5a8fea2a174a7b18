"""Storage backends, chosen by URL."""

from __future__ import annotations

from kling_gateway.storage.base import StorageFull, Store, StoreError, StoreUnavailable
from kling_gateway.storage.errors import classify
from kling_gateway.storage.pg_pool import PoolLimits


def open_store(url: str, pool: PoolLimits | None = None) -> Store:
    """The store for ``url`` (not yet opened): ``sqlite:///PATH``, ``postgresql://...`` or
    ``memory://`` (tests: nothing outlives the process); ``pool`` sizes and bounds the
    PostgreSQL pool."""
    if url.startswith("memory://"):
        from kling_gateway.storage.memory import MemoryStore

        return MemoryStore(url)
    if url.startswith("sqlite:///"):
        from kling_gateway.storage.sqlite import SQLiteStore

        return SQLiteStore(url)
    if url.startswith(("postgresql://", "postgres://")):
        from kling_gateway.storage.postgres import PostgresStore

        return PostgresStore(url, pool)
    raise StoreError(f"unsupported database URL: {url.split(':', 1)[0]}://...")


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means the store cannot be reached or is busy right now (a 503, not a
    bug): StoreUnavailable, or a driver error that means the same (a network error, a pool or
    connection that went away, SQLite's "locked"); see ``storage.errors.classify``."""
    return isinstance(classify(exc), StoreUnavailable)


__all__ = [
    "PoolLimits",
    "StorageFull",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "classify",
    "is_unavailable",
    "open_store",
]
