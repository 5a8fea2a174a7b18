"""The worker loop on a real SQLite store with a fake clock: retry caps, the deadline sweep, the
last real reason, produced results, shutdown, slots, coalesced wake-ups and lease renewal.

The provider is scripted (the outside world); the worker is stepped with ``poll``/``settle``,
so the clock only moves when a test moves it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from kling_gateway.domain.outcomes import ProviderError, Status, Submission, VideoResult
from kling_gateway.domain.task import Task
from kling_gateway.domain.transitions import LAST_ERROR, RESULT_RETRY_SECONDS, Policy
from kling_gateway.infra.files import VideoFiles
from kling_gateway.infra.notify import WORKER_WAKEUP, LocalTaskEvents
from kling_gateway.protocol.task import TaskState
from kling_gateway.providers.local.provider import LocalProvider
from kling_gateway.providers.local.render import RenderedVideo, RenderSpec, render_video
from kling_gateway.storage.base import Outcome, StoredTask
from kling_gateway.storage.sqlite import SQLiteStore
from kling_gateway.worker.loop import Worker, WorkerConfig
from tests.harness import make_task

T0 = 1_750_000_000.0
DEADLINE_SECONDS = 600.0
POLICY = Policy(check_interval=5.0, check_max_interval=60.0, deadline_seconds=DEADLINE_SECONDS)
VIDEO = VideoResult(video_id="v-1", video_url="https://cdn.example/v-1.mp4", duration="5.1")
UNAVAILABLE = ProviderError(
    "HTTP 503 code 5001: the upstream failed", code="upstream_unavailable", retryable=True
)

Answer = Submission | Status | ProviderError


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class ScriptedProvider:
    """Answers from a script; an answer may be a callable (awaited: a slow call)."""

    name = "scripted"

    def __init__(self, answers: Iterable[Answer | Callable[[], Any]] = ()) -> None:
        self.answers = list(answers)
        self.calls: list[str] = []
        self.closed = False

    async def _next(self) -> Any:
        answer = self.answers.pop(0) if self.answers else Status(TaskState.PROCESSING)
        if callable(answer):
            answer = await answer()
        if isinstance(answer, ProviderError):
            raise answer
        return answer

    async def submit(self, task: Task) -> Submission:
        self.calls.append("submit")
        answer = await self._next()
        assert isinstance(answer, Submission)
        return answer

    async def check(self, task: Task) -> Status:
        self.calls.append("check")
        answer = await self._next()
        assert isinstance(answer, Status)
        return answer

    async def aclose(self) -> None:
        self.closed = True


class FetchingProvider(ScriptedProvider):
    """Copies results (``steps.FetchesResults``): each copy takes the next ``copies`` answer."""

    fetch_timeout: float | None = 30.0

    def __init__(self, answers: Iterable[Answer], copies: Iterable[Status | ProviderError]) -> None:
        super().__init__(answers)
        self.copies = list(copies)

    async def materialize(self, status: Status) -> Status:
        self.calls.append("copy")
        copy = self.copies.pop(0)
        if isinstance(copy, ProviderError):
            raise copy
        return copy


class CountingStore(SQLiteStore):
    """The real SQLite store, counting the worker's claim queries and noting its releases."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.claims = 0
        self.claimed = 0
        self.log: list[str] = []
        self.claim_ran = asyncio.Event()
        self.want = 0
        self.all_claimed = asyncio.Event()

    async def claim_due_tasks(
        self, worker_id: str, now: float, limit: int, lease_seconds: float
    ) -> list[StoredTask]:
        self.claims += 1
        found = await super().claim_due_tasks(worker_id, now, limit, lease_seconds)
        self.claimed += len(found)
        self.claim_ran.set()
        if self.want and self.claimed >= self.want:
            self.all_claimed.set()
        return found

    async def release_tasks(self, worker_id: str, task_ids: list[str], now: float) -> None:
        self.log.append("released")
        await super().release_tasks(worker_id, task_ids, now)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[CountingStore]:
    db = CountingStore(f"sqlite:///{tmp_path}/store.db")
    await db.open()
    await db.migrate()
    yield db
    await db.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def worker(store: CountingStore, provider: ScriptedProvider, clock: Clock, **config: Any) -> Worker:
    values: dict[str, Any] = {"policy": POLICY, "lease_seconds": 120.0, **config}
    return Worker(store, provider, LocalTaskEvents(), WorkerConfig(**values), clock=clock)


