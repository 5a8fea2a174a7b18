"""KlingClient and KlingProvider against the fake upstream served by a real uvicorn."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import httpx
import msgspec
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kling_gateway.domain.ids import new_object_id, new_task_id, new_trace_id
from kling_gateway.domain.outcomes import ProviderError, Status
from kling_gateway.domain.task import Task
from kling_gateway.domain.transitions import mark_submit
from kling_gateway.domain.videos import params_from_stored
from kling_gateway.fake_upstream import FakeUpstream, FakeUpstreamConfig, create_fake_upstream
from kling_gateway.fake_upstream.config import SAFETY_MESSAGE
from kling_gateway.infra.files import VideoFiles
from kling_gateway.protocol.task import TaskState
from kling_gateway.providers.base import Provider
from kling_gateway.providers.kling.client import (
    MAX_RESPONSE_BYTES,
    KlingClient,
    KlingClientConfig,
)
from kling_gateway.providers.kling.mapping import MAX_MESSAGE_CHARS
from kling_gateway.providers.kling.provider import KlingProvider, KlingProviderConfig
from kling_gateway.storage.base import Store
from tests.harness import insert_finished, open_sqlite_store
from tests.servers import serve_asgi

AK = "test-access-key"
SK = "test-secret-key-0123456789abcdef0123"
GATEWAY_PUBLIC = "http://gateway.test"


# --- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture
def fake_app() -> Starlette:
    config = FakeUpstreamConfig(
        access_key=AK, secret_key=SK, processing_after=0.02, finish_after=(0.1, 0.25), seed=7
    )
    return create_fake_upstream(config)


def client_config(upstream: str, **overrides: Any) -> KlingClientConfig:
    settings: dict[str, Any] = {"read_timeout": 5.0, **overrides}
    return KlingClientConfig(access_key=AK, secret_key=SK, base_url=upstream, **settings)


@pytest.fixture
async def client(upstream: str) -> AsyncIterator[KlingClient]:
    kling = KlingClient(client_config(upstream))
    yield kling
    await kling.aclose()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    db = await open_sqlite_store(tmp_path)
    yield db
    await db.close()


def make_provider(upstream: str, tmp_path: Path, store: Store, **overrides: Any) -> KlingProvider:
    settings: dict[str, Any] = {"client": client_config(upstream), **overrides}
    files = VideoFiles(tmp_path / "videos", GATEWAY_PUBLIC)
    return KlingProvider(KlingProviderConfig(**settings), store=store, files=files)


@pytest.fixture
async def provider(upstream: str, tmp_path: Path, store: Store) -> AsyncIterator[KlingProvider]:
    kling = make_provider(upstream, tmp_path, store)
    yield kling
    await kling.aclose()


def make_task(**request: Any) -> Task:
    return Task(
        id=new_task_id(),
        object_id=new_object_id(),
        user_id="user-1",
        application_id="app-1",
        credential_id="cred-1",
        trace_id=new_trace_id(),
        request=request,
        params=params_from_stored(request),
        created_at=time.time(),
    )


async def submit(provider: KlingProvider, task: Task) -> None:
    submission = await provider.submit(task)
    task.job_id = submission.job_id
    task.provider_data.update(submission.provider_data)


async def finish(provider: KlingProvider, task: Task, *, polls: int = 200) -> Status:
    """Check until the job ends, then copy its video as the worker would."""
    for _ in range(polls):
        status = await provider.check(task)
        if status.state.is_terminal:
            return await provider.materialize(status)
        await asyncio.sleep(0.03)
    raise AssertionError("the task did not finish")


async def set_faults(admin: httpx.AsyncClient, faults: dict[str, Any]) -> None:
    response = await admin.post("/fake-admin/faults", json=faults)
    assert response.status_code == 200, response.text


async def counters(admin: httpx.AsyncClient) -> dict[str, Any]:
    doc: dict[str, Any] = (await admin.get("/fake-admin/counters")).json()
    return doc


def stored_body(fake: FakeUpstream, job_id: str) -> dict[str, Any]:
    return dict(fake.state.tasks[job_id].request.body)


def assert_mp4(path: Path) -> None:
    with av.open(io.BytesIO(path.read_bytes())) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.width, stream.height) == ("h264", 64, 64)


# --- the happy paths of each mapping ---------------------------------------------------------


async def test_text2video_end_to_end_downloads(
    provider: KlingProvider, fake: FakeUpstream, admin: httpx.AsyncClient, tmp_path: Path
) -> None:
    task = make_task(action="text2video", prompt="a cat", duration=5.0, mode="std")
    await submit(provider, task)
    body = stored_body(fake, task.job_id or "")
    assert body["external_task_id"] == task.id
    assert body["duration"] == "5"
    status = await finish(provider, task)
    assert status.state is TaskState.SUCCEED and status.video is not None
    video = status.video
    assert video.duration == "5.1"
    assert video.video_url == f"/files/videos/{video.video_id}.mp4"  # resolved when sent
    assert (status.provider_data or {})["upstream_url"].endswith(f"/fake-media/{task.job_id}.mp4")
    assert_mp4(tmp_path / "videos" / f"{video.video_id}.mp4")
    assert (await counters(admin))["creates_by_external_id"] == {task.id: 1}


async def test_pass_through_when_not_downloading(
    upstream: str, tmp_path: Path, store: Store
) -> None:
    provider = make_provider(upstream, tmp_path, store, download_results=False, poll_interval=0.5)
    as_protocol: Provider = provider  # KlingProvider satisfies the worker's Provider protocol
    assert as_protocol.name == "kling"
    try:
        task = make_task(action="text2video", prompt="p")
        await submit(provider, task)
        first = await provider.check(task)
        assert first.state is TaskState.PROCESSING and first.next_check_in == 0.5
        status = await finish(provider, task)
        assert status.video is not None
        assert status.video.video_url.startswith(upstream)
        assert not (tmp_path / "videos").exists()
    finally:
        await provider.aclose()


async def test_image2video_and_v3_fields(provider: KlingProvider, fake: FakeUpstream) -> None:
    task = make_task(
        action="image2video",
        model="kling-v3",
        prompt="p",
        duration=7,
        mode="pro",  # 4k takes no camera_control (docs/contract.md §6)
        aspect_ratio="9:16",
        cfg_scale=0.3,
        generate_audio=True,
        camera_control={"type": "simple", "config": {"pan": -0.5}},
        start_image_url="https://img.example/start.png",
        end_image_url="https://img.example/end.png",
        callback_url="https://client.example/hook",
    )
    await submit(provider, task)
    body = stored_body(fake, task.job_id or "")
    assert body["model_name"] == "kling-v3"
    assert (body["duration"], body["sound"], body["mode"]) == ("7", "on", "pro")
    assert body["image"] == "https://img.example/start.png"
    assert body["image_tail"] == "https://img.example/end.png"
    assert body["camera_control"]["config"]["pan"] == -5
    assert "callback_url" not in body  # the client's URL is never sent upstream
    status = await finish(provider, task)
    assert status.video is not None and status.video.duration == "7.1"


async def test_v2_model_drops_cfg_scale(provider: KlingProvider, fake: FakeUpstream) -> None:
    task = make_task(action="text2video", model="kling-v2-6", prompt="p", cfg_scale=0.5)
    await submit(provider, task)
    assert "cfg_scale" not in stored_body(fake, task.job_id or "")


async def finished_video(provider: KlingProvider, store: Store, task: Task) -> str:
    """Run ``task`` to its video and store it as its user's (what an extend may continue)."""
    await submit(provider, task)
    done = await finish(provider, task)
    assert done.video is not None
    await insert_finished(store, task, video_id=done.video.video_id)
    return done.video.video_id


