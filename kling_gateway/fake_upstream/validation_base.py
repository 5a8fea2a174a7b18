"""What the fake's validation modules share: the error answer and the basic value checks."""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request


class FakeApiError(Exception):
    """An error answer of the fake: HTTP status, upstream code, message."""

    def __init__(
        self, http_status: int, code: int, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.code = code
        self.message = message
        self.headers = headers or {}


def invalid(message: str) -> FakeApiError:
    return FakeApiError(400, 1201, message)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def page_param(request: Request, name: str, default: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= high:
        raise FakeApiError(400, 1201, f"{name} must be an integer within [1, {high}]")
    return int(raw)
