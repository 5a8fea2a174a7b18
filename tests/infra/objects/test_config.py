"""Which store a storage URL names, and the one-line errors for the ones that name none."""

from __future__ import annotations

from pathlib import Path

import pytest

from kling_gateway.infra.objects import StorageConfigError, open_object_store
from kling_gateway.infra.objects.local import FileObjectStore
from kling_gateway.infra.objects.s3 import S3ObjectStore


def test_empty_means_the_default_directory(tmp_path: Path) -> None:
    store = open_object_store("", default_dir=tmp_path / "videos")
    assert isinstance(store, FileObjectStore)
    assert store.root == tmp_path / "videos"


@pytest.mark.parametrize(
    ("url", "root"), [("file:///srv/videos", "/srv/videos"), ("file://./data/v", "data/v")]
)
def test_file_urls(url: str, root: str) -> None:
    store = open_object_store(url, default_dir=Path("/unused"))
    assert isinstance(store, FileObjectStore)
    assert store.root == Path(root)


def test_s3_url_with_endpoint_and_credentials_from_the_environment() -> None:
    store = open_object_store(
        "s3://media/kling/videos/",
        default_dir=Path("/unused"),
        s3_endpoint_url="http://127.0.0.1:9000/",
        environ={"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "sk", "AWS_REGION": "eu-1"},
    )
    assert isinstance(store, S3ObjectStore)
    location = store.location
    assert (location.bucket, location.prefix) == ("media", "kling/videos")
    assert location.endpoint_url == "http://127.0.0.1:9000"
    assert (location.access_key_id, location.secret_access_key, location.region) == (
        "id",
        "sk",
        "eu-1",
    )
    assert "sk" not in store.description  # descriptions go into logs


@pytest.mark.parametrize(
    ("url", "endpoint", "environ", "flag"),
    [
        ("ftp://x", "", {}, "--storage-url"),
        ("file://", "", {}, "--storage-url"),
        ("s3://", "", {}, "--storage-url"),
        ("s3://b/p?x=1", "", {}, "--storage-url"),
        ("s3://b/p", "127.0.0.1:9000", {}, "--s3-endpoint-url"),
        ("s3://b/p", "", {"AWS_ACCESS_KEY_ID": "only-the-id"}, "AWS_SECRET_ACCESS_KEY"),
    ],
)
def test_unusable_settings_name_the_flag(
    url: str, endpoint: str, environ: dict[str, str], flag: str
) -> None:
    with pytest.raises(StorageConfigError) as caught:
        open_object_store(
            url, default_dir=Path("/unused"), s3_endpoint_url=endpoint, environ=environ
        )
    assert flag in str(caught.value)
    assert "\n" not in str(caught.value)
