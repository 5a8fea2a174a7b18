"""The object-store contract, run over both backends (file:// and s3:// on SeaweedFS)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from kling_gateway.infra.objects import (
    InvalidRange,
    ObjectNotFound,
    read_all,
)
from tests.infra.objects.conftest import Backend

DATA = bytes(range(256)) * 40  # 10 240 bytes, every offset distinguishable


async def chunks_of(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for offset in range(0, len(data), size):
        yield data[offset : offset + size]


async def read_range(backend: Backend, key: str, start: int | None, end: int | None) -> bytes:
    stream = await backend.store.open(key, start, end)
    try:
        return b"".join([chunk async for chunk in stream.chunks()])
    finally:
        await stream.aclose()


async def test_put_stream_then_read_back_and_stat(backend: Backend) -> None:
    info = await backend.store.put_stream("videos/a.mp4", chunks_of(DATA))
    assert info.size == len(DATA)
    assert await read_all(backend.store, "videos/a.mp4") == DATA
    assert (await backend.store.stat("videos/a.mp4")).size == len(DATA)
    assert backend.visible_keys() == ["videos/a.mp4"]


async def test_put_file_copies_the_file(backend: Backend, tmp_path: Path) -> None:
    source = tmp_path / "render.mp4"
    source.write_bytes(DATA * 3)
    await backend.store.put_file("b.mp4", source)
    assert await read_all(backend.store, "b.mp4") == DATA * 3
    assert source.exists()  # a copy: the producer's file is its own to remove


async def test_an_upload_is_invisible_until_it_completes(backend: Backend) -> None:
    halfway = asyncio.Event()
    release = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield DATA
        halfway.set()
        await release.wait()
        yield DATA

    upload = asyncio.create_task(backend.store.put_stream("slow.mp4", slow()))
    await asyncio.wait_for(halfway.wait(), 10)
    await asyncio.sleep(0.1)  # let the first chunk reach the store
    with pytest.raises(ObjectNotFound):
        await backend.store.stat("slow.mp4")
    with pytest.raises(ObjectNotFound):
        await backend.store.open("slow.mp4")
    assert "slow.mp4" not in backend.visible_keys()
    release.set()
    info = await asyncio.wait_for(upload, 30)
    assert info.size == 2 * len(DATA)
    assert await read_all(backend.store, "slow.mp4") == DATA * 2


async def test_a_failed_upload_leaves_nothing_behind(backend: Backend) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield DATA
        raise RuntimeError("the renderer died")

    with pytest.raises(RuntimeError, match="renderer died"):
        await backend.store.put_stream("broken.mp4", broken())
    with pytest.raises(ObjectNotFound):
        await backend.store.stat("broken.mp4")
    assert backend.visible_keys() == []  # no temporary file or object either


async def test_put_replaces_an_existing_object(backend: Backend) -> None:
    await backend.store.put_stream("c.mp4", chunks_of(DATA))
    await backend.store.put_stream("c.mp4", chunks_of(b"new"))
    assert await read_all(backend.store, "c.mp4") == b"new"


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (0, 9, DATA[0:10]),
        (100, 1099, DATA[100:1100]),
        (10_000, None, DATA[10_000:]),
        (None, 5, DATA[-5:]),  # bytes=-5: the last five
        (10_200, 99_999, DATA[10_200:]),  # an end past the object is clamped
        (0, None, DATA),
    ],
)
async def test_ranged_reads(
    backend: Backend, start: int | None, end: int | None, expected: bytes
) -> None:
    await backend.store.put_stream("r.mp4", chunks_of(DATA))
    stream = await backend.store.open("r.mp4", start, end)
    assert stream.range.size == len(DATA)
    assert stream.range.length == len(expected)
    await stream.aclose()
    assert await read_range(backend, "r.mp4", start, end) == expected


@pytest.mark.parametrize(("start", "end"), [(len(DATA), None), (20_000, 30_000), (None, 0)])
async def test_unsatisfiable_ranges(backend: Backend, start: int | None, end: int | None) -> None:
    await backend.store.put_stream("r.mp4", chunks_of(DATA))
    with pytest.raises(InvalidRange) as caught:
        await backend.store.open("r.mp4", start, end)
    assert caught.value.size == len(DATA)


async def test_delete_removes_and_is_idempotent(backend: Backend) -> None:
    await backend.store.put_stream("d.mp4", chunks_of(DATA))
    await backend.store.delete("d.mp4")
    with pytest.raises(ObjectNotFound):
        await backend.store.stat("d.mp4")
    assert backend.visible_keys() == []
    await backend.store.delete("d.mp4")  # already gone: fine


async def test_a_missing_key(backend: Backend) -> None:
    with pytest.raises(ObjectNotFound):
        await backend.store.stat("never.mp4")
    with pytest.raises(ObjectNotFound):
        await backend.store.open("never.mp4")


@pytest.mark.parametrize("key", ["../escape.mp4", "/abs.mp4", "a//b.mp4", "a/./b", "", "sp ace"])
async def test_unsafe_keys_are_refused(backend: Backend, key: str) -> None:
    with pytest.raises(ValueError, match="not a valid object key"):
        await backend.store.stat(key)


async def test_presign(backend: Backend) -> None:
    await backend.store.put_stream("p.mp4", chunks_of(DATA))
    url = await backend.store.presign("p.mp4", timedelta(minutes=5))
    if backend.name == "file":
        assert url is None  # no such URLs: the gateway streams the file itself
        return
    assert url is not None
    async with httpx.AsyncClient() as client:
        response = await client.get(url)
        assert response.status_code == 200
        assert response.content == DATA
        # The signature is what lets it in: the bare URL is refused.
        assert (await client.get(url.split("?", 1)[0])).status_code == 403


async def test_an_empty_object(backend: Backend) -> None:
    await backend.store.put_stream("empty.mp4", chunks_of(b""))
    assert (await backend.store.stat("empty.mp4")).size == 0
    assert await read_all(backend.store, "empty.mp4") == b""


async def test_check_passes_on_a_working_store(backend: Backend) -> None:
    await backend.store.check()


def test_file_backend_permissions(tmp_path: Path) -> None:
    from kling_gateway.infra.objects import open_object_store

    root = tmp_path / "deep" / "videos"
    store = open_object_store(f"file://{root}", default_dir=tmp_path)
    old = os.umask(0o022)
    try:
        asyncio.run(store.put_stream("sub/v.mp4", chunks_of(DATA)))
    finally:
        os.umask(old)
    assert (root / "sub" / "v.mp4").stat().st_mode & 0o777 == 0o600
    assert (root / "sub").stat().st_mode & 0o777 == 0o700
    assert root.stat().st_mode & 0o777 == 0o700
