"""This project's SDK (``kling_gateway.client``) for the §7 endpoints against a live gateway:
``client.motion``, ``client.lip_sync`` and ``client.talking_photo``, sync and async, blocking
and asynchronous with ``tasks.wait`` (docs/contract.md §7)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kling_gateway.client import AsyncClient, BadRequestError, Client
from tests.client.test_acedatacloud_kinds import media, server  # noqa: F401 - fixtures
from tests.real_gateway import RealGateway


@pytest.fixture
def client(server: RealGateway) -> Iterator[Client]:  # noqa: F811
    with Client(server.url, token=server.tokens["alice"], max_retries=0) as sdk:
        yield sdk


def test_motion_blocking(client: Client, media: str) -> None:  # noqa: F811
    result = client.motion.create(image_url=f"{media}/photo.png", video_url=f"{media}/dance.mp4",
                                  character_orientation="video", mode="pro")  # fmt: skip
    assert result["state"] == "succeed", result
    assert client.tasks.retrieve(result["task_id"])["type"] == "motion"


def test_talking_photo_async_then_wait(client: Client, media: str) -> None:  # noqa: F811
    created = client.talking_photo.create(image_url=f"{media}/photo.png",
                                          audio_url=f"{media}/speech.mp3", async_=True)  # fmt: skip
    record = client.tasks.wait(created["task_id"], timeout=60)
    assert record["response"]["source_video_url"]
    assert [r["id"] for r in client.tasks.list(type="talking-photo")] == [created["task_id"]]


def test_a_bad_field_raises_the_typed_error(client: Client, media: str) -> None:  # noqa: F811
    with pytest.raises(BadRequestError) as info:
        client.lip_sync.create(mode="text2video", video_url=f"{media}/dance.mp4", text="hi")
    assert "`voice_id`" in info.value.message


async def test_async_client_lip_sync(server: RealGateway, media: str) -> None:  # noqa: F811
    async with AsyncClient(server.url, token=server.tokens["alice"], max_retries=0) as sdk:
        result = await sdk.lip_sync.create(mode="audio2video", video_url=f"{media}/dance.mp4",
                                           audio_url=f"{media}/speech.mp3")  # fmt: skip
    assert result["state"] == "succeed", result
