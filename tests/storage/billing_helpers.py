"""Helpers of the credit tests: priced tasks, and finishing them through the one transition
function (so the settle or release is the one the worker and the callback route write)."""

from __future__ import annotations

import time
from typing import Any

import msgspec

from kling_gateway.domain.billing import Entry
from kling_gateway.domain.outcomes import Status, VideoResult
from kling_gateway.domain.pricing import DEFAULT_TABLE, price
from kling_gateway.domain.task import Task
from kling_gateway.domain.transitions import Deadline, Policy, Schedule, transition
from kling_gateway.domain.videos import validate
from kling_gateway.protocol.requests import VideoRequestBody
from kling_gateway.protocol.task import TaskState
from kling_gateway.storage.base import Outcome, Store, StoredTask
from tests.storage.helpers import Owner, new_task

POLICY = Policy(5.0, 60.0, 3600.0)


def priced_task(who: Owner, *, duration: int = 5, mode: str = "std", **body: Any) -> Task:
    """A task whose params are a validated request and whose usage is its price."""
    task = new_task(who)
    raw = {"action": "text2video", "prompt": "a cat", "duration": duration, "mode": mode, **body}
    task.params = validate(msgspec.convert(raw, VideoRequestBody))
    task.usage = price(DEFAULT_TABLE, task.type, task.params)
    return task


async def create(store: Store, task: Task, *, key: str | None = None) -> Task:
    now = time.time()
    return await store.insert_task(
        task,
        next_check_at=now,
        deadline_at=now + 3600,
        idempotency_key=key,
        request_hash="h" if key else None,
        charge_quota=True,
    )


def succeed_outcome(seconds: float = 5.0) -> Status:
    video = VideoResult(video_id="v1", video_url="http://x/v.mp4", duration=f"{seconds:.1f}")
    return Status(TaskState.SUCCEED, video=video)


def fail_outcome() -> Status:
    return Status(TaskState.FAILED, error_code="generation_failed", error_message="no")


async def finish_stored(
    store: Store,
    stored: StoredTask,
    outcome: Status | Deadline,
    *,
    worker_id: str | None = None,
) -> bool:
    """Write what ``outcome`` does to ``stored`` as the worker does: one compare-and-set."""
    schedule = Schedule(stored.attempts, stored.deadline_at)
    change = transition(stored.task, outcome, schedule, time.time(), POLICY)
    return await store.save_task(
        change.task,
        expected_version=stored.task.version,
        worker_id=worker_id,
        outcome=Outcome(
            next_check_at=change.next_check_at,
            attempts=change.attempts,
            callbacks=change.callbacks,
            billing=change.billing,
        ),
    )


async def finish_task(store: Store, task_id: str, outcome: Status | Deadline) -> bool:
    stored = await store.load_task(task_id)
    return stored is not None and await finish_stored(store, stored, outcome)


async def entries_of(store: Store, user: str, entry: Entry) -> list[str]:
    """The task ids of ``user``'s entries of one kind, in order."""
    return [e.task_id or "" for e in await store.ledger_entries(user_name=user) if e.entry is entry]
