"""How much of the fields the contract does not know a task keeps (docs/contract.md §1).

Unknown fields are kept in the stored request as sent (§5: clients send SDK options and
extras), but only within ``UNKNOWN_FIELDS_BUDGET`` bytes of their JSON: a body of unknown
fields up to the body limit would otherwise be stored twice per task (the request and the
record) and answered in every retrieve and batch. Fields are kept in the order sent while they
fit; one that does not is dropped (a later, smaller one may still fit), and the request then
says what was dropped under ``DROPPED_KEY``: ``{"count", "bytes", "fields"}``, the names of the
first ``MAX_NAMES`` dropped fields, each cut to ``MAX_NAME_CHARS`` characters. A client's own
field of that name is never kept.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import msgspec

UNKNOWN_FIELDS_BUDGET = 16 * 1024
DROPPED_KEY = "_dropped_unknown_fields"
MAX_NAMES = 16
MAX_NAME_CHARS = 64

_encode = msgspec.json.Encoder().encode


def bound_unknown_fields(request: dict[str, Any], known: Collection[str]) -> dict[str, Any]:
    """``request`` with its unknown fields kept within the budget (the same dict when they
    fit, as almost every request's do)."""
    left = UNKNOWN_FIELDS_BUDGET
    kept: dict[str, Any] = {}
    dropped: list[str] = []
    dropped_bytes = 0
    for key, value in request.items():
        if key == DROPPED_KEY:
            continue  # only the gateway writes it
        if key in known:
            kept[key] = value
            continue
        size = len(_encode({key: value}))
        if size <= left:
            kept[key], left = value, left - size
        else:
            dropped.append(key)
            dropped_bytes += size
    if not dropped:
        return request if DROPPED_KEY not in request else kept
    kept[DROPPED_KEY] = {
        "count": len(dropped),
        "bytes": dropped_bytes,
        "fields": [name[:MAX_NAME_CHARS] for name in dropped[:MAX_NAMES]],
    }
    return kept
