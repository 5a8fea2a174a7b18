"""The §7 kinds end to end on Kling: the real gateway (API, store, worker, Kling provider)
against the fake upstream, which checks every call as the upstream would (docs/contract.md §7,
upstream spec "More endpoints")."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from kling_gateway.fake_upstream import FakeUpstreamConfig, create_fake_upstream
from kling_gateway.fake_upstream.media import make_wav
from tests.harness import AppHarness
from tests.providers.kling.test_gateway import AK, SK, kling_settings
from tests.servers import serve_asgi

IMAGE = "https://cdn.example/face.png"
REFERENCE = "https://cdn.example/dance.mp4"


@pytest.fixture
def fake_app() -> Starlette:
    config = FakeUpstreamConfig(
        access_key=AK, secret_key=SK, processing_after=0.02, finish_after=(0.1, 0.3), seed=5
    )
    return create_fake_upstream(config)


@pytest.fixture
def audio_server() -> Iterator[str]:
    """A loopback server of audio clips: /long.wav (3 s) and /short.wav (1 s)."""
    clips = {"/long.wav": make_wav(3.0), "/short.wav": make_wav(1.0)}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = clips.get(scope["path"])
        status = 200 if body is not None else 404
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"audio/wav")]})  # fmt: skip
        await send({"type": "http.response.body", "body": body or b""})

    with serve_asgi(app) as url:
        yield url


@pytest.fixture
async def gateway(tmp_path: Path, upstream: str) -> AsyncIterator[AppHarness]:
    settings = kling_settings(tmp_path, upstream, callback_allow_private=True)
    async with AppHarness.start(settings) as harness:
        yield harness


async def counters(admin: httpx.AsyncClient) -> dict[str, Any]:
    found: dict[str, Any] = (await admin.get("/fake-admin/counters")).json()
    return found


async def test_motion_creates_one_motion_control_job(
    gateway: AppHarness, admin: httpx.AsyncClient
) -> None:
    body = {"image_url": IMAGE, "video_url": REFERENCE, "character_orientation": "video",
            "mode": "pro", "prompt": "dance", "watermark_info": {"enabled": True}}  # fmt: skip
    response = await gateway.create("/kling/motion", body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["success"] is True and answer["state"] == "succeed"
    record = (await gateway.tasks({"id": answer["task_id"]})).json()
    assert record["type"] == "motion" and record["job_id"]
    tasks = (await admin.get("/fake-admin/tasks")).json()
    assert [t["task_info"]["external_task_id"] for t in tasks] == [answer["task_id"]]
    assert (await counters(admin))["requests_by_route"]["create"] == 1


async def test_lip_sync_of_an_own_video_identifies_then_creates_once(
    gateway: AppHarness, admin: httpx.AsyncClient, audio_server: str
) -> None:
    video = (await gateway.videos({"action": "text2video", "prompt": "a talk"})).json()
    assert video["success"] is True, video
    body = {"mode": "audio2video", "video_id": video["video_id"],
            "audio_url": f"{audio_server}/long.wav"}  # fmt: skip
    answer = (await gateway.create("/kling/lip-sync", body)).json()
    assert answer["success"] is True, answer
    # The result follows the audio (3 s), capped by the video (5.1 s).
    assert answer["duration"] == "3.0"
    seen = await counters(admin)
    assert seen["requests_by_route"]["identify"] == 1
    assert seen["creates_by_external_id"][answer["task_id"]] == 1
    listed = (await gateway.tasks({"action": "retrieve_batch", "type": "lip-sync"})).json()
    assert [r["id"] for r in listed["items"]] == [answer["task_id"]]


async def test_lip_sync_audio_under_two_seconds_fails_with_the_upstream_reason(
    gateway: AppHarness, audio_server: str
) -> None:
    body = {"mode": "audio2video", "video_url": "https://cdn.example/talk.mp4",
            "audio_url": f"{audio_server}/short.wav"}  # fmt: skip
    answer = (await gateway.create("/kling/lip-sync", body)).json()
    assert answer["success"] is False
    assert answer["error"]["code"] == "invalid_request"
    assert "2000 ms" in answer["error"]["message"]


async def test_lip_sync_with_a_base64_file(gateway: AppHarness, admin: httpx.AsyncClient) -> None:
    clip = base64.b64encode(make_wav(2.5)).decode()
    body = {"mode": "audio2video", "video_url": "https://cdn.example/talk.mp4",
            "audio_type": "file", "audio_file": f"data:audio/wav;base64,{clip}"}  # fmt: skip
    response = await gateway.create("/kling/lip-sync", body)
    answer = response.json()
    assert answer["success"] is True, answer
    assert answer["duration"] == "2.5"
    record = (await gateway.tasks({"id": answer["task_id"]})).json()
    assert "not kept in the record" in record["request"]["audio_file"]


async def test_text_lip_sync_speaks_first(gateway: AppHarness, admin: httpx.AsyncClient) -> None:
    body = {"mode": "text2video", "video_url": "https://cdn.example/talk.mp4",
            "text": "Hello there, this is the gateway speaking", "voice_id": "v-1",
            "voice_language": "en"}  # fmt: skip
    answer = (await gateway.create("/kling/lip-sync", body)).json()
    assert answer["success"] is True, answer
    seen = await counters(admin)
    assert seen["requests_by_route"]["tts"] == 1 and seen["requests_by_route"]["identify"] == 1


async def test_text_too_short_to_speak_two_seconds_fails(gateway: AppHarness) -> None:
    body = {"mode": "text2video", "video_url": "https://cdn.example/talk.mp4",
            "text": "Hi", "voice_id": "v-1"}  # fmt: skip
    answer = (await gateway.create("/kling/lip-sync", body)).json()
    assert answer["success"] is False and "2000 ms" in answer["error"]["message"]


async def test_no_face_fails_the_task(gateway: AppHarness, admin: httpx.AsyncClient) -> None:
    body = {"mode": "text2video", "video_url": "https://cdn.example/fake-noface.mp4",
            "text": "Hello there, nobody is here", "voice_id": "v-1"}  # fmt: skip
    answer = (await gateway.create("/kling/lip-sync", body)).json()
    assert answer["error"]["code"] == "no_face_found"
    assert (await counters(admin))["creates"] == 0  # nothing paid for


async def test_talking_photo_animates_then_lip_syncs(
    gateway: AppHarness, admin: httpx.AsyncClient, audio_server: str
) -> None:
    body = {"image_url": IMAGE, "audio_url": f"{audio_server}/long.wav", "duration": 10}
    answer = (await gateway.create("/kling/talking-photo", body)).json()
    assert answer["success"] is True, answer
    public = gateway.settings.resolved_public_url
    assert answer["source_video_url"].startswith(f"{public}/files/videos/")
    assert answer["source_video_url"] != answer["video_url"]
    for url in (answer["video_url"], answer["source_video_url"]):
        assert (await gateway.client.get(url.removeprefix(public))).status_code == 200
    tasks = {t["task_info"]["external_task_id"]: t for t in
             (await admin.get("/fake-admin/tasks")).json()}  # fmt: skip
    task_id = answer["task_id"]
    assert set(tasks) == {task_id, f"{task_id}-animation"}
    record = (await gateway.tasks({"id": task_id})).json()
    assert record["type"] == "talking-photo"
    assert record["job_id"] == tasks[task_id]["task_id"]  # the lip-sync job is the last one
    # A delete removes both files.
    assert (await gateway.tasks({"action": "delete", "id": task_id})).json()["deleted"]
    for url in (answer["video_url"], answer["source_video_url"]):
        assert (await gateway.client.get(url.removeprefix(public))).status_code == 404


async def test_talking_photo_settles_the_units_of_both_paid_jobs(
    tmp_path: Path, upstream: str, audio_server: str
) -> None:
    # The fake deducts "1" unit per finished job: the animation's and the lip-sync's, 2 x 3.
    prices = tmp_path / "prices.toml"
    prices.write_text('credits_per_unit = 3\n[per_second."*"]\nstd = 9\npro = 9\n4k = 9\n')
    settings = kling_settings(tmp_path, upstream, callback_allow_private=True, prices=str(prices))
    async with AppHarness.start(settings) as gateway:
        body = {"image_url": IMAGE, "audio_url": f"{audio_server}/long.wav", "duration": 5}
        answer = (await gateway.create("/kling/talking-photo", body)).json()
        assert answer["success"] is True, answer
        record = (await gateway.tasks({"id": answer["task_id"]})).json()
    assert record["usage"]["credits"] == 6, record
