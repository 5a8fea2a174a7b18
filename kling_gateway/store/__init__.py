"""Storage backends, chosen by URL."""

from __future__ import annotations

from kling_gateway.store.base import Store, StoreError


def open_store(url: str) -> Store:
    """The store for ``url`` (not yet opened): ``sqlite:///PATH`` or ``postgresql://...``."""
    if url.startswith("sqlite:///"):
        from kling_gateway.store.sqlite import SQLiteStore

        return SQLiteStore(url)
    if url.startswith(("postgresql://", "postgres://")):
        from kling_gateway.store.postgres import PostgresStore

        return PostgresStore(url)
    raise StoreError(f"unsupported database URL: {url.split(':', 1)[0]}://...")


__all__ = ["Store", "StoreError", "open_store"]
