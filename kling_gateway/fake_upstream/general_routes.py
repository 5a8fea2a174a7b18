"""The routes of the fake's custom elements and voices (state and rules in ``general.py``),
served through the fake's common request handling (faults, authentication, envelope)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kling_gateway.fake_upstream.general import ELEMENTS, RESOURCES, VOICES, FakeGeneral
from kling_gateway.fake_upstream.state import FakeState
from kling_gateway.fake_upstream.validation_base import FakeApiError, page_param

Action = Callable[[Request, bytes, str], Awaitable[Any]]
Api = Callable[[Request, str, Action], Awaitable[Response]]


def _resource(request: Request) -> str:
    resource = str(request.path_params["resource"])
    if resource not in RESOURCES:
        raise FakeApiError(404, 1202, f"no such method: /v1/general/{resource}")
    return resource


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError as exc:
        raise FakeApiError(400, 1200, "the request body is not valid JSON") from exc


def general_routes(api: Api, general: FakeGeneral, state: FakeState) -> list[Route]:
    async def create(request: Request, body: bytes, account: str) -> Any:
        resource = _resource(request)

        def has_video(video_id: object) -> bool:
            return isinstance(video_id, str) and state.video_of(account, video_id)

        return general.create(account, resource, _json(body), has_video)

    async def get(request: Request, _body: bytes, account: str) -> Any:
        return general.find(account, _resource(request), str(request.path_params["ident"]))

    async def listing(request: Request, _body: bytes, account: str) -> Any:
        page_num = page_param(request, "pageNum", 1, 1000)
        page_size = page_param(request, "pageSize", 30, 500)
        return general.page(account, _resource(request), page_num, page_size)

    async def delete(request: Request, body: bytes, account: str) -> Any:
        what = str(request.path_params["what"])
        if what not in ("elements", "voices"):
            raise FakeApiError(404, 1202, f"no such method: /v1/general/delete-{what}")
        return general.delete(account, ELEMENTS if what == "elements" else VOICES, _json(body))

    def route(name: str, action: Action) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await api(request, name, action)

        return endpoint

    async def admin(_request: Request) -> Response:
        tasks = [
            {**t.to_json(general.config), "account": t.account} for t in general.tasks.values()
        ]
        return JSONResponse({"creates": general.creates, "tasks": tasks})

    return [
        Route("/v1/general/delete-{what}", route("general_delete", delete), methods=["POST"]),
        Route("/v1/general/{resource}", route("general_create", create), methods=["POST"]),
        Route("/v1/general/{resource}", route("general_list", listing), methods=["GET"]),
        Route("/v1/general/{resource}/{ident}", route("general_get", get), methods=["GET"]),
        Route("/fake-admin/general", admin, methods=["GET"]),
    ]
