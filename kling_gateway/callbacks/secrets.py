"""Per-user callback signing secrets, kept in the store (table ``webhook_secrets``).

Each user has one current secret, created on first need. A rotation retires it and makes a new
one; the retired secret stays valid for a grace period, during which callbacks carry both
signatures, so a receiver can switch secrets without dropping a single callback.
"""

from __future__ import annotations

from typing import Protocol

from kling_gateway.storage.base import Store

# How long a rotated-out secret keeps signing: the default retry schedule spans about a day.
DEFAULT_ROTATION_GRACE = 24 * 3600.0


class SecretStore(Protocol):
    """Where signing secrets live. ``now`` defaults to the current time."""

    async def find_user_id(self, user_name: str) -> str | None:
        """The id of the user called ``user_name``, if there is one."""
        ...

    async def get_or_create_secret(self, user_id: str, *, now: float | None = None) -> str:
        """The user's current secret, made on first use."""
        ...

    async def rotate_secret(
        self, user_id: str, grace_seconds: float, *, now: float | None = None
    ) -> str:
        """Retire the current secret (valid ``grace_seconds`` more) and return a new one."""
        ...

    async def active_secrets(self, user_id: str, *, now: float | None = None) -> list[str]:
        """Every secret that signs now: the current one first, then retired ones in grace."""
        ...


def secret_store_for(store: Store) -> SecretStore:
    """The ``SecretStore`` over the same database as ``store`` (SQLite or PostgreSQL).

    Call it after ``store.open()``: the PostgreSQL one takes the open store's pool.
    """
    from kling_gateway.storage.sqlite import SQLiteStore

    if isinstance(store, SQLiteStore):
        from kling_gateway.callbacks.secrets_sqlite import SQLiteSecretStore

        return SQLiteSecretStore(store)
    from kling_gateway.callbacks.secrets_postgres import PostgresSecretStore

    pool = getattr(store, "pool", None)
    if pool is None:
        raise TypeError(f"no signing-secret storage for {store!r}")
    return PostgresSecretStore(pool)
