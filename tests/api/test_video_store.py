"""Videos served from the object store (docs/deployment.md "Object storage"), over file:// and
s3:// (a real SeaweedFS): ranged reads, HEAD, deletes that remove the object, links from
--files-public-url, presigned redirects, and 503 when the store cannot be reached."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kling_gateway.providers.local.render import probe_video
from tests.harness import AppHarness, make_settings
from tests.seaweed import free_port, require_seaweed

BUCKET = "kg-api-videos"
MUG = {"action": "text2video", "prompt": "White ceramic coffee mug on marble", "duration": 5}


def storage(backend: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Settings for ``backend``; for s3 the AWS_* variables the runtime reads are set."""
    if backend == "file":
        return {}
    server = require_seaweed()
    server.create_bucket(BUCKET)
    for name, value in server.environ.items():
        monkeypatch.setenv(name, value)
    return {
        "storage_url": f"s3://{BUCKET}/{secrets.token_hex(6)}",
        "s3_endpoint_url": server.endpoint,
    }


@pytest.fixture(params=["file", "s3"])
async def gateway(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[AppHarness]:
    settings = make_settings(
        tmp_path, worker=True, local_delay=0.05, **storage(request.param, monkeypatch)
    )
    async with AppHarness.start(settings) as harness:
        yield harness


async def render(gateway: AppHarness) -> tuple[str, str]:
    """A finished video's id and its path on the gateway."""
    response = await gateway.videos(MUG)
    body = response.json()
    assert body["state"] == "succeed", body
    public = gateway.settings.resolved_public_url
    return body["video_id"], body["video_url"].removeprefix(public)


async def test_the_whole_video_then_ranges(gateway: AppHarness, tmp_path: Path) -> None:
    _, path = await render(gateway)
    whole = await gateway.client.get(path)
    assert whole.status_code == 200
    assert whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-type"] == "video/mp4"
    assert int(whole.headers["content-length"]) == len(whole.content)
    local = tmp_path / "got.mp4"
    local.write_bytes(whole.content)
    assert probe_video(local).frames > 0
    size, data = len(whole.content), whole.content

    first = await gateway.client.get(path, headers={"range": "bytes=0-99"})
    assert first.status_code == 206
    assert first.headers["content-range"] == f"bytes 0-99/{size}"
    assert first.content == data[:100]
    tail = await gateway.client.get(path, headers={"range": "bytes=-10"})
    assert tail.status_code == 206
    assert tail.headers["content-range"] == f"bytes {size - 10}-{size - 1}/{size}"
    assert tail.content == data[-10:]
    rest = await gateway.client.get(path, headers={"range": f"bytes={size - 5}-"})
    assert (rest.status_code, rest.content) == (206, data[-5:])
    # Several ranges are not honoured: the whole file is an allowed answer (RFC 9110 section 14.2).
    several = await gateway.client.get(path, headers={"range": "bytes=0-1,5-6"})
    assert (several.status_code, several.content) == (200, data)


async def test_a_range_past_the_end_is_416_in_the_error_shape(gateway: AppHarness) -> None:
    _, path = await render(gateway)
    size = int((await gateway.client.head(path)).headers["content-length"])
    response = await gateway.client.get(path, headers={"range": f"bytes={size}-"})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{size}"
    body = response.json()
    assert body["success"] is False
    assert body["error"]["code"] == "range_not_satisfiable"
    assert body["trace_id"] == response.headers["x-trace-id"]


async def test_head_answers_the_size_without_a_body(gateway: AppHarness) -> None:
    _, path = await render(gateway)
    whole = await gateway.client.get(path)
    head = await gateway.client.head(path)
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(whole.content))
    assert head.content == b""


async def test_delete_removes_the_object_and_its_url_is_refused(gateway: AppHarness) -> None:
    response = await gateway.videos(MUG)
    task_id, video_id = response.json()["task_id"], response.json()["video_id"]
    path = f"/files/videos/{video_id}.mp4"
    store = gateway.app.ctx.files
    assert await store.stat(video_id) is not None
    deleted = await gateway.tasks({"action": "delete", "id": task_id})
    assert deleted.json()["deleted"] is True
    assert await store.stat(video_id) is None
    response = await gateway.client.get(path)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_the_object_is_really_in_the_bucket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path, worker=True, local_delay=0.05, **storage("s3", monkeypatch))
    prefix = settings.storage_url.removeprefix(f"s3://{BUCKET}/")
    async with AppHarness.start(settings) as gateway:
        video_id, _ = await render(gateway)
        assert require_seaweed().list_keys(BUCKET, prefix + "/") == [f"{prefix}/{video_id}.mp4"]
    # Nothing of it on the local disk but the database: no shared directory is needed.
    assert not settings.videos_dir.exists()


async def test_links_use_the_files_public_url(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, worker=True, local_delay=0.05, files_public_url="https://cdn.example/kg/"
    )
    async with AppHarness.start(settings) as gateway:
        body = (await gateway.videos(MUG)).json()
    assert body["video_url"] == f"https://cdn.example/kg/files/videos/{body['video_id']}.mp4"


async def test_presign_redirects_to_the_bucket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(
        tmp_path, worker=True, local_delay=0.05, storage_presign=True, **storage("s3", monkeypatch)
    )
    async with AppHarness.start(settings) as gateway:
        _, path = await render(gateway)
        response = await gateway.client.get(path)
        assert response.status_code == 307
        assert response.headers["location"].startswith(require_seaweed().endpoint)
        async with httpx.AsyncClient() as outside:
            video = await outside.get(response.headers["location"])
        assert video.status_code == 200 and video.content[4:8] == b"ftyp"
        missing = await gateway.client.get("/files/videos/nothing.mp4")
        assert missing.status_code == 404


async def test_an_unreachable_store_is_503_in_the_error_shape(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    overrides = storage("s3", monkeypatch)
    overrides["s3_endpoint_url"] = f"http://127.0.0.1:{free_port()}"  # nothing listens
    async with AppHarness.start(make_settings(tmp_path, worker=False, **overrides)) as gateway:
        response = await gateway.client.get("/files/videos/some-video.mp4")
    assert response.status_code == 503
    body = response.json()
    assert body["error"]["code"] == "service_unavailable"
    assert body["trace_id"] == response.headers["x-trace-id"]
    assert "retry-after" in response.headers
    assert "127.0.0.1" not in response.text  # where the store is stays private
