"""The ASGI application: ``create_app(settings, store)``.

The API endpoints (POST /kling/tasks, and the create endpoint of every task kind: /kling/videos,
/kling/motion, /kling/lip-sync, /kling/talking-photo) are dispatched straight to their handlers,
/mcp to the MCP endpoint (api/mcp); everything else (docs, files, events, health, 404s) goes
through Starlette. Errors become the contract's error body in exactly one place,
``GatewayApp._serve``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import cast

from starlette.applications import Starlette

from kling_gateway.api.asgi import (
    ASGIApp,
    Receive,
    Reply,
    Scope,
    Send,
    error_reply,
    send_reply,
    unexpected_error,
    with_trace_id,
)
from kling_gateway.api.auth import Authenticator
from kling_gateway.api.context import ApiSettings, AppContext
from kling_gateway.api.mcp import MCP_PATH, mcp_endpoint
from kling_gateway.api.pages import build_pages
from kling_gateway.api.routes.tasks import TasksEndpoint
from kling_gateway.api.routes.videos import CreateEndpoint
from kling_gateway.api.waiting import ClientGone, shutting_down
from kling_gateway.domain.ids import new_trace_id
from kling_gateway.domain.kinds import KINDS
from kling_gateway.infra.files import VideoFiles
from kling_gateway.infra.notify import LocalTaskEvents, TaskEvents
from kling_gateway.infra.ratelimit import MemoryRateLimiter, NoRateLimit, RateLimiter
from kling_gateway.protocol.errors import ApiError, InternalError
from kling_gateway.storage.base import Store

log = logging.getLogger("kling_gateway.api")

Handler = Callable[[Scope, Receive, str], Awaitable[Reply]]
Service = Callable[[AppContext], Awaitable[Callable[[], Awaitable[None]]]]


class GatewayApp:
    """Routes the API hot paths directly and hands the rest to Starlette."""

    def __init__(
        self,
        ctx: AppContext,
        handlers: dict[str, Handler],
        pages: Starlette,
        mounts: dict[str, ASGIApp] | None = None,
    ) -> None:
        self.ctx = ctx
        self._handlers = handlers
        self._pages = pages
        # Paths served whole (every method) by an ASGI app of their own: /mcp.
        self._mounts = mounts or {}

    def lifespan(self) -> AbstractAsyncContextManager[None]:
        """Startup and shutdown outside an ASGI server (embedding, tests)."""
        return cast(
            AbstractAsyncContextManager[None], self._pages.router.lifespan_context(self._pages)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"].rstrip("/")
            handler = self._handlers.get(path)
            if handler is not None and scope["method"] == "POST":
                await self._serve(handler, scope, receive, send)
                return
            mounted = self._mounts.get(path)
            if mounted is not None:
                await mounted(scope, receive, send)
                return
            await self._pages(scope, receive, with_trace_id(scope, send))
            return
        await self._pages(scope, receive, send)

    async def _serve(self, handler: Handler, scope: Scope, receive: Receive, send: Send) -> None:
        trace_id = new_trace_id()
        try:
            reply = await handler(scope, receive, trace_id)
        except ClientGone:
            return  # nobody to answer; the server closes the connection
        except ApiError as exc:
            reply = error_reply(exc, trace_id)
        except Exception as exc:  # noqa: BLE001 - the one translation to 500/503, logged there
            error = unexpected_error(exc, trace_id, scope["path"])
            if self.ctx.waiters.closing and isinstance(error, InternalError):
                error = shutting_down()  # a store closing under a request: retry elsewhere
            reply = error_reply(error, trace_id)
        await send_reply(send, reply, trace_id)


def create_app(
    settings: ApiSettings,
    store: Store,
    *,
    events: TaskEvents | None = None,
    limiter: RateLimiter | None = None,
    services: list[Service] | None = None,
    files: VideoFiles | None = None,
) -> GatewayApp:
    """The gateway over ``store``. Its lifespan opens the store, starts ``services`` (the
    worker, when it runs in this process) and stops them again in reverse order."""
    ctx = AppContext(
        settings=settings,
        store=store,
        auth=Authenticator(store, settings.auth_cache_seconds),
        limiter=limiter or _default_limiter(settings),
        events=events or LocalTaskEvents(),
        files=files or VideoFiles(settings.videos_dir, settings.resolved_files_url),
    )

    tasks = TasksEndpoint(ctx)
    creates = {kind.path: CreateEndpoint(ctx, kind) for kind in KINDS}
    mcp = mcp_endpoint(ctx, tasks, creates)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        # Each part is closed again if a later one fails to start (nothing leaks), and all in
        # reverse order at shutdown.
        async with AsyncExitStack() as stack:
            await store.open()
            stack.push_async_callback(store.close)
            stack.push_async_callback(ctx.limiter.aclose)
            await ctx.events.start()
            stack.push_async_callback(ctx.events.aclose)
            stack.push_async_callback(await mcp.start())
            for start in services or []:
                stack.push_async_callback(await start(ctx))
            # First at shutdown: waiting requests are answered, then the services stop.
            stack.callback(ctx.waiters.close)
            yield

    handlers: dict[str, Handler] = {"/kling/tasks": tasks, **creates}
    mounts: dict[str, ASGIApp] = {MCP_PATH: mcp}
    return GatewayApp(ctx, handlers, build_pages(ctx, lifespan), mounts)


def _default_limiter(settings: ApiSettings) -> RateLimiter:
    if settings.rate_limit_per_minute == 0:
        return NoRateLimit()
    return MemoryRateLimiter(settings.rate_limit_per_minute)
