"""The task on the wire: its states and the response bodies of a task (docs/contract.md §1, §3)."""

from __future__ import annotations

import enum
from typing import Any

TASK_TYPE_VIDEOS = "videos"
# docs/contract.md §7: the other kinds of task, reported by the same /kling/tasks.
TASK_TYPE_MOTION = "motion"
TASK_TYPE_LIP_SYNC = "lip-sync"
TASK_TYPE_TALKING_PHOTO = "talking-photo"
TASK_TYPES = (TASK_TYPE_VIDEOS, TASK_TYPE_MOTION, TASK_TYPE_LIP_SYNC, TASK_TYPE_TALKING_PHOTO)
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


def progress_response(task_id: str, state: TaskState) -> dict[str, Any]:
    """The body of a task still in progress: no ``success`` key yet."""
    return {"task_id": task_id, "state": state.value}


def success_response(
    task_id: str,
    *,
    video_id: str,
    video_url: str,
    duration: str,
    source_video_url: str | None = None,
) -> dict[str, Any]:
    """The success body; a talking photo's adds ``source_video_url``, its silent animation
    (docs/contract.md §7)."""
    body: dict[str, Any] = {
        "success": True,
        "video_id": video_id,
        "video_url": video_url,
        "duration": duration,
    }
    if source_video_url is not None:
        body["source_video_url"] = source_video_url
    body["state"] = TaskState.SUCCEED.value
    body["task_id"] = task_id
    return body


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
