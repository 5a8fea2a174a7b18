"""/admin/v1/users, /applications, /tokens and /assets: who may call the gateway, with the
store calls the `tokens` and `assets` commands make (docs/admin.md)."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from kling_gateway.api.admin.common import (
    MAX_CREDITS,
    MAX_IN_FLIGHT,
    PREFIX,
    body,
    guarded,
    json,
    listing,
    whole,
)
from kling_gateway.api.context import AppContext
from kling_gateway.domain.billing import Application
from kling_gateway.domain.ids import ASSET_KINDS
from kling_gateway.protocol.errors import BadRequest, NotFound, ServiceUnavailable
from kling_gateway.protocol.task import API_ADMIN
from kling_gateway.storage.base import CredentialInfo, Principal, UnknownApplication, UserInfo
from kling_gateway.storage.tokens import ALL_APIS, issue_token, parse_apis, with_admin

TOKEN_STATUSES = ("active", "expired", "revoked")


class ApplicationChange(msgspec.Struct, forbid_unknown_fields=True):
    disabled: bool | None = None
    max_in_flight: float | None = None  # whole; 0: no limit; absent: unchanged


class Grant(msgspec.Struct, forbid_unknown_fields=True):
    credits: float  # whole; negative: an adjustment
    note: str | None = None


class NewToken(msgspec.Struct, forbid_unknown_fields=True):
    user: str
    apis: list[str] | None = None
    admin: bool = False
    expires_in_days: float | None = None


class Rotation(msgspec.Struct, forbid_unknown_fields=True):
    grace_seconds: float = 86400.0  # how long the old secret keeps signing


class NewAsset(msgspec.Struct, forbid_unknown_fields=True):
    user: str
    kind: str
    upstream_id: str


def user_view(user: UserInfo, application: Application | None) -> dict[str, Any]:
    return {
        "id": user.id,
        "name": user.name,
        "created_at": user.created_at,
        "application": None if application is None else application.as_json(),
        "tokens": user.tokens,
        "tasks": user.tasks,
    }


def token_view(info: CredentialInfo, now: float) -> dict[str, Any]:
    if info.revoked_at is not None:
        status = "revoked"
    elif info.expires_at is not None and info.expires_at <= now:
        status = "expired"
    else:
        status = "active"
    return {
        "id": info.id,
        "user": info.user_name,
        "application_id": info.application_id,
        "prefix": info.token_prefix,
        "apis": list(info.apis),
        "admin": API_ADMIN in info.apis,
        "created_at": info.created_at,
        "expires_at": info.expires_at,
        "revoked_at": info.revoked_at,
        "status": status,
    }


def _user_name(value: str) -> str:
    name = value.strip()
    if not name or "\x00" in name or len(name) > 128:
        raise BadRequest("field `user` must be a user name (1 to 128 characters)")
    return name


class PeopleEndpoints:
    """The admin API's users, applications, credits, tokens, assets and signing secrets
    endpoints over one context (the route table is ``people_routes``)."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx, self.store = ctx, ctx.store

    async def users(self, _: Request, __: Principal) -> Response:
        apps = {app.user_name: app for app in await self.store.list_applications()}
        return listing([user_view(u, apps.get(u.name)) for u in await self.store.list_users()])

    async def applications(self, _: Request, __: Principal) -> Response:
        return listing([app.as_json() for app in await self.store.list_applications()])

    async def change_application(self, request: Request, _: Principal) -> Response:
        name = str(request.path_params["user"])
        change = await body(self.ctx, request, ApplicationChange)
        limit = None
        if change.max_in_flight is not None:
            limit = whole("max_in_flight", change.max_in_flight, 0, MAX_IN_FLIGHT)
        changed = await self.store.set_application(
            name, disabled=change.disabled, max_in_flight=limit
        )
        if not changed:
            raise NotFound(f"no user named {name!r}")
        self.ctx.auth.forget()
        return json(await self._application(name))

    async def show_application(self, request: Request, _: Principal) -> Response:
        return json(await self._application(str(request.path_params["user"])))

    async def grant(self, request: Request, _: Principal) -> Response:
        name = str(request.path_params["user"])
        given = await body(self.ctx, request, Grant)
        credits = whole("credits", given.credits, -MAX_CREDITS, MAX_CREDITS)
        if credits == 0:
            raise BadRequest("field `credits` must not be 0")
        try:
            app = await self.store.grant_credits(name, credits, time.time(), note=given.note)
        except UnknownApplication as exc:
            raise NotFound(f"no user named {name!r}") from exc
        return json(app.as_json(), 201)

    async def _application(self, name: str) -> dict[str, Any]:
        app = await self.store.find_application(name)
        if app is None:
            raise NotFound(f"no user named {name!r}")
        return app.as_json()

    async def tokens(self, _: Request, __: Principal) -> Response:
        now = time.time()
        return listing([token_view(info, now) for info in await self.store.list_credentials()])

    async def create_token(self, request: Request, _: Principal) -> Response:
        new = await body(self.ctx, request, NewToken)
        try:
            apis = parse_apis(",".join(new.apis)) if new.apis is not None else ALL_APIS
        except ValueError as exc:
            raise BadRequest(f"field `apis`: {exc}") from exc
        if new.expires_in_days is not None and not new.expires_in_days > 0:
            raise BadRequest("field `expires_in_days` must be positive")
        issued = await issue_token(
            self.store,
            _user_name(new.user),
            apis=with_admin(apis, new.admin),
            expires_in_days=new.expires_in_days,
            default_credits=self.ctx.settings.default_credits_value,  # as `tokens create` does
        )
        doc = {
            "token": issued.token,  # shown this once; the self.store keeps only its hash
            "id": issued.credential_id,
            "user_id": issued.user_id,
            "application_id": issued.application_id,
            "apis": list(with_admin(apis, new.admin)),
        }
        return json(doc, 201)

    async def revoke_token(self, request: Request, _: Principal) -> Response:
        which = str(request.path_params["token"])
        count = await self.store.revoke_credential(which, time.time())
        self.ctx.auth.forget()
        if not count:
            raise NotFound(f"no unrevoked token with id or prefix {which!r}")
        return json({"revoked": count})

    async def add_asset(self, request: Request, _: Principal) -> Response:
        new = await body(self.ctx, request, NewAsset)
        if new.kind not in ASSET_KINDS:
            raise BadRequest(f"field `kind` must be one of {', '.join(ASSET_KINDS)}")
        upstream = new.upstream_id.strip()
        if not upstream:
            raise BadRequest("field `upstream_id` must not be blank")
        now = time.time()
        user_id, _app = await self.store.ensure_account(_user_name(new.user), now)
        asset_id = await self.store.add_asset(
            user_id=user_id, kind=new.kind, upstream_id=upstream, now=now
        )
        return json({"id": asset_id, "kind": new.kind, "user_id": user_id}, 201)

    async def secret(self, request: Request, _: Principal) -> Response:
        name = str(request.path_params["user"])
        rotate = request.method == "POST"
        grace = (await body(self.ctx, request, Rotation)).grace_seconds if rotate else 0.0
        if grace < 0:
            raise BadRequest("field `grace_seconds` must be 0 or more")
        if self.ctx.signing_secrets is None:
            raise ServiceUnavailable(
                "this gateway has no server key to seal callback signing secrets with"
            )
        found = await self.ctx.signing_secrets(name, rotate, grace)
        if found is None:
            raise NotFound(f"no user named {name!r}")
        current, previous = found
        return json({"user": name, "secret": current, "previous": previous, "rotated": rotate})


def people_routes(ctx: AppContext) -> list[BaseRoute]:
    api = PeopleEndpoints(ctx)

    def route(path: str, fn: Any, method: str = "GET") -> Route:
        return Route(PREFIX + path, guarded(ctx, fn), methods=[method])

    return [
        route("/users", api.users),
        route("/users/{user}/secret", api.secret),
        route("/users/{user}/secret", api.secret, "POST"),
        route("/applications", api.applications),
        route("/applications/{user}", api.show_application),
        route("/applications/{user}", api.change_application, "PATCH"),
        route("/applications/{user}/grants", api.grant, "POST"),
        route("/tokens", api.tokens),
        route("/tokens", api.create_token, "POST"),
        route("/tokens/{token}", api.revoke_token, "DELETE"),
        route("/assets", api.add_asset, "POST"),
    ]
