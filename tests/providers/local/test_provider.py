"""The local provider: planning, pacing, the no-render bench mode, real renders and extend."""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from kling_gateway.domain.ids import new_object_id, new_task_id, new_trace_id
from kling_gateway.domain.outcomes import ProviderError, Status
from kling_gateway.domain.task import Task
from kling_gateway.domain.transitions import Change, Policy, Schedule
from kling_gateway.domain.videos import params_from_stored
from kling_gateway.infra.egress import UnsafeTarget, check_callback_url
from kling_gateway.infra.files import VideoFiles
from kling_gateway.protocol.task import TaskState, success_response
from kling_gateway.providers.local.provider import LocalProvider, job_id_for, new_video_id
from kling_gateway.providers.local.render import (
    RenderedVideo,
    RenderError,
    RenderSpec,
    probe_video,
    render_video,
)
from kling_gateway.storage.base import Outcome, Store
from kling_gateway.storage.sqlite import SQLiteStore
from kling_gateway.worker.steps import advance

PUBLIC = "http://gateway.test"
T0 = 1_700_000_000.0
SMALL = 64  # max_side for fast renders
FPS = 4


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_task(request: dict[str, Any], *, user_id: str = "user-1") -> Task:
    return Task(
        id=new_task_id(),
        object_id=new_object_id(),
        user_id=user_id,
        application_id="app-1",
        credential_id="cred-1",
        trace_id=new_trace_id(),
        request=request,
        params=params_from_stored(request),
        created_at=T0,
    )


def text_request(**extra: Any) -> dict[str, Any]:
    return {"action": "text2video", "prompt": "a lighthouse in a storm", **extra}


@pytest.fixture
def files(tmp_path: Path) -> VideoFiles:
    return VideoFiles(root=tmp_path / "videos", public_url=PUBLIC)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def provider(files: VideoFiles, store: Store, clock: Clock, **kwargs: Any) -> LocalProvider:
    settings: dict[str, Any] = {"delay": 0.0, "max_side": SMALL, "fps": FPS, **kwargs}
    return LocalProvider(files=files, store=store, clock=clock, **settings)


async def keep(store: Store, task: Task) -> None:
    """Store ``task``, as the API does before any provider sees it."""
    if await store.load_task(task.id) is None:
        await store.insert_task(task, next_check_at=T0, deadline_at=T0 + 3600)


async def submit(prov: LocalProvider, task: Task) -> None:
    """Submit ``task`` (stored first) and keep the submission on it, as the worker does."""
    await keep(prov._store, task)
    submission = await prov.submit(task)
    task.job_id = submission.job_id
    task.provider_data = submission.provider_data


async def check_until_done(prov: LocalProvider, task: Task) -> Status:
    """Check as the worker does: record each ``processing`` answer and check again (the
    tests' clock stands still and their delay is 0, so the video is due at once)."""
    for _ in range(3):
        status = await prov.check(task)
        if status.state is not TaskState.PROCESSING:
            return status
        task.state = TaskState.PROCESSING
        task.provider_data.update(status.provider_data or {})
    raise AssertionError("still processing after three checks")


async def taken(prov: LocalProvider, task: Task) -> None:
    """Submit ``task`` and record its first check, which reports ``processing``."""
    await submit(prov, task)
    first = await prov.check(task)
    assert first.state is TaskState.PROCESSING
    task.state = TaskState.PROCESSING


async def submit_and_check(prov: LocalProvider, task: Task) -> Status:
    await submit(prov, task)
    return await check_until_done(prov, task)


async def record_success(db: SQLiteStore, task: Task, status: Status) -> None:
    """Store ``task`` as succeeded with ``status``'s video, as the worker would."""
    assert status.video is not None
    await keep(db, task)
    task.state = TaskState.SUCCEED
    task.response = success_response(
        task.id,
        video_id=status.video.video_id,
        video_url=status.video.video_url,
        duration=status.video.duration,
    )
    outcome = Outcome(next_check_at=None)
    saved = await db.save_task(task, expected_version=task.version, worker_id=None, outcome=outcome)
    assert saved


# --- submit ----------------------------------------------------------------------------------