async def test_extend_uses_the_upstream_video_id(provider: KlingProvider, store: Store) -> None:
    video_id = await finished_video(
        provider, store, make_task(action="text2video", prompt="p", duration=10)
    )
    extend = make_task(action="extend", video_id=video_id, prompt="more")
    await submit(provider, extend)
    status = await finish(provider, extend)
    assert status.state is TaskState.SUCCEED and status.video is not None
    assert status.video.duration == "14.1"


@pytest.mark.parametrize("owner", ["user-2", "user-1"], ids=["foreign", "unknown"])
async def test_extend_of_a_video_not_ours_sends_nothing(
    provider: KlingProvider, store: Store, admin: httpx.AsyncClient, owner: str
) -> None:
    video_id = await finished_video(provider, store, make_task(action="text2video", prompt="p"))
    asked = video_id if owner == "user-2" else "no-such-video"
    extend = make_task(action="extend", video_id=asked, prompt="more")
    extend.user_id = owner
    before = await counters(admin)
    with pytest.raises(ProviderError) as info:
        await provider.submit(extend)
    assert (info.value.code, info.value.retryable) == ("video_not_found", False)
    assert await counters(admin) == before


async def test_interrupted_extend_finds_its_job_again(
    provider: KlingProvider, store: Store, admin: httpx.AsyncClient, fake: FakeUpstream
) -> None:
    video_id = await finished_video(provider, store, make_task(action="text2video", prompt="p"))
    # Another extend of the same video, made before ours started: never taken for ours.
    await submit(provider, make_task(action="extend", video_id=video_id, prompt="older"))
    extend = make_task(action="extend", video_id=video_id, prompt="more")
    await set_faults(admin, {"server_error": {"count": 1, "after": True, "routes": ["create"]}})
    mark_submit(extend, time.time() + 0.001)
    with pytest.raises(ProviderError):
        await provider.submit(extend)  # created upstream, the answer lost
    [created] = [t for t in fake.state.tasks.values() if t.request.prompt == "more"]
    mark_submit(extend, time.time())
    again = await provider.submit(extend)
    assert (again.job_id, again.provider_data.get("reused")) == (created.task_id, True)
    assert sum(t.kind == "video-extend" for t in fake.state.tasks.values()) == 2


