"""What a log line written while serving a request says about that request.

The API sets one ``RequestLog`` per request (its trace id and route; the user once
authenticated, the task once known), in a context variable: every record logged while the
request runs, by any module, carries them (``runtime.log_format`` writes them), so the trace
id a client reports finds every line of its request. A worker's lines about a task name it
with ``extra={"task_id": ...}``.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(slots=True)
class RequestLog:
    trace_id: str
    route: str
    method: str = ""
    user: str | None = None
    task_id: str | None = None


CURRENT: ContextVar[RequestLog | None] = ContextVar("kling_gateway_request", default=None)


def current() -> RequestLog | None:
    return CURRENT.get()


def note_user(user: str) -> None:
    request = CURRENT.get()
    if request is not None:
        request.user = user


def note_task(task_id: str) -> None:
    request = CURRENT.get()
    if request is not None:
        request.task_id = task_id
