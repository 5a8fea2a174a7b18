"""/admin/v1/accounts, /tasks and /callbacks: the upstream accounts and their slots, every
user's tasks, the callback outbox; the store calls of the `accounts` and `callbacks` commands
(docs/admin.md)."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from kling_gateway.api.admin.common import (
    MAX_PAGE,
    PREFIX,
    body,
    guarded,
    json,
    listing,
    whole,
)
from kling_gateway.api.context import AppContext
from kling_gateway.api.query import query_flag, query_number, query_text, query_whole
from kling_gateway.api.routes.tasks import task_state_filter
from kling_gateway.domain.accounts import (
    MAX_CONCURRENCY,
    AccountNameError,
    AccountState,
    account_view,
    new_account,
)
from kling_gateway.protocol.errors import BadRequest, Conflict, NotFound, ServiceUnavailable
from kling_gateway.storage.base import AccountBusy, AccountExists, Principal, TaskFilter
from kling_gateway.storage.rows import delivery_row
from kling_gateway.storage.upstream_keys import add_account


class NewAccount(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    access_key: str
    secret_key: str
    max_concurrency: float = 5  # whole
    models: list[str] = []
    weight: float = 1.0
    base_url: str | None = None


class AccountChange(msgspec.Struct, forbid_unknown_fields=True):
    state: str
    reason: str | None = None


class OperationsEndpoints:
    """The admin API's upstream accounts, tasks and callbacks endpoints over one context
    (the route table is ``operations_routes``)."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx, self.store = ctx, ctx.store

    async def accounts(self, _: Request, __: Principal) -> Response:
        rows = await self.store.list_upstream_accounts()
        return listing([account_view(row.account) for row in rows])

    async def create_account(self, request: Request, _: Principal) -> Response:
        new = await body(self.ctx, request, NewAccount)
        if self.ctx.sealer is None:
            raise ServiceUnavailable("this gateway has no server key to seal account keys with")
        if not new.secret_key.strip():
            raise BadRequest("field `secret_key` must not be blank")
        try:
            account = new_account(
                new.name,
                new.access_key,
                max_concurrency=whole("max_concurrency", new.max_concurrency, 1, MAX_CONCURRENCY),
                models=frozenset(m.strip() for m in new.models if m.strip()),
                weight=new.weight,
                base_url=new.base_url,
            )
            await add_account(self.store, self.ctx.sealer, account, new.secret_key)
        except AccountNameError as exc:
            raise BadRequest(f"field `{exc.field}`: {exc.rule}") from exc
        except AccountExists as exc:
            raise Conflict(str(exc)) from exc
        return json(account_view(account), 201)

    async def change_account(self, request: Request, _: Principal) -> Response:
        name = str(request.path_params["name"])
        change = await body(self.ctx, request, AccountChange)
        try:
            state = AccountState(change.state)
        except ValueError as exc:
            raise BadRequest("field `state` must be enabled or disabled") from exc
        reason = change.reason or (
            "disabled by an operator" if state is AccountState.DISABLED else None
        )
        if not await self.store.set_upstream_account_state(name, state, reason):
            raise NotFound(f"no account named {name!r}")
        return json(_account(await self.store.list_upstream_accounts(), name))

    async def remove_account(self, request: Request, _: Principal) -> Response:
        name = str(request.path_params["name"])
        try:
            removed = await self.store.remove_upstream_account(name)
        except AccountBusy as exc:
            raise Conflict(f"{exc}; disable it and wait for them to end") from exc
        if not removed:
            raise NotFound(f"no account named {name!r}")
        return json({"name": name, "removed": True})

    async def tasks(self, request: Request, _: Principal) -> Response:
        user_id: str | None = None
        user = query_text(request, "user")
        if user is not None:
            user_id = await self.store.find_user_id(user)
            if user_id is None:
                return json({"items": [], "count": 0})
        flt = TaskFilter(
            type=query_text(request, "type"),
            state=task_state_filter(query_text(request, "state")),
            created_at_min=query_number(request, "created_at_min"),
            created_at_max=query_number(request, "created_at_max"),
            limit=query_whole(request, "limit", 1, MAX_PAGE, 20),
            offset=query_whole(request, "offset", 0, 10**9, 0),
        )
        items, total = await self.store.list_all_task_records(flt, user_id)
        # The stored records spliced in, as retrieve_batch answers them (links made absolute).
        resolved = [self.ctx.links.resolve(item) for item in items]
        body_bytes = b'{"items":[' + b",".join(resolved) + b'],"count":%d}' % total
        return Response(body_bytes, media_type="application/json")

    async def task(self, request: Request, _: Principal) -> Response:
        task_id = str(request.path_params["id"])
        stored = None if "\x00" in task_id else await self.store.load_task(task_id)
        if stored is None:
            raise NotFound(f"no task {task_id!r}")
        deliveries = await self.store.list_callbacks(task_id=task_id)
        doc = {
            "record": msgspec.Raw(self.ctx.links.resolve(stored.task.record_json())),
            "account": stored.account,
            "attempts": stored.attempts,
            "callbacks": [delivery_row(d) for d in deliveries],
        }
        return json(doc)

    async def callbacks(self, request: Request, _: Principal) -> Response:
        found = await self.store.list_callbacks(
            task_id=query_text(request, "task"),
            failed_only=query_flag(request, "failed"),
            limit=query_whole(request, "limit", 1, 1000, 100),
        )
        return listing([delivery_row(d) for d in found])

    async def redeliver(self, request: Request, _: Principal) -> Response:
        delivery_id = str(request.path_params["id"])
        if not await self.store.redeliver_callback(delivery_id, time.time()):
            raise NotFound(f"no callback delivery {delivery_id!r}")
        return json({"id": delivery_id, "queued": True})


def operations_routes(ctx: AppContext) -> list[BaseRoute]:
    api = OperationsEndpoints(ctx)

    def route(path: str, fn: Any, method: str = "GET") -> Route:
        return Route(PREFIX + path, guarded(ctx, fn), methods=[method])

    return [
        route("/accounts", api.accounts),
        route("/accounts", api.create_account, "POST"),
        route("/accounts/{name}", api.change_account, "PATCH"),
        route("/accounts/{name}", api.remove_account, "DELETE"),
        route("/tasks", api.tasks),
        route("/tasks/{id}", api.task),
        route("/callbacks", api.callbacks),
        route("/callbacks/{id}/redeliver", api.redeliver, "POST"),
    ]


def _account(rows: list[Any], name: str) -> dict[str, Any]:
    return next(account_view(row.account) for row in rows if row.account.name == name)
