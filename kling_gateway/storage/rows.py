"""Conversions between ``Task`` and the column layout every SQL backend shares, and the
decisions every store makes the same way (idempotent replay, what a save writes)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from kling_gateway.domain.params import PARAMS_BY_TYPE, TaskParams
from kling_gateway.domain.task import Task
from kling_gateway.domain.videos import params_from_stored
from kling_gateway.protocol.task import TaskState
from kling_gateway.storage.base import (
    CallbackDelivery,
    CredentialInfo,
    IdempotencyConflict,
    Outcome,
    Principal,
    StoredTask,
)

# How long an idempotency key keeps returning the task it created.
IDEMPOTENCY_WINDOW = 24 * 3600.0

TASK_COLUMNS = (
    "id, object_id, user_id, application_id, credential_id, type, state, trace_id, job_id, "
    "request, params, response, provider_data, callback, created_at, started_at, finished_at, "
    "version, attempts, next_check_at, deadline_at, lease_owner, upstream_account"
)

CALLBACK_COLUMNS = (
    "id, task_id, user_id, url, event, body, state, attempts, next_attempt_at, last_status, "
    "last_error, delivered_at, created_at"
)

_decode = msgspec.json.decode
_encode = msgspec.json.encode


def dump_json(value: Any) -> str | None:
    return None if value is None else _encode(value).decode()


def load_json(value: Any) -> Any:
    """A JSON column as Python (both backends hand JSON columns over as text)."""
    if value is None:
        return None
    return _decode(value)


def task_values(task: Task) -> tuple[object, ...]:
    """The values of the first 18 of ``TASK_COLUMNS`` (up to ``version``), in order."""
    return (
        task.id,
        task.object_id,
        task.user_id,
        task.application_id,
        task.credential_id,
        task.type,
        task.state.value,
        task.trace_id,
        task.job_id,
        dump_json(task.request),
        dump_json(task.params),
        dump_json(task.response),
        dump_json(task.provider_data),
        dump_json(task.callback),
        task.created_at,
        task.started_at,
        task.finished_at,
        task.version,
    )


def load_params(value: Any, request: dict[str, Any], task_type: str) -> TaskParams | None:
    """The ``params`` column, as the struct of the task's ``type``; a row from before it
    (NULL, only ever a video task) is validated from its request."""
    if value is None:
        return params_from_stored(request)
    kind = PARAMS_BY_TYPE.get(task_type)
    return None if kind is None else msgspec.json.decode(value, type=kind)


def task_from_row(row: Mapping[str, Any]) -> StoredTask:
    request = load_json(row["request"])
    task = Task(
        id=row["id"],
        object_id=row["object_id"],
        user_id=row["user_id"],
        application_id=row["application_id"],
        credential_id=row["credential_id"],
        type=row["type"],
        state=TaskState(row["state"]),
        trace_id=row["trace_id"],
        job_id=row["job_id"],
        request=request,
        params=load_params(row["params"], request, row["type"]),
        response=load_json(row["response"]),
        provider_data=load_json(row["provider_data"]) or {},
        callback=load_json(row["callback"]),
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        version=row["version"],
    )
    return StoredTask(
        task=task,
        attempts=row["attempts"],
        next_check_at=row["next_check_at"] or 0.0,
        deadline_at=row["deadline_at"],
        lease_owner=row["lease_owner"],
        account=row["upstream_account"],
    )


def callback_from_row(row: Mapping[str, Any]) -> CallbackDelivery:
    return CallbackDelivery(
        id=row["id"],
        task_id=row["task_id"],
        user_id=row["user_id"],
        url=row["url"],
        event=row["event"],
        body=bytes(row["body"]),
        state=row["state"],
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        last_status=row["last_status"],
        last_error=row["last_error"],
        delivered_at=row["delivered_at"],
        created_at=row["created_at"],
    )


def callback_view(delivery: CallbackDelivery) -> dict[str, Any]:
    """The ``callback`` field of a task record: the delivery state of its final callback."""
    return {
        "url": delivery.url,
        "state": delivery.state,
        "attempts": delivery.attempts,
        "last_status": delivery.last_status,
        "last_error": delivery.last_error,
        "next_attempt_at": delivery.next_attempt_at,
        "delivered_at": delivery.delivered_at,
    }


def is_final_event(event: str) -> bool:
    return event in (TaskState.SUCCEED.value, TaskState.FAILED.value)


def initial_callback_view(url: str, now: float) -> dict[str, Any]:
    """The ``callback`` field of a record whose final callback has just been enqueued."""
    return {
        "url": url,
        "state": "pending",
        "attempts": 0,
        "last_status": None,
        "last_error": None,
        "next_attempt_at": now,
        "delivered_at": None,
    }


def replay_is_due(
    created_at: float, stored_hash: str | None, request_hash: str | None, now: float
) -> bool:
    """Whether a reused idempotency key answers with the earlier task created at
    ``created_at``. False when the key has expired: the caller frees it for the new task.
    Raises IdempotencyConflict when the key came with a different request body."""
    if created_at < now - IDEMPOTENCY_WINDOW:
        return False
    if stored_hash != request_hash:
        raise IdempotencyConflict("this Idempotency-Key was used with a different request body")
    return True


def apply_outcome(
    task: Task,
    *,
    expected_version: int,
    stored_callback: dict[str, Any] | None,
    stored_attempts: int,
    worker_id: str | None,
    outcome: Outcome,
    now: float,
) -> tuple[int, float | None, str | None]:
    """Prepare a compare-and-set save that has passed its version check: set ``task``'s new
    version and callback view (so the record rendered next is the stored one) and return the
    scheduling columns (attempts, next_check_at, lease_owner) to write."""
    final = [cb for cb in outcome.callbacks if is_final_event(cb[1])]
    task.callback = initial_callback_view(final[0][0], now) if final else stored_callback
    task.version = expected_version + 1
    attempts = stored_attempts if outcome.attempts is None else outcome.attempts
    # A finished task has no next check: that is what "finished" means to the store.
    next_check_at = None if task.state.is_terminal else outcome.next_check_at
    return attempts, next_check_at, worker_id if outcome.keep_lease else None


# The query both backends run for authentication, by its column order.
PRINCIPAL_QUERY = (
    "SELECT c.id, c.apis, c.expires_at, c.revoked_at, u.id, u.name, a.id, a.disabled, "
    "a.quota_remaining FROM credentials c JOIN users u ON u.id = c.user_id "
    "JOIN applications a ON a.id = c.application_id WHERE c.token_hash = "
)


def principal_from_row(row: Sequence[Any]) -> Principal:
    """A ``Principal`` from a row of ``PRINCIPAL_QUERY``."""
    return Principal(
        user_id=row[4],
        user_name=row[5],
        application_id=row[6],
        credential_id=row[0],
        apis=frozenset(filter(None, row[1].split(","))),
        expires_at=row[2],
        revoked=row[3] is not None,
        application_disabled=bool(row[7]),
        quota_remaining=row[8],
    )


# The columns a compare-and-set write of a task sets, in the order of ``task_update_values``.
TASK_UPDATE_COLUMNS = (
    "state", "job_id", "response", "provider_data", "callback", "started_at", "finished_at",
    "version", "attempts", "next_check_at", "lease_owner",
)  # fmt: skip


def task_update_values(
    task: Task, attempts: int, next_check_at: float | None, lease_owner: str | None
) -> tuple[Any, ...]:
    """The values of ``TASK_UPDATE_COLUMNS``, then the task id (for ``WHERE id = ...``)."""
    return (
        task.state.value,
        task.job_id,
        dump_json(task.response),
        dump_json(task.provider_data),
        dump_json(task.callback),
        task.started_at,
        task.finished_at,
        task.version,
        attempts,
        next_check_at,
        lease_owner,
        task.id,
    )


# One unit of an application's quota (NULL: unlimited); the condition and the decrement are
# one atomic statement, run in the transaction that inserts the task.
CHARGE_QUOTA = (
    "UPDATE applications SET quota_remaining = quota_remaining - 1 "
    "WHERE id = ? AND (quota_remaining IS NULL OR quota_remaining > 0)"
)


# Every token with its user's name, oldest first (operators' listing; no index needed).
CREDENTIALS_QUERY = (
    "SELECT c.id, u.name, c.application_id, c.token_prefix, c.apis, c.created_at, "
    "c.expires_at, c.revoked_at FROM credentials c JOIN users u ON u.id = c.user_id "
    "ORDER BY c.created_at"
)


def credential_from_row(row: Sequence[Any]) -> CredentialInfo:
    """A ``CredentialInfo`` from a row of ``CREDENTIALS_QUERY``."""
    apis = tuple(filter(None, row[4].split(",")))
    return CredentialInfo(row[0], row[1], row[2], row[3], apis, row[5], row[6], row[7])