async def add_task(store: CountingStore, clock: Clock, *, due: float | None = None) -> Task:
    task = make_task("user-1", created_at=clock())
    await store.insert_task(
        task,
        next_check_at=clock() if due is None else due,
        deadline_at=clock() + DEADLINE_SECONDS,
    )
    return task


async def step(w: Worker) -> None:
    """One turn of the loop: sweep when due, claim, and let every job finish."""
    await w.poll()
    await w.settle()


async def stored(store: CountingStore, task: Task) -> StoredTask:
    found = await store.load_task(task.id)
    assert found is not None
    return found


def error_of(found: StoredTask) -> dict[str, str]:
    response = found.task.response
    assert response is not None and found.task.state is TaskState.FAILED, response
    error: dict[str, str] = response["error"]
    return error


# -- retry waits (issue 18 item 3) ------------------------------------------------------------


@pytest.mark.parametrize("retry_after", [3600.0, 100_000_000.0])
async def test_an_upstream_retry_after_is_capped_by_the_longest_interval(
    store: CountingStore, clock: Clock, retry_after: float
) -> None:
    busy = ProviderError(
        "slow down", code="upstream_rate_limited", retryable=True, retry_after=retry_after
    )
    w = worker(store, ScriptedProvider([Submission("job-1"), busy]), clock)
    task = await add_task(store, clock)
    await step(w)
    clock.now += POLICY.check_interval
    await step(w)
    found = await stored(store, task)
    assert found.next_check_at == clock.now + POLICY.check_max_interval
    assert found.task.provider_data[LAST_ERROR]["code"] == "upstream_rate_limited"


async def test_a_retry_wait_is_capped_by_the_remaining_deadline(
    store: CountingStore, clock: Clock
) -> None:
    busy = ProviderError("slow down", code="upstream_rate_limited", retryable=True, retry_after=50)
    w = worker(store, ScriptedProvider([Submission("job-1"), busy]), clock)
    task = await add_task(store, clock)
    await step(w)
    clock.now = T0 + DEADLINE_SECONDS - 10  # 10 s left
    await step(w)
    assert (await stored(store, task)).next_check_at == T0 + DEADLINE_SECONDS


# -- the deadline: a sweep, and the last real reason ---------------------------------------------


async def push_out(store: CountingStore, task: Task, when: float) -> None:
    """Schedule the next check of ``task`` at ``when`` (as an older version would have)."""
    found = await stored(store, task)
    saved = await store.save_task(
        found.task, expected_version=found.task.version, worker_id=None,
        outcome=Outcome(next_check_at=when),
    )  # fmt: skip
    assert saved


async def test_the_sweep_ends_a_task_past_its_deadline_with_the_last_real_reason(
    store: CountingStore, clock: Clock
) -> None:
    provider = ScriptedProvider([Submission("job-1"), UNAVAILABLE])
    w = worker(store, provider, clock)
    task = await add_task(store, clock)
    await step(w)
    clock.now += POLICY.check_interval
    await step(w)  # the upstream answers 503
    await push_out(store, task, T0 + 100_000_000)  # 3 years out, past the deadline
    clock.now = T0 + DEADLINE_SECONDS + 1
    calls = list(provider.calls)
    await step(w)
    error = error_of(await stored(store, task))
    assert error["code"] == "upstream_unavailable"
    assert error["message"].startswith("HTTP 503 code 5001: the upstream failed")
    assert provider.calls == calls  # no provider call past the deadline
    assert w.stats.swept == 1


