"""Per-user callback signing secrets, kept in the store (its ``SecretRepo`` port).

Each user has one current secret, created on first need. A rotation retires it and makes a new
one; the retired secret stays valid for a grace period, during which callbacks carry both
signatures, so a receiver can switch secrets without dropping a single callback. The values
are made here (``signing.new_secret``) and sealed under the server key before the store sees
them, bound to their user's id (``storage.crypto``): the database never holds one in the clear.
"""

from __future__ import annotations

import time
from typing import Protocol

from kling_gateway.callbacks.signing import new_secret
from kling_gateway.storage.base import AccountRepo, SecretRepo
from kling_gateway.storage.upstream_keys import Sealer

# How long a rotated-out secret keeps signing: the default retry schedule spans about a day.
DEFAULT_ROTATION_GRACE = 24 * 3600.0


class _SecretPorts(AccountRepo, SecretRepo, Protocol):
    """What signing secrets need of a store."""


class SecretStore:
    """Signing secrets over any store. ``now`` defaults to the current time."""

    def __init__(self, store: _SecretPorts, sealer: Sealer) -> None:
        self._store = store
        self._sealer = sealer

    def _seal(self, user_id: str, secret: str) -> str:
        return self._sealer.seal(secret, secret_context(user_id))

    def _open(self, user_id: str, stored: str) -> str:
        return self._sealer.open(stored, secret_context(user_id))

    async def find_user_id(self, user_name: str) -> str | None:
        """The id of the user called ``user_name``, if there is one."""
        return await self._store.find_user_id(user_name)

    async def get_or_create_secret(self, user_id: str, *, now: float | None = None) -> str:
        """The user's current secret, made on first use."""
        at = time.time() if now is None else now
        stored = await self._store.put_first_secret(user_id, self._seal(user_id, new_secret()), at)
        return self._open(user_id, stored)

    async def rotate_secret(
        self, user_id: str, grace_seconds: float, *, now: float | None = None
    ) -> str:
        """Retire the current secret (valid ``grace_seconds`` more) and return a new one."""
        at = time.time() if now is None else now
        secret = new_secret()
        await self._store.replace_secret(user_id, self._seal(user_id, secret), grace_seconds, at)
        return secret

    async def active_secrets(self, user_id: str, *, now: float | None = None) -> list[str]:
        """Every secret that signs now: the current one first, then retired ones in grace."""
        stored = await self._store.signing_secrets(user_id, time.time() if now is None else now)
        return [self._open(user_id, value) for value in stored]


async def seal_stored_secrets(store: _SecretPorts, sealer: Sealer) -> int:
    """At start: seal the secrets still stored in the clear (rows from before migration 0014)
    and open every sealed one, so that a wrong server key stops the start (``SecretKeyError``)
    instead of the first callback. Returns how many were sealed now."""
    sealed = 0
    for secret_id, user_id, stored in await store.stored_secrets():
        context = secret_context(user_id)
        plain = sealer.open(stored, context)  # a value in the clear comes back as it is
        if plain == stored and await store.reseal_secret(
            secret_id, stored, sealer.seal(plain, context)
        ):
            sealed += 1
    if sealed:
        await store.scrub_secrets()
    return sealed


def secret_context(user_id: str) -> str:
    """The associated data of a sealed signing secret: copied onto another user, it fails."""
    return f"webhook-secret:{user_id}"


def secret_store_for(store: _SecretPorts, sealer: Sealer) -> SecretStore:
    """The signing secrets kept in ``store`` (any backend), sealed under ``sealer``."""
    return SecretStore(store, sealer)
