"""Upstream account keys: sealed before the store sees them, opened for the worker to sign.

Secret keys are sealed under the server key (``storage.crypto``) before the store sees them,
bound to the account's name, and opened only by the processes that sign with them: the worker,
and the API for element and voice calls (docs/contract.md §6.1).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from kling_gateway.domain.accounts import IMPLICIT_ACCOUNT, Account
from kling_gateway.storage.base import AccountExists, Store, UpstreamAccountRow


class Sealer(Protocol):
    """``storage.crypto.SecretBox``: seals and opens short secrets under the server key."""

    def seal(self, plaintext: str, context: str) -> str: ...
    def open(self, value: str, context: str) -> str: ...


def secret_context(name: str) -> str:
    """The associated data of an account's sealed secret: copied to another row, it fails."""
    return f"upstream-account:{name}"


@dataclass(frozen=True, slots=True)
class Credentials:
    """An account with its secret key opened: what the worker signs requests with."""

    account: Account
    secret_key: str


async def add_account(store: Store, sealer: Sealer, account: Account, secret_key: str) -> None:
    sealed = sealer.seal(secret_key, secret_context(account.name))
    await store.add_upstream_account(account, sealed, time.time())


async def ensure_implicit_account(
    store: Store,
    sealer: Sealer,
    access_key: str,
    secret_key: str,
    base_url: str | None,
    max_concurrency: int,
) -> bool:
    """Store the account of the old single key pair once; True when it was added now."""
    account = Account(
        name=IMPLICIT_ACCOUNT,
        access_key=access_key,
        max_concurrency=max_concurrency,
        base_url=base_url,
    )
    try:
        await add_account(store, sealer, account, secret_key)
    except AccountExists:
        return False
    return True


def open_row(sealer: Sealer, row: UpstreamAccountRow) -> Credentials:
    name = row.account.name
    return Credentials(row.account, sealer.open(row.sealed_secret, secret_context(name)))


async def load_credentials(store: Store, sealer: Sealer) -> list[Credentials]:
    return [open_row(sealer, row) for row in await store.list_upstream_accounts()]
