"""Announcing a written ``Change`` (``domain.transitions``): who needs to hear about it."""

from __future__ import annotations

import logging

from kling_gateway.domain.transitions import Change
from kling_gateway.infra.metrics import count_finished
from kling_gateway.infra.notify import CALLBACK_WAKEUP, WORKER_WAKEUP, TaskEvents
from kling_gateway.protocol.task import TaskState

log = logging.getLogger("kling_gateway.tasks")


async def announce(events: TaskEvents, change: Change) -> None:
    """Publish what a change that has just been stored owes: the task to its waiters, its
    outbox rows to the callback deliverer, a task made due to the workers; a task that
    finished is counted, and a failure logged with its reason."""
    if change.finished:
        _finished(change)
    if change.changed:
        await events.publish(change.task.id)
    if change.wakes_deliverer:
        await events.publish(CALLBACK_WAKEUP)
    if change.wake_worker:
        await events.publish(WORKER_WAKEUP)


def _finished(change: Change) -> None:
    task = change.task
    count_finished(task.type, task.state.value)
    if task.state is TaskState.FAILED:
        error = (task.response or {}).get("error") or {}
        log.warning(
            "task %s failed: %s: %s",
            task.id,
            error.get("code", "unknown"),
            error.get("message", "no reason recorded"),
            extra={"task_id": task.id},
        )
