"""What every admin resource shares: the admin-token check, bodies, query values, answers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from kling_gateway.api.asgi import read_body
from kling_gateway.api.context import AppContext
from kling_gateway.api.requests import decode_body
from kling_gateway.protocol.errors import BadRequest
from kling_gateway.protocol.task import API_ADMIN
from kling_gateway.storage.base import Principal

T = TypeVar("T")
PREFIX = "/admin/v1"
MAX_PAGE = 100
Endpoint = Callable[[Request], Awaitable[Response]]
AdminEndpoint = Callable[[Request, Principal], Awaitable[Response]]


def guarded(ctx: AppContext, endpoint: AdminEndpoint) -> Endpoint:
    """``endpoint`` behind the admin token: none or a bad one is 401, a user's token 403
    ``forbidden`` (docs/contract.md §4), each in the error shape, like every other error."""

    async def run(request: Request) -> Response:
        principal = await ctx.authorize(request.scope, API_ADMIN)
        return await endpoint(request, principal)

    return run


async def body(ctx: AppContext, request: Request, kind: type[T]) -> T:
    """The JSON body as ``kind``: a bad one is a 400 naming the field."""
    raw = await read_body(request.receive, ctx.settings.max_body_bytes)
    return decode_body(raw, kind)


def json(doc: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(doc), status_code=status, media_type="application/json")


def listing(items: list[Any]) -> Response:
    return json({"items": items, "count": len(items)})


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
        return float(value)
    except ValueError as exc:
        raise BadRequest(f"query parameter `{name}` must be a number") from exc


def query_whole(request: Request, name: str, low: int, high: int, default: int) -> int:
    value = query_number(request, name)
    if value is None:
        return default
    if value != int(value) or not low <= value <= high:
        raise BadRequest(f"query parameter `{name}` must be a whole number from {low} to {high}")
    return int(value)


def query_flag(request: Request, name: str) -> bool:
    value = (query_text(request, name) or "false").lower()
    if value not in ("true", "false", "1", "0"):
        raise BadRequest(f"query parameter `{name}` must be true or false")
    return value in ("true", "1")