# --- errors --------------------------------------------------------------------------------


async def test_unknown_model_is_not_found(provider: KlingProvider) -> None:
    # The API refuses such a model; one it let through must still fail cleanly upstream.
    task = make_task(action="text2video", prompt="p")
    assert task.params is not None
    task.params = msgspec.structs.replace(task.params, model="kling-v9")
    with pytest.raises(ProviderError) as info:
        await provider.submit(task)
    assert (info.value.code, info.value.retryable) == ("upstream_not_found", False)


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("text2video", {"prompt": "p", "duration": "7"}),
        ("text2video", {"prompt": "p", "duration": 5}),
        ("text2video", {"prompt": "p", "mode": "4k"}),
        ("text2video", {"prompt": "p", "aspect_ratio": "4:3"}),
        ("text2video", {"prompt": "x" * 2501}),
        ("text2video", {"prompt": "p", "negative_prompt": "x" * 2501}),
        ("text2video", {"prompt": "p", "cfg_scale": 1.5}),
        ("text2video", {"prompt": "p", "model_name": "kling-v2-master", "cfg_scale": 0.5}),
        ("text2video", {"prompt": "p", "sound": "on"}),
        ("text2video", {"prompt": "p", "camera_control": {"type": "simple", "config": {}}}),
        (
            "text2video",
            {"prompt": "p", "camera_control": {"type": "simple", "config": {"pan": 1, "tilt": 2}}},
        ),
        (
            "text2video",
            {"prompt": "p", "camera_control": {"type": "simple", "config": {"zoom": 11}}},
        ),
        ("text2video", {"prompt": "p", "camera_control": {"type": "spin"}}),
        ("text2video", {"prompt": "p", "model": "kling-v1"}),
        ("text2video", {}),
        ("text2video", {"prompt": "p", "callback_url": "ftp://x"}),
        ("image2video", {"prompt": "p"}),
        ("image2video", {"prompt": "p", "image": "data:image/png;base64,AAAA"}),
        ("video-extend", {"prompt": "p"}),
        ("video-extend", {"video_id": "no-such-video"}),
        ("video-extend", {"video_id": "v", "external_task_id": "x"}),
    ],
)
async def test_fake_rejects_invalid_fields(
    client: KlingClient, kind: str, body: dict[str, Any]
) -> None:
    with pytest.raises(ProviderError) as info:
        await client.create(kind, body)
    assert (info.value.code, info.value.retryable) == ("invalid_request", False)


