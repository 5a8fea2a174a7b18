"""The provider interface the worker drives: submit once, then check until terminal.

A provider never lets a failure escape as anything but a ``ProviderError``; the worker turns
those into data on the task (a retry later, or a failed task with the provider's message).
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol, runtime_checkable

from kling_gateway.domain.outcomes import ProviderError, Status, Step, Submission
from kling_gateway.domain.task import Task
from kling_gateway.storage.base import Store


# ``provider_data`` keys of the submit marker (see ``worker.steps.MarksSubmits``): the worker
# writes it before a submit it cannot otherwise find again, the provider reads it.
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


# provider_data keys of a pooled provider (providers/kling/pool.py): the upstream account a
# task is pinned to, and a request to free its slot and queue it again with the next save
# (its create was refused, so it provably does not exist upstream).
UPSTREAM_ACCOUNT = "upstream_account"
RELEASE_SLOT = "release_slot"


def releases_slot(task: Task) -> bool:
    """Whether this save frees the task's slot (and unpins it); consumes the request."""
    if not task.provider_data.pop(RELEASE_SLOT, False):
        return False
    task.provider_data.pop(UPSTREAM_ACCOUNT, None)
    return True


class Provider(Protocol):
    name: str

    async def submit(self, task: Task) -> Submission | Step:
        """Start the generation of ``task``; idempotent per task id (a resubmission after a
        crash must find the earlier job rather than pay for a second one). A ``Step``: a
        step before the first upstream job is done (submit is called again)."""
        ...

    async def check(self, task: Task) -> Status | Step:
        """Report where the job of ``task`` (``task.job_id``) stands; a ``Step`` when a step
        of a multi-step job is done and the next one begins."""
        ...

    async def aclose(self) -> None:
        """Release connections and threads."""
        ...


@runtime_checkable
class RunsJobs(Protocol):
    """A provider that runs work of its own for a task (the local renders), which can outlive
    the call that started it. While such a job is alive the worker keeps the task's lease
    (another worker would start the same job again) and waits for it before looking again."""

    def running_job(self, task: Task) -> asyncio.Future[Any] | None:
        """The job still running for ``task``, or None."""
        ...
