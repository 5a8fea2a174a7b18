"""The local provider rendering onto a full disk: ``storage_full``, retried, never a bare
OSError or ``storage_error``; with room again the render completes. On a real 1 MB tmpfs."""

from __future__ import annotations

from pathlib import Path

import pytest

from kling_gateway.domain.outcomes import ProviderError
from kling_gateway.infra.files import VideoFiles
from kling_gateway.protocol.task import TaskState
from kling_gateway.providers.base import NO_SPACE_LEFT
from kling_gateway.storage.sqlite import SQLiteStore
from tests.providers.local.test_provider import (
    PUBLIC,
    Clock,
    clock,
    make_task,
    provider,
    submit_and_check,
    text_request,
)
from tests.tmpfs import fill

__all__ = ["clock"]  # a fixture shared with test_provider (`store` is in conftest.py)


async def test_a_render_onto_a_full_disk_is_storage_full(
    tiny_tmpfs: Path, store: SQLiteStore, clock: Clock
) -> None:
    files = VideoFiles(root=tiny_tmpfs / "videos", public_url=PUBLIC)
    prov = provider(files, store, clock)
    try:
        task = make_task(text_request(model="kling-v3", duration=3))
        files.scratch.mkdir(parents=True)
        filler = fill(tiny_tmpfs, leave=2_000)
        with pytest.raises(ProviderError) as info:
            await submit_and_check(prov, task)
        assert (info.value.code, info.value.retryable) == ("storage_full", True)
        assert info.value.message.endswith(NO_SPACE_LEFT)  # and no path of ours
        assert list(files.scratch.iterdir()) == []  # the partial render is gone
        filler.unlink()
        status = await submit_and_check(prov, task)
        assert status.state is TaskState.SUCCEED and status.video is not None
        assert files.path_for(status.video.video_id).stat().st_size > 0
    finally:
        await prov.aclose()
