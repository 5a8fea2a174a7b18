"""What the ``kling-gateway callbacks ...`` commands do, without the argument parsing.

callbacks list [--task ID] [--failed]  -> list_deliveries + format_table / format_json
callbacks redeliver ID                 -> redeliver
callbacks secret --user NAME [--rotate] -> user_secrets + format_secrets
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from kling_gateway.callbacks.secrets import DEFAULT_ROTATION_GRACE, SecretStore
from kling_gateway.cli.tables import format_table as align
from kling_gateway.storage.base import CallbackDelivery, Store
from kling_gateway.storage.rows import callback_view

COLUMNS = ("id", "task_id", "event", "state", "attempts", "last_status", "next_attempt_at", "url")


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


def delivery_row(delivery: CallbackDelivery) -> dict[str, Any]:
    """One delivery as a plain dict (the body left out: it can be large)."""
    ids = {"id": delivery.id, "task_id": delivery.task_id, "user_id": delivery.user_id}
    return {
        **ids,
        "event": delivery.event,
        **callback_view(delivery),
        "created_at": delivery.created_at,
    }


async def list_deliveries(
    store: Store, task_id: str | None = None, failed_only: bool = False, limit: int = 100
) -> list[dict[str, Any]]:
    """The newest deliveries first, optionally of one task and/or only the failed ones."""
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


# -- printing -----------------------------------------------------------------------------


def _cell(name: str, value: Any) -> str:
    if value is None:
        return "-"
    if name.endswith("_at") and isinstance(value, float):
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] = COLUMNS) -> str:
    """Aligned columns, one delivery per line, each followed by its last error if any."""
    if not rows:
        return "no callback deliveries"
    cells = [[_cell(c, row.get(c)) for c in columns] for row in rows]
    header, *aligned = align(columns, cells).split("\n")
    lines = [header]
    for row, line in zip(rows, aligned, strict=True):
        lines.append(line)
        if row.get("last_error"):
            lines.append(f"    last error: {row['last_error']}")
    return "\n".join(lines)


def format_json(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as one JSON document (for scripts)."""
    return msgspec.json.format(msgspec.json.encode(list(rows))).decode()


def format_secrets(found: UserSecrets, grace_seconds: float = DEFAULT_ROTATION_GRACE) -> str:
    """What ``callbacks secret`` prints: the secret alone on the first line, for scripts."""
    lines = [found.current]
    if found.rotated:
        lines.append(f"# rotated: the previous secret still signs callbacks for {grace_seconds:g}s")
    elif found.previous:
        lines.append(f"# {len(found.previous)} rotated-out secret(s) still signing")
    return "\n".join(lines)


def format_redeliver(delivery_id: str, queued: bool) -> str:
    if queued:
        return f"callback {delivery_id} queued for delivery"
    return f"no callback delivery {delivery_id}"