async def test_submit_is_idempotent_per_task(
    files: VideoFiles, store: SQLiteStore, clock: Clock
) -> None:
    prov = provider(files, store, clock, delay=2.5)
    task = make_task(text_request())

    first = await prov.submit(task)
    task.provider_data = first.provider_data  # the worker keeps the plan on the task
    clock.now += 100  # a crash and a resubmission later
    second = await prov.submit(task)
    other = await prov.submit(make_task(text_request()))

    assert first.job_id == second.job_id == job_id_for(task.id)
    assert first.job_id.startswith("local-")
    video_id = first.provider_data["video_id"]
    assert first.provider_data == {"ready_at": T0 + 2.5, "video_id": video_id}
    assert first.next_check_in == 0  # the first check comes at once and reports processing
    assert second.provider_data == first.provider_data
    assert other.job_id != first.job_id
    assert other.provider_data["video_id"] != video_id
    await prov.aclose()


async def test_video_ids_are_random_not_derived_from_the_task_id(
    files: VideoFiles, store: SQLiteStore, clock: Clock
) -> None:
    """The video id names the public file: knowing a task id must not give away its URL."""
    prov = provider(files, store, clock)
    task = make_task(text_request())

    planned = [(await prov.submit(task)).provider_data["video_id"] for _ in range(2)]

    # Two plans of the same task (none kept in between) share nothing but the format.
    assert planned[0] != planned[1]
    assert all(uuid.UUID(video_id).version == 4 for video_id in planned)
    assert new_video_id() != new_video_id()
    await prov.aclose()


async def test_resubmission_keeps_a_kept_ready_time(
    files: VideoFiles, store: SQLiteStore, clock: Clock
) -> None:
    prov = provider(files, store, clock, delay=10)
    task = make_task(text_request())
    task.provider_data = (await prov.submit(task)).provider_data

    clock.now += 4
    again = await prov.submit(task)

    assert again.provider_data == task.provider_data  # ready time and video id kept
    assert again.provider_data["ready_at"] == T0 + 10
    task.provider_data = again.provider_data
    early = await prov.check(task)
    assert early.state is TaskState.PROCESSING
    assert early.next_check_in == pytest.approx(6)  # checked again when due, not later
    clock.now += 20
    late = await prov.check(task)
    assert late.next_check_in == 0  # overdue: check at once, never a negative wait
    await prov.aclose()


async def test_submit_asks_for_the_first_check_when_the_video_is_due(
    files: VideoFiles, store: SQLiteStore, clock: Clock
) -> None:
    """Through the worker's steps: the first check comes at once and makes the task
    ``processing``; it asks for the next one when the video is due."""
    policy = Policy(check_interval=30.0, check_max_interval=60.0, deadline_seconds=3600)
    for delay, due in [(7.5, T0 + 7.5), (0.0, T0)]:
        prov = provider(files, store, clock, delay=delay, render=False)
        task = make_task(text_request())

        submitted = await advance(prov, task, Schedule(0, T0 + 3600), clock(), policy)
        assert isinstance(submitted, Change) and submitted.task.job_id == job_id_for(task.id)
        assert submitted.next_check_at == T0  # not T0 + 30, the generic interval
        checked = await advance(prov, submitted.task, Schedule(0, T0 + 3600), clock(), policy)

        assert isinstance(checked, Change) and checked.task.state is TaskState.PROCESSING
        assert checked.changed
        assert checked.next_check_at == pytest.approx(due)
        await prov.aclose()


@pytest.mark.parametrize(
    "request_body",
    [
        {"prompt": "no action"},
        {"action": "text2video"},  # no prompt
        {"action": "text2video", "prompt": "p", "duration": 7},
        {"action": "text2video", "prompt": "p", "duration": "five"},  # wrong type
        {"action": "lipsync", "prompt": "p"},  # unknown action
        {"action": "image2video", "prompt": "p"},  # no start image
        {"action": "extend"},  # no video_id
    ],
)
async def test_an_invalid_stored_request_fails_submit_and_check(
    files: VideoFiles, store: SQLiteStore, clock: Clock, request_body: dict[str, Any]
) -> None:
    prov = provider(files, store, clock)
    task = make_task(request_body)

    for call in (prov.submit, prov.check):
        with pytest.raises(ProviderError) as info:
            await call(task)
        assert info.value.code == "invalid_request"
        assert not info.value.retryable
    await prov.aclose()


def test_settings_are_checked(files: VideoFiles, store: SQLiteStore) -> None:
    with pytest.raises(ValueError, match="delay"):
        LocalProvider(files=files, store=store, delay=-1)
    with pytest.raises(ValueError, match="positive"):
        LocalProvider(files=files, store=store, delay=0, image_max_bytes=0)


# --- pacing and the no-render mode -----------------------------------------------------------


