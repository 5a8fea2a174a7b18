"""What every request leaves behind: its metrics, its access-log line, its log context; and
CORS in front of every route.

A request costs one small ``RequestLog`` (the context every log line of the request carries),
two clock reads and a few additions (``infra.request_metrics``). The access log
(``--access-log``) is one line per request, with the trace id a client reports, written by the
app rather than uvicorn: uvicorn knows neither the trace id nor the user.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from contextvars import Token
from typing import cast

from starlette.middleware.cors import CORSMiddleware

from kling_gateway.api.asgi import ASGIApp, Message, Receive, Scope, Send
from kling_gateway.domain.ids import new_trace_id
from kling_gateway.domain.task import Task
from kling_gateway.infra.log_context import CURRENT, RequestLog, note_task
from kling_gateway.infra.metrics import count_created
from kling_gateway.infra.request_metrics import RouteMetrics

access = logging.getLogger("kling_gateway.access")

# The status counted for a request whose client left before an answer (nginx's 499).
CLIENT_GONE = 499
# Routes that are no route (404s): one label, whatever the paths probed.
OTHER_ROUTE = "other"
# Headers a browser script may read from an answer (the trace id to report, retry hints).
EXPOSED_HEADERS = ("x-trace-id", "retry-after", "x-kling-gateway-long-poll")
# The key of a request's ``Served`` in ``scope["state"]``.
SERVED = "served"


class Served(RequestLog):
    """One request being served: its log context (it is the ``RequestLog``), when it began,
    what it answered. One object a request."""

    __slots__ = ("path", "started", "status", "token")

    def __init__(self, route: str, method: str, path: str) -> None:
        super().__init__(new_trace_id(), route, method)
        self.path = path
        self.status = 500
        self.started = time.perf_counter()
        self.token: Token[RequestLog | None] = CURRENT.set(self)


class Observed:
    def __init__(self, *, access_log: bool, hot_routes: Iterable[str]) -> None:
        self._access_log = access_log
        self._routes = {route: RouteMetrics(route) for route in hot_routes}

    def start(self, route: str, method: str = "POST", path: str | None = None) -> Served:
        return Served(route, method, path or route)

    def end(self, served: Served) -> None:
        route = served.route
        metrics = self._routes.get(route)
        if metrics is None:  # a page route seen for the first time
            metrics = self._routes[route] = RouteMetrics(route)
        metrics.observe(served.status, served.started)
        if self._access_log:
            _log_access(served)
        CURRENT.reset(served.token)

    async def page(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        """A request for Starlette, measured under the route's template
        (``/files/videos/{name:path}``); see ``observe``."""
        await self.observe(app, None, scope, receive, send)

    async def observe(
        self, app: ASGIApp, route: str | None, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """A request served by ``app``: its trace id in ``scope["state"]`` (``served`` too, for
        work it runs in other tasks) and in the answer's headers, measured under ``route``
        (None: the Starlette route's template), access-logged, and in the log context."""
        served = self.start(route or OTHER_ROUTE, scope["method"], scope["path"])
        state = scope.setdefault("state", {})
        state["trace_id"], state[SERVED] = served.trace_id, served
        try:
            await app(scope, receive, _traced(served, send))
        finally:
            if route is None:
                served.route = _route_of(scope)
            self.end(served)


def _traced(served: Served, send: Send) -> Send:
    """``send`` noting the answer's status and giving it the trace id header, unless the app
    gave it already (``asgi.send_reply`` does): exactly one."""

    async def send_with_trace_id(message: Message) -> None:
        if message["type"] == "http.response.start":
            served.status = message["status"]
            headers = list(message.get("headers", []))
            if not any(name.lower() == b"x-trace-id" for name, _ in headers):
                headers.append((b"x-trace-id", served.trace_id.encode()))
            message["headers"] = headers
        await send(message)

    return send_with_trace_id


def task_created(task: Task, *, fresh: bool) -> None:
    """A create answered with ``task``: in the request's log lines, and counted unless it
    was an idempotent replay (not ``fresh``)."""
    note_task(task.id)
    if fresh:
        count_created(task.type)


def _route_of(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else OTHER_ROUTE


def _logged_path(served: Served) -> str:
    """The path as the log shows it: a route whose path carries a secret (the Kling callback
    route's ``{secret}``) by its template, so the log never holds what would forge a call."""
    return served.route if "{secret}" in served.route else served.path


def _log_access(served: Served) -> None:
    request = served
    duration = time.perf_counter() - served.started
    path = _logged_path(served)
    access.info(
        "%s %s %d %.1fms trace_id=%s user=%s task_id=%s",
        request.method,
        path,
        served.status,
        duration * 1000,
        request.trace_id,
        request.user or "-",
        request.task_id or "-",
        extra={"status": served.status, "duration": round(duration, 6), "path": path},
    )


def with_cors(app: ASGIApp, origins: str) -> ASGIApp:
    """``app`` behind CORS for ``origins`` (comma-separated, ``*`` for any), preflights
    included, on every route; ``app`` itself when none are configured (no cost per request)."""
    allowed = [origin.strip() for origin in origins.split(",") if origin.strip()]
    if not allowed:
        return app
    return cast(
        ASGIApp,
        CORSMiddleware(
            app,
            allow_origins=allowed,
            allow_methods=("GET", "HEAD", "POST", "DELETE", "OPTIONS"),
            allow_headers=("*",),
            expose_headers=EXPOSED_HEADERS,
            max_age=600,
        ),
    )
