"""What the ``kling-gateway callbacks ...`` commands do, without parsing or printing
(``cli/callbacks.py`` prints):

callbacks list [--task ID] [--failed]  -> list_deliveries
callbacks redeliver ID                 -> redeliver
callbacks secret --user NAME [--rotate] -> user_secrets
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from kling_gateway.callbacks.secrets import DEFAULT_ROTATION_GRACE, SecretStore
from kling_gateway.storage.base import Store
from kling_gateway.storage.rows import delivery_row


class UnknownUser(LookupError):
    """No user has the name given."""


@dataclass(frozen=True, slots=True)
class UserSecrets:
    """A user's signing secrets: the current one, and any rotated-out one still valid."""

    user_name: str
    user_id: str
    current: str
    previous: tuple[str, ...]
    rotated: bool


async def list_deliveries(
    store: Store, task_id: str | None = None, failed_only: bool = False, limit: int = 100
) -> list[dict[str, Any]]:
    """The newest deliveries first, optionally of one task and/or only those failing now
    (retrying or given up)."""
    found = await store.list_callbacks(task_id=task_id, failed_only=failed_only, limit=limit)
    return [delivery_row(d) for d in found]


async def redeliver(store: Store, delivery_id: str, now: float | None = None) -> bool:
    """Queue delivery ``delivery_id`` again, due at once; False when there is no such id."""
    return await store.redeliver_callback(delivery_id, time.time() if now is None else now)


async def user_secrets(
    secrets: SecretStore,
    user_name: str,
    *,
    rotate: bool = False,
    grace_seconds: float = DEFAULT_ROTATION_GRACE,
    now: float | None = None,
) -> UserSecrets:
    """The user's current signing secret (made on first use), rotating it first if asked."""
    user_id = await secrets.find_user_id(user_name)
    if user_id is None:
        raise UnknownUser(f"no user named {user_name!r}")
    if rotate:
        current = await secrets.rotate_secret(user_id, grace_seconds, now=now)
    else:
        current = await secrets.get_or_create_secret(user_id, now=now)
    active = await secrets.active_secrets(user_id, now=now)
    previous = tuple(s for s in active if s != current)
    return UserSecrets(user_name, user_id, current, previous, rotate)
