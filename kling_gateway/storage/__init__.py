"""Storage backends, chosen by URL."""

from __future__ import annotations

from kling_gateway.storage.base import Store, StoreError


def open_store(url: str) -> Store:
    """The store for ``url`` (not yet opened): ``sqlite:///PATH``, ``postgresql://...`` or
    ``memory://`` (tests: nothing outlives the process)."""
    if url.startswith("memory://"):
        from kling_gateway.storage.memory import MemoryStore

        return MemoryStore(url)
    if url.startswith("sqlite:///"):
        from kling_gateway.storage.sqlite import SQLiteStore

        return SQLiteStore(url)
    if url.startswith(("postgresql://", "postgres://")):
        from kling_gateway.storage.postgres import PostgresStore

        return PostgresStore(url)
    raise StoreError(f"unsupported database URL: {url.split(':', 1)[0]}://...")


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means the store cannot be reached or is busy right now (a 503, not a
    bug): a network error, a pool or connection that went away, SQLite's "locked"."""
    import sqlite3

    import asyncpg

    if isinstance(exc, OSError | TimeoutError):
        return True
    if isinstance(exc, sqlite3.OperationalError):
        return "locked" in str(exc) or "busy" in str(exc)
    return isinstance(
        exc,
        asyncpg.PostgresConnectionError
        | asyncpg.InterfaceError
        | asyncpg.exceptions.CannotConnectNowError
        | asyncpg.exceptions.TooManyConnectionsError,
    )


__all__ = ["Store", "StoreError", "is_unavailable", "open_store"]
