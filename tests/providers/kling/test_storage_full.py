"""A Kling result copied onto a full disk: the task is retried with ``storage_full`` (never
``storage_error``, never a bare OSError) and, still full at its deadline, fails saying so;
with room again the same copy completes. On a real 1 MB tmpfs."""

from __future__ import annotations

from pathlib import Path

import pytest

from kling_gateway.domain.outcomes import ProviderError
from kling_gateway.domain.transitions import Deadline, Policy, Schedule, transition
from kling_gateway.infra.files import VideoFiles
from kling_gateway.protocol.task import TaskState
from kling_gateway.providers.base import NO_SPACE_LEFT
from kling_gateway.providers.kling.provider import KlingProvider, KlingProviderConfig
from kling_gateway.storage.base import Store
from tests.providers.kling.test_against_fake import (
    GATEWAY_PUBLIC,
    client_config,
    fake_app,
    finish,
    make_task,
    store,
    submit,
)
from tests.tmpfs import fill

__all__ = ["fake_app", "store"]  # fixtures shared with test_against_fake


async def test_enospc_while_copying_the_result_is_storage_full(
    upstream: str, tiny_tmpfs: Path, store: Store
) -> None:
    files = VideoFiles(tiny_tmpfs / "videos", GATEWAY_PUBLIC)
    provider = KlingProvider(
        KlingProviderConfig(client=client_config(upstream)), store=store, files=files
    )
    try:
        task = make_task(action="text2video", prompt="a cat", duration=5.0)
        await submit(provider, task)
        files.scratch.mkdir(parents=True)
        filler = fill(tiny_tmpfs, leave=1_000)
        with pytest.raises(ProviderError) as info:
            await finish(provider, task)
        assert (info.value.code, info.value.retryable) == ("storage_full", True)
        assert info.value.message.endswith(NO_SPACE_LEFT)  # and no path of ours
        assert list(files.scratch.iterdir()) == []  # the partial download is gone

        # Still full at the deadline: the failure names the real reason.
        policy = Policy(check_interval=1.0, check_max_interval=5.0, deadline_seconds=10.0)
        retried = transition(task, info.value, Schedule(0, 10.0), 0.0, policy).task
        failed = transition(retried, Deadline(), Schedule(1, 10.0), 10.0, policy).task
        assert failed.state is TaskState.FAILED
        assert failed.response is not None
        assert failed.response["error"]["code"] == "storage_full"
        assert NO_SPACE_LEFT in failed.response["error"]["message"]

        filler.unlink()  # room again: the retry copies the video
        status = await finish(provider, task)
        assert status.state is TaskState.SUCCEED and status.video is not None
        assert (files.root / f"{status.video.video_id}.mp4").stat().st_size > 0
    finally:
        await provider.aclose()
