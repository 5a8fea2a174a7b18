"""The local provider: planning, pacing, the no-render bench mode, real renders and extend."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kling_gateway.files import VideoFiles
from kling_gateway.ids import new_object_id, new_task_id, new_trace_id
from kling_gateway.models import Task, TaskState, success_response
from kling_gateway.store.base import Store
from kling_gateway.store.sqlite import SQLiteStore
from kling_gateway.worker.providers import local
from kling_gateway.worker.providers.base import ProviderError, Status
from kling_gateway.worker.providers.local import LocalProvider, job_id_for, video_id_for
from kling_gateway.worker.providers.render import RenderError, probe_video

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
        created_at=T0,
    )


def text_request(**extra: Any) -> dict[str, Any]:
    return {"action": "text2video", "prompt": "a lighthouse in a storm", **extra}


@pytest.fixture
def files(tmp_path: Path) -> VideoFiles:
    return VideoFiles(root=tmp_path / "videos", public_url=PUBLIC)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    db = SQLiteStore(f"sqlite:///{tmp_path}/t.db")
    await db.open()
    await db.migrate()
    yield db
    await db.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def provider(files: VideoFiles, store: Store, clock: Clock, **kwargs: Any) -> LocalProvider:
    settings: dict[str, Any] = {"delay": 0.0, "max_side": SMALL, "fps": FPS, **kwargs}
    return LocalProvider(files=files, store=store, clock=clock, **settings)


async def submit_and_check(prov: LocalProvider, task: Task) -> Status:
    """What the worker does: keep the submission on the task, then check it."""
    submission = await prov.submit(task)
    task.job_id = submission.job_id
    task.provider_data = submission.provider_data
    return await prov.check(task)


async def record_success(db: SQLiteStore, task: Task, status: Status) -> None:
    """Store ``task`` as succeeded with ``status``'s video, as the worker would."""
    assert status.video is not None
    task.state = TaskState.SUCCEED
    task.response = success_response(
        task.id,
        video_id=status.video.video_id,
        video_url=status.video.video_url,
        duration=status.video.duration,
    )
    await db.insert_task(task, next_check_at=T0, deadline_at=T0 + 3600)


# --- submit ----------------------------------------------------------------------------------


async def test_submit_is_idempotent_per_task(
    files: VideoFiles, store: SQLiteStore, clock: Clock
) -> None:
    prov = provider(files, store, clock, delay=2.5)
    task = make_task(text_request())

    first = await prov.submit(task)
    clock.now += 100  # a crash and a resubmission later
    second = await prov.submit(task)
    other = await prov.submit(make_task(text_request()))

    assert first.job_id == second.job_id == job_id_for(task.id)
    assert first.job_id.startswith("local-")
    assert first.provider_data == {"ready_at": T0 + 2.5, "video_id": video_id_for(task.id)}
    assert second.provider_data["video_id"] == first.provider_data["video_id"]
    assert uuid.UUID(first.provider_data["video_id"]).version == 5
    assert other.job_id != first.job_id
    assert other.provider_data["video_id"] != first.provider_data["video_id"]
    await prov.aclose()


async def test_resubmission_keeps_a_kept_ready_time(
    files: VideoFiles, store: SQLiteStore, clock: Clock
) -> None:
    prov = provider(files, store, clock, delay=10)
    task = make_task(text_request())
    task.provider_data = (await prov.submit(task)).provider_data

    clock.now += 4
    again = await prov.submit(task)

    assert again.provider_data["ready_at"] == T0 + 10
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

    video_id = video_id_for(task.id)
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


async def test_a_task_without_a_plan_is_ready_at_once(
    files: VideoFiles, store: SQLiteStore, clock: Clock
) -> None:
    prov = provider(files, store, clock, delay=60, render=False)

    status = await prov.check(make_task(text_request()))

    assert status.state is TaskState.SUCCEED
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
    files: VideoFiles, store: SQLiteStore, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    prov = provider(files, store, clock)
    task = make_task(text_request(model="kling-v3", duration=3))
    first = await submit_and_check(prov, task)
    assert first.video is not None
    path = files.path_for(first.video.video_id)
    before = path.stat()

    def must_not_render(*args: object) -> None:
        raise AssertionError("rendered again")

    monkeypatch.setattr(local, "render_video", must_not_render)
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
    files.ensure_root()
    files.path_for(video_id_for(task.id)).write_bytes(b"not a video")

    status = await submit_and_check(prov, task)

    assert status.video is not None
    assert probe_video(files.path_for(status.video.video_id)).frames == 3 * FPS
    await prov.aclose()


async def test_a_render_error_fails_the_task(
    files: VideoFiles, store: SQLiteStore, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object) -> None:
        raise RenderError("cannot render that")

    monkeypatch.setattr(local, "render_video", refuse)
    prov = provider(files, store, clock)

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
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
) -> None:
    def fail(*args: object) -> None:
        raise error

    monkeypatch.setattr(local, "render_video", fail)
    prov = provider(files, store, clock)

    with pytest.raises(ProviderError) as info:
        await submit_and_check(prov, make_task(text_request()))

    assert (info.value.code, info.value.retryable) == ("render_failed", True)
    assert type(error).__name__ in info.value.message
    assert isinstance(info.value.__cause__, type(error))
    await prov.aclose()


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
    await record_success(store, source_task, await submit_and_check(prov, source_task))
    video_id = video_id_for(source_task.id)

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

    with pytest.raises(ProviderError) as info:
        await submit_and_check(prov, task)

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


def test_ids_are_a_function_of_the_task_id() -> None:
    assert job_id_for("t") == job_id_for("t") != job_id_for("u")
    assert video_id_for("t") == video_id_for("t") != video_id_for("u")
    # Distinct names under the namespace: a job id never doubles as a video id.
    assert job_id_for("t").removeprefix("local-") != video_id_for("t")
