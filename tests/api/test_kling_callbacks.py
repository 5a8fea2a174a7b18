"""The Kling upstream-callback route composes providers, domain, storage and notifications:
a callback that finishes a task owes its client callback, and wakes the deliverer at once."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from kling_gateway.domain.kinds import validate_talking_photo
from kling_gateway.infra.notify import CALLBACK_WAKEUP, WORKER_WAKEUP
from kling_gateway.protocol.requests import TalkingPhotoRequestBody
from kling_gateway.protocol.task import TASK_TYPE_TALKING_PHOTO, TaskState, progress_response
from kling_gateway.storage.base import Outcome
from tests.harness import AppHarness, make_settings, make_task
from tests.storage.billing_helpers import finish_stored, succeed_outcome

SECRET = "cb-secret-0c7e21"
PATH = f"/kling/upstream-callback/{SECRET}"
HOOK = "http://127.0.0.1:9/hook"


def settings(tmp_path: Path, **overrides: Any) -> Any:
    return make_settings(
        tmp_path,
        worker=False,
        provider="kling",
        kling_base_url="http://127.0.0.1:9",
        kling_access_key="ak",
        kling_secret_key="sk-0123456789abcdef",
        kling_callback_secret=SECRET,
        **overrides,
    )


def payload(task_id: str, word: str) -> dict[str, Any]:
    video = {"id": "v-1", "url": "http://127.0.0.1:9/v-1.mp4", "duration": "5.1"}
    return {
        "task_id": "job-1",
        "task_status": word,
        "task_info": {"external_task_id": task_id},
        "task_result": {"videos": [video]},
    }


async def submitted_task(gateway: AppHarness) -> str:
    """A task with a client callback whose Kling job is ``job-1``, processing, not leased."""
    task = make_task(gateway.user_ids["alice"], callback_url=HOOK)
    now = time.time()
    await gateway.store.insert_task(task, next_check_at=now + 30, deadline_at=now + 3600)
    task.job_id, task.state = "job-1", TaskState.PROCESSING
    task.response = progress_response(task.id, TaskState.PROCESSING)
    saved = await gateway.store.save_task(
        task, expected_version=0, worker_id=None, outcome=Outcome(next_check_at=now + 30)
    )
    assert saved
    return task.id


async def heard(gateway: AppHarness, channel: str, post: dict[str, Any]) -> tuple[bool, str]:
    """Whether ``channel`` was announced while ``post`` was sent (subscribed before it)."""
    waiter = asyncio.create_task(gateway.app.ctx.events.wait(channel, 10.0))
    await asyncio.sleep(0)  # subscribed before the callback arrives
    answer = await gateway.client.post(PATH, json=post)
    assert answer.status_code == 200, answer.text
    return await waiter, answer.json()["result"]


async def test_a_finishing_callback_wakes_the_callback_deliverer(tmp_path: Path) -> None:
    async with AppHarness.start(settings(tmp_path, kling_download_results=False)) as gateway:
        task_id = await submitted_task(gateway)
        woken, result = await heard(gateway, CALLBACK_WAKEUP, payload(task_id, "succeed"))
        assert (woken, result) == (True, "recorded")
        [delivery] = await gateway.store.list_callbacks(task_id=task_id)
        assert (delivery.url, delivery.event, delivery.state) == (HOOK, "succeed", "pending")


async def test_a_success_to_download_wakes_the_workers(tmp_path: Path) -> None:
    async with AppHarness.start(settings(tmp_path, kling_download_results=True)) as gateway:
        task_id = await submitted_task(gateway)
        woken, result = await heard(gateway, WORKER_WAKEUP, payload(task_id, "succeed"))
        assert (woken, result) == (True, "check_due")
        stored = await gateway.store.load_task(task_id)
        assert stored is not None and stored.task.state is TaskState.PROCESSING
        assert stored.next_check_at <= time.time()
        assert await gateway.store.list_callbacks(task_id=task_id) == []


async def test_a_success_of_a_multi_step_task_is_left_to_the_worker(tmp_path: Path) -> None:
    # Even without downloads: a §7 job's end may mean another step, or source_video_url.
    async with AppHarness.start(settings(tmp_path, kling_download_results=False)) as gateway:
        task = make_task(gateway.user_ids["alice"])
        body = {"image_url": "https://e.example/a.png", "audio_url": "https://e.example/a.mp3"}
        task.request, task.type = body, TASK_TYPE_TALKING_PHOTO
        task.params = validate_talking_photo(TalkingPhotoRequestBody(**body))
        now = time.time()
        await gateway.store.insert_task(task, next_check_at=now + 30, deadline_at=now + 3600)
        task.job_id, task.state = "job-1", TaskState.PROCESSING
        saved = await gateway.store.save_task(
            task, expected_version=0, worker_id=None, outcome=Outcome(next_check_at=now + 30)
        )
        assert saved
        woken, result = await heard(gateway, WORKER_WAKEUP, payload(task.id, "succeed"))
        assert (woken, result) == (True, "check_due")
        after = await gateway.store.load_task(task.id)
        assert after is not None and after.task.state is TaskState.PROCESSING
        assert after.next_check_at <= time.time()


async def held_task(gateway: AppHarness, credits: int = 5) -> str:
    """``submitted_task`` holding ``credits`` of alice's metered balance."""
    from kling_gateway.domain.pricing import Usage

    app = await gateway.store.grant_credits("alice", 20, time.time())
    task = make_task(gateway.user_ids["alice"], callback_url=HOOK)
    task.application_id, task.usage = app.id, Usage(credits, 5.0)
    now = time.time()
    await gateway.store.insert_task(
        task, next_check_at=now + 30, deadline_at=now + 3600, charge_quota=True
    )
    task.job_id, task.state = "job-1", TaskState.PROCESSING
    task.response = progress_response(task.id, TaskState.PROCESSING)
    outcome = Outcome(next_check_at=now + 30)
    assert await gateway.store.save_task(task, expected_version=0, worker_id=None, outcome=outcome)
    return task.id


