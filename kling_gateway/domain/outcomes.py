"""What a provider call comes back with: a submission, a status, a step of a multi-step job,
or a ``ProviderError``.

These are data for the one transition function (``domain.transitions``); a provider never lets
any other failure escape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kling_gateway.protocol.task import TaskState


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
    # A talking photo's silent animation (docs/contract.md §7): the success body's
    # ``source_video_url``; its id names the copy a provider keeps of it.
    source_video_id: str | None = None
    source_video_url: str | None = None


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


@dataclass(slots=True)
class Step:
    """A step of a multi-step job is done (docs/contract.md §7: a lip-sync's face identified,
    a talking photo's animation finished, ...); the task goes on, in progress.

    ``provider_data`` is what the step found, kept on the task before anything else is sent
    upstream, so an interrupted task resumes at the step it reached; ``job_id`` is the upstream
    job now current (None: unchanged); the next look comes after ``next_check_in`` seconds
    (None: the worker's first check interval, as after a submission).
    """

    provider_data: dict[str, Any]
    job_id: str | None = None
    next_check_in: float | None = 0.0
