"""Announcing a written ``Change`` (``domain.transitions``): who needs to hear about it."""

from __future__ import annotations

from kling_gateway.domain.transitions import Change
from kling_gateway.infra.notify import CALLBACK_WAKEUP, WORKER_WAKEUP, TaskEvents


async def announce(events: TaskEvents, change: Change) -> None:
    """Publish what a change that has just been stored owes: the task to its waiters, its
    outbox rows to the callback deliverer, a task made due to the workers."""
    if change.changed:
        await events.publish(change.task.id)
    if change.wakes_deliverer:
        await events.publish(CALLBACK_WAKEUP)
    if change.wake_worker:
        await events.publish(WORKER_WAKEUP)
