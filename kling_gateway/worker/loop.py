"""The worker: claims due tasks under a lease and drives many of them at once.

Each task carries its own next-check time, so the lag of one task does not grow with the
number of others (the failure of gateways that poll one task after another). Every write is a
compare-and-set; a worker that lost its lease simply finds its write refused.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from kling_gateway.domain.outcomes import Status
from kling_gateway.domain.schedule import backoff
from kling_gateway.domain.task import Task
from kling_gateway.infra.notify import CALLBACK_WAKEUP, WORKER_WAKEUP, TaskEvents, relay
from kling_gateway.protocol.task import TaskState
from kling_gateway.providers.base import Provider
from kling_gateway.storage.base import Outcome, Store, StoredTask
from kling_gateway.worker.steps import (
    FetchesResults,
    StepPolicy,
    StepResult,
    advance,
    fetch_and_apply,
    mark_submit,
    needs_submit_marker,
)

log = logging.getLogger("kling_gateway.worker")


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    concurrency: int = 64
    lease_seconds: float = 120.0
    idle_poll_seconds: float = 1.0
    call_timeout: float = 30.0
    shutdown_grace: float = 10.0
    policy: StepPolicy = field(default_factory=lambda: StepPolicy(5.0, 60.0, 3600.0))


@dataclass(slots=True)
class WorkerStats:
    claimed: int = 0
    submitted: int = 0
    checks: int = 0
    finished: int = 0
    lost_writes: int = 0


def new_worker_id() -> str:
    return f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Worker:
    def __init__(
        self,
        store: Store,
        provider: Provider,
        events: TaskEvents,
        config: WorkerConfig,
        *,
        worker_id: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store, self.provider, self.events, self.config = store, provider, events, config
        self.worker_id = worker_id or new_worker_id()
        self.stats = WorkerStats()
        self._clock = clock
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._next_due = 0.0

    async def run(self) -> None:
        """Claim and drive tasks until ``stop()``; then release whatever is still in hand."""
        listener = asyncio.create_task(relay(self.events, WORKER_WAKEUP, self._wake))
        try:
            while not self._stopping.is_set():
                # Cleared before looking, not before sleeping: a wake-up that arrives while
                # the claim query runs (a task inserted after its snapshot) must not be lost.
                self._wake.clear()
                if await self._claim() == 0 or self._full():
                    await self._sleep()
        finally:
            listener.cancel()
            await self._drain()

    async def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def _full(self) -> bool:
        return len(self._in_flight) >= self.config.concurrency

    async def _claim(self) -> int:
        free = self.config.concurrency - len(self._in_flight)
        if free <= 0:
            return 0
        try:
            claimed = await self.store.claim_due_tasks(
                self.worker_id, self._clock(), free, self.config.lease_seconds
            )
        except Exception:
            log.exception("claiming tasks failed; trying again shortly")
            return 0
        for stored in claimed:
            self._spawn(stored)
        self.stats.claimed += len(claimed)
        return len(claimed)

    def _spawn(self, stored: StoredTask) -> None:
        task_id = stored.task.id
        job = asyncio.create_task(self._drive(stored), name=f"task-{task_id}")
        self._in_flight[task_id] = job
        job.add_done_callback(lambda done: self._finished(task_id, done))

    def _finished(self, task_id: str, job: asyncio.Task[None]) -> None:
        # Only our own entry: if the task was released (a Kling callback made it due) and
        # claimed again while this run was still going, the newer run owns the slot.
        if self._in_flight.get(task_id) is job:
            del self._in_flight[task_id]
        self._wake.set()

    async def _sleep(self) -> None:
        """Until new work is announced, a slot frees up, or our earliest next check is due."""
        now = self._clock()
        timeout = self.config.idle_poll_seconds
        if self._next_due > now:
            timeout = min(timeout, self._next_due - now)
        try:
            async with asyncio.timeout(max(timeout, 0.001)):
                await self._wake.wait()
        except TimeoutError:
            pass

    async def _drive(self, stored: StoredTask) -> None:
        task, before = stored.task, stored.task.state
        try:
            result = await self._step(stored)
        except Exception:
            # A bug, not a provider answer: keep the task, look again later.
            log.exception("driving task %s failed unexpectedly", task.id)
            result = self._retry_later(stored)
        if result is not None:
            # ``task.version``: the claimed one, or that of our last hold (``_hold``).
            await self._save(task, task.version, before, result)

    async def _step(self, stored: StoredTask) -> StepResult | None:
        """The task's next state; None when the task was lost (a hold was refused)."""
        task = stored.task
        self.stats.checks += 1
        if task.job_id is None:
            self.stats.submitted += 1
            if needs_submit_marker(self.provider, task) and not await self._mark_submit(stored):
                return None
        result = await self._call(stored)
        if result.fetch is None:
            return result
        return await self._fetch(stored, result.fetch)

    async def _call(self, stored: StoredTask) -> StepResult:
        """One submit or check, within the per-call deadline."""
        task, cfg = stored.task, self.config
        try:
            async with asyncio.timeout(cfg.call_timeout):
                return await advance(
                    self.provider,
                    task,
                    stored.attempts,
                    stored.deadline_at,
                    self._clock(),
                    cfg.policy,
                )
        except TimeoutError:
            log.warning(
                "task %s: provider call passed its %.0fs deadline", task.id, cfg.call_timeout
            )
            return self._retry_later(stored)

    async def _mark_submit(self, stored: StoredTask) -> bool:
        """Store the submit marker before the upstream create (see ``steps.MarksSubmits``):
        if the create's answer is then lost, the next attempt knows to look for its job."""
        mark_submit(stored.task, self._clock())
        return await self._hold(stored, stored.next_check_at)

    async def _fetch(self, stored: StoredTask, status: Status) -> StepResult | None:
        """Fetch a finished video outside the per-call deadline, holding the lease for it."""
        provider = self.provider
        assert isinstance(provider, FetchesResults) and provider.fetch_timeout is not None
        timeout = provider.fetch_timeout
        # The save after the fetch is one more store call: a per-call deadline of slack.
        if not await self._hold(stored, self._clock() + timeout + self.config.call_timeout):
            return None
        policy = self.config.policy
        try:
            async with asyncio.timeout(timeout):
                return await fetch_and_apply(
                    provider, stored.task, status, stored.attempts, self._clock, policy
                )
        except TimeoutError:
            log.warning("task %s: fetching its video passed %.0fs", stored.task.id, timeout)
            return self._retry_later(stored)

    async def _hold(self, stored: StoredTask, until: float) -> bool:
        """Write the task as it is, keeping our lease until ``until``; False if it is lost."""
        task = stored.task
        outcome = Outcome(next_check_at=until, keep_lease=True)
        try:
            held = await self.store.save_task(
                task, expected_version=task.version, worker_id=self.worker_id, outcome=outcome
            )
        except Exception:
            log.exception(
                "holding task %s failed; its lease will run out and it is retried", task.id
            )
            return False
        if not held:
            self.stats.lost_writes += 1
            return False
        stored.next_check_at = until
        return True

    def _retry_later(self, stored: StoredTask) -> StepResult:
        policy = self.config.policy
        wait = backoff(stored.attempts, policy.check_interval, policy.check_max_interval)
        return StepResult(self._clock() + wait, stored.attempts + 1, changed=False)

    async def _save(self, task: Task, version: int, before: TaskState, result: StepResult) -> None:
        outcome = outcome_for(task, before, result)
        try:
            saved = await self.store.save_task(
                task, expected_version=version, worker_id=self.worker_id, outcome=outcome
            )
        except Exception:
            log.exception(
                "saving task %s failed; its lease will run out and it is retried", task.id
            )
            return
        if not saved:
            # Someone else moved the task on (a Kling callback, a delete, a lease taken over).
            self.stats.lost_writes += 1
            return
        if task.state.is_terminal:
            self.stats.finished += 1
        elif self._next_due <= self._clock() or result.next_check_at < self._next_due:
            self._next_due = result.next_check_at
        if result.changed:
            await self.events.publish(task.id)
        if outcome.callbacks:
            await self.events.publish(CALLBACK_WAKEUP)

    async def _drain(self) -> None:
        """Give tasks in hand a grace period, then cancel and release the rest."""
        pending = list(self._in_flight.values())
        if pending:
            await asyncio.wait(pending, timeout=self.config.shutdown_grace)
        left = list(self._in_flight)
        for job in list(self._in_flight.values()):
            job.cancel()
        if left:
            await self.store.release_tasks(self.worker_id, left, self._clock())
            log.info("released %d unfinished tasks for other workers", len(left))


def outcome_for(task: Task, before: TaskState, result: StepResult) -> Outcome:
    """The compare-and-set write of a step's result, with the client callbacks it owes."""
    return Outcome(
        next_check_at=result.next_check_at,
        attempts=result.attempts,
        callbacks=callbacks_for(task, before),
    )


def callbacks_for(task: Task, before: TaskState) -> tuple[tuple[str, str, bytes], ...]:
    """The callback deliveries this state change owes, written with it in one transaction."""
    url = task.request.get("callback_url")
    if not isinstance(url, str) or task.state is before or task.response is None:
        return ()
    wanted: Any = task.request.get("callback_events") or ()
    if task.state.is_terminal or task.state.value in wanted:
        return ((url, task.state.value, msgspec.json.encode(task.response)),)
    return ()