async def test_fake_accepts_raw_base64_image(client: KlingClient) -> None:
    data = await client.create("image2video", {"image": "iVBORw0KGgo=", "prompt": "p"})
    assert data["task_status"] == "submitted"


async def test_duplicate_external_task_id_is_rejected(client: KlingClient) -> None:
    body = {"prompt": "p", "external_task_id": "dup-1"}
    await client.create("text2video", body)
    with pytest.raises(ProviderError) as info:
        await client.create("text2video", body)
    assert info.value.code == "invalid_request"


async def test_5xx_is_retryable_and_resubmit_works(
    provider: KlingProvider, admin: httpx.AsyncClient
) -> None:
    await set_faults(admin, {"server_error": {"count": 1, "routes": ["create"]}})
    task = make_task(action="text2video", prompt="p")
    with pytest.raises(ProviderError) as info:
        await provider.submit(task)
    assert (info.value.code, info.value.retryable) == ("upstream_unavailable", True)
    await submit(provider, task)
    seen = await counters(admin)
    assert seen["creates_by_external_id"] == {task.id: 1}
    assert seen["faults_injected"] == {"server_error": 1}


async def test_rate_limit_is_retryable_with_retry_after(
    provider: KlingProvider, admin: httpx.AsyncClient
) -> None:
    await set_faults(admin, {"rate_limit": {"count": 1, "retry_after": 3}})
    with pytest.raises(ProviderError) as info:
        await provider.submit(make_task(action="text2video", prompt="p"))
    error = info.value
    assert (error.code, error.retryable, error.retry_after) == ("upstream_rate_limited", True, 3.0)


async def test_content_safety_on_create_fails_with_message(provider: KlingProvider) -> None:
    with pytest.raises(ProviderError) as info:
        await provider.submit(make_task(action="text2video", prompt="[fake:unsafe] p"))
    error = info.value
    assert (error.code, error.retryable, error.message) == (
        "content_policy_violation",
        False,
        SAFETY_MESSAGE,
    )


async def test_content_safety_fault_via_admin(
    provider: KlingProvider, admin: httpx.AsyncClient
) -> None:
    await set_faults(admin, {"create_safety": {"count": 1, "message": "nope"}})
    with pytest.raises(ProviderError) as info:
        await provider.submit(make_task(action="text2video", prompt="p"))
    assert (info.value.code, info.value.message) == ("content_policy_violation", "nope")


async def test_task_fails_later_with_safety_message(provider: KlingProvider) -> None:
    task = make_task(action="text2video", prompt="[fake:unsafe-later] p")
    await submit(provider, task)
    status = await finish(provider, task)
    assert status.state is TaskState.FAILED
    assert (status.error_code, status.error_message) == ("generation_failed", SAFETY_MESSAGE)


async def test_auth_failure_fails_fast_after_one_refresh(
    upstream: str, admin: httpx.AsyncClient
) -> None:
    bad = KlingClient(KlingClientConfig(access_key=AK, secret_key="wrong", base_url=upstream))
    try:
        with pytest.raises(ProviderError) as info:
            await bad.get("text2video", "123")
    finally:
        await bad.aclose()
    assert (info.value.code, info.value.retryable) == ("upstream_auth_failed", False)
    assert (await counters(admin))["requests_by_route"]["get"] == 2


async def test_token_refreshed_once_after_401(upstream: str, admin: httpx.AsyncClient) -> None:
    times = iter([time.time() + 600.0])  # first token: not yet valid upstream (1003)

    def clock() -> float:
        return next(times, time.time())

    kling = KlingClient(client_config(upstream), clock=clock)
    try:
        assert await kling.list("text2video") == []
    finally:
        await kling.aclose()
    assert (await counters(admin))["requests_by_route"]["list"] == 2


