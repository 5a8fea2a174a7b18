"""POST /kling/videos end to end in one process: the API, the worker and the local provider."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from kling_gateway.providers.local.render import probe_video
from tests.harness import AppHarness, make_settings

TEXT2VIDEO = {"action": "text2video", "prompt": "White ceramic coffee mug on marble"}


async def wait_finished(gateway: AppHarness, task_id: str) -> dict[str, Any]:
    """Long-poll until the record shows the task finished (the server's own wait)."""
    for _ in range(20):
        response = await gateway.tasks({"id": task_id, "wait": 10})
        record: dict[str, Any] = response.json()
        if "finished_at" in record:
            return record
    raise AssertionError(f"task {task_id} did not finish")


async def test_async_mode_answers_at_once_and_the_task_finishes(
    gateway_with_worker: AppHarness,
) -> None:
    gateway = gateway_with_worker
    response = await gateway.videos({**TEXT2VIDEO, "async": True})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"task_id", "trace_id", "usage"}
    assert body["usage"] == {"credits": 5, "duration": 5.0}  # the default table: 1 per std second
    assert body["trace_id"] == response.headers["x-trace-id"]
    record = await wait_finished(gateway, body["task_id"])
    assert record["id"] == body["task_id"] == record["response"]["task_id"]
    assert record["trace_id"] == body["trace_id"]
    assert record["request"] == {**TEXT2VIDEO, "async": True}
    assert record["response"]["state"] == "succeed" and record["response"]["success"] is True
    assert record["job_id"] and record["started_at"] >= record["created_at"]
    assert record["finished_at"] >= record["started_at"]
    assert record["usage"] == {"credits": 5, "duration": 5.0}  # settled at the output's length
    assert record["duration"] == pytest.approx(
        record["finished_at"] - record["created_at"], abs=2e-3
    )


async def test_blocking_mode_returns_the_final_body_and_a_real_mp4(
    gateway_with_worker: AppHarness, tmp_path: Path
) -> None:
    gateway = gateway_with_worker
    request = {**TEXT2VIDEO, "duration": 5, "aspect_ratio": "9:16", "mode": "pro"}
    response = await gateway.videos(request)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True and body["state"] == "succeed"
    assert body["trace_id"] == response.headers["x-trace-id"]
    assert body["duration"] == "5.0"
    assert body["usage"] == {"credits": 10, "duration": 5.0}  # pro: 2 credits a second
    public = gateway.settings.resolved_public_url
    assert body["video_url"].startswith(f"{public}/files/videos/")
    video = await gateway.client.get(body["video_url"].removeprefix(public))
    assert video.status_code == 200
    path = tmp_path / "downloaded.mp4"
    path.write_bytes(video.content)
    info = probe_video(path)
    assert info.duration == pytest.approx(5.0, abs=0.1)
    # pro 9:16 is 1080x1920; the test settings cap the longer side at 64 pixels.
    assert (info.width, info.height) == (36, 64)


async def test_blocking_wait_runs_out_with_504_and_the_task_goes_on(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, worker=True, local_delay=1.5, blocking_wait_seconds=0.2)
    async with AppHarness.start(settings) as gateway:
        response = await gateway.videos(TEXT2VIDEO)
        assert response.status_code == 504
        assert response.json()["error"]["code"] == "timeout"
        listing = (await gateway.tasks({"action": "retrieve_batch"})).json()
        assert listing["count"] == 1
        record = await wait_finished(gateway, listing["items"][0]["id"])
        assert record["response"]["state"] == "succeed"


async def test_a_client_that_disconnects_does_not_cancel_its_task(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, worker=True, local_delay=2.0)
    async with AppHarness.start(settings) as gateway:
        blocking = asyncio.create_task(gateway.videos(TEXT2VIDEO))
        # Until the task is stored, so that the call is being held (a fixed 0.1 s was once too
        # short on PostgreSQL on a loaded machine: the client left before the create).
        task_id = await first_listed(gateway)
        assert not blocking.done()  # the task takes 2 s at least
        blocking.cancel()  # the client goes away while the call is held
        with pytest.raises(asyncio.CancelledError):
            await blocking
        record = await wait_finished(gateway, task_id)
        assert record["response"]["state"] == "succeed"


async def first_listed(gateway: AppHarness) -> str:
    async with asyncio.timeout(10):
        while True:
            listing = (await gateway.tasks({"action": "retrieve_batch"})).json()
            if listing["items"]:
                return str(listing["items"][0]["id"])
            await asyncio.sleep(0.01)


async def test_failed_task_answers_the_failed_body(gateway_with_worker: AppHarness) -> None:
    # An extend of an unknown video is now refused at create (docs/contract.md §6); an image
    # the egress guard will not fetch (loopback) still fails the task itself.
    image = "http://127.0.0.1:9/no-such-image.png"
    request = {"action": "image2video", "start_image_url": image, "prompt": "longer"}
    response = await gateway_with_worker.videos(request)
    body = response.json()
    assert body["success"] is False and body["state"] == "failed"
    assert body["error"]["code"] == "image_fetch_failed"
    assert "start_image_url" in body["error"]["message"]


