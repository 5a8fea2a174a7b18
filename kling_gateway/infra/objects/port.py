"""The object-store port: where finished videos (and any other blob) live, whatever backs it.

Two backends implement it (``local.FileObjectStore`` for ``file://DIR`` and
``s3.S3ObjectStore`` for ``s3://BUCKET/PREFIX``). Every write is atomic: an object is invisible
until its upload has completed (a temporary file renamed into place, or an S3 multipart upload
completed), so a reader never sees half a video. Reads are streams of bounded chunks, ranged on
request, so no video ever sits whole in memory.
"""

from __future__ import annotations

import asyncio
import errno
import re
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

# Keys are relative paths of safe segments: no "..", no leading "/", no empty segment.
_KEY = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,200}(/[A-Za-z0-9_-][A-Za-z0-9._-]{0,200}){0,8}$")
# One read or write chunk: big enough for throughput, small enough to keep memory flat.
CHUNK_BYTES = 1024 * 1024


class ObjectStoreError(Exception):
    """Base of every object-store failure."""


class ObjectNotFound(ObjectStoreError):
    """No object under that key (never written, still uploading, or deleted)."""


class ObjectStoreUnavailable(ObjectStoreError):
    """The store could not be reached or answered with a server error: worth retrying."""


class ObjectStoreFull(ObjectStoreUnavailable):
    """No space left where the store writes (ENOSPC, EDQUOT): worth retrying once there is
    room, and reported as ``storage_full``, not as an outage."""


# A full disk, or a full quota: what ``ObjectStoreFull`` and ``storage_full`` mean.
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_no_space(exc: BaseException) -> bool:
    """``exc`` is the OS saying the disk (or quota) is full (FFmpeg's errors are OSErrors
    with the errno too)."""
    return isinstance(exc, OSError) and exc.errno in NO_SPACE


def unavailable(description: str, exc: OSError) -> ObjectStoreUnavailable:
    """The typed error of an OS failure of a store: full, or out of reach."""
    kind = ObjectStoreFull if is_no_space(exc) else ObjectStoreUnavailable
    return kind(f"{description}: {exc}")


class ObjectStoreRefused(ObjectStoreError):
    """The store refused us for good: wrong credentials, missing bucket, no permission."""


class InvalidRange(ObjectStoreError):
    """A ranged read asked for bytes the object does not have (HTTP 416)."""

    def __init__(self, size: int) -> None:
        super().__init__(f"range not satisfiable for an object of {size} bytes")
        self.size = size


def check_key(key: str) -> str:
    """``key`` when it is a safe relative key; ValueError otherwise (a bug in the caller)."""
    if not _KEY.match(key) or any(part in (".", "..") for part in key.split("/")):
        raise ValueError(f"not a valid object key: {key!r}")
    return key


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int
    modified: datetime


@dataclass(frozen=True, slots=True)
class ByteRange:
    """Bytes ``start`` to ``end`` inclusive (as in HTTP ``Content-Range``) of a ``size``-byte
    object."""

    start: int
    end: int
    size: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    @property
    def complete(self) -> bool:
        return self.start == 0 and self.end == self.size - 1


def resolve_range(size: int, start: int | None, end: int | None) -> ByteRange:
    """The bytes a read of ``start``..``end`` (inclusive; None: open) covers, clamped to the
    object; ``start`` None with ``end`` set means the last ``end`` bytes (``bytes=-N``)."""
    if start is None and end is not None:
        if end <= 0:
            raise InvalidRange(size)
        first = max(size - end, 0)
        last = size - 1
    else:
        first = start or 0
        last = size - 1 if end is None else min(end, size - 1)
    if size == 0 and start is None and end is None:
        return ByteRange(0, -1, 0)
    if first < 0 or first >= size or last < first:
        raise InvalidRange(size)
    return ByteRange(first, last, size)


class ObjectStream(Protocol):
    """An open read: the bytes it covers, then their chunks. Close it when done (``aclose``)."""

    @property
    def range(self) -> ByteRange: ...

    def chunks(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class ObjectStore(Protocol):
    """Put, read, stat, delete and sign objects by key."""

    @property
    def description(self) -> str:
        """Where it stores, for logs and error messages (never a credential)."""
        ...

    async def put_file(self, key: str, path: Path) -> ObjectInfo:
        """Copy the file at ``path`` under ``key``, atomically, streaming."""
        ...

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes]) -> ObjectInfo:
        """Store ``chunks`` under ``key``: visible only once the iterator is exhausted; an
        error from the iterator (or the store) leaves no object and nothing half-written."""
        ...

    async def open(
        self, key: str, start: int | None = None, end: int | None = None
    ) -> ObjectStream:
        """Open a read of ``key`` (the whole object, or a range as in ``resolve_range``)."""
        ...

    async def stat(self, key: str) -> ObjectInfo: ...

    async def delete(self, key: str) -> None:
        """Remove ``key``; removing what is not there is not an error."""
        ...

    async def presign(self, key: str, expires: timedelta) -> str | None:
        """A URL that reads ``key`` without credentials until ``expires``; None when the
        backend has no such URLs (``file://``)."""
        ...

    async def check(self) -> None:
        """Prove at startup that the store answers and lets us in (ObjectStoreRefused or
        ObjectStoreUnavailable otherwise)."""
        ...

    async def aclose(self) -> None: ...


async def read_all(store: ObjectStore, key: str) -> bytes:
    """The whole object: for tests and small objects only."""
    stream = await store.open(key)
    try:
        return b"".join([chunk async for chunk in stream.chunks()])
    finally:
        await stream.aclose()


async def download_to(store: ObjectStore, key: str, path: Path) -> ObjectInfo:
    """Copy ``key`` into a local file at ``path`` (streaming), e.g. reference media a provider
    must hand to a decoder that wants a path."""
    stream = await store.open(key)
    try:
        with path.open("wb") as out:
            async for chunk in stream.chunks():
                await asyncio.to_thread(out.write, chunk)
    finally:
        await stream.aclose()
    return ObjectInfo(key, stream.range.size, datetime.now(UTC))