async def test_malformed_json_is_retryable(
    provider: KlingProvider, admin: httpx.AsyncClient
) -> None:
    task = make_task(action="text2video", prompt="p")
    await submit(provider, task)
    await set_faults(admin, {"malformed_json": {"count": 1, "routes": ["get"]}})
    with pytest.raises(ProviderError) as info:
        await provider.check(task)
    assert (info.value.code, info.value.retryable) == ("upstream_bad_response", True)
    assert (await finish(provider, task)).state is TaskState.SUCCEED


async def test_a_huge_answer_is_cut_off_at_the_cap(
    provider: KlingProvider, admin: httpx.AsyncClient
) -> None:
    """A 64 MB answer (streamed, no Content-Length) is read only up to the 4 MB cap."""
    task = make_task(action="text2video", prompt="p")
    await submit(provider, task)
    huge = {"count": 1, "routes": ["get"], "size": 64 * 1024 * 1024}
    await set_faults(admin, {"huge_body": huge})
    with pytest.raises(ProviderError) as info:
        await provider.check(task)
    assert (info.value.code, info.value.retryable) == ("upstream_bad_response", True)
    assert f"over {MAX_RESPONSE_BYTES} bytes" in info.value.message
    assert (await counters(admin))["faults_injected"] == {"huge_body": 1}
    assert (await finish(provider, task)).state is TaskState.SUCCEED


async def test_an_announced_huge_answer_is_refused_before_reading(
    upstream: str, tmp_path: Path, store: Store
) -> None:
    # A cap below one ordinary answer: the Content-Length alone says it is too big.
    config = client_config(upstream, max_response_bytes=10)
    provider = make_provider(upstream, tmp_path, store, client=config)
    try:
        with pytest.raises(ProviderError) as info:
            await provider.submit(make_task(action="text2video", prompt="p"))
    finally:
        await provider.aclose()
    assert (info.value.code, info.value.retryable) == ("upstream_bad_response", True)
    assert "over 10 bytes" in info.value.message


async def test_hung_response_times_out(
    upstream: str, admin: httpx.AsyncClient, tmp_path: Path, store: Store
) -> None:
    await set_faults(admin, {"hang": {"count": 1}})
    config = client_config(upstream, read_timeout=0.3)
    provider = make_provider(upstream, tmp_path, store, client=config)
    try:
        with pytest.raises(ProviderError) as info:
            await provider.submit(make_task(action="text2video", prompt="p"))
    finally:
        await provider.aclose()
    assert (info.value.code, info.value.retryable) == ("upstream_timeout", True)


async def test_slow_response_still_answers(
    provider: KlingProvider, admin: httpx.AsyncClient
) -> None:
    await set_faults(admin, {"slow": {"count": 1, "delay": 0.1}})
    await submit(provider, make_task(action="text2video", prompt="p"))
    assert (await counters(admin))["faults_injected"] == {"slow": 1}


async def test_invalid_fault_config_is_refused(admin: httpx.AsyncClient) -> None:
    response = await admin.post("/fake-admin/faults", json={"earthquake": {}})
    assert response.status_code == 400
    response = await admin.post("/fake-admin/faults", json={"hang": {"probability": 2}})
    assert response.status_code == 400


# --- no second paid generation ---------------------------------------------------------------


@pytest.mark.parametrize("fault", ["server_error", "hang", "malformed_json"])
async def test_lost_create_answer_is_found_by_external_id(
    upstream: str, admin: httpx.AsyncClient, tmp_path: Path, store: Store, fault: str
) -> None:
    rule: dict[str, Any] = {"count": 1, "routes": ["create"]}
    if fault != "malformed_json":
        rule["after"] = True  # the task is created, then the answer is lost
    await set_faults(admin, {fault: rule})
    provider = make_provider(
        upstream, tmp_path, store, client=client_config(upstream, read_timeout=0.5)
    )
    task = make_task(action="text2video", prompt="p")
    try:
        with pytest.raises(ProviderError) as info:
            await provider.submit(task)
        assert info.value.retryable
    finally:
        await provider.aclose()
    # The retry, as the next worker run makes it, with the usual deadline: the short one is
    # for the hang alone (on a loaded machine it once cut the lookup short too).
    provider = make_provider(upstream, tmp_path, store)
    try:
        submission = await provider.submit(task)
        assert submission.provider_data.get("reused") is True
        task.job_id = submission.job_id
        task.provider_data.update(submission.provider_data)
        assert (await finish(provider, task)).state is TaskState.SUCCEED
    finally:
        await provider.aclose()
    seen = await counters(admin)
    assert seen["creates_by_external_id"] == {task.id: 1}
    assert seen["requests_by_route"]["create"] == 1