async def test_a_task_that_only_ran_out_of_time_ends_with_timeout(
    store: CountingStore, clock: Clock
) -> None:
    w = worker(store, ScriptedProvider([Submission("job-1"), Status(TaskState.PROCESSING)]), clock)
    task = await add_task(store, clock)
    await step(w)
    clock.now += POLICY.check_interval
    await step(w)
    clock.now = T0 + DEADLINE_SECONDS
    await step(w)
    error = error_of(await stored(store, task))
    assert error["code"] == "timeout" and f"{DEADLINE_SECONDS:g}" in error["message"]


async def test_an_unexpected_error_keeps_its_detail_out_of_the_task(
    store: CountingStore, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    async def bug() -> None:
        raise FileNotFoundError(2, "No such file", "/var/lib/kling-gateway/secret-path")

    w = worker(store, ScriptedProvider([Submission("job-1"), bug]), clock)
    task = await add_task(store, clock)
    await step(w)
    clock.now += POLICY.check_interval
    with caplog.at_level("ERROR"):
        await step(w)  # the bug
    assert "secret-path" in caplog.text  # the detail is in the log
    clock.now = T0 + DEADLINE_SECONDS
    await step(w)
    error = error_of(await stored(store, task))
    assert error["code"] == "internal_error"
    assert "secret-path" not in str(error) and "FileNotFoundError" not in str(error)
    assert task.trace_id in error["message"]


async def test_a_call_that_keeps_timing_out_keeps_that_reason(
    store: CountingStore, clock: Clock
) -> None:
    async def hang() -> Status:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    provider = ScriptedProvider([Submission("job-1"), hang])
    w = worker(store, provider, clock, call_timeout=0.05)
    task = await add_task(store, clock)
    await step(w)
    clock.now += POLICY.check_interval
    await step(w)  # the check passes its per-call deadline
    clock.now = T0 + DEADLINE_SECONDS
    await step(w)
    assert error_of(await stored(store, task))["code"] == "provider_timeout"


# -- a result that exists upstream ---------------------------------------------------------------


async def test_a_produced_video_whose_copy_fails_is_retried_past_the_deadline(
    store: CountingStore, clock: Clock
) -> None:
    failing = ProviderError("download_failed: HTTP 502", code="download_failed", retryable=True)
    ours = Status(TaskState.SUCCEED, video=VIDEO)
    upstream = Status(TaskState.SUCCEED, video=VIDEO)
    provider = FetchingProvider(
        [Submission("job-1"), upstream, upstream, upstream], [failing, failing, ours]
    )
    w = worker(store, provider, clock)
    task = await add_task(store, clock)
    await step(w)
    clock.now = T0 + DEADLINE_SECONDS - 1
    await step(w)  # the upstream has it; our copy fails
    for when in (T0 + DEADLINE_SECONDS + 60, T0 + DEADLINE_SECONDS + 3600):
        clock.now = when
        await step(w)
    found = await stored(store, task)
    assert found.task.state is TaskState.SUCCEED, found.task.response
    assert provider.calls.count("copy") == 3


async def test_a_produced_video_is_given_up_at_its_own_longer_limit(
    store: CountingStore, clock: Clock
) -> None:
    failing = ProviderError("no space left on device", code="storage_full", retryable=True)
    upstream = Status(TaskState.SUCCEED, video=VIDEO)
    provider = FetchingProvider([Submission("job-1"), upstream], [failing])
    w = worker(store, provider, clock)
    task = await add_task(store, clock)
    await step(w)
    clock.now += POLICY.check_interval
    ready = clock.now
    await step(w)
    clock.now = ready + RESULT_RETRY_SECONDS
    await push_out(store, task, clock.now + 1000)  # the sweep must find it
    await step(w)
    error = error_of(await stored(store, task))
    assert error["code"] == "storage_full"


# -- shutdown and slots (issue 10 #13) -----------------------------------------------------------


async def test_shutdown_awaits_cancelled_jobs_before_releasing_them(
    store: CountingStore, clock: Clock
) -> None:
    entered = asyncio.Event()

    async def stuck() -> Status:
        entered.set()
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0.05)  # a job that needs a moment to clean up
            store.log.append("job ended")
        raise AssertionError("unreachable")

    provider = ScriptedProvider([Submission("job-1"), stuck])
    w = worker(store, provider, clock, shutdown_grace=0.01, call_timeout=60.0)
    task = await add_task(store, clock)
    await step(w)
    clock.now += POLICY.check_interval
    running = asyncio.create_task(w.run())
    await entered.wait()
    await w.stop()
    await running
    assert store.log == ["job ended", "released"]
    found = await stored(store, task)
    assert found.lease_owner is None and found.next_check_at == clock.now


