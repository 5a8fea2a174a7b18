"""The worker: claims due tasks under a lease and drives many of them at once.

Each task carries its own next-check time, so the lag of one task does not grow with the
number of others (the failure of gateways that poll one task after another). Every write is a
compare-and-set; a worker that lost its lease simply finds its write refused. What a provider's
answer does to a task is decided by ``domain.transitions`` alone: here is only the running.

- A lease is renewed while its job runs (a render that outlives the per-call deadline keeps
  its task away from other workers until it ends).
- New-task notifications are coalesced: however many arrive in a burst, an idle worker claims
  once per ``wake_debounce_seconds``.
- Every ``sweep_seconds`` the deadline sweep makes tasks past their deadline due, so they end
  even when their next check is later.
- Shutdown gives jobs a grace period, cancels the rest and awaits them, and only then releases
  their leases (the provider is closed after ``run`` returns).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from kling_gateway.domain.outcomes import ProviderError, Status
from kling_gateway.domain.transitions import (
    Change,
    Policy,
    ResultPending,
    Schedule,
    mark_submit,
    transition,
)
from kling_gateway.infra.announce import announce
from kling_gateway.infra.metrics import (
    QUEUE_WAIT,
    WORKER_SLOTS,
    count_storage_error,
)
from kling_gateway.infra.notify import WORKER_WAKEUP, TaskEvents
from kling_gateway.providers.base import Provider, RunsJobs, releases_slot
from kling_gateway.storage.base import Outcome, Store, StoredTask
from kling_gateway.worker.steps import (
    Fetch,
    FetchesResults,
    advance,
    fetch_and_apply,
    needs_submit_marker,
)

log = logging.getLogger("kling_gateway.worker")

# How many times a look waits for a provider job that outlived the call (``RunsJobs``).
_JOB_WAITS = 3

# How the worker leases due tasks: ``Store.claim_due_tasks``, or a pool's fair claim
# (``providers.kling.pool.claim_pooled``).
ClaimTasks = Callable[[Store, str, float, int, float], Awaitable[list[StoredTask]]]


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    concurrency: int = 64
    lease_seconds: float = 120.0
    idle_poll_seconds: float = 1.0
    call_timeout: float = 30.0
    shutdown_grace: float = 10.0
    # However many new-task notifications arrive, at most one claim per window.
    wake_debounce_seconds: float = 0.05
    # How often the deadline sweep runs.
    sweep_seconds: float = 30.0
    policy: Policy = field(default_factory=lambda: Policy(5.0, 60.0, 3600.0))


@dataclass(slots=True)
class WorkerStats:
    claimed: int = 0
    claims: int = 0  # claim queries run
    submitted: int = 0
    checks: int = 0
    finished: int = 0
    lost_writes: int = 0
    renewals: int = 0
    swept: int = 0


@dataclass(eq=False, slots=True)
class Claim:
    """One claimed run of one task: a slot, from the claim until its last write."""

    stored: StoredTask
    # Serialises the lease renewals and the run's writes (each is a compare-and-set).
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    job: asyncio.Task[None] | None = None
    # The run's last write is made (or refused): nothing to renew, nothing to release.
    done: bool = False


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
        claim: ClaimTasks | None = None,
    ) -> None:
        self.store, self.provider, self.events, self.config = store, provider, events, config
        self._claim_tasks = claim
        self.worker_id = worker_id or new_worker_id()
        self.stats = WorkerStats()
        self._clock = clock
        # By claim, not by task: a task released and claimed again while its earlier run is
        # still going takes two slots.
        self._in_flight: dict[int, Claim] = {}
        self._claim_ids = itertools.count()
        self._wake = asyncio.Event()
        self._notified = False
        self._last_claim = -float("inf")  # loop time of the last claim query
        # Whether the last claim filled every free slot (so more tasks may be due than it took):
        # only then is a slot freeing up a reason to claim again. A worker whose queue ran dry
        # would otherwise run a claim query for every task it finishes (and with several
        # workers, each of those mostly finds nothing).
        self._saturated = False
        # Set when a task's next check became our earliest: the sleep is recomputed, no claim.
        self._rescheduled = False
        self._slot_freed = False
        self._stopping = asyncio.Event()
        self._next_due = 0.0
        self._sweep_at = 0.0
        self._slots_busy = WORKER_SLOTS.labels("busy")

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def run(self) -> None:
        """Claim and drive tasks until ``stop()``; then settle whatever is still in hand."""
        listener = asyncio.create_task(self._listen(), name="worker-wakeups")
        slots = WORKER_SLOTS.labels("total")
        slots.inc(self.config.concurrency)
        try:
            while not self._stopping.is_set():
                # Cleared before looking, not before sleeping: a wake-up that arrives while
                # the claim query runs (a task inserted after its snapshot) must not be lost.
                self._wake.clear()
                self._notified = self._slot_freed = self._rescheduled = False
                if not await self.poll():
                    await self._sleep()
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
            await self._drain()
            slots.dec(self.config.concurrency)

    async def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def poll(self) -> bool:
        """Sweep when due, then claim; whether to claim again at once (all free slots filled:
        more may be due)."""
        await self._sweep_if_due()
        free = self.config.concurrency - len(self._in_flight)
        if free <= 0:
            return False
        return await self._claim(free) >= free

    async def settle(self) -> None:
        """Wait until every job in hand has ended (tests step the worker with this)."""
        while self._in_flight:
            await asyncio.gather(*(c.job for c in list(self._in_flight.values()) if c.job))

    async def _listen(self) -> None:
        while True:
            if await self.events.wait(WORKER_WAKEUP, 60.0):
                self._notified = True
                self._wake.set()

    async def _sweep_if_due(self) -> None:
        now = self._clock()
        if now < self._sweep_at:
            return
        self._sweep_at = now + self.config.sweep_seconds
        try:
            swept = await self.store.make_overdue_due(now)
        except Exception:
            log.exception("the deadline sweep failed; trying again at the next one")
            return
        if swept:
            self.stats.swept += swept
            log.info("deadline sweep: %d overdue tasks made due", swept)

    async def _claim(self, free: int) -> int:
        self._last_claim = asyncio.get_running_loop().time()
        self.stats.claims += 1
        try:
            now, lease = self._clock(), self.config.lease_seconds
            if self._claim_tasks is not None:
                claimed = await self._claim_tasks(self.store, self.worker_id, now, free, lease)
            else:
                claimed = await self.store.claim_due_tasks(self.worker_id, now, free, lease)
        except Exception as exc:
            count_storage_error("worker", exc)
            log.exception("claiming tasks failed; trying again shortly")
            return 0
        for stored in claimed:
            self._spawn(stored)
        self.stats.claimed += len(claimed)
        self._saturated = len(claimed) >= free
        return len(claimed)

    def _spawn(self, stored: StoredTask) -> None:
        key, claim = next(self._claim_ids), Claim(stored)
        claim.job = asyncio.create_task(self._drive(claim), name=f"task-{stored.task.id}")
        self._in_flight[key] = claim
        self._slots_busy.inc()
        claim.job.add_done_callback(lambda _: self._finished(key))

    def _finished(self, key: int) -> None:
        del self._in_flight[key]
        self._slots_busy.dec()
        # News worth a claim: more may be due than the last claim could take (it filled every
        # slot), or a next check of ours is due already (a job that rescheduled its task to now).
        if self._saturated or self._next_due <= self._clock():
            self._slot_freed = True
            self._wake.set()

    async def _sleep(self) -> None:
        """Until new work is announced, a slot frees up, a sweep or our earliest next check is
        due; a notification within the debounce window of the last claim waits for its end."""
        while True:
            now = self._clock()
            timeout = min(self.config.idle_poll_seconds, max(self._sweep_at - now, 0.0))
            if self._next_due > now:
                timeout = min(timeout, self._next_due - now)
            try:
                async with asyncio.timeout(max(timeout, 0.001)):
                    await self._wake.wait()
            except TimeoutError:
                return
            news = self._notified or self._slot_freed or self._stopping.is_set()
            if news or not self._rescheduled:
                break
            # Only an earlier next check of a task of ours: sleep again, to that time (a wake-up
            # that comes meanwhile sets the event again).
            self._rescheduled = False
            self._wake.clear()
        if self._notified and not self._stopping.is_set():
            loop = asyncio.get_running_loop()
            delay = self._last_claim + self.config.wake_debounce_seconds - loop.time()
            if delay > 0:
                try:
                    async with asyncio.timeout(delay):
                        await self._stopping.wait()
                except TimeoutError:
                    pass

    # -- one run of one task -------------------------------------------------------------

    async def _drive(self, claim: Claim) -> None:
        renewer = asyncio.create_task(self._renew(claim), name="lease-renewal")
        try:
            try:
                change = await self._step(claim)
            except Exception as exc:
                # A bug, not a provider answer: keep the task, look again later. Its detail
                # (paths, keys) stays in the log; the task may show the message to its user.
                task = claim.stored.task
                log.exception("driving task %s failed unexpectedly: %r", task.id, exc)
                message = f"internal error in the gateway (trace id {task.trace_id})"
                change = self._retry(claim, message, "internal_error")
            if change is not None:
                await self._write(claim, change)
        finally:
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)

    async def _step(self, claim: Claim) -> Change | None:
        """The change of the task; None when the task was lost (a hold was refused)."""
        task = claim.stored.task
        self.stats.checks += 1
        if task.job_id is None:
            self.stats.submitted += 1
            if claim.stored.attempts == 0:  # its first submission: the wait in the queue ends
                QUEUE_WAIT.labels(task.type).observe(max(0.0, self._clock() - task.created_at))
            if needs_submit_marker(self.provider, task) and not await self._mark_submit(claim):
                return None
        step = await self._call(claim)
        if isinstance(step, Fetch):
            return await self._fetch(claim, step.status)
        return step

    def _schedule(self, claim: Claim) -> Schedule:
        return Schedule(claim.stored.attempts, claim.stored.deadline_at)

    async def _call(self, claim: Claim) -> Change | Fetch:
        """One submit or check within the per-call deadline; a provider job that outlives
        it is waited for (the lease is renewed meanwhile) before the task is looked at again."""
        task, cfg = claim.stored.task, self.config
        for _ in range(_JOB_WAITS):
            try:
                async with asyncio.timeout(cfg.call_timeout):
                    return await advance(
                        self.provider, task, self._schedule(claim), self._clock(), cfg.policy
                    )
            except TimeoutError:
                job = _running_job(self.provider, claim)
                if job is None:
                    break
                await asyncio.wait([job])
        log.warning("task %s: provider call passed its %gs deadline", task.id, cfg.call_timeout)
        message = f"the provider call passed its {cfg.call_timeout:g}-second deadline"
        return self._retry(claim, message, "provider_timeout")

    async def _mark_submit(self, claim: Claim) -> bool:
        """Store the submit marker before the upstream create (see ``steps.MarksSubmits``):
        if the create's answer is then lost, the next attempt knows to look for its job."""
        mark_submit(claim.stored.task, self._clock())
        async with claim.lock:
            return await self._hold(claim.stored, claim.stored.next_check_at)

    async def _fetch(self, claim: Claim, status: Status) -> Change | None:
        """Fetch a finished video outside the per-call deadline, holding the lease for it."""
        provider = self.provider
        assert isinstance(provider, FetchesResults) and provider.fetch_timeout is not None
        timeout = provider.fetch_timeout
        stored, policy = claim.stored, self.config.policy
        # The save after the fetch is one more store call: a per-call deadline of slack.
        async with claim.lock:
            if not await self._hold(stored, self._clock() + timeout + self.config.call_timeout):
                return None
        try:
            async with asyncio.timeout(timeout):
                return await fetch_and_apply(
                    provider, stored.task, status, self._schedule(claim), self._clock, policy
                )
        except TimeoutError:
            log.warning("task %s: fetching its video passed %.0fs", stored.task.id, timeout)
            error = ProviderError(
                f"copying the video passed {timeout:g} seconds", code="download_failed",
                retryable=True,
            )  # fmt: skip
            pending = ResultPending(status, error)
            return transition(stored.task, pending, self._schedule(claim), self._clock(), policy)

    def _retry(self, claim: Claim, message: str, code: str) -> Change:
        error = ProviderError(message, code=code, retryable=True)
        stored = claim.stored
        return transition(
            stored.task, error, self._schedule(claim), self._clock(), self.config.policy
        )

    async def _renew(self, claim: Claim) -> None:
        """Keep the lease of ``claim`` while its run is alive (see the module docstring)."""
        lease = self.config.lease_seconds
        while True:
            await asyncio.sleep(lease / 3)
            async with claim.lock:
                if claim.done:
                    return
                until = self._clock() + lease
                if until <= claim.stored.next_check_at:
                    continue  # a longer hold is in place (a fetch)
                if not await self._hold(claim.stored, until):
                    return
                self.stats.renewals += 1

    async def _hold(self, stored: StoredTask, until: float) -> bool:
        """Write the task as it is, keeping our lease until ``until``; False if it is lost.
        The caller holds the claim's lock."""
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

    async def _write(self, claim: Claim, change: Change) -> None:
        outcome = Outcome(
            next_check_at=change.next_check_at,
            attempts=change.attempts,
            callbacks=change.callbacks,
            release_account=releases_slot(change.task),
            billing=change.billing,
        )
        async with claim.lock:
            claim.done = True
            # The version of the claim, or that of our last hold or renewal.
            version = claim.stored.task.version
            try:
                saved = await self.store.save_task(
                    change.task, expected_version=version, worker_id=self.worker_id,
                    outcome=outcome,
                )  # fmt: skip
            except Exception as exc:
                count_storage_error("worker", exc)
                log.exception(
                    "saving task %s failed; its lease will run out and it is retried",
                    change.task.id,
                    extra={"task_id": change.task.id},
                )
                return
        if not saved:
            # Someone else moved the task on (a Kling callback, a delete, a lease taken over).
            self.stats.lost_writes += 1
            return
        self._saved(change)
        await announce(self.events, change)

    def _saved(self, change: Change) -> None:
        if change.finished or change.next_check_at is None:
            self.stats.finished += int(change.finished)
            return
        if self._next_due <= self._clock() or change.next_check_at < self._next_due:
            self._next_due = change.next_check_at
            self._rescheduled = True  # a sleep computed before this ends sooner now
            self._wake.set()

    async def _drain(self) -> None:
        """Give tasks in hand a grace period, cancel the rest and await them, and only then
        release the leases of the runs that did not write their result."""
        claims = list(self._in_flight.values())
        jobs = [c.job for c in claims if c.job is not None]
        if jobs:
            await asyncio.wait(jobs, timeout=self.config.shutdown_grace)
        left = [c for c in claims if c.job is not None and not c.job.done()]
        for claim in left:
            assert claim.job is not None
            claim.job.cancel()
        await asyncio.gather(*(c.job for c in left if c.job is not None), return_exceptions=True)
        unsaved = sorted({c.stored.task.id for c in left if not c.done})
        if unsaved:
            await self.store.release_tasks(self.worker_id, unsaved, self._clock())
            log.info("released %d unfinished tasks for other workers", len(unsaved))


def _running_job(provider: Provider, claim: Claim) -> asyncio.Future[Any] | None:
    if not isinstance(provider, RunsJobs):
        return None
    return provider.running_job(claim.stored.task)
