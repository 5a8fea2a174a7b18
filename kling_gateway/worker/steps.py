"""One look at one task: decide its next state. Provider failures become data here.

``advance`` never raises for provider trouble: it returns the task's new state and when to
look again. The loop (``loop.py``) writes that with a compare-and-set.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from kling_gateway.domain.outcomes import ProviderError, Status, Submission
from kling_gateway.domain.schedule import backoff
from kling_gateway.domain.task import Task
from kling_gateway.protocol.task import (
    TaskState,
    failure_response,
    progress_response,
    success_response,
)

# The submit marker lives with the providers, which read it (``earlier_submit_at``); its
# names stay importable from here.
from kling_gateway.providers.base import SUBMIT_STARTED_AT as SUBMIT_STARTED_AT
from kling_gateway.providers.base import SUBMIT_TRIES as SUBMIT_TRIES
from kling_gateway.providers.base import Provider
from kling_gateway.providers.base import earlier_submit_at as earlier_submit_at
from kling_gateway.providers.base import mark_submit as mark_submit

log = logging.getLogger("kling_gateway.worker")


@runtime_checkable
class MarksSubmits(Protocol):
    """A provider that, for some tasks, cannot find a job an earlier submit created.

    (Kling's video-extend has no ``external_task_id``.) For those tasks the worker stores a
    marker (``mark_submit``) before every submit, so a submit cut off after its create took
    effect (a lost answer, the per-call deadline, a crash, a shutdown) is known to the next
    one, which looks for that job (from ``earlier_submit_at``) instead of paying again.
    """

    def needs_submit_marker(self, task: Task) -> bool: ...


@runtime_checkable
class FetchesResults(Protocol):
    """A provider that copies a finished video before the task is recorded as finished.

    A copy can take far longer than one provider call, so the worker runs ``materialize``
    outside the per-call deadline, bounded by ``fetch_timeout`` (None: nothing is copied).
    """

    @property
    def fetch_timeout(self) -> float | None: ...

    async def materialize(self, status: Status) -> Status: ...


@dataclass(frozen=True, slots=True)
class StepPolicy:
    check_interval: float
    check_max_interval: float
    deadline_seconds: float


@dataclass(slots=True)
class StepResult:
    """What became of the task (``task`` is changed in place) and when to look again."""

    next_check_at: float
    attempts: int
    changed: bool
    # A SUCCEED status whose video is still to be fetched (``fetch_and_apply``); the task is
    # not changed yet.
    fetch: Status | None = None


def fail(task: Task, now: float, code: str, message: str) -> None:
    task.state = TaskState.FAILED
    task.response = failure_response(task.id, code=code, message=message)
    task.finished_at = now


async def advance(
    provider: Provider,
    task: Task,
    attempts: int,
    deadline_at: float,
    now: float,
    policy: StepPolicy,
) -> StepResult:
    """Submit the task if it has no job yet, else check its job; fail it past its deadline."""
    if now >= deadline_at:
        message = f"the task did not finish within {policy.deadline_seconds:g} seconds"
        fail(task, now, "timeout", message)
        return StepResult(now, attempts, changed=True)
    try:
        if task.job_id is None:
            return await _submit(provider, task, now, policy)
        status = await provider.check(task)
    except ProviderError as exc:
        return _provider_error(task, exc, attempts, now, policy)
    if _to_fetch(provider, status):
        return StepResult(now, attempts, changed=False, fetch=status)
    return apply_status(task, status, attempts, now, policy)


def _to_fetch(provider: Provider, status: Status) -> bool:
    return (
        status.state is TaskState.SUCCEED
        and isinstance(provider, FetchesResults)
        and provider.fetch_timeout is not None
    )


async def fetch_and_apply(
    provider: FetchesResults,
    task: Task,
    status: Status,
    attempts: int,
    clock: Callable[[], float],
    policy: StepPolicy,
) -> StepResult:
    """Fetch the video of a SUCCEED status ``advance`` left in ``StepResult.fetch``, then
    record the outcome (the caller bounds the whole by ``provider.fetch_timeout``)."""
    try:
        status = await provider.materialize(status)
    except ProviderError as exc:
        return _provider_error(task, exc, attempts, clock(), policy)
    return apply_status(task, status, attempts, clock(), policy)


def needs_submit_marker(provider: Provider, task: Task) -> bool:
    return (
        task.job_id is None
        and isinstance(provider, MarksSubmits)
        and provider.needs_submit_marker(task)
    )


async def _submit(provider: Provider, task: Task, now: float, policy: StepPolicy) -> StepResult:
    submission = await provider.submit(task)
    record_submission(task, submission, now)
    wait = submission.next_check_in
    if wait is None:
        wait = policy.check_interval
    return StepResult(now + max(wait, 0.0), 0, changed=True)


def record_submission(task: Task, submission: Submission, now: float) -> None:
    """Note the provider's job on the task (after a submit, or an upstream callback naming it)."""
    task.job_id = submission.job_id
    task.provider_data.update(submission.provider_data)
    task.started_at = task.started_at or now
    task.response = progress_response(task.id, TaskState.PENDING)


def apply_status(
    task: Task, status: Status, attempts: int, now: float, policy: StepPolicy
) -> StepResult:
    """Record what a check (or an upstream callback) found: the one state-transition rule."""
    if status.provider_data:
        task.provider_data.update(status.provider_data)
    if status.state is TaskState.SUCCEED and status.video is not None:
        video = status.video
        task.state = TaskState.SUCCEED
        task.response = success_response(
            task.id, video_id=video.video_id, video_url=video.video_url, duration=video.duration
        )
        task.finished_at = now
        return StepResult(now, attempts, changed=True)
    if status.state is TaskState.FAILED or status.state is TaskState.SUCCEED:
        code = status.error_code or "generation_failed"
        fail(task, now, code, status.error_message or "the provider reported no video")
        return StepResult(now, attempts, changed=True)
    changed = task.state is not status.state
    task.state = status.state
    task.response = progress_response(task.id, status.state)
    wait = status.next_check_in
    if wait is None:
        wait = backoff(attempts, policy.check_interval, policy.check_max_interval)
    return StepResult(now + max(wait, 0.0), attempts + 1, changed=changed)


def _provider_error(
    task: Task, exc: ProviderError, attempts: int, now: float, policy: StepPolicy
) -> StepResult:
    if not exc.retryable:
        log.warning("task %s failed at the provider: %s (%s)", task.id, exc.message, exc.code)
        fail(task, now, exc.code, exc.message)
        return StepResult(now, attempts, changed=True)
    wait = backoff(attempts, policy.check_interval, policy.check_max_interval)
    if exc.retry_after is not None:
        wait = max(wait, exc.retry_after)
    log.info("task %s: provider busy (%s), next look in %.1fs", task.id, exc.message, wait)
    return StepResult(now + wait, attempts + 1, changed=False)
