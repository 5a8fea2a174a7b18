"""Lost wake-ups: ``wait_until_finished`` subscribes before it reads, so a task that finishes
between its read and its wait still wakes it at once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from kling_gateway.api import waiting
from kling_gateway.api.waiting import is_finished, wait_until_finished
from kling_gateway.infra.notify import LocalTaskEvents, Subscription
from kling_gateway.protocol.task import TaskState, success_response
from kling_gateway.storage.base import Outcome
from kling_gateway.storage.sqlite import SQLiteStore
from tests.harness import make_task


class RecordedSubscription(Subscription):
    owner_results: list[bool]

    async def wait(self, timeout: float) -> bool:
        woken = await super().wait(timeout)
        self.owner_results.append(woken)
        return woken


class RecordingEvents(LocalTaskEvents):
    """Real local notifications that remember how each wait ended (woken or timed out)."""

    def __init__(self) -> None:
        super().__init__()
        self.results: list[bool] = []

    def subscribe(self, task_id: str) -> Subscription:
        subscription = RecordedSubscription(self, task_id)
        subscription.owner_results = self.results
        return subscription


class FinishAfterRead:
    """The real store, with one interleaving forced: right after the waiter's first read
    (which sees the task unfinished), the task finishes and its notification is published,
    before the read returns to the waiter."""

    def __init__(self, store: SQLiteStore, events: LocalTaskEvents) -> None:
        self._store, self._events = store, events
        self.reads = 0

    async def get_task_record(self, user_id: str, task_id: str) -> bytes | None:
        record = await self._store.get_task_record(user_id, task_id)
        self.reads += 1
        if self.reads == 1:
            await self._finish(task_id)
        return record

    async def _finish(self, task_id: str) -> None:
        stored = await self._store.load_task(task_id)
        assert stored is not None
        task = stored.task
        task.state, task.finished_at = TaskState.SUCCEED, time.time()
        task.response = success_response(
            task.id, video_id="v", video_url="http://cdn.example/v.mp4", duration="5"
        )
        outcome = Outcome(next_check_at=None)
        assert await self._store.save_task(
            task, expected_version=task.version, worker_id=None, outcome=outcome
        )
        await self._events.publish(task_id)


async def test_a_finish_between_read_and_wait_is_not_missed(
    sqlite_store: SQLiteStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # No periodic re-read to hide a lost notification: only the wake-up can end this wait.
    monkeypatch.setattr(waiting, "RECHECK_SECONDS", 3600.0)
    task = make_task("user-1")
    await sqlite_store.insert_task(task, next_check_at=0, deadline_at=time.time() + 60)
    events = RecordingEvents()
    store = FinishAfterRead(sqlite_store, events)
    record = await wait_until_finished(store, events, "user-1", task.id, timeout=5)  # type: ignore[arg-type]
    assert record is not None and is_finished(record)
    assert events.results == [True]  # woken by the finish, not by running out of time
    assert store.reads == 2
    assert events.waiting == 0  # and the subscription is gone


async def test_a_missing_task_answers_at_once_and_leaves_no_subscription(
    sqlite_store: SQLiteStore,
) -> None:
    events = LocalTaskEvents()
    assert await wait_until_finished(sqlite_store, events, "u", "no-such-task", 30) is None
    assert events.waiting == 0


async def test_a_subscription_catches_a_change_published_before_its_wait() -> None:
    events = LocalTaskEvents()
    with events.subscribe("t") as changes:
        await events.publish("t")
        assert await changes.wait(0) is True
        assert events.waiting == 1  # re-armed for the next change
        await events.publish("t")
        assert await changes.wait(0) is True
        assert await changes.wait(0) is False  # nothing new
    assert events.waiting == 0
