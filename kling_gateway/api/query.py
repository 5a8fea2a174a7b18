"""Query parameters of the GET resources, each bad one a 400 naming it."""

from __future__ import annotations

import math

from starlette.requests import Request

from kling_gateway.domain.numbers import whole_or_default
from kling_gateway.protocol.errors import BadRequest


def query_text(request: Request, name: str) -> str | None:
    value = request.query_params.get(name)
    if value is not None and "\x00" in value:
        raise BadRequest(f"query parameter `{name}` must not contain a NUL character")
    return value or None


def query_number(request: Request, name: str) -> float | None:
    value = query_text(request, name)
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError as exc:
        raise BadRequest(f"query parameter `{name}` must be a number") from exc
    # float() accepts inf and nan; no parameter means anything by them.
    if not math.isfinite(number):
        raise BadRequest(f"query parameter `{name}` must be a finite number")
    return number


def query_whole(request: Request, name: str, low: int, high: int, default: int) -> int:
    value = query_number(request, name)
    return whole_or_default(f"query parameter `{name}`", value, low, high, default)


def query_flag(request: Request, name: str) -> bool:
    value = (query_text(request, name) or "false").lower()
    if value not in ("true", "false", "1", "0"):
        raise BadRequest(f"query parameter `{name}` must be true or false")
    return value in ("true", "1")
