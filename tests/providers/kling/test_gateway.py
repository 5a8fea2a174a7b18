"""The real gateway (worker, store, API, Kling provider) against the fake Kling upstream.

The fake is served by a real uvicorn on loopback; the gateway runs in-process through the
harness, or, where the fake must call it back, on loopback too. Timings are the fake's short
ones; no assertion is about wall-clock time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from kling_gateway.fake_upstream import FakeUpstream, FakeUpstreamConfig, create_fake_upstream
from kling_gateway.fake_upstream.config import FAILURE_MESSAGE, SAFETY_MESSAGE
from kling_gateway.runtime.serve import build_app, with_store
from kling_gateway.runtime.settings import Settings
from kling_gateway.storage.tokens import issue_token
from tests.harness import AppHarness, make_settings
from tests.servers import loopback_socket, serve_asgi, socket_url

AK = "gateway-test-ak"
SK = "gateway-test-sk-0123456789abcdef"
SECRET = "cb-secret-4f1d9a"
FINISHED = ("succeed", "failed")


# --- the fake upstream -----------------------------------------------------------------------


@pytest.fixture
def fake_app() -> Starlette:
    config = FakeUpstreamConfig(
        access_key=AK,
        secret_key=SK,
        processing_after=0.02,
        finish_after=(0.1, 0.3),
        seed=11,
        hang_max=10.0,
    )
    return create_fake_upstream(config)


async def set_faults(admin: httpx.AsyncClient, faults: dict[str, Any]) -> None:
    response = await admin.post("/fake-admin/faults", json=faults)
    assert response.status_code == 200, response.text


async def creates_by_task(admin: httpx.AsyncClient) -> dict[str, int]:
    counters = (await admin.get("/fake-admin/counters")).json()
    found: dict[str, int] = counters["creates_by_external_id"]
    return found


async def upstream_tasks(admin: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    """The fake's tasks by external_task_id (= the gateway's task id)."""
    tasks = (await admin.get("/fake-admin/tasks")).json()
    return {t["task_info"]["external_task_id"]: t for t in tasks}


# --- the gateway -----------------------------------------------------------------------------


def kling_settings(tmp_path: Path, upstream: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "worker": True,
        "provider": "kling",
        "kling_base_url": upstream,
        "kling_access_key": AK,
        "kling_secret_key": SK,
        "kling_callback_secret": "",
        "check_interval": 0.1,
        "check_max_interval": 0.4,
        "provider_timeout": 1.0,
        "lease_seconds": 3.0,
        "idle_poll_seconds": 0.1,
        **overrides,
    }
    return make_settings(tmp_path, **values)


@pytest.fixture
async def gateway(tmp_path: Path, upstream: str) -> AsyncIterator[AppHarness]:
    async with AppHarness.start(kling_settings(tmp_path, upstream)) as harness:
        yield harness


async def create(h: AppHarness, count: int, prompt: str = "a red kite") -> list[str]:
    ids = []
    for _ in range(count):
        response = await h.videos({"action": "text2video", "prompt": prompt, "async": True})
        assert response.status_code == 200, response.text
        ids.append(response.json()["task_id"])
    return ids


async def records(client: httpx.AsyncClient, headers: dict[str, str], ids: list[str]) -> Any:
    body = {"action": "retrieve_batch", "ids": ids}
    response = await client.post("/kling/tasks", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return {item["id"]: item for item in response.json()["items"]}


async def settled(
    client: httpx.AsyncClient, headers: dict[str, str], ids: list[str], timeout: float = 30.0
) -> dict[str, dict[str, Any]]:
    """The records of ``ids`` once every one is finished (the timeout only stops a hang)."""
    async with asyncio.timeout(timeout):
        while True:
            found = await records(client, headers, ids)
            if len(found) == len(ids) and all(
                r.get("response", {}).get("state") in FINISHED for r in found.values()
            ):
                return found
            await asyncio.sleep(0.05)


def states(found: dict[str, dict[str, Any]]) -> Counter[str]:
    return Counter(r["response"]["state"] for r in found.values())


def errors(found: dict[str, dict[str, Any]]) -> list[dict[str, str]]:
    return [r["response"]["error"] for r in found.values() if r["response"]["state"] == "failed"]


async def assert_mp4_served(h: AppHarness, video_url: str, fake: FakeUpstream) -> None:
    prefix = h.settings.resolved_public_url
    assert video_url.startswith(prefix + "/files/videos/")
    response = await h.client.get(video_url.removeprefix(prefix))
    assert response.status_code == 200
    assert response.content == fake.media


# --- end to end --------------------------------------------------------------------------------


async def test_blocking_create_returns_the_downloaded_video(
    gateway: AppHarness, fake: FakeUpstream, admin: httpx.AsyncClient
) -> None:
    response = await gateway.videos({"action": "text2video", "prompt": "a lighthouse"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True and body["state"] == "succeed"
    upstream_task = (await upstream_tasks(admin))[body["task_id"]]
    video = upstream_task["task_result"]["videos"][0]
    assert body["video_id"] == video["id"]
    assert body["duration"] == video["duration"]
    await assert_mp4_served(gateway, body["video_url"], fake)


async def test_async_creates_finish_with_videos_in_the_file_store(
    gateway: AppHarness, fake: FakeUpstream, admin: httpx.AsyncClient
) -> None:
    ids = await create(gateway, 30)
    found = await settled(gateway.client, gateway.headers(), ids)
    assert states(found) == {"succeed": 30}
    for record in found.values():
        assert record["job_id"]
        await assert_mp4_served(gateway, record["response"]["video_url"], fake)
    assert set((await creates_by_task(admin)).values()) == {1}
    counters = (await admin.get("/fake-admin/counters")).json()["requests_by_route"]
    # 30 checks waiting together are answered by the list endpoint, not 30 GETs a round.
    assert counters.get("list", 0) > 0


# --- faults: every task ends, none is lost ---------------------------------------------------

TRANSIENT_FAULTS: dict[str, dict[str, Any]] = {
    "5xx": {"server_error": {"probability": 0.3}},
    "429 code 1302": {"rate_limit": {"probability": 0.3, "retry_after": 0.1}},
    "slow": {"slow": {"probability": 0.5, "delay": 0.3}},
    "slower than the timeout": {"slow": {"probability": 0.2, "delay": 1.5}},
    "hung": {"hang": {"probability": 0.2}},
    "hung after the create": {"hang": {"count": 2, "after": True, "routes": ["create"]}},
    "malformed JSON": {"malformed_json": {"probability": 0.3}},
}


@pytest.mark.parametrize("faults", TRANSIENT_FAULTS.values(), ids=TRANSIENT_FAULTS.keys())
async def test_transient_faults_end_with_every_task_finished(
    gateway: AppHarness, admin: httpx.AsyncClient, faults: dict[str, Any]
) -> None:
    await set_faults(admin, faults)
    ids = await create(gateway, 12)
    found = await settled(gateway.client, gateway.headers(), ids, timeout=45)
    assert states(found) == {"succeed": 12}, errors(found)
    creates = await creates_by_task(admin)
    assert set(creates) == set(ids) and set(creates.values()) == {1}
    injected = (await admin.get("/fake-admin/counters")).json()["faults_injected"]
    assert sum(injected.values()) > 0


async def test_content_safety_fails_with_the_upstream_message(
    gateway: AppHarness, admin: httpx.AsyncClient
) -> None:
    # Refused at create (code 1301), failed later by the safety check, failed otherwise.
    refused = await create(gateway, 2, prompt="a storm [fake:unsafe]")
    later = await create(gateway, 2, prompt="a storm [fake:unsafe-later]")
    failing = await create(gateway, 2, prompt="a storm [fake:fail]")
    fine = await create(gateway, 2)
    found = await settled(gateway.client, gateway.headers(), refused + later + failing + fine)
    assert states(found) == {"failed": 6, "succeed": 2}
    expected = {
        **dict.fromkeys(refused, ("content_policy_violation", SAFETY_MESSAGE)),
        **dict.fromkeys(later, ("generation_failed", SAFETY_MESSAGE)),
        **dict.fromkeys(failing, ("generation_failed", FAILURE_MESSAGE)),
    }
    for task_id, (code, message) in expected.items():
        error = found[task_id]["response"]["error"]
        assert (error["code"], error["message"]) == (code, message)


async def test_auth_failure_fails_fast_and_loudly(
    tmp_path: Path, upstream: str, admin: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    settings = kling_settings(tmp_path, upstream, kling_secret_key="not-the-secret")
    caplog.set_level(logging.ERROR, logger="kling_gateway")
    async with AppHarness.start(settings) as h:
        ids = await create(h, 3)
        found = await settled(h.client, h.headers(), ids)
    assert states(found) == {"failed": 3}
    assert {e["code"] for e in errors(found)} == {"upstream_auth_failed"}
    assert all("signature" in e["message"] for e in errors(found))
    loud = [r for r in caplog.records if r.levelno >= logging.ERROR and "credentials" in r.message]
    assert loud and "signature does not match" in loud[0].message
    assert await creates_by_task(admin) == {}


# --- a crash between the upstream create and storing its job id -----------------------------


async def test_lost_create_answer_makes_no_second_upstream_task(
    gateway: AppHarness, admin: httpx.AsyncClient
) -> None:
    await set_faults(admin, {"server_error": {"count": 3, "after": True, "routes": ["create"]}})
    ids = await create(gateway, 3)
    found = await settled(gateway.client, gateway.headers(), ids)
    assert states(found) == {"succeed": 3}
    assert await creates_by_task(admin) == dict.fromkeys(ids, 1)
    jobs = {tid: t["task_id"] for tid, t in (await upstream_tasks(admin)).items()}
    assert {tid: r["job_id"] for tid, r in found.items()} == jobs


async def test_restart_between_create_and_store_makes_no_second_upstream_task(
    tmp_path: Path, upstream: str, admin: httpx.AsyncClient
) -> None:
    settings = kling_settings(tmp_path, upstream, provider_timeout=5.0, lease_seconds=6.0)
    # The create takes effect upstream, then its answer never comes: the gateway stops
    # (worker included) while it waits.
    await set_faults(admin, {"hang": {"count": 1, "after": True, "routes": ["create"]}})
    async with AppHarness.start(settings) as first:
        [task_id] = await create(first, 1)
        async with asyncio.timeout(10):
            while True:
                if await creates_by_task(admin):
                    break
                await asyncio.sleep(0.02)
        record = (await records(first.client, first.headers(), [task_id]))[task_id]
        assert "job_id" not in record
    async with AppHarness.start(settings) as second:
        found = await settled(second.client, second.headers(), [task_id])
    assert states(found) == {"succeed": 1}
    assert await creates_by_task(admin) == {task_id: 1}


# --- Kling's callbacks to the gateway --------------------------------------------------------


async def serve_gateway(tmp_path: Path, upstream: str, **overrides: Any) -> Any:
    """Settings whose public_url is a loopback socket the gateway will be served on."""
    sock = loopback_socket()
    settings = kling_settings(tmp_path, upstream, public_url=socket_url(sock), **overrides)
    token = (await with_store(settings, lambda store: issue_token(store, "alice"))).token
    return sock, settings, {"authorization": f"Bearer {token}"}


def expected_response(task_id: str, upstream_task: dict[str, Any], public: str | None) -> Any:
    """What either path must record for an upstream task (public: the gateway's file URL)."""
    if upstream_task["task_status"] == "failed":
        error = {"code": "generation_failed", "message": upstream_task["task_status_msg"]}
        return {"success": False, "task_id": task_id, "state": "failed", "error": error}
    video = upstream_task["task_result"]["videos"][0]
    url = video["url"] if public is None else f"{public}/files/videos/{video['id']}.mp4"
    return {
        "success": True,
        "video_id": video["id"],
        "video_url": url,
        "duration": video["duration"],
        "state": "succeed",
        "task_id": task_id,
    }


async def run_and_compare(
    client: httpx.AsyncClient, headers: dict[str, str], admin: httpx.AsyncClient, public: Any
) -> dict[str, dict[str, Any]]:
    ids = []
    for prompt in ("a heron", "a heron", "a heron [fake:fail]"):
        body = {"action": "text2video", "prompt": prompt, "async": True}
        response = await client.post("/kling/videos", json=body, headers=headers)
        ids.append(response.json()["task_id"])
    found = await settled(client, headers, ids)
    truth = await upstream_tasks(admin)
    for task_id, record in found.items():
        assert record["response"] == expected_response(task_id, truth[task_id], public)
    return found


@pytest.mark.parametrize("download", [True, False], ids=["download", "no-download"])
async def test_callback_path_and_polling_path_agree(
    tmp_path: Path, upstream: str, admin: httpx.AsyncClient, fake: FakeUpstream, download: bool
) -> None:
    # Callbacks: checks are so rare that only a callback can finish the tasks in time.
    sock, settings, headers = await serve_gateway(
        tmp_path / "cb",
        upstream,
        kling_callback_secret=SECRET,
        check_interval=60,
        check_max_interval=60,
        kling_download_results=download,
    )
    public = settings.resolved_public_url if download else None
    with serve_asgi(build_app(settings), sock=sock) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            await run_and_compare(client, headers, admin, public)
    assert fake.state.counters.callbacks_sent > 0
    assert fake.state.counters.callbacks_failed == 0
    # Polling: no callback URL at all, the same answers.
    polling = kling_settings(tmp_path / "poll", upstream, kling_download_results=download)
    sent = fake.state.counters.callbacks_sent
    async with AppHarness.start(polling) as h:
        public = polling.resolved_public_url if download else None
        await run_and_compare(h.client, h.headers(), admin, public)
    assert fake.state.counters.callbacks_sent == sent


async def test_callbacks_are_guarded_and_repeats_are_harmless(
    tmp_path: Path, upstream: str, admin: httpx.AsyncClient
) -> None:
    # The fake's own callbacks go nowhere (port 9 refuses): this test posts them itself.
    settings = kling_settings(
        tmp_path, upstream, kling_callback_secret=SECRET, public_url="http://127.0.0.1:9"
    )
    async with AppHarness.start(settings) as gateway:
        await post_callbacks(gateway, admin)


async def post_callbacks(gateway: AppHarness, admin: httpx.AsyncClient) -> None:
    path = "/kling/upstream-callback"
    [task_id] = await create(gateway, 1, prompt="a fox [fake:fail]")
    found = await settled(gateway.client, gateway.headers(), [task_id])
    upstream_task = (await upstream_tasks(admin))[task_id]
    wrong = await gateway.client.post(f"{path}/not-{SECRET}", json=upstream_task)
    assert wrong.status_code == 404 and wrong.json()["error"]["code"] == "no_api"
    stale = {**upstream_task, "task_status": "processing", "task_status_msg": ""}
    for payload in (upstream_task, stale, {"data": upstream_task}):
        answer = await gateway.client.post(f"{path}/{SECRET}", json=payload)
        assert answer.json() == {"ok": True, "result": "already_finished"}
    unknown = {**upstream_task, "task_info": {"external_task_id": "no-such-task"}}
    answer = await gateway.client.post(f"{path}/{SECRET}", json=unknown)
    assert answer.json()["result"] == "unknown_task"
    garbage = await gateway.client.post(f"{path}/{SECRET}", json={"task_status": "succeed"})
    assert garbage.status_code == 400
    after = await records(gateway.client, gateway.headers(), [task_id])
    assert after == found


async def test_no_callback_route_without_a_secret(gateway: AppHarness) -> None:
    answer = await gateway.client.post("/kling/upstream-callback/anything", json={})
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "no_api"


async def test_a_callback_leaves_a_task_a_worker_holds_to_it(tmp_path: Path, upstream: str) -> None:
    # No worker here: the test holds the lease itself, as a worker mid-check would.
    settings = kling_settings(tmp_path, upstream, worker=False, kling_callback_secret=SECRET)
    path = f"/kling/upstream-callback/{SECRET}"
    async with AppHarness.start(settings) as gateway:
        [task_id] = await create(gateway, 1)
        [held] = await gateway.store.claim_due_tasks("worker-1", time.time(), 10, 60.0)
        for word in ("processing", "succeed"):
            answer = await gateway.client.post(path, json=callback_payload(task_id, word))
            assert answer.json() == {"ok": True, "result": "held_by_worker"}
        stored = await gateway.store.load_task(task_id)
        assert stored is not None
        assert (stored.lease_owner, stored.next_check_at) == ("worker-1", held.next_check_at)
        assert await gateway.store.claim_due_tasks("worker-2", time.time(), 10, 60.0) == []
        # A callback that finishes the task is written all the same.
        answer = await gateway.client.post(path, json=callback_payload(task_id, "failed"))
        assert answer.json()["result"] == "recorded"
        [record] = (await records(gateway.client, gateway.headers(), [task_id])).values()
        assert record["response"]["state"] == "failed"


def callback_payload(task_id: str, word: str) -> dict[str, Any]:
    video = {"id": "v-1", "url": "http://127.0.0.1:9/v-1.mp4", "duration": "5.1"}
    return {
        "task_id": "job-1",
        "task_status": word,
        "task_status_msg": "it failed" if word == "failed" else "",
        "task_info": {"external_task_id": task_id},
        "task_result": {"videos": [video]},
    }


# --- downloads -------------------------------------------------------------------------------


async def test_a_download_longer_than_the_call_deadline_still_finishes(
    tmp_path: Path, upstream: str, admin: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    # Every result video starts arriving after provider_timeout (1 s) has passed.
    await set_faults(admin, {"slow": {"probability": 1.0, "delay": 1.5, "routes": ["media"]}})
    settings = kling_settings(tmp_path, upstream, kling_download_timeout=30.0)
    async with AppHarness.start(settings) as h:
        ids = await create(h, 2)
        found = await settled(h.client, h.headers(), ids)
        assert states(found) == {"succeed": 2}, errors(found)
        for record in found.values():
            await assert_mp4_served(h, record["response"]["video_url"], fake)


# --- extend ------------------------------------------------------------------------------------


def extend_jobs(fake: FakeUpstream) -> int:
    return sum(task.kind == "video-extend" for task in fake.state.tasks.values())


async def source_video(h: AppHarness) -> str:
    response = await h.videos({"action": "text2video", "prompt": "a lighthouse"})
    assert response.json()["state"] == "succeed", response.text
    video_id: str = response.json()["video_id"]
    return video_id


async def extend(h: AppHarness, video_id: str, user: str = "alice") -> str:
    body = {"action": "extend", "video_id": video_id, "prompt": "and on", "async": True}
    response = await h.videos(body, user=user)
    assert response.status_code == 200, response.text
    task_id: str = response.json()["task_id"]
    return task_id


async def test_extend_of_a_video_not_yours_is_refused_without_an_upstream_call(
    gateway: AppHarness, admin: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    # docs/contract.md §6: refused at create (400, no task, no quota), never a late failure.
    await gateway.add_user("bob")
    video_id = await source_video(gateway)
    before = (await admin.get("/fake-admin/counters")).json()["requests_by_route"]
    for user, asked in (("bob", video_id), ("alice", "no-such-video")):
        body = {"action": "extend", "video_id": asked, "prompt": "and on", "async": True}
        response = await gateway.videos(body, user=user)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "bad_request"
        assert "`video_id`" in response.json()["error"]["message"]
    listed = await gateway.tasks({"action": "retrieve_batch"}, user="bob")
    assert listed.json()["count"] == 0
    assert (await admin.get("/fake-admin/counters")).json()["requests_by_route"] == before
    assert extend_jobs(fake) == 0


async def test_extend_cut_off_by_a_restart_is_created_upstream_once(
    tmp_path: Path, upstream: str, admin: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    settings = kling_settings(tmp_path, upstream)
    async with AppHarness.start(settings) as first:
        video_id = await source_video(first)
        # The extend's create takes effect upstream; its answer never comes, and the gateway
        # stops while it waits.
        await set_faults(admin, {"hang": {"count": 1, "after": True, "routes": ["create"]}})
        task_id = await extend(first, video_id)
        async with asyncio.timeout(10):
            while True:
                if extend_jobs(fake):
                    break
                await asyncio.sleep(0.02)
    async with AppHarness.start(settings) as second:
        found = await settled(second.client, second.headers(), [task_id])
    assert states(found) == {"succeed": 1}, errors(found)
    [job] = [t.task_id for t in fake.state.tasks.values() if t.kind == "video-extend"]
    assert found[task_id]["job_id"] == job
