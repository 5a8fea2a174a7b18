"""Per-user callback signing secrets, kept in the store (its ``SecretRepo`` port).

Each user has one current secret, created on first need. A rotation retires it and makes a new
one; the retired secret stays valid for a grace period, during which callbacks carry both
signatures, so a receiver can switch secrets without dropping a single callback. The values
are made here (``signing.new_secret``); the store only keeps them.
"""

from __future__ import annotations

import time
from typing import Protocol

from kling_gateway.callbacks.signing import new_secret
from kling_gateway.storage.base import AccountRepo, SecretRepo

# How long a rotated-out secret keeps signing: the default retry schedule spans about a day.
DEFAULT_ROTATION_GRACE = 24 * 3600.0


class _SecretPorts(AccountRepo, SecretRepo, Protocol):
    """What signing secrets need of a store."""


class SecretStore:
    """Signing secrets over any store. ``now`` defaults to the current time."""

    def __init__(self, store: _SecretPorts) -> None:
        self._store = store

    async def find_user_id(self, user_name: str) -> str | None:
        """The id of the user called ``user_name``, if there is one."""
        return await self._store.find_user_id(user_name)

    async def get_or_create_secret(self, user_id: str, *, now: float | None = None) -> str:
        """The user's current secret, made on first use."""
        at = time.time() if now is None else now
        return await self._store.put_first_secret(user_id, new_secret(), at)

    async def rotate_secret(
        self, user_id: str, grace_seconds: float, *, now: float | None = None
    ) -> str:
        """Retire the current secret (valid ``grace_seconds`` more) and return a new one."""
        at = time.time() if now is None else now
        secret = new_secret()
        await self._store.replace_secret(user_id, secret, grace_seconds, at)
        return secret

    async def active_secrets(self, user_id: str, *, now: float | None = None) -> list[str]:
        """Every secret that signs now: the current one first, then retired ones in grace."""
        return await self._store.signing_secrets(user_id, time.time() if now is None else now)


def secret_store_for(store: _SecretPorts) -> SecretStore:
    """The signing secrets kept in ``store`` (any backend)."""
    return SecretStore(store)
