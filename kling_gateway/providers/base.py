"""The provider interface the worker drives: submit once, then check until terminal.

A provider never lets a failure escape as anything but a ``ProviderError``; the worker turns
those into data on the task (a retry later, or a failed task with the provider's message).
"""

from __future__ import annotations

from typing import Protocol

from kling_gateway.domain.outcomes import ProviderError, Status, Submission
from kling_gateway.domain.task import Task
from kling_gateway.storage.base import Store

# ``provider_data`` keys of the submit marker (see ``worker.steps.MarksSubmits``): the worker
# writes it before a submit it cannot otherwise find again, the provider reads it.
SUBMIT_STARTED_AT = "submit_started_at"
SUBMIT_TRIES = "submit_tries"


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
