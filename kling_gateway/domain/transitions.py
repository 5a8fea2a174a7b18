"""The one transition function: an outcome in, a change out. Pure: no I/O, no clock, no mutation.

Every state change of a task is decided here, whoever observed the outcome: the worker (a
submit, a check, a result copy, a deadline) and the Kling upstream-callback route alike. The
caller writes ``Change.task`` with the store's compare-and-set and announces what ``Change``
says (``infra.announce``).

Waits are bounded twice: by ``Policy.check_max_interval`` (an upstream ``Retry-After`` of three
years waits no longer than any other retry) and by the task's deadline, so the task is looked at
again at its deadline at the latest. A task that ends at its deadline keeps the last real reason
(``provider_data["last_error"]``, e.g. ``upstream_unavailable``) as its error; ``timeout`` is
only for a task nothing went wrong with but time. A video the upstream already produced (its
copy here keeps failing) gets ``Policy.result_retry_seconds`` more: it was paid for.
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass
from typing import Any

import msgspec

from kling_gateway.domain.outcomes import ProviderError, Status, Step, Submission
from kling_gateway.domain.schedule import backoff
from kling_gateway.domain.task import Task
from kling_gateway.protocol.task import (
    TaskState,
    failure_response,
    progress_response,
    success_response,
)

# How long past its deadline a task whose video exists upstream keeps retrying the copy (from
# the first time the upstream said so): the video was produced and charged for.
RESULT_RETRY_SECONDS = 6 * 3600.0

# ``provider_data`` keys this module owns.
LAST_ERROR = "last_error"  # {"code", "message"} of the last retryable failure, until a success
RESULT_READY_AT = "result_ready_at"  # when the upstream first reported the video as produced
SUBMIT_STARTED_AT = "submit_started_at"  # the submit marker (``mark_submit``)
SUBMIT_TRIES = "submit_tries"

# An outbox row of a change: (callback url, event, body JSON).
Callback = tuple[str, str, bytes]


@dataclass(frozen=True, slots=True)
class Policy:
    check_interval: float
    check_max_interval: float
    deadline_seconds: float
    result_retry_seconds: float = RESULT_RETRY_SECONDS


@dataclass(frozen=True, slots=True)
class Deadline:
    """The task's deadline has passed (seen at a claim or by the worker's sweep)."""


@dataclass(frozen=True, slots=True)
class ResultPending:
    """The upstream has produced the video (``status`` is its SUCCEED) but it is not copied here.

    ``error`` is why the copy failed; None when nobody has tried yet (an upstream callback: no
    download inside an HTTP request, so the task is made due for a worker at once).
    """

    status: Status
    error: ProviderError | None = None


TaskOutcome = Submission | Status | Step | ProviderError | Deadline | ResultPending


@dataclass(frozen=True, slots=True)
class Schedule:
    """The scheduling columns of the task the outcome is about."""

    attempts: int
    deadline_at: float


@dataclass(frozen=True, slots=True)
class Change:
    """What an outcome does to a task: the task to write, when to look again, what to announce."""

    task: Task
    # None once the task is finished: a finished task is never looked at again.
    next_check_at: float | None
    attempts: int
    # What clients can see changed (state, job, response): announce the task id.
    changed: bool = False
    # Outbox rows to write in the same transaction; any of them: wake the callback deliverer.
    callbacks: tuple[Callback, ...] = ()
    # Due now for a worker (not leased by the writer): wake the workers.
    wake_worker: bool = False

    @property
    def finished(self) -> bool:
        return self.task.state.is_terminal

    @property
    def wakes_deliverer(self) -> bool:
        return bool(self.callbacks)


def transition(
    task: Task,
    outcome: TaskOutcome,
    schedule: Schedule,
    now: float,
    policy: Policy,
    rng: random.Random | None = None,
) -> Change:
    """The change ``outcome`` makes to ``task`` (which is left as it is)."""
    new = _copy(task)
    if isinstance(outcome, Submission):
        change = _submitted(new, outcome, schedule, now, policy)
    elif isinstance(outcome, Status):
        change = _status(new, outcome, schedule, now, policy, rng)
    elif isinstance(outcome, Step):
        change = _step(new, outcome, schedule, now, policy)
    elif isinstance(outcome, ProviderError):
        change = _error(new, outcome, schedule, now, policy, rng)
    elif isinstance(outcome, ResultPending):
        change = _result_pending(new, outcome, schedule, now, policy, rng)
    else:
        change = _deadline(new, now, policy)
    return dataclasses.replace(change, callbacks=callbacks_for(change.task, task.state))


def deadline_of(task: Task, schedule: Schedule, policy: Policy) -> float:
    """When the task is given up: its deadline, or later for a video that exists upstream."""
    ready = _number(task.provider_data.get(RESULT_READY_AT))
    if ready is None:
        return schedule.deadline_at
    return max(schedule.deadline_at, ready + policy.result_retry_seconds)


def is_overdue(task: Task, schedule: Schedule, now: float, policy: Policy) -> bool:
    return not task.state.is_terminal and now >= deadline_of(task, schedule, policy)


def last_error(task: Task) -> tuple[str, str] | None:
    """The (code, message) of the last retryable failure of the task, if it is still current."""
    value = task.provider_data.get(LAST_ERROR)
    if not isinstance(value, dict):
        return None
    code, message = value.get("code"), value.get("message")
    if not isinstance(code, str) or not isinstance(message, str):
        return None
    return code, message


def callbacks_for(task: Task, before: TaskState) -> tuple[Callback, ...]:
    """The client callbacks a change from state ``before`` to ``task`` owes (§ callbacks):
    terminal states always, ``processing`` when asked for in ``callback_events``."""
    params = task.params
    if params is None or params.callback_url is None:
        return ()
    if task.state is before or task.response is None:
        return ()
    if task.state.is_terminal or task.state.value in params.callback_events:
        return ((params.callback_url, task.state.value, msgspec.json.encode(task.response)),)
    return ()


# -- the submit marker (see ``worker.steps.MarksSubmits``) -----------------------------------


def mark_submit(task: Task, now: float) -> None:
    """Note one more submit of ``task`` as started; the first one's time is kept."""
    data = task.provider_data
    data.setdefault(SUBMIT_STARTED_AT, now)
    tries = data.get(SUBMIT_TRIES)
    data[SUBMIT_TRIES] = (tries if isinstance(tries, int) else 0) + 1


