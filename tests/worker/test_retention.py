"""Retention (--retention-days, `kling-gateway prune`), on SQLite and PostgreSQL: finished
tasks older than the cut-off go with their videos and callbacks, in bounded batches, by one
sweeper at a time; unfinished, recent and still-notifying tasks stay."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from kling_gateway.cli import main
from kling_gateway.domain.task import Task
from kling_gateway.infra.files import VideoFiles
from kling_gateway.storage.base import CallbackDelivery, Outcome, Store
from kling_gateway.worker.retention import prune, run_retention
from tests.services import fresh_postgres_database
from tests.storage.helpers import Owner, claim_one, finish, insert, migrated_store, owner

DAY = 86_400.0
NOW = time.time()


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    with fresh_postgres_database("kg_retention") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/store.db"
    else:
        url = str(request.getfixturevalue("pg_database"))
    st = await migrated_store(url)
    yield st
    await st.close()


@pytest.fixture
def files(tmp_path: Path) -> VideoFiles:
    return VideoFiles(root=tmp_path / "videos", public_url="http://gw.test")


async def finished(
    store: Store,
    files: VideoFiles,
    who: Owner,
    *,
    age_days: float,
    callback_state: str | None = None,
) -> Task:
    """A task that finished ``age_days`` ago, with its video stored, and optionally one
    callback left in ``callback_state``."""
    task = await insert(store, who, due=-1.0)
    stored = await claim_one(store, task)
    video_id = f"video-{task.id}"
    finish(stored.task, video_id=video_id)
    stored.task.finished_at = NOW - age_days * DAY
    cbs = (("http://hook.test/x", "succeed", b"{}"),) if callback_state else ()
    assert await store.save_task(
        stored.task,
        expected_version=stored.task.version,
        worker_id="w1",
        outcome=Outcome(None, callbacks=cbs),
    )
    if callback_state and callback_state != "pending":
        (delivery,) = await store.claim_due_callbacks("d1", NOW + 10 * DAY, 10, 60)
        delivery.state = callback_state
        delivery.next_attempt_at = None
        delivery.delivered_at = NOW if callback_state == "delivered" else None
        await store.finish_callback_attempt(delivery, "d1")
    path = files.scratch_path(video_id)
    path.write_bytes(b"mp4")
    await files.publish(video_id, path)
    return stored.task


async def callbacks_of(store: Store, task: Task) -> list[CallbackDelivery]:
    return await store.list_callbacks(task_id=task.id)


async def test_prune_removes_expired_tasks_videos_and_callbacks(
    store: Store, files: VideoFiles
) -> None:
    who = await owner(store)
    old = await finished(store, files, who, age_days=40, callback_state="delivered")
    old_failed_callback = await finished(store, files, who, age_days=35, callback_state="failed")
    recent = await finished(store, files, who, age_days=5)
    notifying = await finished(store, files, who, age_days=40, callback_state="pending")
    running = await insert(store, who, created_at=NOW - 50 * DAY)  # never finished

    report = await prune(store, files, NOW - 30 * DAY)

    assert sorted(report.tasks) == sorted([old.id, old_failed_callback.id])
    assert report.complete
    for gone in (old, old_failed_callback):
        assert await store.load_task(gone.id) is None
        assert await files.stat(f"video-{gone.id}") is None
        assert await callbacks_of(store, gone) == []
    for kept in (recent, notifying, running):
        assert await store.load_task(kept.id) is not None
    assert await files.stat(f"video-{recent.id}") is not None
    assert await files.stat(f"video-{notifying.id}") is not None
    assert len(await callbacks_of(store, notifying)) == 1


async def test_a_dry_run_only_says_what_would_go(store: Store, files: VideoFiles) -> None:
    who = await owner(store)
    old = await finished(store, files, who, age_days=40)
    report = await prune(store, files, NOW - 30 * DAY, dry_run=True)
    assert report.tasks == [old.id]
    assert report.videos == [f"video-{old.id}"]
    assert await store.load_task(old.id) is not None
    assert await files.stat(f"video-{old.id}") is not None


async def test_batches_are_bounded(store: Store, files: VideoFiles) -> None:
    who = await owner(store)
    tasks = [await finished(store, files, who, age_days=40 + n) for n in range(5)]
    first = await prune(store, files, NOW - 30 * DAY, batch=2, max_batches=1)
    assert len(first.tasks) == 2 and not first.complete
    # Oldest first: the two that finished longest ago went.
    assert set(first.tasks) == {tasks[4].id, tasks[3].id}
    rest = await prune(store, files, NOW - 30 * DAY, batch=2, max_batches=10)
    assert len(rest.tasks) == 3 and rest.complete


async def test_one_sweeper_at_a_time(store: Store) -> None:
    async with store.sweep_lock() as first:
        assert first is True
        async with store.sweep_lock() as second:
            assert second is False
    async with store.sweep_lock() as again:
        assert again is True


async def test_the_periodic_sweep_removes_what_expires(store: Store, files: VideoFiles) -> None:
    who = await owner(store)
    old = await finished(store, files, who, age_days=40)
    stop = asyncio.Event()
    sweeper = asyncio.create_task(run_retention(store, files, 30, 0.05, stop))
    for _ in range(200):
        if await store.load_task(old.id) is None:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(sweeper, 10)
    assert await store.load_task(old.id) is None
    assert await files.stat(f"video-{old.id}") is None


async def test_the_sweep_waits_while_another_process_holds_the_lock(
    store: Store, files: VideoFiles
) -> None:
    who = await owner(store)
    old = await finished(store, files, who, age_days=40)
    stop = asyncio.Event()
    async with store.sweep_lock() as held:
        assert held
        sweeper = asyncio.create_task(run_retention(store, files, 30, 0.05, stop))
        await asyncio.sleep(0.3)  # several sweep intervals, all without the lock
        assert await store.load_task(old.id) is not None
    stop.set()
    await asyncio.wait_for(sweeper, 10)


def test_prune_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"

    async def setup() -> str:
        st = await migrated_store(f"sqlite:///{data}/kling-gateway.db")
        try:
            files = VideoFiles(root=data / "videos", public_url="http://gw.test")
            return (await finished(st, files, await owner(st), age_days=40)).id
        finally:
            await st.close()

    task_id = asyncio.run(setup())
    assert main(["prune", "--older-than", "30d", "--dry-run", "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("would remove 1 task(s) and 1 video(s)")
    assert f"task {task_id}" in out
    assert (data / "videos" / f"video-{task_id}.mp4").exists()
    assert main(["prune", "--older-than", "30d", "--data-dir", str(data)]) == 0
    assert capsys.readouterr().out.startswith("removed 1 task(s)")
    assert not (data / "videos" / f"video-{task_id}.mp4").exists()
    assert main(["prune", "--older-than", "soon", "--data-dir", str(data)]) == 2


def test_retention_days_must_not_be_negative(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--retention-days", "-1"]) == 2
    assert "--retention-days" in capsys.readouterr().err
