"""How the ``kling-gateway callbacks ...`` commands print what ``callbacks/admin.py`` found."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from kling_gateway.callbacks.admin import UserSecrets
from kling_gateway.callbacks.secrets import DEFAULT_ROTATION_GRACE
from kling_gateway.cli.tables import format_table as align

COLUMNS = ("id", "task_id", "event", "state", "attempts", "last_status", "next_attempt_at", "url")


def _cell(name: str, value: Any) -> str:
    if value is None:
        return "-"
    if name.endswith("_at") and isinstance(value, float):
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


def _shown(row: dict[str, Any], column: str) -> Any:
    """A pending delivery whose attempts failed so far shows as ``retrying``."""
    if column == "state" and row.get("state") == "pending" and (row.get("attempts") or 0) > 0:
        return "retrying"
    return row.get(column)


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] = COLUMNS) -> str:
    """Aligned columns, one delivery per line, each followed by its last error if any."""
    if not rows:
        return "no callback deliveries"
    cells = [[_cell(c, _shown(row, c)) for c in columns] for row in rows]
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
