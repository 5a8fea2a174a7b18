"""Object storage for finished videos: a port and its file:// and s3:// backends."""

from __future__ import annotations

from kling_gateway.infra.objects.config import (
    StorageConfigError,
    check_object_store,
    open_object_store,
)
from kling_gateway.infra.objects.port import (
    ByteRange,
    InvalidRange,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    ObjectStoreError,
    ObjectStoreFull,
    ObjectStoreRefused,
    ObjectStoreUnavailable,
    ObjectStream,
    check_key,
    download_to,
    is_no_space,
    read_all,
    resolve_range,
)

__all__ = [
    "ByteRange",
    "InvalidRange",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "ObjectStoreError",
    "ObjectStoreFull",
    "ObjectStoreRefused",
    "ObjectStoreUnavailable",
    "ObjectStream",
    "StorageConfigError",
    "check_key",
    "check_object_store",
    "download_to",
    "is_no_space",
    "open_object_store",
    "read_all",
    "resolve_range",
]