async def test_get_by_external_id_unknown_is_none(client: KlingClient) -> None:
    assert await client.get_by_external_id("text2video", new_task_id()) is None


async def test_get_by_external_id_is_per_kind(client: KlingClient) -> None:
    await client.create("text2video", {"prompt": "p", "external_task_id": "k-1"})
    assert await client.get_by_external_id("text2video", "k-1") is not None
    assert await client.get_by_external_id("image2video", "k-1") is None


# --- many tasks: the list endpoint -----------------------------------------------------------


async def test_list_paging(client: KlingClient) -> None:
    for index in range(3):
        await client.create("text2video", {"prompt": f"p{index}"})
    first = await client.list("text2video", page_num=1, page_size=2)
    second = await client.list("text2video", page_num=2, page_size=2)
    assert len(first) == 2 and len(second) == 1
    assert int(first[0]["task_id"]) > int(first[1]["task_id"]) > int(second[0]["task_id"])
    with pytest.raises(ValueError):
        await client.list("text2video", page_size=501)


async def test_fake_rejects_bad_page_size(upstream: str, client: KlingClient) -> None:
    # bypass the client's own check to see the fake's answer
    response = await client.http.get(
        f"{upstream}/v1/videos/text2video",
        params={"pageSize": "501"},
        headers={"Authorization": client._tokens.authorization()},
    )
    assert (response.status_code, response.json()["code"]) == (400, 1201)


# --- callbacks from the upstream -------------------------------------------------------------


async def test_callbacks_are_sent_on_every_status_change(
    upstream: str, admin: httpx.AsyncClient, tmp_path: Path, store: Store
) -> None:
    received: list[dict[str, Any]] = []

    async def hook(request: Request) -> Response:
        received.append(await request.json())
        return Response(status_code=204)

    receiver = Starlette(routes=[Route("/kling-callback", hook, methods=["POST"])])
    with serve_asgi(receiver) as receiver_url:
        provider = make_provider(
            upstream, tmp_path, store, callback_url=f"{receiver_url}/kling-callback"
        )
        task = make_task(action="text2video", prompt="p", callback_url="https://client.example/x")
        try:
            await submit(provider, task)
            for _ in range(200):
                if any(doc.get("task_status") == "succeed" for doc in received):
                    break
                await asyncio.sleep(0.03)
            words = {doc["task_status"] for doc in received}
            assert words == {"submitted", "processing", "succeed"}
            final = next(doc for doc in received if doc["task_status"] == "succeed")
            external_id, job_id, status = provider.status_from_callback(final)
            assert (external_id, job_id, status.state) == (task.id, task.job_id, TaskState.SUCCEED)
            assert status.video is not None
            ours = await provider.materialize(status)
            assert ours.video is not None and ours.video.video_url.startswith("/files/videos/")
        finally:
            await provider.aclose()
    assert (await counters(admin))["callbacks_sent"] == 3


async def test_failed_callbacks_are_counted(client: KlingClient, fake: FakeUpstream) -> None:
    await client.create("text2video", {"prompt": "p", "callback_url": "http://127.0.0.1:9/x"})
    for _ in range(200):
        if fake.state.counters.callbacks_failed >= 3:
            break
        await asyncio.sleep(0.03)
    assert fake.state.counters.callbacks_failed == 3


# --- results -------------------------------------------------------------------------------


async def test_download_size_cap(upstream: str, tmp_path: Path, store: Store) -> None:
    provider = make_provider(upstream, tmp_path, store, max_download_bytes=100)
    try:
        task = make_task(action="text2video", prompt="p")
        await submit(provider, task)
        with pytest.raises(ProviderError) as info:
            await finish(provider, task)
    finally:
        await provider.aclose()
    assert (info.value.code, info.value.retryable) == ("result_too_large", False)
    assert list((tmp_path / "videos").glob("*")) == []


