"""POST/GET /mcp: the Model Context Protocol's streamable HTTP transport, served by the
official SDK (``mcp``) inside the gateway, the tasks as tools (docs/contract.md §8.10).

Every HTTP request is admitted as a REST request is (``AppContext.admit``: the bearer token,
the rate limit, the body cap) before the SDK sees it; each tool then checks the token's grant
of its API and calls the REST route's own code. The transport is stateless: no MCP session
lives in a process, so any gateway process behind a balancer answers any request, and every
request carries its token. A tool's progress goes out on its own POST's event stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import msgspec
from mcp import types
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

from kling_gateway import __version__
from kling_gateway.api.asgi import (
    Message,
    Receive,
    Scope,
    Send,
    error_reply,
    send_reply,
    unexpected_error,
)
from kling_gateway.api.auth import check_grant
from kling_gateway.api.context import AppContext
from kling_gateway.api.instrument import SERVED
from kling_gateway.api.mcp.results import error_result
from kling_gateway.api.mcp.tool import Call, Progress, Tool
from kling_gateway.api.waiting import shutting_down
from kling_gateway.infra.log_context import CURRENT
from kling_gateway.protocol.errors import ApiError, BadRequest, InternalError
from kling_gateway.storage.base import Principal

_PRINCIPAL = "mcp_principal"
INSTRUCTIONS = (
    "Kling video generation through this gateway. Create with kling_generate_video (or "
    "another kling_generate_*, kling_extend_video, kling_lip_sync, kling_talking_photo): it "
    "answers at once with task_id. Then kling_wait_task waits on the server until the task "
    "finishes and gives video_url."
)


class McpEndpoint:
    """The ASGI app of /mcp: admits the request, then hands it to the SDK's transport."""

    def __init__(self, ctx: AppContext, tools: list[Tool], max_body: int) -> None:
        self.ctx = ctx
        self.max_body = max_body
        self.tools = {tool.name: tool for tool in tools}
        self._server: Server[Any, Any] = Server(
            "kling-gateway", version=__version__, instructions=INSTRUCTIONS
        )
        self._listed = [
            types.Tool(name=t.name, description=t.description, inputSchema=t.input_schema)
            for t in tools
        ]
        handlers = self._server.request_handlers
        handlers[types.ListToolsRequest] = self._list_tools
        handlers[types.CallToolRequest] = self._call_tool
        self._manager: StreamableHTTPSessionManager | None = None

    async def start(self) -> Callable[[], Awaitable[None]]:
        """Start the SDK's transport manager; returns its stop. The manager's task group lives
        in a task of its own: the app's lifespan may end in another task than it began (an
        embedding, the tests), which an anyio task group does not allow."""
        manager = StreamableHTTPSessionManager(
            self._server, stateless=True, max_request_body_size=self.max_body
        )
        running, stopping = asyncio.Event(), asyncio.Event()

        async def serve() -> None:
            async with manager.run():
                self._manager = manager
                running.set()
                try:
                    await stopping.wait()
                finally:
                    self._manager = None

        task = asyncio.create_task(serve(), name="mcp-transport")
        ready = asyncio.create_task(running.wait())
        await asyncio.wait((task, ready), return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if task.done():
            task.result()  # it failed to start: raise why

        async def stop() -> None:
            stopping.set()
            await task

        return stop

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # GatewayApp observes the request: the trace id is set, ``send`` adds its header.
        trace_id: str = scope["state"]["trace_id"]
        try:
            receive = await self._admit(scope, receive)
        except ApiError as exc:
            await send_reply(send, error_reply(exc, trace_id), trace_id)
            return
        except Exception as exc:  # noqa: BLE001 - the one translation to 500/503, logged there
            error = unexpected_error(exc, trace_id, scope["path"])
            await send_reply(send, error_reply(error, trace_id), trace_id)
            return
        manager = self._manager
        if manager is None or self.ctx.waiters.closing:
            await send_reply(send, error_reply(shutting_down(), trace_id), trace_id)
            return
        if scope["method"] != "GET":
            await manager.handle_request(scope, receive, send)
            return
        # A GET is an event stream for messages outside a request, which a stateless server
        # never sends: it stays open until the client leaves or the gateway shuts down.
        self.ctx.waiters.streams += 1
        try:
            await self._stream(manager, scope, receive, send)
        finally:
            self.ctx.waiters.streams -= 1

    async def _stream(
        self,
        manager: StreamableHTTPSessionManager,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        """Serve a GET until the client leaves, or end its stream cleanly at shutdown."""
        sent: list[str] = []  # "start", then "end" once the last body message went out

        async def tracked(message: Message) -> None:
            if message["type"] == "http.response.start":
                sent.append("start")
            elif not message.get("more_body", False):
                sent.append("end")
            await send(message)

        if await self.ctx.waiters.unless_closing(manager.handle_request(scope, receive, tracked)):
            return
        if not sent:
            trace_id: str = scope["state"]["trace_id"]
            await send_reply(send, error_reply(shutting_down(), trace_id), trace_id)
        elif "end" not in sent:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _admit(self, scope: Scope, receive: Receive) -> Receive:
        """Authenticate, count against the rate limit and, for a POST, read the capped body;
        the SDK then reads the body again from the returned ``receive``."""
        state = scope["state"]
        if scope["method"] != "POST":
            state[_PRINCIPAL] = await self.ctx.authorize(scope, None)
            return receive
        state[_PRINCIPAL], body = await self.ctx.admit(scope, receive, None, max_body=self.max_body)
        return _replay(body, receive)

    async def _list_tools(self, _: types.ListToolsRequest) -> types.ServerResult:
        return types.ServerResult(types.ListToolsResult(tools=self._listed))

    async def _call_tool(self, request: types.CallToolRequest) -> types.ServerResult:
        http_request = self._server.request_context.request
        assert http_request is not None  # the streamable HTTP transport always passes it
        state = http_request.scope["state"]
        principal: Principal = state[_PRINCIPAL]
        trace_id: str = state["trace_id"]
        # The SDK runs the call in its transport's task, outside the request's log context.
        token = CURRENT.set(state[SERVED])
        try:
            return await self._answer(request, principal, trace_id)
        finally:
            CURRENT.reset(token)

    async def _answer(
        self, request: types.CallToolRequest, principal: Principal, trace_id: str
    ) -> types.ServerResult:
        name, arguments = request.params.name, request.params.arguments or {}
        try:
            answer = await self._run(name, Call(principal, trace_id, self._progress()), arguments)
        except ApiError as exc:
            return types.ServerResult(error_result(exc, trace_id))
        except Exception as exc:  # noqa: BLE001 - as GatewayApp._serve: logged, no trace leaks
            error = unexpected_error(exc, trace_id, f"/mcp {name}")
            if self.ctx.waiters.closing and isinstance(error, InternalError):
                error = shutting_down()
            return types.ServerResult(error_result(error, trace_id))
        text = msgspec.json.encode(answer).decode()
        content: list[types.ContentBlock] = [types.TextContent(type="text", text=text)]
        return types.ServerResult(types.CallToolResult(content=content, structuredContent=answer))

    async def _run(self, name: str, call: Call, arguments: dict[str, Any]) -> dict[str, Any]:
        tool = self.tools.get(name)
        if tool is None:
            raise BadRequest(f"no tool named {name!r}; tools/list names them")
        if tool.api is not None:
            check_grant(call.principal, tool.api)
        # Only what the tool offers reaches the REST path: an argument it does not list
        # (`async`, `action`, a typo) cannot change what the call does.
        offered = tool.input_schema["properties"]
        return await tool.run(call, {k: v for k, v in arguments.items() if k in offered})

    def _progress(self) -> Progress:
        """Progress notifications on this request's stream, when the client asked for them."""
        request_ctx = self._server.request_context
        token = request_ctx.meta.progressToken if request_ctx.meta is not None else None

        async def progress(done: float, total: float, message: str) -> None:
            if token is None:
                return
            # The client may have left: the transport cancels this call next; nothing to tell.
            with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
                await request_ctx.session.send_progress_notification(
                    token, done, total, message, related_request_id=str(request_ctx.request_id)
                )

        return progress


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` (already read) first, then what ``receive`` gives."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay
