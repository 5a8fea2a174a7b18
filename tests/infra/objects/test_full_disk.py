"""A file:// object store on a full disk raises ObjectStoreFull (not a bare OSError, nor the
outage error), leaves no half-written file behind, and works again once there is room."""

from __future__ import annotations

from pathlib import Path

import pytest

from kling_gateway.infra.objects import ObjectNotFound, ObjectStoreFull, read_all
from kling_gateway.infra.objects.local import FileObjectStore
from tests.tmpfs import fill

VIDEO = b"\x00\x00\x00\x18ftypmp42" + b"v" * 300_000


async def test_a_full_disk_is_object_store_full_and_room_makes_it_writable(
    tiny_tmpfs: Path,
) -> None:
    store = FileObjectStore(tiny_tmpfs / "videos")
    await store.check()
    filler = fill(tiny_tmpfs, leave=50_000)
    with pytest.raises(ObjectStoreFull, match="No space left on device"):
        await store.put_file("v1.mp4", _source(tiny_tmpfs.parent))
    with pytest.raises(ObjectNotFound):
        await store.stat("v1.mp4")
    assert [p.name for p in (tiny_tmpfs / "videos").iterdir()] == []  # no temp file left
    filler.unlink()
    await store.put_file("v1.mp4", _source(tiny_tmpfs.parent))
    assert await read_all(store, "v1.mp4") == VIDEO


def _source(directory: Path) -> Path:
    path = directory / "source.mp4"
    path.write_bytes(VIDEO)
    return path


def test_an_s3_answer_of_full_storage_is_object_store_full() -> None:
    from kling_gateway.infra.objects.s3 import _raise_mapped

    # What obstore says of a 507 (MinIO's words); a SeaweedFS on a full disk was not tried.
    said = (
        "Generic S3 error: Error performing PUT http://127.0.0.1:9000/b/k in 3ms - Server "
        'returned non-2XX status code: 507 Insufficient Storage: <?xml version="1.0"?><Error>'
        "<Code>XMinioStorageFull</Code><Message>Storage backend has reached its minimum free "
        "drive threshold.</Message></Error>"
    )
    with pytest.raises(ObjectStoreFull, match="XMinioStorageFull"):
        _raise_mapped(OSError(said), "k", "s3://b/p")
