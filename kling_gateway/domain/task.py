"""The task as the gateway keeps it, and its stored record (docs/contract.md §1)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec

from kling_gateway.domain.outcomes import ProviderError
from kling_gateway.domain.params import TaskParams
from kling_gateway.protocol.task import TASK_TYPE_VIDEOS, VIDEOS_API_ID, TaskState

_ASCII_SPACE = " \t\n\r\f\v"
_P = TypeVar("_P", bound=TaskParams)


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
    # The validated request (``domain.videos.validate``, ``domain.kinds``; its struct follows
    # ``type``); None only for a task whose stored request does not validate (an old row, see
    # ``domain.videos.params_from_stored``).
    params: TaskParams | None = None
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
        """The task record of docs/contract.md §1, field order as in the seed's example."""
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


def params_as(task: Task, kind: type[_P]) -> _P:
    """``task.params`` as the params of ``kind``, or the provider failure of a task without a
    valid request of that kind (an old row that no longer validates)."""
    params = task.params
    if params is None:
        raise ProviderError(
            "the stored request is invalid: it does not pass the request validation",
            code="invalid_request",
        )
    if not isinstance(params, kind):
        raise ProviderError(f"a {task.type} task has no {kind.__name__}", code="unsupported_action")
    return params
