"""The §7 kinds on an account pool, against a fake upstream with two accounts: a lip-sync
of a video, and an extend, run on the account that made the video, and the account errors of
a talking photo's in-check steps count against its account as on submit."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from kling_gateway.domain.accounts import Account, AccountState
from kling_gateway.fake_upstream import FakeUpstreamConfig, create_fake_upstream
from kling_gateway.fake_upstream.accounts import FakeAccount, ResourcePack
from kling_gateway.fake_upstream.media import make_wav
from kling_gateway.runtime.settings import Settings
from kling_gateway.runtime.worker import server_sealer
from kling_gateway.storage.upstream_keys import add_account
from tests.harness import AppHarness
from tests.providers.kling.test_gateway import kling_settings, settled, states
from tests.providers.kling.test_pool import ACCOUNTS, listed
from tests.servers import serve_asgi

IMAGE = "https://cdn.example/face.png"


@pytest.fixture
def fake_app() -> Starlette:
    # test_pool's accounts; a job takes long enough for a test to act while it runs.
    accounts = [
        FakeAccount(name, ak, sk, max_concurrency=limit, packs=[ResourcePack()])
        for name, (ak, sk, limit) in ACCOUNTS.items()
    ]
    config = FakeUpstreamConfig(
        accounts=accounts, processing_after=0.02, finish_after=(0.8, 1.0), seed=5
    )
    return create_fake_upstream(config)


@pytest.fixture
def audio_server() -> Iterator[str]:
    clip = make_wav(3.0)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"audio/wav")]})  # fmt: skip
        await send({"type": "http.response.body", "body": clip})

    with serve_asgi(app) as url:
        yield url


async def add_accounts(h: AppHarness) -> None:
    """test_pool's accounts but the implicit one, added once the gateway runs (on PostgreSQL
    the harness empties the database as it starts)."""
    sealer = server_sealer(h.settings)
    for name, (ak, sk, limit) in ACCOUNTS.items():
        if name != "default":
            await add_account(h.store, sealer, Account(name, ak, max_concurrency=limit), sk)


@pytest.fixture
def settings(tmp_path: Path, upstream: str) -> Settings:
    return kling_settings(
        tmp_path, upstream, worker_concurrency=64, kling_max_concurrency=5,
        callback_allow_private=True,
    )  # fmt: skip


async def assert_runs_on_the_videos_account(
    settings: Settings, path: str, body_for: Callable[[str], dict[str, Any]]
) -> None:
    """A video, then 8 tasks of ``path`` naming it (``body_for(video_id)``): more than the
    video's account has slots, so without the pin some would go elsewhere; all succeed there."""
    async with AppHarness.start(settings) as h:
        await add_accounts(h)
        video = (await h.videos({"action": "text2video", "prompt": "a talk"})).json()
        assert video["success"] is True, video
        made = await h.store.load_task(video["task_id"])
        assert made is not None and made.account is not None
        body = body_for(video["video_id"])
        ids = [(await h.create(path, body)).json()["task_id"] for _ in range(8)]
        found = await settled(h.client, h.headers(), ids, timeout=60)
        accounts = {(await h.store.load_task(i)).account for i in ids}  # type: ignore[union-attr]
    assert states(found) == {"succeed": 8}, found
    assert accounts == {made.account}


async def test_a_lip_sync_by_video_id_runs_on_the_videos_account(
    settings: Settings, audio_server: str
) -> None:
    await assert_runs_on_the_videos_account(
        settings, "/kling/lip-sync",
        lambda video_id: {"mode": "audio2video", "video_id": video_id, "async": True,
                          "audio_url": f"{audio_server}/long.wav"},
    )  # fmt: skip


async def test_an_extend_runs_on_the_account_that_made_the_video(settings: Settings) -> None:
    await assert_runs_on_the_videos_account(
        settings, "/kling/videos",
        lambda video_id: {"action": "extend", "video_id": video_id, "prompt": "further",
                          "async": True},
    )  # fmt: skip


async def test_an_account_error_in_a_talking_photos_check_disables_its_account(
    settings: Settings, admin: httpx.AsyncClient, audio_server: str
) -> None:
    async with AppHarness.start(settings) as h:
        await add_accounts(h)
        body = {"image_url": IMAGE, "audio_url": f"{audio_server}/long.wav", "async": True}
        task_id = (await h.create("/kling/talking-photo", body)).json()["task_id"]
        async with asyncio.timeout(30):  # the animation is made by submit, then checked
            while True:
                if (await admin.get("/fake-admin/tasks")).json():
                    break
                await asyncio.sleep(0.01)
        for name in ("default", "b", "c"):
            await admin.post(f"/fake-admin/accounts/{name}", json={"error_code": 1101})
        found = await settled(h.client, h.headers(), [task_id], timeout=60)
        stored = await h.store.load_task(task_id)
        accounts = await listed(h)
    assert states(found) == {"failed": 1}, found
    assert stored is not None and stored.account is not None
    disabled = {n for n, a in accounts.items() if a.state is AccountState.DISABLED}
    assert disabled == {stored.account}  # only the account that was asked
    last_error = accounts[stored.account].last_error
    assert last_error is not None and "1101" in last_error