async def test_a_task_claimed_again_while_its_run_goes_on_takes_a_second_slot(
    store: CountingStore, clock: Clock
) -> None:
    release = asyncio.Event()

    async def slow() -> Submission:
        await release.wait()
        return Submission("job-1")

    provider = ScriptedProvider([slow, slow, slow])
    w = worker(store, provider, clock, concurrency=2, call_timeout=60.0)
    first = await add_task(store, clock)
    await w.poll()
    await asyncio.sleep(0)
    # Released while its check still runs (a Kling callback, an operator): claimed again.
    await store.release_tasks(w.worker_id, [first.id], clock.now)
    await w.poll()
    await asyncio.sleep(0)
    assert w.in_flight == 2
    other = await add_task(store, clock)
    assert await w.poll() is False  # both slots are taken: nothing more is claimed
    assert (await stored(store, other)).lease_owner is None
    release.set()
    await w.settle()
    assert w.in_flight == 0


# -- coalesced wake-ups (issue 10 #14) -----------------------------------------------------------


async def test_a_burst_of_new_tasks_costs_a_bounded_number_of_claims(
    store: CountingStore, clock: Clock
) -> None:
    events = LocalTaskEvents()
    provider = ScriptedProvider([Submission(f"job-{i}") for i in range(40)])
    w = Worker(
        store, provider, events,
        WorkerConfig(policy=POLICY, wake_debounce_seconds=2.0, idle_poll_seconds=30.0),
        clock=clock,
    )  # fmt: skip
    store.want = 40
    running = asyncio.create_task(w.run())
    await store.claim_ran.wait()  # the first, idle claim
    tasks = []
    for _ in range(40):  # each create inserts its task and wakes the workers
        tasks.append(await add_task(store, clock))
        await events.publish(WORKER_WAKEUP)
        await asyncio.sleep(0)
    async with asyncio.timeout(10):
        await store.all_claimed.wait()
    await w.stop()
    await running
    # The idle claim, one for the first wake-up, one after the window: not one per task.
    assert store.claims <= 4, store.claims
    assert {(await stored(store, t)).task.job_id is not None for t in tasks} == {True}


async def test_finishing_tasks_with_nothing_else_due_runs_no_claims(
    store: CountingStore, clock: Clock
) -> None:
    provider = ScriptedProvider([Submission(f"job-{i}") for i in range(20)])
    w = worker(store, provider, clock, idle_poll_seconds=30.0)  # concurrency 64: never full
    for _ in range(20):
        await add_task(store, clock)  # their next checks, after submission, are far ahead
    running = asyncio.create_task(w.run())
    for _ in range(1000):  # at most 10 s
        if provider.calls.count("submit") == 20 and not w.in_flight:
            break
        await asyncio.sleep(0.01)
    for _ in range(10):  # room for any claim that a finished job would have set off
        await asyncio.sleep(0.01)
    await w.stop()
    await running
    # One claim took all 20 (fewer than the free slots: nothing more was due); the 20 jobs
    # ending freed slots, which is no news then, so they set off no claim each.
    assert store.claims == 1, store.claims


