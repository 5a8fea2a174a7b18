"""POST /kling/motion, /kling/lip-sync, /kling/talking-photo over the ASGI stack, on both
stores (docs/contract.md §7): the same task machinery as /kling/videos — validation, modes,
Idempotency-Key, quota, rate limits, ownership, the record's type, long-poll and SSE."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from kling_gateway.fake_upstream.media import make_wav
from tests.harness import AppHarness, insert_finished, make_settings, make_task

IMG, VID, AUD = "https://x.example/a.png", "https://x.example/v.mp4", "https://x.example/a.wav"
BODIES: dict[str, dict[str, Any]] = {
    "/kling/motion": {"image_url": IMG, "video_url": VID, "character_orientation": "image",
                      "mode": "std"},
    "/kling/lip-sync": {"mode": "audio2video", "video_url": VID, "audio_url": AUD},
    "/kling/talking-photo": {"image_url": IMG, "audio_url": AUD},
}  # fmt: skip
TYPES = {"/kling/motion": "motion", "/kling/lip-sync": "lip-sync",
         "/kling/talking-photo": "talking-photo"}  # fmt: skip
PATHS = sorted(BODIES)


async def create(gateway: AppHarness, path: str, user: str = "alice", **extra: Any) -> str:
    headers = extra.pop("headers", {})
    response = await gateway.create(path, {**BODIES[path], "async": True, **extra}, user,
                                    headers=headers)  # fmt: skip
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"task_id", "trace_id"}
    task_id: str = response.json()["task_id"]
    return task_id


@pytest.mark.parametrize("path", PATHS)
async def test_async_create_records_its_type(gateway: AppHarness, path: str) -> None:
    task_id = await create(gateway, path)
    record = (await gateway.tasks({"id": task_id})).json()
    assert record["type"] == TYPES[path] and record["id"] == task_id
    assert record["request"] == {**BODIES[path], "async": True}


async def test_retrieve_batch_filters_by_type(gateway: AppHarness) -> None:
    made = {path: await create(gateway, path) for path in PATHS}
    video = await gateway.videos({"action": "text2video", "prompt": "a mug", "async": True})
    assert video.status_code == 200
    for path, task_id in made.items():
        listing = (await gateway.tasks({"action": "retrieve_batch", "type": TYPES[path]})).json()
        assert [r["id"] for r in listing["items"]] == [task_id] and listing["count"] == 1
    everything = (await gateway.tasks({"action": "retrieve_batch"})).json()
    assert everything["count"] == 4


@pytest.mark.parametrize(
    ("path", "change", "field"),
    [
        ("/kling/motion", {"character_orientation": "sideways"}, "character_orientation"),
        ("/kling/motion", {"mode": 3}, "mode"),
        ("/kling/lip-sync", {"voice_speed": "fast"}, "voice_speed"),
        ("/kling/lip-sync", {"video_id": "v-1"}, "video_id"),
        ("/kling/talking-photo", {"duration": 7}, "duration"),
        ("/kling/talking-photo", {"image_url": None}, "image_url"),
    ],
)
async def test_a_bad_field_is_a_400_naming_it(
    gateway: AppHarness, path: str, change: dict[str, Any], field: str
) -> None:
    body = {k: v for k, v in {**BODIES[path], **change}.items() if v is not None}
    response = await gateway.create(path, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "bad_request" and f"`{field}`" in error["message"]
    assert (await gateway.tasks({"action": "retrieve_batch"})).json()["count"] == 0


async def test_idempotency_key_is_per_request_and_kind(gateway: AppHarness) -> None:
    headers = {"idempotency-key": "kinds-1"}
    first = await create(gateway, "/kling/motion", headers=headers)
    assert await create(gateway, "/kling/motion", headers=headers) == first
    other = await gateway.create("/kling/talking-photo", {**BODIES["/kling/talking-photo"],
                                 "async": True}, headers=headers)  # fmt: skip
    assert other.status_code == 400 and "Idempotency-Key" in other.json()["error"]["message"]


async def test_quota_and_grants_apply(gateway: AppHarness) -> None:
    await gateway.add_user("trial")
    await gateway.store.set_application("trial", quota=1)
    await create(gateway, "/kling/lip-sync", "trial")
    spent = await gateway.create("/kling/talking-photo", BODIES["/kling/talking-photo"], "trial")
    assert spent.status_code == 403 and spent.json()["error"]["code"] == "used_up"
    await gateway.add_user("reader", apis=("kling.tasks",))
    refused = await gateway.create("/kling/motion", BODIES["/kling/motion"], "reader")
    assert refused.json()["error"]["code"] == "token_mismatched"


async def test_rate_limit_spans_the_kinds(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, worker=False, rate_limit_per_minute=2)
    async with AppHarness.start(settings) as gateway:
        await create(gateway, "/kling/motion")
        await create(gateway, "/kling/lip-sync")
        limited = await gateway.create("/kling/talking-photo", BODIES["/kling/talking-photo"])
        assert limited.status_code == 429 and limited.headers["retry-after"].isdigit()


async def test_lip_sync_video_id_must_be_the_callers_finished_video(gateway: AppHarness) -> None:
    await gateway.add_user("bob")
    await insert_finished(gateway.store, make_task(gateway.user_ids["bob"]), video_id="bobs")
    await insert_finished(gateway.store, make_task(gateway.user_ids["alice"]), video_id="mine")
    body = {"mode": "audio2video", "audio_url": AUD, "async": True}
    foreign = await gateway.create("/kling/lip-sync", {**body, "video_id": "bobs"})
    missing = await gateway.create("/kling/lip-sync", {**body, "video_id": "nobody"})
    assert foreign.status_code == missing.status_code == 400
    # A foreign video reads exactly like a missing one (the id aside).
    assert foreign.json()["error"]["message"].replace("bobs", "X") == missing.json()["error"][
        "message"
    ].replace("nobody", "X")
    assert (
        await gateway.create("/kling/lip-sync", {**body, "video_id": "mine"})
    ).status_code == 200


async def test_lip_sync_takes_a_5mb_audio_file_over_the_body_cap(gateway: AppHarness) -> None:
    assert gateway.settings.max_body_bytes < 7_000_000
    clip = make_wav(150.0, rate=16000)  # 4.8 MB of WAV
    assert 4_500_000 < len(clip) <= 5 * 1024 * 1024
    body = {"mode": "audio2video", "video_url": VID, "audio_type": "file",
            "audio_file": base64.b64encode(clip).decode(), "async": True}  # fmt: skip
    response = await gateway.create("/kling/lip-sync", body)
    assert response.status_code == 200, response.text
    record = (await gateway.tasks({"id": response.json()["task_id"]})).json()
    assert record["request"]["audio_file"].endswith("not kept in the record>")
    # Other endpoints keep the server's cap.
    padded = {**BODIES["/kling/motion"], "prompt": "p", "pad": "x" * 2_000_000}
    too_big = await gateway.create("/kling/motion", padded)
    assert too_big.status_code == 400 and "larger than" in too_big.json()["error"]["message"]


@pytest.mark.parametrize("path", PATHS)
async def test_long_poll_and_events_follow_every_kind(
    gateway_with_worker: AppHarness, path: str
) -> None:
    gateway = gateway_with_worker
    task_id = await create(gateway, path)
    for _ in range(20):
        record = (await gateway.tasks({"id": task_id, "wait": 10})).json()
        if "finished_at" in record:
            break
    assert record["response"]["state"] in ("succeed", "failed")
    events = await gateway.client.get(f"/kling/tasks/{task_id}/events",
                                      headers=gateway.headers())  # fmt: skip
    assert events.status_code == 200
    assert f'"state":"{record["response"]["state"]}"' in events.text


@pytest.mark.parametrize("path", PATHS)
async def test_a_finished_task_of_every_kind_owes_its_callback(
    gateway_with_worker: AppHarness, path: str
) -> None:
    gateway = gateway_with_worker
    hook = "http://127.0.0.1:9/hook"
    task_id = await create(gateway, path, callback_url=hook, callback_events=["processing"])
    for _ in range(20):
        record = (await gateway.tasks({"id": task_id, "wait": 10})).json()
        if "finished_at" in record:
            break
    deliveries = await gateway.store.list_callbacks(task_id=task_id)
    final = record["response"]["state"]
    assert {(d.url, d.event) for d in deliveries} == {(hook, "processing"), (hook, final)}
