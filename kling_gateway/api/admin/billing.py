"""/admin/v1/usage, /ledger and task refunds: credits as `kling-gateway usage` and the ledger
show them (docs/billing.md), through the same store calls and report."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from kling_gateway.api.admin.common import PREFIX, body, guarded, json, listing
from kling_gateway.api.context import AppContext
from kling_gateway.api.query import query_number, query_text
from kling_gateway.api.usage import usage_doc
from kling_gateway.protocol.errors import NotFound
from kling_gateway.storage.base import Principal


class Refund(msgspec.Struct, forbid_unknown_fields=True):
    note: str | None = None


def billing_routes(ctx: AppContext) -> list[BaseRoute]:
    store = ctx.store

    async def usage(request: Request, _: Principal) -> Response:
        return json(await usage_doc(store, request, query_text(request, "user")))

    async def ledger(request: Request, _: Principal) -> Response:
        entries = await store.ledger_entries(
            user_name=query_text(request, "user"), since=query_number(request, "since")
        )
        return listing([entry.as_json() for entry in entries])

    async def refund(request: Request, _: Principal) -> Response:
        task_id = str(request.path_params["id"])
        note = (await body(ctx, request, Refund)).note
        if "\x00" in task_id or await store.load_task(task_id) is None:
            raise NotFound(f"no task {task_id!r}")
        credits = await store.refund_task(task_id, time.time(), note=note)
        return json({"task_id": task_id, "refunded": credits})

    def route(path: str, fn: Any, method: str = "GET") -> Route:
        return Route(PREFIX + path, guarded(ctx, fn), methods=[method])

    return [
        route("/usage", usage),
        route("/ledger", ledger),
        route("/tasks/{id}/refund", refund, "POST"),
    ]
