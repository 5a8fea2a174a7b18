"""The operator's API under /admin/v1/ (docs/admin.md): admin tokens only, the error shape of
docs/contract.md §4, and the same store calls as the CLI, so operating the gateway never
needs a shell on the database host."""

from __future__ import annotations

from starlette.routing import BaseRoute

from kling_gateway.api.admin.billing import billing_routes
from kling_gateway.api.admin.operations import operations_routes
from kling_gateway.api.admin.people import people_routes
from kling_gateway.api.context import AppContext


def admin_routes(ctx: AppContext) -> list[BaseRoute]:
    return [*people_routes(ctx), *operations_routes(ctx), *billing_routes(ctx)]
