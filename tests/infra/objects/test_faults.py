"""What the S3 backend does when the store will not have us: wrong credentials, a bucket that
does not exist, nothing listening. Against the real SeaweedFS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kling_gateway.infra.objects import (
    ObjectStoreRefused,
    ObjectStoreUnavailable,
    StorageConfigError,
    check_object_store,
    open_object_store,
)
from tests.infra.objects.conftest import BUCKET
from tests.seaweed import SeaweedS3, free_port


async def one_chunk() -> AsyncIterator[bytes]:
    yield b"video"


async def test_wrong_credentials_are_refused_at_check_and_on_use(seaweed: SeaweedS3) -> None:
    store = open_object_store(
        f"s3://{BUCKET}/x",
        default_dir=Path("/nonexistent"),
        s3_endpoint_url=seaweed.endpoint,
        environ={**seaweed.environ, "AWS_SECRET_ACCESS_KEY": "not-the-secret"},
    )
    with pytest.raises(StorageConfigError) as caught:
        await check_object_store(store)
    message = str(caught.value)
    assert message.startswith("--storage-url s3://kg-objects/x")
    assert "SignatureDoesNotMatch" in message
    assert "not-the-secret" not in message and "\n" not in message
    with pytest.raises(ObjectStoreRefused):
        await store.put_stream("v.mp4", one_chunk())


async def test_an_unknown_access_key_is_refused(seaweed: SeaweedS3) -> None:
    store = open_object_store(
        f"s3://{BUCKET}/x",
        default_dir=Path("/nonexistent"),
        s3_endpoint_url=seaweed.endpoint,
        environ={**seaweed.environ, "AWS_ACCESS_KEY_ID": "nobody"},
    )
    with pytest.raises(ObjectStoreRefused):
        await store.check()


async def test_a_missing_bucket_is_refused_at_check(seaweed: SeaweedS3) -> None:
    store = open_object_store(
        "s3://no-such-bucket-here/videos",
        default_dir=Path("/nonexistent"),
        s3_endpoint_url=seaweed.endpoint,
        environ=seaweed.environ,
    )
    with pytest.raises(StorageConfigError, match="NoSuchBucket") as caught:
        await check_object_store(store)
    assert "\n" not in str(caught.value)
    with pytest.raises(ObjectStoreRefused):
        await store.put_stream("v.mp4", one_chunk())


async def test_nothing_listening_is_unavailable_not_refused(seaweed: SeaweedS3) -> None:
    # A port nothing listens on: retryable at upload (the worker backs off), 503 at read.
    store = open_object_store(
        f"s3://{BUCKET}/x",
        default_dir=Path("/nonexistent"),
        s3_endpoint_url=f"http://127.0.0.1:{free_port()}",
        environ=seaweed.environ,
    )
    with pytest.raises(ObjectStoreUnavailable):
        await store.put_stream("v.mp4", one_chunk())
    with pytest.raises(ObjectStoreUnavailable):
        await store.open("v.mp4")
    with pytest.raises(StorageConfigError, match="--storage-url"):
        await check_object_store(store)


async def test_a_file_store_that_cannot_be_written(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    store = open_object_store(f"file://{blocker}/videos", default_dir=tmp_path)
    with pytest.raises(StorageConfigError, match=r"--storage-url file://.*not writable"):
        await check_object_store(store)
    with pytest.raises(ObjectStoreUnavailable):
        await store.put_stream("v.mp4", one_chunk())
