"""The local provider over a shared S3 store (a real SeaweedFS): two workers on separate
disks, one renders and the other extends; and a store that cannot be reached is a retryable
failure (the worker backs off), never a failed task."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from kling_gateway.domain.outcomes import ProviderError
from kling_gateway.infra.files import VideoFiles
from kling_gateway.infra.objects import open_object_store, read_all
from kling_gateway.protocol.task import TaskState
from kling_gateway.providers.local.render import probe_video
from kling_gateway.storage.sqlite import SQLiteStore
from tests.providers.local.test_provider import (
    FPS,
    PUBLIC,
    Clock,
    make_task,
    provider,
    record_success,
    submit_and_check,
    text_request,
)
from tests.seaweed import SeaweedS3, free_port, require_seaweed

BUCKET = "kg-local-provider"


def s3_files(machine: Path, server: SeaweedS3, prefix: str, endpoint: str = "") -> VideoFiles:
    """What one machine's worker has: its own disk, the shared bucket."""
    objects = open_object_store(
        f"s3://{BUCKET}/{prefix}",
        default_dir=machine / "videos",
        s3_endpoint_url=endpoint or server.endpoint,
        environ=server.environ,
    )
    return VideoFiles(
        root=machine / "videos", public_url=PUBLIC, objects=objects, scratch=machine / "scratch"
    )


def files_on(machine: Path) -> list[Path]:
    return [p for p in machine.rglob("*") if p.is_file()]


async def test_a_video_rendered_on_one_machine_is_extended_on_another(
    tmp_path: Path,
    store: SQLiteStore,
) -> None:
    server = require_seaweed()
    server.create_bucket(BUCKET)
    prefix = secrets.token_hex(6)
    machine_a, machine_b = tmp_path / "a", tmp_path / "b"
    files_a, files_b = s3_files(machine_a, server, prefix), s3_files(machine_b, server, prefix)
    worker_a = provider(files_a, store, Clock())
    worker_b = provider(files_b, store, Clock())

    source_task = make_task(text_request(model="kling-v3", duration=3, aspect_ratio="9:16"))
    source = await submit_and_check(worker_a, source_task)
    await record_success(store, source_task, source)
    assert source.video is not None
    assert source.video.video_url == f"{PUBLIC}/files/videos/{source.video.video_id}.mp4"
    assert server.list_keys(BUCKET, prefix + "/") == [f"{prefix}/{source.video.video_id}.mp4"]
    assert files_on(machine_a) == []  # published, and the scratch file removed

    task = make_task({"action": "extend", "video_id": source.video.video_id, "duration": 5})
    status = await submit_and_check(worker_b, task)

    assert status.state is TaskState.SUCCEED and status.video is not None
    assert files_on(machine_b) == []  # the source copy and the render are cleaned up
    extended = tmp_path / "extended.mp4"
    extended.write_bytes(await read_all(files_a.objects, f"{status.video.video_id}.mp4"))
    measured = probe_video(extended)
    assert measured.frames == (3 + 5) * FPS  # the source's 3 s, read back from the bucket
    await worker_a.aclose()
    await worker_b.aclose()


async def test_an_unreachable_store_at_upload_is_retryable(
    tmp_path: Path,
    store: SQLiteStore,
) -> None:
    server = require_seaweed()
    files = s3_files(tmp_path, server, "x", endpoint=f"http://127.0.0.1:{free_port()}")
    worker = provider(files, store, Clock())
    task = make_task(text_request(model="kling-v3", duration=3))
    with pytest.raises(ProviderError) as caught:
        await submit_and_check(worker, task)
    assert caught.value.code == "storage_error"
    assert caught.value.retryable is True
    assert list((tmp_path / "scratch").glob("*")) == []  # no scratch file left behind
    await worker.aclose()
