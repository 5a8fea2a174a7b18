"""The provider interface the worker drives: submit once, then check until terminal.

A provider never lets a failure escape as anything but a ``ProviderError``; the worker turns
those into data on the task (a retry later, or a failed task with the provider's message).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from kling_gateway.domain.task import Task, TaskState
from kling_gateway.storage.base import Store


class ProviderError(Exception):
    """A provider call failed.

    ``retryable`` errors are tried again later (after ``retry_after`` seconds when the upstream
    said so); the others fail the task with ``code`` and ``message`` as its error.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str = "provider_error",
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass(slots=True, frozen=True)
class VideoResult:
    """A finished video: what goes into the success body (§3)."""

    video_id: str
    video_url: str
    duration: str


@dataclass(slots=True)
class Submission:
    """What a submit produced: the provider's job id and any scratch data to keep on the task."""

    job_id: str
    provider_data: dict[str, Any] = field(default_factory=dict)
    # When to check first; None: the worker's first check interval.
    next_check_in: float | None = None


@dataclass(slots=True)
class Status:
    """What a check found.

    ``state`` is PROCESSING (check again after ``next_check_in`` seconds, or the worker's own
    backoff when None), SUCCEED with ``video``, or FAILED with ``error_code``/``error_message``.
    """

    state: TaskState
    video: VideoResult | None = None
    error_code: str | None = None
    error_message: str | None = None
    next_check_in: float | None = None
    provider_data: dict[str, Any] | None = None


async def require_own_video(store: Store, user_id: str, video_id: str) -> str:
    """The id of ``user_id``'s succeeded task whose result is ``video_id``.

    An ``extend`` may only continue the caller's own video: whatever the provider, a video id
    of another user (or of no one) fails the task, as if it did not exist.
    """
    found = await store.find_user_video(user_id, video_id)
    if found is None:
        message = f"no succeeded video of yours has video_id {video_id!r}"
        raise ProviderError(message, code="video_not_found")
    return found


class Provider(Protocol):
    name: str

    async def submit(self, task: Task) -> Submission:
        """Start the generation of ``task``; idempotent per task id (a resubmission after a
        crash must find the earlier job rather than pay for a second one)."""
        ...

    async def check(self, task: Task) -> Status:
        """Report where the job of ``task`` (``task.job_id``) stands."""
        ...

    async def aclose(self) -> None:
        """Release connections and threads."""
        ...