async def test_unreachable_upstream_is_retryable(tmp_path: Path, store: Store) -> None:
    provider = make_provider("http://127.0.0.1:9", tmp_path, store)
    try:
        with pytest.raises(ProviderError) as info:
            await provider.submit(make_task(action="text2video", prompt="p"))
    finally:
        await provider.aclose()
    assert (info.value.code, info.value.retryable) == ("upstream_unreachable", True)


# --- what the upstream may not do ------------------------------------------------------------

HTML_PAGE = (
    "<html><head><title>502 Bad Gateway</title><style>body { color: red }</style>"
    "<script>var secret = 1;</script></head><body><h1>Bad &amp; broken</h1>"
    + "<p>upstream detail</p>" * 250
    + "</body></html>"
)


async def test_upstream_error_messages_are_stripped_of_markup_and_cut(
    provider: KlingProvider, admin: httpx.AsyncClient
) -> None:
    assert len(HTML_PAGE) > 5000
    await set_faults(admin, {"create_safety": {"count": 1, "message": HTML_PAGE}})
    with pytest.raises(ProviderError) as info:
        await provider.submit(make_task(action="text2video", prompt="p"))
    message = info.value.message
    assert info.value.code == "content_policy_violation"
    assert message.startswith("502 Bad Gateway Bad & broken upstream detail")
    assert len(message) <= MAX_MESSAGE_CHARS and message.endswith("…")
    assert "<" not in message and "secret" not in message and "color" not in message


async def test_a_failed_tasks_message_is_stripped_and_cut(
    provider: KlingProvider, admin: httpx.AsyncClient
) -> None:
    await set_faults(admin, {"task_failure": {"count": 1, "message": HTML_PAGE}})
    task = make_task(action="text2video", prompt="p")
    await submit(provider, task)
    status = await finish(provider, task)
    assert status.state is TaskState.FAILED
    message = status.error_message or ""
    assert message.startswith("502 Bad Gateway Bad & broken")
    assert len(message) <= MAX_MESSAGE_CHARS and "<" not in message


@dataclass
class Internal:
    """A service on another loopback port, which result downloads must not reach."""

    url: str = ""
    hits: int = 0


INTERNAL_CONTENT = b"internal: not for the public"


@pytest.fixture
def internal() -> Iterator[Internal]:
    seen = Internal()

    async def anything(request: Request) -> Response:
        seen.hits += 1
        return Response(INTERNAL_CONTENT, media_type="video/mp4")

    app = Starlette(routes=[Route("/{path:path}", anything)])
    with serve_asgi(app) as url:
        seen.url = url
        yield seen


@pytest.mark.parametrize("allow_private", [False, True])
async def test_a_result_url_on_another_loopback_port_is_refused(
    tmp_path: Path, store: Store, internal: Internal, allow_private: bool
) -> None:
    """The upstream (trusted: it is --kling-base-url) answers with result links that point at
    another local service: its content must not be copied into public /files."""
    config = FakeUpstreamConfig(
        access_key=AK,
        secret_key=SK,
        processing_after=0.01,
        finish_after=(0.05, 0.1),
        public_url=internal.url,
    )
    with serve_asgi(create_fake_upstream(config)) as upstream:
        provider = make_provider(upstream, tmp_path, store, download_allow_private=allow_private)
        task = make_task(action="text2video", prompt="p")
        try:
            await submit(provider, task)
            if allow_private:  # the operator allowed private addresses: copied as asked
                status = await finish(provider, task)
                assert status.video is not None
                copied = tmp_path / "videos" / f"{status.video.video_id}.mp4"
                assert copied.read_bytes() == INTERNAL_CONTENT
                return
            with pytest.raises(ProviderError) as info:
                await finish(provider, task)
        finally:
            await provider.aclose()
    assert (info.value.code, info.value.retryable) == ("download_refused", False)
    assert "127.0.0.1 is not public" in info.value.message
    assert internal.hits == 0
    assert not (tmp_path / "videos").exists() or list((tmp_path / "videos").iterdir()) == []
