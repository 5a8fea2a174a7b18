"""One look at one task: the provider call, its outcome handed to ``domain.transitions``.

``advance`` never raises for provider trouble: a ``ProviderError`` is an outcome like any
other. What the outcome does to the task is decided by ``transition`` alone; the loop
(``loop.py``) writes the ``Change`` with a compare-and-set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from kling_gateway.domain.outcomes import ProviderError, Status, Step, Submission
from kling_gateway.domain.task import Task
from kling_gateway.domain.transitions import (
    Change,
    Deadline,
    Policy,
    ResultPending,
    Schedule,
    is_overdue,
    transition,
)
from kling_gateway.protocol.task import TaskState
from kling_gateway.providers.base import Provider


@runtime_checkable
class MarksSubmits(Protocol):
    """A provider that, for some tasks, cannot find a job an earlier submit created.

    (Kling's video-extend has no ``external_task_id``.) For those tasks the worker stores a
    marker (``transitions.mark_submit``) before every submit, so a submit cut off after its
    create took effect (a lost answer, the per-call deadline, a crash, a shutdown) is known to
    the next one, which looks for that job (from ``earlier_submit_at``) instead of paying again.
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
class Fetch:
    """A SUCCEED status whose video is to be copied (``fetch_and_apply``) before the task
    is finished; the task is not changed yet."""

    status: Status


async def advance(
    provider: Provider, task: Task, schedule: Schedule, now: float, policy: Policy
) -> Change | Fetch:
    """Submit the task if it has no job yet, else check its job; past its deadline, no call."""
    if is_overdue(task, schedule, now, policy):
        return transition(task, Deadline(), schedule, now, policy)
    outcome: Submission | Status | Step | ProviderError
    try:
        if task.job_id is None:
            outcome = await provider.submit(task)
        else:
            outcome = await provider.check(task)
    except ProviderError as exc:
        outcome = exc
    if isinstance(outcome, Status) and _to_fetch(provider, outcome):
        return Fetch(outcome)
    return transition(task, outcome, schedule, now, policy)


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
    schedule: Schedule,
    clock: Callable[[], float],
    policy: Policy,
) -> Change:
    """Copy the video of a SUCCEED status ``advance`` left in a ``Fetch``, then record the
    outcome (the caller bounds the whole by ``provider.fetch_timeout``). A failed copy is a
    ``ResultPending``: the video exists upstream, so it is retried past the task's deadline."""
    try:
        done = await provider.materialize(status)
    except ProviderError as exc:
        return transition(task, ResultPending(status, exc), schedule, clock(), policy)
    return transition(task, done, schedule, clock(), policy)


def needs_submit_marker(provider: Provider, task: Task) -> bool:
    return (
        task.job_id is None
        and isinstance(provider, MarksSubmits)
        and provider.needs_submit_marker(task)
    )