async def _credits(gateway: AppHarness) -> tuple[int, int]:
    app = await gateway.store.find_application("alice")
    assert app is not None
    return app.balance, app.held


async def test_a_callback_settles_the_hold_once(tmp_path: Path) -> None:
    async with AppHarness.start(settings(tmp_path, kling_download_results=False)) as gateway:
        task_id = await held_task(gateway)
        assert await _credits(gateway) == (20, 5)
        seen_by_worker = await gateway.store.load_task(task_id)
        assert seen_by_worker is not None
        for expected in ("recorded", "already_finished"):  # Kling repeats its callbacks
            answer = await gateway.client.post(PATH, json=payload(task_id, "succeed"))
            assert answer.json()["result"] == expected
        assert await _credits(gateway) == (15, 0)  # 5.1 s at 1 credit per std second
        record = (await gateway.tasks({"action": "retrieve", "id": task_id})).json()
        assert record["usage"] == {"credits": 5, "duration": 5.0}
        # A worker that saw the same result first-hand loses its compare-and-set: no settle.
        assert not await finish_stored(gateway.store, seen_by_worker, succeed_outcome())
        assert await _credits(gateway) == (15, 0)
        settles = [e for e in await gateway.store.ledger_entries() if e.entry.value == "settle"]
        assert [e.task_id for e in settles] == [task_id]


async def test_a_failure_callback_releases_the_hold(tmp_path: Path) -> None:
    async with AppHarness.start(settings(tmp_path, kling_download_results=False)) as gateway:
        task_id = await held_task(gateway)
        failed = {**payload(task_id, "failed"), "task_status_msg": "no"}
        answer = await gateway.client.post(PATH, json=failed)
        assert answer.json()["result"] == "recorded"
        assert await _credits(gateway) == (20, 0)


async def test_the_access_log_never_holds_the_callback_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with AppHarness.start(settings(tmp_path, access_log=True)) as gateway:
        task_id = await submitted_task(gateway)
        with caplog.at_level(logging.INFO, logger="kling_gateway.access"):
            answer = await gateway.client.post(PATH, json=payload(task_id, "processing"))
    assert answer.status_code == 200
    lines = [r for r in caplog.records if r.name == "kling_gateway.access"]
    assert lines, "the request was logged"
    logged = " ".join(f"{r.getMessage()} {getattr(r, 'path', '')}" for r in lines)
    assert SECRET not in logged
    assert "/kling/upstream-callback/{secret}" in logged
