"""GET /kling/usage: the caller's credits and usage (an extension, docs/contract.md §8.9), with
the same token as /kling/tasks: the application's balance, holds and limits, and the usage
report of its ledger (query ``since``, ``by``, ``model`` as GET /admin/v1/usage takes them)."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from kling_gateway.api.context import AppContext
from kling_gateway.api.usage import usage_doc
from kling_gateway.protocol.task import API_TASKS


def usage_routes(ctx: AppContext) -> list[BaseRoute]:
    async def usage(request: Request) -> Response:
        principal = await ctx.authorize(request.scope, API_TASKS)
        # The token's application: a user may have more than one.
        app_id = principal.application_id
        app = await ctx.store.get_application(app_id)
        doc = {
            "application": None if app is None else app.as_json(),
            "usage": await usage_doc(ctx.store, request, principal.user_name, app_id),
        }
        return Response(msgspec.json.encode(doc), media_type="application/json")

    return [Route("/kling/usage", usage, methods=["GET"])]