# -- lease renewal (issue 10 #1) -----------------------------------------------------------------


class RenderingProvider(ScriptedProvider):
    """A provider running a job of its own that outlives the call (``base.RunsJobs``)."""

    def __init__(self) -> None:
        super().__init__([Submission("job-1")])
        self.done = asyncio.Event()
        self.render: asyncio.Task[Any] | None = None
        self.renders = 0

    async def check(self, task: Task) -> Status:
        self.calls.append("check")
        if self.render is None:
            self.renders += 1
            self.render = asyncio.create_task(self.done.wait())
        await asyncio.shield(self.render)
        return Status(TaskState.SUCCEED, video=VIDEO)

    def running_job(self, task: Task) -> asyncio.Future[Any] | None:
        if self.render is None or self.render.done():
            return None
        return self.render


# The leases of the two real-time tests below: renewed every third of it, so a renewal may be
# late by two thirds (0.6 s) before another worker could take the task; on a loaded machine a
# 0.3 s lease left too little.
LEASE = 0.9


async def test_a_job_outliving_the_call_keeps_its_lease(store: CountingStore) -> None:
    # Real time here: the lease must outlast several lease periods while the render runs.
    provider = RenderingProvider()
    # Retries come at once: a run that let go of its task would see it taken at once.
    quick = Policy(check_interval=0.01, check_max_interval=0.01, deadline_seconds=600)
    w = Worker(
        store, provider, LocalTaskEvents(),
        WorkerConfig(policy=quick, lease_seconds=LEASE, call_timeout=0.05),
    )  # fmt: skip
    task = make_task("user-1")
    now = time.time()
    await store.insert_task(task, next_check_at=now, deadline_at=now + 600)
    await step(w)  # submitted
    await push_out(store, task, time.time())
    await w.poll()
    while w.stats.renewals < 4:  # well past the call's deadline and the first lease
        await asyncio.sleep(0.05)
        assert await store.claim_due_tasks("another-worker", time.time(), 10, LEASE) == []
    provider.done.set()
    await w.settle()
    found = await stored(store, task)
    assert found.task.state is TaskState.SUCCEED and provider.renders == 1
    assert msgspec.json.decode(found.task.record_json())["response"]["video_id"] == "v-1"


async def test_a_local_render_outliving_the_call_keeps_its_lease(
    store: CountingStore, tmp_path: Path
) -> None:
    # The local provider for real: its render (held at a gate) outlives the call deadline.
    gate, started = threading.Event(), threading.Event()
    renders: list[str] = []

    def renderer(path: Path, spec: RenderSpec) -> RenderedVideo:
        renders.append(path.name)
        started.set()
        if not gate.wait(timeout=30):
            raise AssertionError("the test never opened the gate")
        return render_video(path, spec)

    files = VideoFiles(root=tmp_path / "videos", public_url="http://gw.test")
    provider = LocalProvider(
        files=files, store=store, delay=0.0, max_side=64, fps=4, renderer=renderer
    )
    quick = Policy(check_interval=0.01, check_max_interval=0.01, deadline_seconds=600)
    config = WorkerConfig(policy=quick, lease_seconds=LEASE, call_timeout=0.05)
    w = Worker(store, provider, LocalTaskEvents(), config)
    task = make_task("user-1")
    now = time.time()
    await store.insert_task(task, next_check_at=now, deadline_at=now + 600)
    try:
        async with asyncio.timeout(30):
            while not started.is_set():  # submit, the first check (processing), then the render
                await w.poll()
                await asyncio.wait_for(asyncio.to_thread(started.wait, 0.05), 1)
            while w.stats.renewals < 3:
                assert await store.claim_due_tasks("another-worker", time.time(), 10, LEASE) == []
                await asyncio.sleep(0.05)
            gate.set()
            await w.settle()
        found = await stored(store, task)
        assert found.task.state is TaskState.SUCCEED, found.task.response
        assert len(renders) == 1
    finally:
        gate.set()
        await provider.aclose()
