"""The whole gateway (``build_app``, as `serve` composes it) on a real loopback socket.

Tests talk to it over real HTTP and reach into it through ``RealGateway.call``, which runs a
coroutine on the server's own event loop (the store and the notifications belong to it).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from kling_gateway.api.app import GatewayApp
from kling_gateway.api.asgi import ASGIApp, Receive, Scope, Send
from kling_gateway.protocol.task import TaskState, success_response
from kling_gateway.runtime.serve import build_app, migrate
from kling_gateway.runtime.settings import Settings
from kling_gateway.storage.base import Outcome
from kling_gateway.storage.tokens import issue_token
from tests.servers import loopback_socket, serve_asgi

T = TypeVar("T")


@dataclass
class RealGateway:
    url: str
    app: GatewayApp
    settings: Settings
    loop: asyncio.AbstractEventLoop
    tokens: dict[str, str] = field(default_factory=dict)
    user_ids: dict[str, str] = field(default_factory=dict)

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    async def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the server's loop and await it from the test's loop."""
        return await asyncio.wrap_future(self.submit(coro))

    def add_user(self, name: str, **kwargs: Any) -> str:
        issued = self.submit(issue_token(self.app.ctx.store, name, **kwargs)).result(10)
        self.tokens[name] = issued.token
        self.user_ids[name] = issued.user_id
        return issued.token


def _run_apart(coro: Coroutine[Any, Any, T]) -> T:
    # A loop of its own in a thread: the caller may be inside a running loop.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@contextmanager
def real_gateway(
    settings_for: Callable[[int], Settings],
    *,
    wrap: Callable[[ASGIApp], ASGIApp] | None = None,
) -> Iterator[RealGateway]:
    """Serve the app of ``settings_for(port)`` on a loopback port (so its public URL is right);
    ``wrap`` may put middleware around it."""
    sock = loopback_socket()
    settings = settings_for(int(sock.getsockname()[1]))
    _run_apart(migrate(settings))
    app = build_app(settings)
    served: ASGIApp = wrap(app) if wrap is not None else app
    loops: list[asyncio.AbstractEventLoop] = []

    async def capture_loop(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            loops.append(asyncio.get_running_loop())
        await served(scope, receive, send)

    with serve_asgi(capture_loop, sock=sock) as url:
        yield RealGateway(url, app, settings, loops[0])


async def finish_task(gateway: RealGateway, task_id: str) -> None:
    """Carry a task to ``succeed`` on the server's loop, as the worker would (with its
    notification), for servers that run no worker."""

    async def finish() -> None:
        ctx = gateway.app.ctx
        stored = await ctx.store.load_task(task_id)
        assert stored is not None
        task = stored.task
        task.state, task.finished_at = TaskState.SUCCEED, time.time()
        task.response = success_response(
            task.id, video_id="v1", video_url="http://cdn.example/v1.mp4", duration="5.0"
        )
        outcome = Outcome(next_check_at=None)
        assert await ctx.store.save_task(
            task, expected_version=task.version, worker_id=None, outcome=outcome
        )
        await ctx.events.publish(task_id)

    await gateway.call(finish())
