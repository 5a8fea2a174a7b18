"""Everything but the two API endpoints, on Starlette: docs, files, health and the 404s."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from kling_gateway.api.admin import admin_routes
from kling_gateway.api.asgi import error_body, unexpected_error
from kling_gateway.api.context import AppContext
from kling_gateway.api.files import VideoFilesRoute
from kling_gateway.api.observe import observe_routes
from kling_gateway.api.routes.events import event_routes
from kling_gateway.api.routes.kling_callbacks import kling_callback_routes
from kling_gateway.api.routes.usage import usage_routes
from kling_gateway.api.ui import ui_routes
from kling_gateway.protocol.errors import (
    ApiError,
    BadRequest,
    InternalError,
    InvalidToken,
    NoApi,
    ServiceUnavailable,
)

log = logging.getLogger("kling_gateway.api")

Lifespan = Callable[[Starlette], AbstractAsyncContextManager[None]]


def _packaged(name: str) -> bytes:
    return resources.files("kling_gateway.api").joinpath(name).read_bytes()


def error_response(request: Request, error: ApiError) -> Response:
    trace_id = request.scope.get("state", {}).get("trace_id", "")
    return Response(
        error_body(error, trace_id),
        status_code=error.status,
        media_type="application/json",
        headers=error.headers,
    )


async def _not_found(request: Request, exc: Exception) -> Response:
    message = f"no API at {request.method} {request.url.path}"
    return error_response(request, NoApi(message))


async def _server_error(request: Request, exc: Exception) -> Response:
    trace_id = request.scope.get("state", {}).get("trace_id", "")
    return error_response(request, unexpected_error(exc, trace_id, request.url.path))


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(request, exc)


def build_pages(ctx: AppContext, lifespan: Lifespan) -> Starlette:
    openapi, docs = _packaged("openapi.json"), _packaged("docs.html")

    async def openapi_json(_: Request) -> Response:
        return Response(openapi, media_type="application/json")

    async def docs_page(_: Request) -> Response:
        return HTMLResponse(docs)

    async def health(_: Request) -> Response:
        # How many requests wait and how many events streams are open in this process.
        waiters = ctx.waiters
        return JSONResponse({"ok": True, "waiting": waiters.active, "streams": waiters.streams})

    routes: list[BaseRoute] = [
        Route("/openapi.json", openapi_json),
        Route("/docs", docs_page),
        Route("/healthz", health),
        Route(
            "/files/videos/{name:path}",
            VideoFilesRoute(ctx.files, presign=ctx.settings.storage_presign).handle,
            methods=["GET", "HEAD"],
            name="videos",
        ),
        *kling_callback_routes(ctx),
        *event_routes(ctx),
        *observe_routes(ctx),
        *usage_routes(ctx),
        *admin_routes(ctx),
        *ui_routes(),
    ]
    handlers: dict[Any, Any] = {
        404: _not_found,
        405: _not_found,
        HTTPException: _http_error,
        ApiError: _api_error,
        Exception: _server_error,
    }
    return Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code in (404, 405):
        return await _not_found(request, exc)
    return error_response(request, http_error(exc.status_code, exc.detail))


def http_error(status: int, detail: str) -> ApiError:
    """A Starlette ``HTTPException`` as the API error of its status (it keeps the status): a
    4xx is the client's fault (``bad_request``), a 5xx is ours."""
    kind: type[ApiError]
    if status == 401:
        kind = InvalidToken
    elif status == 503:
        return ServiceUnavailable(detail)
    elif 400 <= status < 500:
        kind = BadRequest
    else:
        kind = InternalError
    error = kind(detail)
    error.status = status
    return error