async def test_extend_yields_a_longer_video_of_the_same_user(
    gateway_with_worker: AppHarness, tmp_path: Path
) -> None:
    gateway = gateway_with_worker
    first = (await gateway.videos(TEXT2VIDEO)).json()
    extended = (await gateway.videos({"action": "extend", "video_id": first["video_id"]})).json()
    assert extended["state"] == "succeed", extended
    assert float(extended["duration"]) == pytest.approx(10.0, abs=0.1)
    await gateway.add_user("mallory")
    stolen = await gateway.videos({"action": "extend", "video_id": first["video_id"]}, "mallory")
    # refused at create, before a task or a charge (docs/contract.md §6)
    assert stolen.status_code == 400, stolen.text
    assert stolen.json()["error"]["code"] == "bad_request"
    assert "`video_id`" in stolen.json()["error"]["message"]


async def test_idempotency_key_gives_one_task(gateway: AppHarness) -> None:
    headers = {"idempotency-key": "order-42"}
    first = await gateway.videos({**TEXT2VIDEO, "async": True}, headers=headers)
    again = await gateway.videos({**TEXT2VIDEO, "async": True}, headers=headers)
    assert first.json()["task_id"] == again.json()["task_id"]
    assert first.json()["trace_id"] != again.json()["trace_id"]
    other = await gateway.videos({**TEXT2VIDEO, "prompt": "x", "async": True}, headers=headers)
    assert other.status_code == 400 and "Idempotency-Key" in other.json()["error"]["message"]
    listing = (await gateway.tasks({"action": "retrieve_batch"})).json()
    assert listing["count"] == 1


async def test_an_idempotent_retry_costs_no_credits(gateway: AppHarness) -> None:
    await gateway.add_user("trial")
    await gateway.store.grant_credits("trial", 5, time.time())  # one 5 s std task
    headers = {"idempotency-key": "retry-me"}
    for _ in range(3):  # a client retrying the same create with the same key
        response = await gateway.videos({**TEXT2VIDEO, "async": True}, "trial", headers=headers)
        assert response.status_code == 200, response.text


async def test_credits_used_up(gateway: AppHarness) -> None:
    await gateway.add_user("trial")
    await gateway.store.grant_credits("trial", 5, time.time())  # one 5 s std task
    ok = await gateway.videos({**TEXT2VIDEO, "async": True}, user="trial")
    assert ok.status_code == 200
    spent = await gateway.videos({**TEXT2VIDEO, "async": True}, user="trial")
    assert spent.status_code == 403 and spent.json()["error"]["code"] == "used_up"


async def test_over_max_in_flight_is_429_with_retry_after(gateway: AppHarness) -> None:
    await gateway.add_user("trial")
    assert await gateway.store.set_application("trial", max_in_flight=1)
    ok = await gateway.videos({**TEXT2VIDEO, "async": True}, user="trial")
    assert ok.status_code == 200
    busy = await gateway.videos({**TEXT2VIDEO, "async": True}, user="trial")
    assert busy.status_code == 429 and busy.json()["error"]["code"] == "too_many_requests"
    assert int(busy.headers["retry-after"]) >= 1
    listing = (await gateway.tasks({"action": "retrieve_batch"}, user="trial")).json()
    assert listing["count"] == 1  # the refused create inserted nothing


async def test_videos_needs_the_videos_api(gateway: AppHarness) -> None:
    await gateway.add_user("reader", apis=("kling.tasks",))
    response = await gateway.videos({**TEXT2VIDEO, "async": True}, user="reader")
    assert response.status_code == 400 and response.json()["error"]["code"] == "token_mismatched"


async def test_private_callback_urls_are_refused_by_default(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, worker=False, callback_allow_private=False)
    async with AppHarness.start(settings) as gateway:
        for url in (
            "http://127.0.0.1:9/cb",
            "http://10.0.0.1/cb",
            "http://169.254.169.254/x",
            "http://[::1]/cb",
            "http://0.0.0.0/cb",
            "http://localhost/cb",
        ):
            response = await gateway.videos({**TEXT2VIDEO, "callback_url": url})
            assert response.status_code == 400, url
            assert "callback_url" in response.json()["error"]["message"]
        assert (await gateway.tasks({"action": "retrieve_batch"})).json()["count"] == 0


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com:99999/hook",
        "http://a..b.example/hook",
        "http://" + "a" * 70 + ".example/hook",
        "http://example.com/ho ok",
        "http://example.com/\x01",
    ],
)
async def test_malformed_callback_urls_are_400_not_500(tmp_path: Path, url: str) -> None:
    settings = make_settings(tmp_path, worker=False, callback_allow_private=False)
    async with AppHarness.start(settings) as gateway:
        response = await gateway.videos({**TEXT2VIDEO, "callback_url": url})
        assert response.status_code == 400, response.text
        assert "callback_url" in response.json()["error"]["message"]
