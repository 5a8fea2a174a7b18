"""Kling's status callbacks to the gateway, read as the gateway's own outcomes.

Kling POSTs the task object whenever one of our jobs changes state (``callback_url`` of the
create call, see ``factory.callback_url``). This module turns that payload into a ``Status``
(with the ids that name our task and its job) and, for a task whose create answer has not been
stored yet, into the ``Submission`` of the job the callback names. What either does to the task
is for ``domain.transitions`` to decide; the HTTP route (``api/routes/kling_callbacks.py``)
only composes the two with the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kling_gateway.domain.outcomes import ProviderError, Status, Submission
from kling_gateway.domain.task import Task
from kling_gateway.domain.videos import params_of
from kling_gateway.providers.kling.mapping import (
    external_id_of,
    job_id_of,
    kind_for,
    status_from_task,
)


@dataclass(frozen=True, slots=True)
class UpstreamCallback:
    # Our task id (the job's ``external_task_id``); None for video-extend, which has none.
    task_id: str | None
    job_id: str
    status: Status


def status_from_callback(payload: Any) -> tuple[str | None, str, Status]:
    """``(external_task_id, job_id, status)`` of a callback Kling POSTed to the gateway.

    Accepts the bare task object (what Kling sends) or the ``{code, data}`` envelope.
    ``external_task_id`` is None for video-extend jobs. Raises ``ProviderError`` for a payload
    that is not an upstream task.
    """
    if not isinstance(payload, dict):
        raise ProviderError("callback payload is not an object", code="upstream_bad_response")
    task = payload.get("data") if isinstance(payload.get("data"), dict) else payload
    if not isinstance(task, dict):
        raise ProviderError("callback payload is not a task", code="upstream_bad_response")
    return external_id_of(task), job_id_of(task), status_from_task(task)


def parse_callback(payload: Any) -> UpstreamCallback:
    """The callback ``payload`` as an ``UpstreamCallback``; ``ProviderError`` if it is none."""
    task_id, job_id, status = status_from_callback(payload)
    return UpstreamCallback(task_id, job_id, status)


def adoption(task: Task, job_id: str) -> Submission | None:
    """The job a callback names for a task that shows none yet (its create answer is on the
    way, or was lost in a crash): the job our ``external_task_id`` created, so recording it
    means no second one is ever created. None when the task cannot run on Kling at all."""
    try:
        kind = kind_for(params_of(task))
    except ProviderError:
        return None
    return Submission(job_id=job_id, provider_data={"kind": kind})