def earlier_submit_at(task: Task) -> float | None:
    """When the first submit of ``task`` started, if an earlier submit than the current one
    may have created a job upstream; None on the first submit."""
    started, tries = task.provider_data.get(SUBMIT_STARTED_AT), task.provider_data.get(SUBMIT_TRIES)
    if not isinstance(tries, int) or tries < 2 or not isinstance(started, int | float):
        return None
    return float(started)


# -- the cases -------------------------------------------------------------------------------


def _submitted(
    task: Task, submission: Submission, schedule: Schedule, now: float, policy: Policy
) -> Change:
    task.job_id = submission.job_id
    task.provider_data.update(submission.provider_data)
    task.provider_data.pop(LAST_ERROR, None)
    task.started_at = task.started_at or now
    task.response = progress_response(task.id, TaskState.PENDING)
    wait = policy.check_interval if submission.next_check_in is None else submission.next_check_in
    return Change(task, _next_check(task, wait, schedule, now, policy), 0, changed=True)


def _status(
    task: Task,
    status: Status,
    schedule: Schedule,
    now: float,
    policy: Policy,
    rng: random.Random | None,
) -> Change:
    if status.provider_data:
        task.provider_data.update(status.provider_data)
    if status.state is TaskState.SUCCEED and status.video is not None:
        video = status.video
        task.state = TaskState.SUCCEED
        task.response = success_response(
            task.id,
            video_id=video.video_id,
            video_url=video.video_url,
            duration=video.duration,
            source_video_url=video.source_video_url,
        )
        task.finished_at = now
        return Change(task, None, schedule.attempts, changed=True)
    if status.state is TaskState.FAILED or status.state is TaskState.SUCCEED:
        code = status.error_code or "generation_failed"
        return _fail(
            task, now, schedule, code, status.error_message or "the provider reported no video"
        )
    changed = task.state is not status.state
    task.state = status.state
    task.response = progress_response(task.id, status.state)
    task.provider_data.pop(LAST_ERROR, None)
    wait = status.next_check_in
    if wait is None:
        wait = backoff(schedule.attempts, policy.check_interval, policy.check_max_interval, rng)
    next_at = _next_check(task, wait, schedule, now, policy)
    return Change(task, next_at, schedule.attempts + 1, changed=changed)