async def test_check_reports_processing_until_ready_at(
    files: VideoFiles, store: SQLiteStore, clock: Clock
) -> None:
    prov = provider(files, store, clock, delay=5.0, render=False)
    task = make_task(text_request())
    task.provider_data = (await prov.submit(task)).provider_data

    clock.now += 1.5
    early = await prov.check(task)
    task.state = early.state  # the worker records it
    clock.now += 3.5
    ready = await prov.check(task)

    assert early.state is TaskState.PROCESSING
    assert early.next_check_in == pytest.approx(3.5)
    assert early.video is None
    assert ready.state is TaskState.SUCCEED
    await prov.aclose()


@pytest.mark.parametrize(
    ("extra", "duration"),
    [({}, "5.0"), ({"duration": 10}, "10.0"), ({"model": "kling-v3", "duration": 3}, "3.0")],
)
async def test_without_rendering_no_file_is_written(
    files: VideoFiles, store: SQLiteStore, clock: Clock, extra: dict[str, Any], duration: str
) -> None:
    prov = provider(files, store, clock, render=False)
    task = make_task(text_request(**extra))

    status = await submit_and_check(prov, task)

    video_id = task.provider_data["video_id"]
    assert status.state is TaskState.SUCCEED
    assert status.video is not None
    assert status.video.video_id == video_id
    assert status.video.video_url == f"{PUBLIC}/files/videos/{video_id}.mp4"
    assert status.video.duration == duration
    assert not files.root.exists()
    await prov.aclose()


async def test_without_rendering_extend_does_not_need_its_source(
    files: VideoFiles, store: SQLiteStore, clock: Clock
) -> None:
    prov = provider(files, store, clock, render=False)
    task = make_task({"action": "extend", "video_id": "never-made", "duration": 5})

    status = await submit_and_check(prov, task)

    assert status.video is not None
    assert status.video.duration == "5.0"
    await prov.aclose()


async def test_a_task_without_a_plan_gets_one_and_is_ready_at_once(
    files: VideoFiles, store: SQLiteStore, clock: Clock
) -> None:
    prov = provider(files, store, clock, delay=60, render=False)
    task = make_task(text_request())

    first = await prov.check(task)
    assert first.state is TaskState.PROCESSING
    assert first.next_check_in == 0
    assert first.provider_data is not None
    assert first.provider_data["ready_at"] == T0
    task.state, task.provider_data = first.state, dict(first.provider_data)  # kept by the worker
    status = await check_until_done(prov, task)

    assert status.state is TaskState.SUCCEED
    assert status.video is not None
    assert status.video.video_id == first.provider_data["video_id"]
    await prov.aclose()


# --- real renders ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("aspect_ratio", "size"), [("16:9", (64, 36)), ("9:16", (36, 64)), ("1:1", (64, 64))]
)
async def test_renders_a_real_mp4_of_the_asked_length_and_shape(
    files: VideoFiles, store: SQLiteStore, clock: Clock, aspect_ratio: str, size: tuple[int, int]
) -> None:
    prov = provider(files, store, clock)
    task = make_task(text_request(model="kling-v3", duration=3, aspect_ratio=aspect_ratio))

    status = await submit_and_check(prov, task)

    assert status.state is TaskState.SUCCEED
    assert status.video is not None
    path = files.path_for(status.video.video_id)
    measured = probe_video(path)
    assert (measured.width, measured.height) == size
    assert measured.frames == 3 * FPS
    assert measured.duration == pytest.approx(3.0, abs=0.01)
    assert status.video.duration == "3.0"
    assert status.video.video_url == files.url_for(status.video.video_id)
    assert [p.name for p in files.root.iterdir()] == [path.name]  # no .part left over
    await prov.aclose()


async def test_a_recheck_reuses_the_rendered_file(
    files: VideoFiles, store: SQLiteStore, clock: Clock
) -> None:
    prov = provider(files, store, clock)
    task = make_task(text_request(model="kling-v3", duration=3))
    first = await submit_and_check(prov, task)
    assert first.video is not None
    path = files.path_for(first.video.video_id)
    before = path.stat()

    def must_not_render(path: Path, spec: RenderSpec) -> RenderedVideo:
        raise AssertionError("rendered again")

    prov._renderer = must_not_render
    second = await prov.check(task)

    assert second == first
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    await prov.aclose()


