"""Callback deliveries on memory://: claim, finish, list, redeliver."""

from __future__ import annotations

import copy

from kling_gateway.storage.base import (
    CallbackDelivery,
)
from kling_gateway.storage.memory_rows import (
    MemoryBase,
)
from kling_gateway.storage.rows import (
    callback_view,
    is_failing,
    is_final_event,
)


class MemoryCallbacks(MemoryBase):
    """The callback delivery flows of ``MemoryStore``."""

    async def claim_due_callbacks(
        self, worker_id: str, now: float, limit: int, lease_seconds: float
    ) -> list[CallbackDelivery]:
        due = [
            d
            for d, _ in self._s.callbacks.values()
            if d.next_attempt_at is not None and d.next_attempt_at <= now
        ]
        due.sort(key=lambda d: d.next_attempt_at or 0.0)
        claimed = []
        for delivery in due[:limit]:
            delivery.next_attempt_at = now + lease_seconds
            self._s.callbacks[delivery.id] = (delivery, worker_id)
            claimed.append(copy.deepcopy(delivery))
        return claimed

    async def finish_callback_attempt(self, delivery: CallbackDelivery, worker_id: str) -> None:
        stored = self._s.callbacks.get(delivery.id)
        if stored is None or stored[1] != worker_id:
            return
        self._s.callbacks[delivery.id] = (copy.deepcopy(delivery), None)
        row = self._s.tasks.get(delivery.task_id)
        if row is not None and is_final_event(delivery.event):
            # Shown in the record without bumping the task's version.
            row.task.callback = callback_view(delivery)
            self._put(row)

    async def list_callbacks(
        self, *, task_id: str | None = None, failed_only: bool = False, limit: int = 100
    ) -> list[CallbackDelivery]:
        found = [
            copy.deepcopy(d)
            for d, _ in self._s.callbacks.values()
            if (task_id is None or d.task_id == task_id) and (not failed_only or is_failing(d))
        ]
        found.sort(key=lambda d: d.created_at, reverse=True)
        return found[:limit]

    async def redeliver_callback(self, delivery_id: str, now: float) -> bool:
        stored = self._s.callbacks.get(delivery_id)
        if stored is None:
            return False
        delivery, owner = stored
        if owner is not None and (delivery.next_attempt_at or 0.0) > now:
            return True  # being sent right now: see the engine's _redeliver
        delivery.state, delivery.next_attempt_at = "pending", now
        self._s.callbacks[delivery_id] = (delivery, None)
        return True
