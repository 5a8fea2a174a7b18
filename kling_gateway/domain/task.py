"""The task: its states, its stored record and the response bodies of the contract (§1, §3)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import msgspec

TASK_TYPE_VIDEOS = "videos"
API_VIDEOS = "kling.videos"
API_TASKS = "kling.tasks"
# The id of "the API that created the task" in every record: fixed per deployment, like the
# hosted service's videos API id.
VIDEOS_API_ID = "29187cb2-1acb-43b8-baf5-3f3f709292eb"


class TaskState(enum.StrEnum):
    """The closed set of task states, in the contract's words (``succeed``, not ``succeeded``)."""

    PENDING = "pending"
    PROCESSING = "processing"
    SUCCEED = "succeed"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({TaskState.SUCCEED, TaskState.FAILED})
ACTIVE_STATES = frozenset({TaskState.PENDING, TaskState.PROCESSING})


_ASCII_SPACE = " \t\n\r\f\v"


def is_blank(text: str) -> bool:
    """Empty or only ASCII white space: the OpenAPI document's ``[^ \\t\\n\\r\\f\\v]`` rule.

    (``str.strip()`` would also strip control and Unicode separators, which JSON Schema's
    patterns do not count as space, so client-side validation and the server would disagree.)
    """
    return not text.strip(_ASCII_SPACE)


def epoch(value: float) -> float:
    """Epoch seconds at millisecond precision, as the hosted service reports them."""
    return round(value, 3)


@dataclass(slots=True)
class Task:
    """One video task. ``record()`` renders the client-visible JSON document."""

    id: str
    object_id: str
    user_id: str
    application_id: str
    credential_id: str
    trace_id: str
    request: dict[str, Any]
    created_at: float
    state: TaskState = TaskState.PENDING
    type: str = TASK_TYPE_VIDEOS
    api_id: str = VIDEOS_API_ID
    job_id: str | None = None
    response: dict[str, Any] | None = None
    started_at: float | None = None
    finished_at: float | None = None
    # Provider scratch space (for example the local provider's render plan); never shown.
    provider_data: dict[str, Any] = field(default_factory=dict)
    # Delivery state of the callback, shown in the record once a callback exists.
    callback: dict[str, Any] | None = None
    version: int = 0

    def record(self) -> dict[str, Any]:
        """The task record of §1, field order as in the seed's example."""
        doc: dict[str, Any] = {
            "_id": self.object_id,
            "id": self.id,
            "api_id": self.api_id,
            "application_id": self.application_id,
            "created_at": epoch(self.created_at),
        }
        if self.started_at is not None:
            doc["started_at"] = epoch(self.started_at)
        doc["credential_id"] = self.credential_id
        doc["request"] = self.request
        doc["trace_id"] = self.trace_id
        doc["type"] = self.type
        doc["user_id"] = self.user_id
        if self.job_id is not None:
            doc["job_id"] = self.job_id
        if self.response is not None:
            doc["response"] = self.response
        if self.callback is not None:
            doc["callback"] = self.callback
        if self.finished_at is not None:
            elapsed = self.finished_at - self.created_at
            doc["duration"] = elapsed
            doc["elapsed"] = elapsed
            doc["finished_at"] = epoch(self.finished_at)
        return doc

    def record_json(self) -> bytes:
        return msgspec.json.encode(self.record())


def progress_response(task_id: str, state: TaskState) -> dict[str, Any]:
    """The body of a task still in progress: no ``success`` key yet."""
    return {"task_id": task_id, "state": state.value}


def success_response(
    task_id: str, *, video_id: str, video_url: str, duration: str
) -> dict[str, Any]:
    return {
        "success": True,
        "video_id": video_id,
        "video_url": video_url,
        "duration": duration,
        "state": TaskState.SUCCEED.value,
        "task_id": task_id,
    }


def failure_response(task_id: str, *, code: str, message: str) -> dict[str, Any]:
    return {
        "success": False,
        "task_id": task_id,
        "state": TaskState.FAILED.value,
        "error": {"code": code, "message": message},
    }


def format_seconds(value: float) -> str:
    """A duration as the contract's string of seconds (``"5.1"``)."""
    return f"{value:.1f}"