async def test_a_damaged_file_is_rendered_again(
    files: VideoFiles, store: SQLiteStore, clock: Clock
) -> None:
    prov = provider(files, store, clock)
    task = make_task(text_request(model="kling-v3", duration=3))
    await submit(prov, task)
    files.ensure_root()
    files.path_for(task.provider_data["video_id"]).write_bytes(b"not a video")

    status = await check_until_done(prov, task)

    assert status.video is not None
    assert probe_video(files.path_for(status.video.video_id)).frames == 3 * FPS
    await prov.aclose()


async def test_a_render_error_fails_the_task(
    files: VideoFiles, store: SQLiteStore, clock: Clock
) -> None:
    def refuse(path: Path, spec: RenderSpec) -> RenderedVideo:
        raise RenderError("cannot render that")

    prov = provider(files, store, clock, renderer=refuse)

    with pytest.raises(ProviderError) as info:
        await submit_and_check(prov, make_task(text_request()))

    assert (info.value.code, info.value.retryable) == ("render_failed", False)
    assert info.value.message == "cannot render that"
    await prov.aclose()


@pytest.mark.parametrize("error", [RuntimeError("boom"), OSError(28, "No space left on device")])
async def test_an_unexpected_error_is_retryable(
    files: VideoFiles,
    store: SQLiteStore,
    clock: Clock,
    error: Exception,
) -> None:
    def fail(path: Path, spec: RenderSpec) -> RenderedVideo:
        raise error

    prov = provider(files, store, clock, renderer=fail)

    with pytest.raises(ProviderError) as info:
        await submit_and_check(prov, make_task(text_request()))

    assert (info.value.code, info.value.retryable) == ("render_failed", True)
    assert type(error).__name__ in info.value.message
    assert isinstance(info.value.__cause__, type(error))
    await prov.aclose()


# --- single-flight renders ------------------------------------------------------------------


class GatedRenderer:
    """render_video held at a gate until the test opens it (a render slower than any
    deadline, deterministically), counting every render started."""

    def __init__(self, fail_first: bool = False) -> None:
        self.calls = 0
        self.started = threading.Event()
        self.gate = threading.Event()
        self._fail_first = fail_first

    def __call__(self, path: Path, spec: RenderSpec) -> RenderedVideo:
        self.calls += 1
        self.started.set()
        if not self.gate.wait(timeout=30):
            raise AssertionError("the test never opened the gate")
        if self._fail_first and self.calls == 1:
            raise RenderError("the first render failed")
        return render_video(path, spec)


async def check_cut_off(prov: LocalProvider, task: Task, renderer: GatedRenderer) -> None:
    """A check whose deadline passes mid-render, as the worker's asyncio.timeout does."""
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await prov.check(task)
    assert await asyncio.to_thread(renderer.started.wait, 10)


async def test_a_recheck_awaits_the_render_a_cancelled_check_left_running(
    files: VideoFiles, store: SQLiteStore, clock: Clock
) -> None:
    renderer = GatedRenderer()
    prov = provider(files, store, clock, renderer=renderer)
    task = make_task(text_request(model="kling-v3", duration=3))
    await taken(prov, task)

    await check_cut_off(prov, task, renderer)
    # The render goes on; two more checks arrive while it runs (a re-check, and a second
    # one at the same time for good measure): both join it.
    rechecks = [asyncio.create_task(prov.check(task)) for _ in range(2)]
    await asyncio.sleep(0.1)
    assert not any(r.done() for r in rechecks)
    assert renderer.calls == 1
    renderer.gate.set()
    first, second = await asyncio.gather(*rechecks)

    assert renderer.calls == 1
    assert first == second
    assert first.state is TaskState.SUCCEED
    assert first.video is not None
    path = files.path_for(first.video.video_id)
    assert probe_video(path).frames == 3 * FPS
    assert [p.name for p in files.root.iterdir()] == [path.name]  # no .part left over
    assert prov._renders == {}  # dropped once done
    assert await prov.check(task) == first  # later checks find the file
    assert renderer.calls == 1
    await prov.aclose()


async def test_a_render_a_cut_off_check_left_running_is_reported_to_the_worker(
    files: VideoFiles, store: SQLiteStore, clock: Clock
) -> None:
    # ``running_job`` (providers.base.RunsJobs): the worker keeps the lease while it is alive.
    renderer = GatedRenderer()
    prov = provider(files, store, clock, renderer=renderer)
    task = make_task(text_request(model="kling-v3", duration=3))
    await taken(prov, task)
    assert prov.running_job(task) is None

    await check_cut_off(prov, task, renderer)
    job = prov.running_job(task)
    assert job is not None and not job.done()
    assert prov.running_job(make_task(text_request())) is None  # another task's: none
    renderer.gate.set()
    await asyncio.wait([job])
    assert prov.running_job(task) is None
    await prov.aclose()


