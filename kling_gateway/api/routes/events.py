"""GET /kling/tasks/{id}/events: a task's state changes as Server-Sent Events (an extension).

Each event is ``event: task``, ``id: <version>``, ``data: <the record>``. The id is the task's
stored ``version``: it only grows, and it is the same in every API process and after a restart,
so a client that reconnects with ``Last-Event-ID`` is sent only what is newer. The version also
moves when a worker merely claims the task; such a bump changes nothing a client sees, so a
record is sent only when its bytes differ from the last one sent on this stream.

The stream wakes on the task's change notifications and re-reads the store at least every
``RECHECK_SECONDS`` (a lost notification costs latency, never an event), sends ``: ping`` when
nothing was sent for ``PING_SECONDS`` (so proxies keep the connection) and ends after the event
of a finished task. Reconnecting to a finished task whose final event was seen answers 204,
which tells an ``EventSource`` to stop reconnecting.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from kling_gateway.api.context import AppContext
from kling_gateway.api.waiting import RECHECK_SECONDS
from kling_gateway.domain.task import Task
from kling_gateway.infra.notify import Subscription
from kling_gateway.protocol.errors import NoApi
from kling_gateway.protocol.task import API_TASKS

PING_SECONDS = 15.0
PING = b": ping\n\n"
STREAM_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def event_routes(ctx: AppContext) -> list[BaseRoute]:
    async def task_events(request: Request) -> Response:
        principal = await ctx.authorize(request.scope, API_TASKS)
        task = await _own_task(ctx, principal.user_id, str(request.path_params["id"]))
        if task is None:
            raise NoApi(f"no API at {request.method} {request.url.path}")
        seen = last_event_id(request.headers.get("last-event-id"))
        if task.state.is_terminal and seen is not None and seen >= task.version:
            return Response(status_code=204)
        stream = TaskStream(ctx, principal.user_id, seen)
        return StreamingResponse(
            stream.events(task), media_type="text/event-stream", headers=STREAM_HEADERS
        )

    return [Route("/kling/tasks/{id}/events", task_events, methods=["GET"])]


async def _own_task(ctx: AppContext, user_id: str, task_id: str) -> Task | None:
    """The task when it exists and is ``user_id``'s: a foreign task looks missing."""
    if "\x00" in task_id:  # cannot name a task (and PostgreSQL refuses NUL in text)
        return None
    stored = await ctx.store.load_task(task_id)
    if stored is None or stored.task.user_id != user_id:
        return None
    return stored.task


def last_event_id(value: str | None) -> int | None:
    """The ``Last-Event-ID`` header as a version; anything unreadable means "from the start"."""
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip())


def format_event(version: int, record: bytes) -> bytes:
    # A record is one line of compact JSON (JSON escapes newlines), so one `data:` line.
    return b"event: task\nid: %d\ndata: %s\n\n" % (version, record)


class TaskStream:
    """The events of one connection: what was sent, and when it last sent anything."""

    def __init__(self, ctx: AppContext, user_id: str, seen: int | None) -> None:
        self._ctx = ctx
        self._user_id = user_id
        self._seen = seen
        self._sent: bytes | None = None
        self._quiet_since = time.monotonic()

    async def events(self, task: Task | None) -> AsyncIterator[bytes]:
        if task is None:
            return
        waiters = self._ctx.waiters
        waiters.streams += 1
        try:
            with self._ctx.events.subscribe(task.id) as changes:
                # Read again once subscribed: a change since the handler's read is not missed.
                current = await _own_task(self._ctx, self._user_id, task.id)
                while current is not None:
                    event = self._event_for(current)
                    if event is not None:
                        yield event
                    if current.state.is_terminal:
                        return
                    ping = await self._wait(changes)
                    if waiters.closing:
                        return  # shutdown: the stream ends cleanly; the client reconnects
                    if ping:
                        yield PING
                    current = await _own_task(self._ctx, self._user_id, task.id)
        finally:
            waiters.streams -= 1
        # A task deleted while streamed: nothing more will come, so the stream ends.

    def _event_for(self, task: Task) -> bytes | None:
        if self._seen is not None and task.version <= self._seen:
            return None
        record = self._ctx.links.resolve(task.record_json())
        if record == self._sent:
            return None
        self._sent = record
        self._quiet_since = time.monotonic()
        return format_event(task.version, record)

    async def _wait(self, changes: Subscription) -> bool:
        """Wait for a change (or the next re-read, or shutdown); True when a ping is due."""
        ping_in = self._quiet_since + PING_SECONDS - time.monotonic()
        if ping_in > 0:
            await self._ctx.waiters.unless_closing(changes.wait(min(RECHECK_SECONDS, ping_in)))
        if time.monotonic() - self._quiet_since < PING_SECONDS:
            return False
        self._quiet_since = time.monotonic()
        return True
