"""The steps of a lip-sync on Kling (providers/kling/kind_steps.py) against the fake upstream,
one call at a time: sessions that expire after 24 hours are identified again, and a create
whose answer was lost is found, not made twice."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from kling_gateway.domain.ids import new_object_id, new_task_id, new_trace_id
from kling_gateway.domain.kinds import validate_lip_sync
from kling_gateway.domain.outcomes import ProviderError, Step, Submission
from kling_gateway.domain.task import Task
from kling_gateway.fake_upstream import FakeUpstream, FakeUpstreamConfig, create_fake_upstream
from kling_gateway.fake_upstream.media import make_wav
from kling_gateway.infra.files import VideoFiles
from kling_gateway.protocol.requests import LipSyncRequestBody
from kling_gateway.protocol.task import TASK_TYPE_LIP_SYNC
from kling_gateway.providers.kling.client import KlingClientConfig
from kling_gateway.providers.kling.kind_steps import SESSION
from kling_gateway.providers.kling.provider import KlingProvider, KlingProviderConfig
from kling_gateway.storage.base import Store
from tests.harness import open_sqlite_store

AK, SK = "steps-ak", "steps-sk-0123456789abcdef"
DAY = 24 * 3600.0


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fake_app(clock: Clock) -> Starlette:
    config = FakeUpstreamConfig(access_key=AK, secret_key=SK, seed=1, clock=clock)
    return create_fake_upstream(config)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    db = await open_sqlite_store(tmp_path)
    yield db
    await db.close()


@pytest.fixture
async def provider(
    upstream: str, tmp_path: Path, store: Store, clock: Clock
) -> AsyncIterator[KlingProvider]:
    client = KlingClientConfig(access_key=AK, secret_key=SK, base_url=upstream)
    files = VideoFiles(tmp_path / "videos", "http://gateway.test")
    kling = KlingProvider(KlingProviderConfig(client=client), store=store, files=files, clock=clock)
    yield kling
    await kling.aclose()


def lip_sync_task(**fields: Any) -> Task:
    clip = base64.b64encode(make_wav(2.5)).decode()
    body = {"mode": "audio2video", "video_url": "https://cdn.example/talk.mp4",
            "audio_file": clip, **fields}  # fmt: skip
    params = validate_lip_sync(LipSyncRequestBody(**body))
    return Task(
        id=new_task_id(), object_id=new_object_id(), user_id="u", application_id="a",
        credential_id="c", trace_id=new_trace_id(), request={}, params=params,
        created_at=time.time(), type=TASK_TYPE_LIP_SYNC,
    )  # fmt: skip


async def routes(admin: httpx.AsyncClient) -> dict[str, int]:
    found: dict[str, int] = (await admin.get("/fake-admin/counters")).json()["requests_by_route"]
    return found


async def test_a_session_older_than_a_day_is_identified_again(
    provider: KlingProvider, admin: httpx.AsyncClient, clock: Clock
) -> None:
    task = lip_sync_task()
    step = await provider.submit(task)
    assert isinstance(step, Step) and task.job_id is None
    task.provider_data.update(step.provider_data)
    first = task.provider_data[SESSION]["session_id"]
    clock.now += DAY + 60  # the session has expired upstream meanwhile
    again = await provider.submit(task)
    assert isinstance(again, Step)
    task.provider_data.update(again.provider_data)
    assert task.provider_data[SESSION]["session_id"] != first
    created = await provider.submit(task)
    assert isinstance(created, Submission) and created.provider_data["kind"] == "advanced-lip-sync"
    assert (await routes(admin))["identify"] == 2
    assert (await routes(admin))["create"] == 1


async def test_the_fake_refuses_an_expired_session(
    provider: KlingProvider, fake: FakeUpstream, clock: Clock
) -> None:
    data = await provider.client.call(
        "/v1/videos/identify-face", {"video_url": "https://x.example/v.mp4"}
    )
    clip = base64.b64encode(make_wav(3.0)).decode()
    face = {"face_id": data["face_data"][0]["face_id"], "sound_file": clip}
    body = {"session_id": data["session_id"], "face_choose": [face]}
    clock.now += DAY + 1
    with pytest.raises(ProviderError) as caught:
        await provider.client.create("advanced-lip-sync", body)
    assert caught.value.code == "invalid_request" and "expired" in caught.value.message


async def test_a_lost_create_answer_is_found_by_its_external_id(
    provider: KlingProvider, admin: httpx.AsyncClient
) -> None:
    task = lip_sync_task()
    step = await provider.submit(task)
    assert isinstance(step, Step)
    task.provider_data.update(step.provider_data)
    created = await provider.submit(task)
    # The answer is lost (a crash before the save): the task still shows only its session.
    found = await provider.submit(task)
    assert isinstance(created, Submission) and isinstance(found, Submission)
    assert found.job_id == created.job_id
    assert (await routes(admin))["create"] == 1
