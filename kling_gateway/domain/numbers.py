"""The one check of "a whole number in a range", shared by bodies, admin fields and queries."""

from __future__ import annotations

import math

from kling_gateway.protocol.errors import BadRequest


def whole_number(what: str, value: float, low: int, high: int) -> int:
    """``value`` as an int when it is a whole number (``5`` and ``5.0`` alike, as JSON Schema's
    ``integer`` has it) from ``low`` to ``high``; else a 400 naming ``what`` (e.g.
    "field `limit`"). Infinities and NaN are refused too, never left to ``int()`` to raise."""
    if not math.isfinite(value) or value != int(value) or not low <= value <= high:
        raise BadRequest(f"{what} must be a whole number from {low} to {high}")
    return int(value)


def whole_or_default(what: str, value: float | None, low: int, high: int, default: int) -> int:
    """As ``whole_number``, with ``default`` for an absent ``value``."""
    return default if value is None else whole_number(what, value, low, high)
