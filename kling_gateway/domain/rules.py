"""The field rules every create body shares (docs/contract.md §2, §7): each violation is a 400
``bad_request`` naming the field. ``domain.videos`` and ``domain.kinds`` build on them."""

from __future__ import annotations

import math
from urllib.parse import urlsplit

from kling_gateway.domain.task import is_blank
from kling_gateway.protocol.enums import CALLBACK_EVENTS, MAX_PROMPT
from kling_gateway.protocol.errors import BadRequest


def one_of(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise BadRequest(f"field `{name}` must be one of {', '.join(allowed)}; got {value!r}")


def required_one_of(name: str, value: str | None, allowed: tuple[str, ...]) -> str:
    """A required enumerated field: missing and unknown values are both a 400."""
    if value is None:
        raise BadRequest(f"field `{name}` is required: {', '.join(allowed)}")
    one_of(name, value, allowed)
    return value


def text(name: str, value: str | None, limit: int = MAX_PROMPT) -> None:
    if value is not None and len(value) > limit:
        raise BadRequest(f"field `{name}` is longer than {limit} characters")


def required_text(name: str, value: str | None, limit: int = MAX_PROMPT) -> str:
    if value is None or is_blank(value):
        raise BadRequest(f"field `{name}` is required")
    text(name, value, limit)
    return value


def number_range(name: str, value: float | None, low: float, high: float) -> None:
    if value is not None and not (math.isfinite(value) and low <= value <= high):
        raise BadRequest(f"field `{name}` must be between {low:g} and {high:g}")


def http_url(name: str, value: str | None) -> None:
    if value is None:
        return
    problem = f"field `{name}` must be an http or https URL"
    if any(ord(c) <= 0x20 or c == "\x7f" for c in value):
        raise BadRequest(f"{problem} without spaces or control characters")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        raise BadRequest(f"{problem}: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest(problem)


def required_url(name: str, value: str | None) -> str:
    if value is None:
        raise BadRequest(f"field `{name}` is required")
    http_url(name, value)
    return value


def callback_url(value: str | None) -> str | None:
    http_url("callback_url", value)
    return value


def callback_events(events: list[str] | None) -> tuple[str, ...]:
    for event in events or ():
        if event not in CALLBACK_EVENTS:
            raise BadRequest(f"field `callback_events` may hold only {', '.join(CALLBACK_EVENTS)}")
    return tuple(dict.fromkeys(events or ()))


def asynchronous(callback: str | None, async_: bool | None) -> bool:
    """Asynchronous mode: a ``callback_url``, or ``async: true`` (§2)."""
    return callback is not None or async_ is True