async def test_a_failed_render_nobody_awaited_is_not_kept(
    files: VideoFiles, store: SQLiteStore, clock: Clock
) -> None:
    renderer = GatedRenderer(fail_first=True)
    prov = provider(files, store, clock, renderer=renderer)
    task = make_task(text_request(model="kling-v3", duration=3))
    await taken(prov, task)

    await check_cut_off(prov, task, renderer)
    (abandoned,) = prov._renders.values()
    renderer.gate.set()
    await asyncio.wait([abandoned])

    assert prov._renders == {}
    status = await prov.check(task)  # renders anew rather than repeating the old failure
    assert status.state is TaskState.SUCCEED
    assert renderer.calls == 2
    await prov.aclose()


async def test_renders_of_different_tasks_run_side_by_side(
    files: VideoFiles, store: SQLiteStore, clock: Clock
) -> None:
    renderer = GatedRenderer()
    prov = provider(files, store, clock, renderer=renderer)
    tasks = [make_task(text_request(model="kling-v3", duration=3)) for _ in range(2)]
    checks = [asyncio.create_task(submit_and_check(prov, t)) for t in tasks]
    await asyncio.sleep(0.2)

    assert renderer.calls == 2
    renderer.gate.set()
    statuses = await asyncio.gather(*checks)
    assert len({s.video.video_id for s in statuses if s.video is not None}) == 2
    await prov.aclose()


async def test_aclose_lets_go_of_renders_in_progress(
    files: VideoFiles, store: SQLiteStore, clock: Clock
) -> None:
    renderer = GatedRenderer()
    prov = provider(files, store, clock, renderer=renderer)
    task = make_task(text_request(model="kling-v3", duration=3))
    await taken(prov, task)
    await check_cut_off(prov, task, renderer)
    (running,) = prov._renders.values()

    await prov.aclose()
    renderer.gate.set()  # the thread finishes its file in the background

    assert running.cancelled()
    assert prov._renders == {}


# --- extend ----------------------------------------------------------------------------------


async def test_extend_continues_an_earlier_video_of_the_user(
    files: VideoFiles, store: SQLiteStore, clock: Clock
) -> None:
    prov = provider(files, store, clock)
    source_task = make_task(text_request(model="kling-v3", duration=3, aspect_ratio="9:16"))
    source = await submit_and_check(prov, source_task)
    await record_success(store, source_task, source)
    assert source.video is not None

    task = make_task({"action": "extend", "video_id": source.video.video_id, "duration": 5})
    status = await submit_and_check(prov, task)

    assert status.state is TaskState.SUCCEED
    assert status.video is not None
    assert status.video.video_id not in (source.video.video_id, task.id)
    measured = probe_video(files.path_for(status.video.video_id))
    # The source's 3 s followed by 5 s more, at the source's size.
    assert (measured.width, measured.height) == (36, 64)
    assert measured.frames == (3 + 5) * FPS
    assert status.video.duration == "8.0"
    await prov.aclose()


async def test_extend_of_an_unknown_or_foreign_video_fails_clearly(
    files: VideoFiles, store: SQLiteStore, clock: Clock
) -> None:
    prov = provider(files, store, clock)
    source_task = make_task(text_request(), user_id="owner")
    source = await submit_and_check(prov, source_task)
    await record_success(store, source_task, source)
    assert source.video is not None
    video_id = source.video.video_id

    for user_id, wanted in [("owner", "no-such-video"), ("someone-else", video_id)]:
        task = make_task({"action": "extend", "video_id": wanted}, user_id=user_id)
        with pytest.raises(ProviderError) as info:
            await submit_and_check(prov, task)
        assert (info.value.code, info.value.retryable) == ("video_not_found", False)
        assert wanted in info.value.message
    await prov.aclose()


async def test_extend_of_a_video_whose_file_is_gone_fails_clearly(
    files: VideoFiles, store: SQLiteStore, clock: Clock
) -> None:
    prov = provider(files, store, clock)
    source_task = make_task(text_request())
    source = await submit_and_check(prov, source_task)
    await record_success(store, source_task, source)
    assert source.video is not None
    files.path_for(source.video.video_id).unlink()

    task = make_task({"action": "extend", "video_id": source.video.video_id})
    with pytest.raises(ProviderError) as info:
        await submit_and_check(prov, task)

    assert (info.value.code, info.value.retryable) == ("video_not_found", False)
    assert source.video.video_id in info.value.message
    assert "no longer stored" in info.value.message
    await prov.aclose()