def _step(task: Task, step: Step, schedule: Schedule, now: float, policy: Policy) -> Change:
    """A step of a multi-step job: its findings kept, the task in progress, looked at again
    soon. The attempts start over: the next step is new work."""
    task.provider_data.update(step.provider_data)
    task.provider_data.pop(LAST_ERROR, None)
    task.started_at = task.started_at or now
    changed = task.state is not TaskState.PROCESSING
    if step.job_id is not None and step.job_id != task.job_id:
        task.job_id, changed = step.job_id, True
    task.state = TaskState.PROCESSING
    task.response = progress_response(task.id, TaskState.PROCESSING)
    wait = policy.check_interval if step.next_check_in is None else step.next_check_in
    return Change(task, _next_check(task, wait, schedule, now, policy), 0, changed=changed)


def _error(
    task: Task,
    error: ProviderError,
    schedule: Schedule,
    now: float,
    policy: Policy,
    rng: random.Random | None,
) -> Change:
    if not error.retryable:
        return _fail(task, now, schedule, error.code, error.message)
    task.provider_data[LAST_ERROR] = {"code": error.code, "message": error.message}
    return _retry(task, error, schedule, now, policy, rng)


def _result_pending(
    task: Task,
    pending: ResultPending,
    schedule: Schedule,
    now: float,
    policy: Policy,
    rng: random.Random | None,
) -> Change:
    error = pending.error
    if error is not None and not error.retryable:
        return _fail(task, now, schedule, error.code, error.message)
    if pending.status.provider_data:
        task.provider_data.update(pending.status.provider_data)
    task.provider_data.setdefault(RESULT_READY_AT, now)
    if error is None:
        return Change(task, now, schedule.attempts, wake_worker=True)
    task.provider_data[LAST_ERROR] = {"code": error.code, "message": error.message}
    return _retry(task, error, schedule, now, policy, rng)


def _retry(
    task: Task,
    error: ProviderError,
    schedule: Schedule,
    now: float,
    policy: Policy,
    rng: random.Random | None,
) -> Change:
    wait = backoff(schedule.attempts, policy.check_interval, policy.check_max_interval, rng)
    if error.retry_after is not None:
        wait = max(wait, error.retry_after)
    next_at = _next_check(task, wait, schedule, now, policy)
    return Change(task, next_at, schedule.attempts + 1)


def _deadline(task: Task, now: float, policy: Policy) -> Change:
    last = last_error(task)
    if last is None:
        code = "timeout"
        message = f"the task did not finish within {policy.deadline_seconds:g} seconds"
    else:
        code, reason = last
        message = f"{reason} (still failing at the task's deadline)"
    return _fail(task, now, Schedule(0, now), code, message)


def _fail(task: Task, now: float, schedule: Schedule, code: str, message: str) -> Change:
    task.state = TaskState.FAILED
    task.response = failure_response(task.id, code=code, message=message)
    task.finished_at = now
    return Change(task, None, schedule.attempts, changed=True)


def _next_check(task: Task, wait: float, schedule: Schedule, now: float, policy: Policy) -> float:
    """``now + wait``, the wait capped by the longest interval and the task's deadline."""
    if not math.isfinite(wait):
        wait = policy.check_max_interval
    wait = min(max(wait, 0.0), policy.check_max_interval)
    return max(now, min(now + wait, deadline_of(task, schedule, policy)))


def _copy(task: Task) -> Task:
    """A copy to change: the containers a transition changes are copied too."""
    return dataclasses.replace(task, provider_data=dict(task.provider_data))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None
