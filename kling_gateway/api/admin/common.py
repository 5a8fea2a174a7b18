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
from kling_gateway.domain.numbers import whole_number
from kling_gateway.protocol.task import API_ADMIN
from kling_gateway.storage.base import Principal

T = TypeVar("T")
PREFIX = "/admin/v1"
MAX_PAGE = 100
MAX_IN_FLIGHT = 1_000_000
MAX_CREDITS = 10**12  # one grant or adjustment
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


def whole(name: str, value: float, low: int, high: int) -> int:
    """A JSON number that must be a whole one (``5`` and ``5.0`` alike, as JSON Schema's
    ``integer`` has it) from ``low`` to ``high`` (the columns are 32 or 64 bits)."""
    return whole_number(f"field `{name}`", value, low, high)