async def test_extend_of_an_id_that_cannot_name_a_file(
    files: VideoFiles, clock: Clock, tmp_path: Path
) -> None:
    class AnyVideo:
        """A store that knows every video: only the id's shape can stop the lookup."""

        async def find_user_video(self, user_id: str, video_id: str) -> str | None:
            return "some-task"

    anything: Any = AnyVideo()
    prov = LocalProvider(files=files, store=anything, delay=0, clock=clock)
    task = make_task({"action": "extend", "video_id": "../../etc/passwd"})
    submission = await prov.submit(task)
    task.provider_data, task.state = submission.provider_data, TaskState.PROCESSING

    with pytest.raises(ProviderError) as info:
        await prov.check(task)

    assert info.value.code == "video_not_found"
    assert not (tmp_path / "etc").exists()
    await prov.aclose()


# --- the HTTP client -------------------------------------------------------------------------


async def test_aclose_closes_only_a_client_it_made(
    files: VideoFiles, store: SQLiteStore, clock: Clock
) -> None:
    own = LocalProvider(files=files, store=store, delay=0)
    await own.aclose()
    assert own._http.is_closed

    given = httpx.AsyncClient()
    borrowed = LocalProvider(files=files, store=store, delay=0, http=given)
    await borrowed.aclose()
    assert not given.is_closed
    await given.aclose()


def test_job_ids_are_a_function_of_the_task_id() -> None:
    assert job_id_for("t") == job_id_for("t") != job_id_for("u")


# --- the render pool -------------------------------------------------------------------------


async def wait_for_renders(renderer: GatedRenderer, count: int) -> None:
    """Until ``count`` renders are running (polled: the default executor may be full)."""
    for _ in range(1000):
        if renderer.calls >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"only {renderer.calls} of {count} renders started")


async def test_a_full_render_pool_leaves_dns_lookups_free(
    files: VideoFiles, store: SQLiteStore, clock: Clock
) -> None:
    """Renders run in a bounded pool of their own, never in the loop's default executor, which
    getaddrinfo needs: the SSRF check of a create must not queue behind renders."""
    renderer = GatedRenderer()
    prov = provider(files, store, clock, renderer=renderer, render_threads=2)
    # More renders in flight than the default executor has threads.
    default_threads = min(32, (os.cpu_count() or 1) + 4)
    tasks = [
        make_task(text_request(model="kling-v3", duration=3)) for _ in range(default_threads + 2)
    ]
    for task in tasks:
        await taken(prov, task)
    checks = [asyncio.create_task(prov.check(task)) for task in tasks]
    try:
        await wait_for_renders(renderer, 2)
        # Held only against a hang of the whole test; the point is that it completes at all
        # while every render is blocked.
        async with asyncio.timeout(60):
            with pytest.raises(UnsafeTarget, match="not public"):
                await check_callback_url("http://localhost:9/hook", allow_private=False)
        assert not any(check.done() for check in checks)
        assert renderer.calls == 2  # the pool's bound: the others wait their turn
    finally:
        renderer.gate.set()
    statuses = await asyncio.gather(*checks)
    assert all(status.state is TaskState.SUCCEED for status in statuses)
    assert renderer.calls == len(tasks)
    await prov.aclose()


def test_render_threads_must_not_be_negative(files: VideoFiles, store: SQLiteStore) -> None:
    with pytest.raises(ValueError, match="render_threads"):
        LocalProvider(files=files, store=store, delay=0, render_threads=-1)


# --- deleted tasks ---------------------------------------------------------------------------


async def test_a_task_deleted_while_its_video_renders_leaves_no_file(
    files: VideoFiles, store: SQLiteStore, clock: Clock
) -> None:
    renderer = GatedRenderer()
    prov = provider(files, store, clock, renderer=renderer)
    task = make_task(text_request(model="kling-v3", duration=3))
    await taken(prov, task)
    check = asyncio.create_task(prov.check(task))
    await wait_for_renders(renderer, 1)

    assert await store.delete_task(task.user_id, task.id)
    assert await files.remove_task_videos(task) == []  # what the delete does: no file there yet
    renderer.gate.set()

    with pytest.raises(ProviderError) as info:
        await check
    assert info.value.code == "deleted"
    assert list(files.root.iterdir()) == []
    await prov.aclose()
