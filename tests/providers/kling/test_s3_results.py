"""The Kling provider's result copy onto s3:// object storage (a real SeaweedFS): the video
Kling produced is streamed into the bucket, byte for byte, with nothing left on the worker's
disk; the record links the stable path; a recheck finds the object and downloads nothing."""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx

from kling_gateway.fake_upstream import FakeUpstream
from kling_gateway.infra.files import VideoFiles
from kling_gateway.infra.objects import open_object_store, read_all
from kling_gateway.protocol.task import TaskState
from kling_gateway.providers.kling.provider import KlingProvider, KlingProviderConfig
from kling_gateway.storage.base import Store
from tests.providers.kling.test_against_fake import (
    GATEWAY_PUBLIC,
    client_config,
    counters,
    fake_app,
    finish,
    make_task,
    store,
    submit,
)
from tests.seaweed import require_seaweed

__all__ = ["fake_app", "store"]  # fixtures shared with test_against_fake
BUCKET = "kg-kling-results"


async def test_the_result_is_copied_into_the_bucket(
    upstream: str, tmp_path: Path, store: Store, fake: FakeUpstream, admin: httpx.AsyncClient
) -> None:
    server = require_seaweed()
    server.create_bucket(BUCKET)
    prefix = secrets.token_hex(6)
    machine = tmp_path / "worker"
    objects = open_object_store(
        f"s3://{BUCKET}/{prefix}",
        default_dir=machine / "videos",
        s3_endpoint_url=server.endpoint,
        environ=server.environ,
    )
    files = VideoFiles(
        machine / "videos", GATEWAY_PUBLIC, objects=objects, scratch=machine / "scratch"
    )
    provider = KlingProvider(
        KlingProviderConfig(client=client_config(upstream)), store=store, files=files
    )
    try:
        task = make_task(action="text2video", prompt="a cat", duration=5.0)
        await submit(provider, task)
        status = await finish(provider, task)
        assert status.state is TaskState.SUCCEED and status.video is not None
        video_id = status.video.video_id
        assert status.video.video_url == f"/files/videos/{video_id}.mp4"
        assert server.list_keys(BUCKET, prefix + "/") == [f"{prefix}/{video_id}.mp4"]
        upstream_url = (status.provider_data or {})["upstream_url"]
        async with httpx.AsyncClient() as http:
            original = (await http.get(upstream_url)).content
        assert await read_all(objects, f"{video_id}.mp4") == original
        assert [p for p in machine.rglob("*") if p.is_file()] == []  # nothing kept locally
        downloads = (await counters(admin))["requests_by_route"]["media"]

        again = await provider.materialize(await provider.check(task))
        assert again.video is not None and again.video.video_id == video_id
        assert (await counters(admin))["requests_by_route"]["media"] == downloads
    finally:
        await provider.aclose()
        await objects.aclose()
