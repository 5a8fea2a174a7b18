"""The ASGI application: ``create_app(settings, store)``.

The API endpoints (POST /kling/tasks, the create endpoint of every task kind
(/kling/videos, /kling/motion, /kling/lip-sync, /kling/talking-photo), /kling/elements,
/kling/voices) are dispatched straight to their handlers, /mcp to the MCP endpoint (api/mcp);
everything else (docs, files, events, health, 404s) goes through Starlette. Errors become the
contract's error body in exactly one place, ``GatewayApp._reply``.
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
)
from kling_gateway.api.auth import Authenticator
from kling_gateway.api.context import ApiSettings, AppContext, SigningSecrets
from kling_gateway.api.instrument import CLIENT_GONE, Observed, with_cors
from kling_gateway.api.mcp import MCP_PATH, mcp_endpoint
from kling_gateway.api.observe import Probe
from kling_gateway.api.pages import build_pages
from kling_gateway.api.routes.assets import asset_handlers
from kling_gateway.api.routes.tasks import TasksEndpoint
from kling_gateway.api.routes.videos import CreateEndpoint
from kling_gateway.api.waiting import ClientGone, shutting_down
from kling_gateway.domain.kinds import KINDS
from kling_gateway.infra.files import VideoFiles
from kling_gateway.infra.metrics import process_exiting
from kling_gateway.infra.notify import LocalTaskEvents, TaskEvents
from kling_gateway.infra.ratelimit import MemoryRateLimiter, NoRateLimit, RateLimiter
from kling_gateway.infra.request_metrics import flushing
from kling_gateway.protocol.errors import ApiError, InternalError
from kling_gateway.providers.assets import AssetProvider, LocalAssets
from kling_gateway.storage.base import Store
from kling_gateway.storage.upstream_keys import Sealer

log = logging.getLogger("kling_gateway.api")

Handler = Callable[[Scope, Receive, str], Awaitable[Reply]]
Service = Callable[[AppContext], Awaitable[Callable[[], Awaitable[None]]]]


class GatewayApp:
    """Routes the API hot paths directly and hands the rest to Starlette; measures both."""

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
        self._observed = Observed(access_log=ctx.settings.access_log, hot_routes=handlers)
        self._entry: ASGIApp = with_cors(self._dispatch, ctx.settings.cors_origins)
        # Paths served whole (every method) by an ASGI app of their own: /mcp.
        self._mounts = mounts or {}

    def lifespan(self) -> AbstractAsyncContextManager[None]:
        """Startup and shutdown outside an ASGI server (embedding, tests)."""
        return cast(
            AbstractAsyncContextManager[None], self._pages.router.lifespan_context(self._pages)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._entry(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"].rstrip("/")
            handler = self._handlers.get(path)
            if handler is not None and scope["method"] == "POST":
                await self._serve(handler, path, scope, receive, send)
                return
            mounted = self._mounts.get(path)
            if mounted is not None:  # measured under its own path, every method
                await self._observed.observe(mounted, path, scope, receive, send)
                return
            await self._observed.page(self._pages, scope, receive, send)
            return
        await self._pages(scope, receive, send)

    async def _serve(
        self, handler: Handler, path: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        served = self._observed.start(path)
        try:
            reply = await self._reply(handler, scope, receive, served.trace_id)
            if reply is None:
                served.status = CLIENT_GONE
                return  # nobody to answer; the server closes the connection
            served.status = reply.status
            await send_reply(send, reply, served.trace_id)
        finally:
            self._observed.end(served)

    async def _reply(
        self, handler: Handler, scope: Scope, receive: Receive, trace_id: str
    ) -> Reply | None:
        """The handler's answer, or the error's; None when the client has gone."""
        try:
            return await handler(scope, receive, trace_id)
        except ClientGone:
            return None
        except ApiError as exc:
            return error_reply(exc, trace_id)
        except Exception as exc:  # noqa: BLE001 - the one translation to 500/503, logged there
            error = unexpected_error(exc, trace_id, scope["path"])
            if self.ctx.waiters.closing and isinstance(error, InternalError):
                error = shutting_down()  # a store closing under a request: retry elsewhere
            return error_reply(error, trace_id)


def create_app(
    settings: ApiSettings,
    store: Store,
    *,
    events: TaskEvents | None = None,
    limiter: RateLimiter | None = None,
    services: list[Service] | None = None,
    files: VideoFiles | None = None,
    probes: tuple[Probe, ...] = (),
    assets: AssetProvider | None = None,
    sealer: Sealer | None = None,
    signing_secrets: SigningSecrets | None = None,
) -> GatewayApp:
    """The gateway over ``store``. Its lifespan opens the store, starts ``services`` (the
    worker, when it runs in this process) and stops them again in reverse order. ``probes``:
    what /readyz checks beside the store and the object storage."""
    ctx = AppContext(
        settings=settings,
        store=store,
        auth=Authenticator(store, settings.auth_cache_seconds),
        limiter=limiter or _default_limiter(settings),
        events=events or LocalTaskEvents(),
        files=files or VideoFiles(settings.videos_dir, settings.resolved_files_url),
        probes=probes,
        assets=assets or LocalAssets(),
        sealer=sealer,
        signing_secrets=signing_secrets,
    )

    tasks = TasksEndpoint(ctx)
    creates = {kind.path: CreateEndpoint(ctx, kind) for kind in KINDS}
    mcp = mcp_endpoint(ctx, tasks, creates)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        # Each part is closed again if a later one fails to start (nothing leaks), and all in
        # reverse order at shutdown.
        async with AsyncExitStack() as stack:
            stack.callback(process_exiting)  # last: this process's live gauges leave the sums
            await stack.enter_async_context(flushing())  # request metrics, in batches
            await store.open()
            stack.push_async_callback(store.close)
            stack.push_async_callback(ctx.limiter.aclose)
            stack.push_async_callback(ctx.assets.aclose)
            await ctx.events.start()
            stack.push_async_callback(ctx.events.aclose)
            stack.push_async_callback(await mcp.start())
            for start in services or []:
                stack.push_async_callback(await start(ctx))
            # First at shutdown: waiting requests are answered, then the services stop.
            stack.callback(ctx.waiters.close)
            yield

    handlers: dict[str, Handler] = {"/kling/tasks": tasks, **creates}
    handlers.update(asset_handlers(ctx))
    mounts: dict[str, ASGIApp] = {MCP_PATH: mcp}
    return GatewayApp(ctx, handlers, build_pages(ctx, lifespan), mounts)


def _default_limiter(settings: ApiSettings) -> RateLimiter:
    if settings.rate_limit_per_minute == 0:
        return NoRateLimit()
    return MemoryRateLimiter(settings.rate_limit_per_minute)
