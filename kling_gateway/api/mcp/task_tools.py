"""The tools over POST /kling/tasks: get, get a batch, list, delete and wait.

Each decodes its arguments as the REST route decodes its body and calls the route's own
method (``TasksEndpoint``), so ids, pages and waits are checked with the same 400s. A missing
task and another user's task read the same here as there: ``kling_get_task`` and
``kling_wait_task`` answer both with the tool error ``not_found``, ``kling_delete_task`` with
``"deleted": false``, a batch leaves both out.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from kling_gateway.api.asgi import Reply
from kling_gateway.api.context import AppContext
from kling_gateway.api.mcp.results import task_result, task_summary
from kling_gateway.api.mcp.schemas import JsonSchema, tool_schema
from kling_gateway.api.mcp.tool import Call, Tool, decode_arguments
from kling_gateway.api.routes.tasks import EMPTY_RECORD, TasksEndpoint, TasksRequest
from kling_gateway.protocol.errors import NotFound
from kling_gateway.protocol.requests import TasksRequestBody
from kling_gateway.protocol.task import API_TASKS

DEFAULT_WAIT_SECONDS = 60.0
_ID = {"id": "task_id"}
_IDS = {"ids": "task_ids"}
_FILTERS = ("type", "state", "created_at_min", "created_at_max", "limit", "offset")
_NOTES: dict[str, dict[str, Any]] = {
    "id": {"description": "The task_id a kling_generate_* or kling_extend_video call answered."},
    "ids": {"description": "Task ids (at most the gateway's --batch-max-ids, 1000 by default)."},
    "type": {"description": "Only tasks of this type (videos, motion, lip-sync, talking-photo)."},
    "state": {"description": "Only tasks in this state (pending, processing, succeed, failed)."},
    "created_at_min": {"description": "Only tasks created at or after this epoch second."},
    "created_at_max": {"description": "Only tasks created at or before this epoch second."},
    "limit": {"description": "Page size, a whole number from 1 to 100 (default 20)."},
    "offset": {"description": "Tasks to skip, newest first (default 0)."},
    "wait": {
        "description": "Seconds to wait at most: default 60, at most the gateway's "
        "--blocking-wait-seconds (600 by default)."
    },
}


def _schema(
    keep: tuple[str, ...], required: tuple[str, ...], renames: dict[str, str]
) -> JsonSchema:
    omit = [name for name in TasksRequestBody.__struct_encode_fields__ if name not in keep]
    notes = {name: note for name, note in _NOTES.items() if name in keep}
    return tool_schema(TasksRequestBody, omit=omit, required=required, notes=notes, renames=renames)


class TaskTools:
    """The task tools' calls over the REST route's ``TasksEndpoint`` (the tool table is
    ``task_tools``)."""

    def __init__(self, ctx: AppContext, tasks: TasksEndpoint) -> None:
        self.ctx, self.tasks = ctx, tasks

    async def get_task(self, call: Call, arguments: dict[str, Any]) -> dict[str, Any]:
        request = decode_arguments(arguments, TasksRequest, _ID)
        reply = await self.tasks.retrieve(call.principal, request, None)
        return _found(reply, request.id)

    async def get_tasks_batch(self, call: Call, arguments: dict[str, Any]) -> dict[str, Any]:
        request = decode_arguments(arguments, TasksRequest, _IDS)
        if request.ids is None:
            request.ids = []  # the tool's ids are required: none is the REST API's 400
        return await _batch(await self.tasks.retrieve_batch(call.principal, request))

    async def list_tasks(self, call: Call, arguments: dict[str, Any]) -> dict[str, Any]:
        request = decode_arguments(arguments, TasksRequest)
        request.ids = None  # a page of the user's tasks
        return await _batch(await self.tasks.retrieve_batch(call.principal, request))

    async def delete_task(self, call: Call, arguments: dict[str, Any]) -> dict[str, Any]:
        request = decode_arguments(arguments, TasksRequest, _ID)
        reply = await self.tasks.delete(call.principal, request)
        answer: dict[str, Any] = msgspec.json.decode(reply.body)
        return answer

    async def wait_task(self, call: Call, arguments: dict[str, Any]) -> dict[str, Any]:
        request = decode_arguments(arguments, TasksRequest, _ID)
        if request.wait is None:
            request.wait = min(DEFAULT_WAIT_SECONDS, self.ctx.settings.blocking_wait_seconds)
        started, total = time.monotonic(), request.wait

        async def on_read(record: bytes) -> None:
            state = task_result(record)["state"]
            await call.progress(min(time.monotonic() - started, total), total, state)

        reply = await self.tasks.retrieve(
            call.principal,
            request,
            None,
            max_wait=self.ctx.settings.blocking_wait_seconds,
            on_read=on_read,
        )
        return _found(reply, request.id)


def task_tools(ctx: AppContext, tasks: TasksEndpoint) -> list[Tool]:
    api = TaskTools(ctx, tasks)
    return [
        Tool(
            "kling_get_task",
            "A task's state and record; a finished video's video_url and video_id.",
            _schema(("id",), ("id",), _ID),
            API_TASKS,
            api.get_task,
        ),
        Tool(
            "kling_get_tasks_batch",
            "Several tasks at once by id, in the order given; unknown ids are left out.",
            _schema(("ids",), ("ids",), _IDS),
            API_TASKS,
            api.get_tasks_batch,
        ),
        Tool(
            "kling_list_tasks",
            "Your tasks, newest first, a page at a time; count is the number of all matching.",
            _schema(_FILTERS, (), {}),
            API_TASKS,
            api.list_tasks,
        ),
        Tool(
            "kling_delete_task",
            "Delete a task and its video file; deleted is false for an unknown id.",
            _schema(("id",), ("id",), _ID),
            API_TASKS,
            api.delete_task,
        ),
        Tool(
            "kling_wait_task",
            "Wait on the server until the task finishes, or at most `wait` seconds, with "
            "progress notifications meanwhile; answers as kling_get_task (finished says which).",
            _schema(("id", "wait"), ("id",), _ID),
            API_TASKS,
            api.wait_task,
        ),
    ]


def _found(reply: Reply, task_id: str | None) -> dict[str, Any]:
    if reply.body == EMPTY_RECORD:
        raise NotFound(f"no task with id {task_id!r}")
    return task_result(reply.body)


async def _batch(reply: Reply) -> dict[str, Any]:
    body = reply.body
    if reply.stream is not None:  # a batch too large for one read comes in chunks
        body += b"".join([chunk async for chunk in reply.stream])
    answer: dict[str, Any] = msgspec.json.decode(body)
    return {"items": [task_summary(item) for item in answer["items"]], "count": answer["count"]}
