"""``file://DIR``: objects as files under one directory (the default, ``DATA_DIR/videos``).

Writes go to a hidden temporary file beside the target and are renamed into place, so a
reader sees the whole file or none. Files are 0600 and directories 0700: the videos are the
users' private results and the gateway is the only reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterable, AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from kling_gateway.infra.objects.port import (
    CHUNK_BYTES,
    ByteRange,
    ObjectInfo,
    ObjectNotFound,
    ObjectStoreRefused,
    ObjectStoreUnavailable,
    check_key,
    resolve_range,
    unavailable,
)

_TMP_PREFIX = ".upload-"
FILE_MODE = 0o600
DIR_MODE = 0o700


class _FileStream:
    def __init__(self, handle: BinaryIO, byte_range: ByteRange) -> None:
        self._handle = handle
        self._range = byte_range

    @property
    def range(self) -> ByteRange:
        return self._range

    async def chunks(self) -> AsyncIterator[bytes]:
        left = self._range.length
        await asyncio.to_thread(self._handle.seek, self._range.start)
        while left > 0:
            chunk = await asyncio.to_thread(self._handle.read, min(CHUNK_BYTES, left))
            if not chunk:  # truncated under us: stop rather than loop
                return
            left -= len(chunk)
            yield chunk

    async def aclose(self) -> None:
        self._handle.close()


class FileObjectStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def description(self) -> str:
        return f"file://{self.root}"

    def path_for(self, key: str) -> Path:
        return self.root / check_key(key)

    def _make_dirs(self, directory: Path) -> None:
        missing = []
        here = directory
        while not here.exists():
            missing.append(here)
            here = here.parent
        for path in reversed(missing):
            with contextlib.suppress(FileExistsError):
                path.mkdir(mode=DIR_MODE)
            os.chmod(path, DIR_MODE)  # mkdir's mode is masked by the umask

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes]) -> ObjectInfo:
        target = self.path_for(key)
        try:
            await asyncio.to_thread(self._make_dirs, target.parent)
            tmp = target.with_name(f"{_TMP_PREFIX}{secrets.token_hex(8)}-{target.name}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        except OSError as exc:
            raise unavailable(self.description, exc) from exc
        try:
            with os.fdopen(fd, "wb") as out:
                async for chunk in chunks:
                    await asyncio.to_thread(out.write, chunk)
                await asyncio.to_thread(_flush_and_sync, out)
            os.chmod(tmp, FILE_MODE)
            os.replace(tmp, target)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            if isinstance(exc, OSError):
                raise unavailable(self.description, exc) from exc
            raise
        return await self.stat(key)

    async def put_file(self, key: str, path: Path) -> ObjectInfo:
        return await self.put_stream(key, _read_file(path))

    async def open(self, key: str, start: int | None = None, end: int | None = None) -> _FileStream:
        path = self.path_for(key)
        try:
            handle = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError as exc:
            raise ObjectNotFound(key) from exc
        except OSError as exc:
            raise ObjectStoreUnavailable(f"{self.description}: {exc}") from exc
        try:
            size = os.fstat(handle.fileno()).st_size
            return _FileStream(handle, resolve_range(size, start, end))
        except BaseException:
            handle.close()
            raise

    async def stat(self, key: str) -> ObjectInfo:
        try:
            st = await asyncio.to_thread(os.stat, self.path_for(key))
        except FileNotFoundError as exc:
            raise ObjectNotFound(key) from exc
        except OSError as exc:
            raise ObjectStoreUnavailable(f"{self.description}: {exc}") from exc
        return ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    async def delete(self, key: str) -> None:
        try:
            await asyncio.to_thread(self.path_for(key).unlink, missing_ok=True)
        except OSError as exc:
            raise ObjectStoreUnavailable(f"{self.description}: {exc}") from exc

    async def presign(self, key: str, expires: timedelta) -> str | None:
        check_key(key)
        return None

    async def check(self) -> None:
        try:
            await asyncio.to_thread(self._make_dirs, self.root)
            probe = self.root / f"{_TMP_PREFIX}check-{secrets.token_hex(4)}"
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
            os.close(fd)
            probe.unlink()
        except OSError as exc:
            raise ObjectStoreRefused(f"{self.description} is not writable: {exc}") from exc

    async def aclose(self) -> None:
        return None


def _flush_and_sync(out: BinaryIO) -> None:
    out.flush()
    os.fsync(out.fileno())


async def _read_file(path: Path) -> AsyncIterator[bytes]:
    try:
        handle = await asyncio.to_thread(path.open, "rb")
    except OSError as exc:
        raise ObjectStoreUnavailable(f"cannot read {path}: {exc}") from exc
    try:
        while chunk := await asyncio.to_thread(handle.read, CHUNK_BYTES):
            yield chunk
    finally:
        handle.close()
