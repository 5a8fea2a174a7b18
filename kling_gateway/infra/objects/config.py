"""Which object store a storage URL names, and the startup check that it works."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote, urlsplit

from kling_gateway.infra.objects.local import FileObjectStore
from kling_gateway.infra.objects.port import ObjectStore, ObjectStoreError
from kling_gateway.infra.objects.s3 import S3Location, S3ObjectStore


class StorageConfigError(ValueError):
    """A storage setting cannot be used; the message names the flag."""


def open_object_store(
    storage_url: str,
    *,
    default_dir: Path,
    s3_endpoint_url: str = "",
    environ: Mapping[str, str] | None = None,
) -> ObjectStore:
    """The store ``storage_url`` names (empty: ``file://default_dir``). S3 credentials and
    region come from ``environ``'s standard AWS_* variables."""
    url = storage_url.strip()
    if not url:
        return FileObjectStore(default_dir)
    if url.startswith("file://"):
        directory = unquote(url[len("file://") :])
        if not directory:
            raise StorageConfigError("--storage-url file:// needs a directory: file://DIR")
        return FileObjectStore(Path(directory))
    if url.startswith("s3://"):
        return S3ObjectStore(_s3_location(url, s3_endpoint_url, environ or {}))
    raise StorageConfigError(
        f"--storage-url must be file://DIR or s3://BUCKET/PREFIX, not {storage_url!r}"
    )


def _s3_location(url: str, endpoint_url: str, environ: Mapping[str, str]) -> S3Location:
    parts = urlsplit(url)
    bucket = parts.netloc
    if not bucket or parts.query or parts.fragment:
        raise StorageConfigError(f"--storage-url must be s3://BUCKET/PREFIX, not {url!r}")
    endpoint = endpoint_url.strip().rstrip("/")
    if endpoint and not endpoint.startswith(("http://", "https://")):
        raise StorageConfigError(
            f"--s3-endpoint-url must be an http:// or https:// URL, not {endpoint_url!r}"
        )
    key_id = environ.get("AWS_ACCESS_KEY_ID", "")
    secret = environ.get("AWS_SECRET_ACCESS_KEY", "")
    if bool(key_id) != bool(secret):
        raise StorageConfigError(
            "--storage-url s3://: set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    return S3Location(
        bucket=bucket,
        prefix=parts.path.strip("/"),
        endpoint_url=endpoint,
        access_key_id=key_id,
        secret_access_key=secret,
        region=environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or "",
    )


async def check_object_store(store: ObjectStore) -> None:
    """Raise StorageConfigError (one line naming the flag) unless ``store`` answers and lets
    us in: the runtime calls this at startup so a typo'd bucket or key stops it at once."""
    try:
        await store.check()
    except ObjectStoreError as exc:
        raise StorageConfigError(f"--storage-url {store.description}: {exc}") from exc
