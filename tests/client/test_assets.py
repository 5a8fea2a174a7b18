"""The SDK's ``elements`` and ``voices`` (docs/contract.md §6.1) against the real gateway over
loopback HTTP (local provider), both clients; the bodies the SDK sends are the wire shapes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kling_gateway.client import AsyncClient, BadRequestError, Client
from tests.client.test_real_server import Recorder
from tests.harness import make_settings
from tests.real_gateway import RealGateway, real_gateway

FRONT, SIDE = "https://cdn.example/front.png", "https://cdn.example/side.png"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealGateway]:
    data: Path = tmp_path_factory.mktemp("sdk-assets")
    with real_gateway(lambda port: make_settings(data, worker=True, port=port)) as gw:
        gw.add_user("alice")
        gw.add_user("bob")
        yield gw


def test_elements_create_list_retrieve_delete(server: RealGateway) -> None:
    recorder = Recorder()
    with Client(server.url, token=server.tokens["alice"], transport=recorder) as client:
        made = client.elements.create(
            "Tabby", "a tabby cat", frontal_image=FRONT, refer_images=[SIDE], tag_ids=["o_103"]
        )
        assert recorder.bodies[-1] == {
            "action": "create",
            "element_name": "Tabby",
            "element_description": "a tabby cat",
            "element_image_list": {"frontal_image": FRONT, "refer_images": [{"image_url": SIDE}]},
            "tag_list": [{"tag_id": "o_103"}],
        }
        assert made["status"] == "succeed"
        element_id = made["element_id"]
        assert client.elements.retrieve(element_id)["element_name"] == "Tabby"
        listed = client.elements.list(limit=10)
        assert [item["element_id"] for item in listed["items"]] == [element_id]
        task = client.videos.create(
            "a cat", model="kling-v3", element_list=[{"element_id": element_id}], async_=True
        )
        assert client.tasks.wait(task["task_id"], timeout=60)["response"]["state"] == "succeed"
        assert client.elements.delete(element_id) == {"element_id": element_id, "deleted": True}
        assert client.elements.retrieve(element_id) == {}


def test_a_video_element_with_a_voice(server: RealGateway) -> None:
    with Client(server.url, token=server.tokens["alice"]) as client:
        voice = client.voices.create("Narrator", voice_url="https://cdn.example/v.mp3")
        element = client.elements.create(
            "Host",
            "a presenter",
            video_url="https://cdn.example/host.mp4",
            element_voice_id=voice["voice_id"],
        )
    assert element["reference_type"] == "video_refer"
    assert element["element_voice_id"] == voice["voice_id"]


def test_another_users_ids_are_not_found(server: RealGateway) -> None:
    with Client(server.url, token=server.tokens["bob"]) as bob:
        voice = bob.voices.create("Bob", voice_url="https://cdn.example/b.mp3")["voice_id"]
    with Client(server.url, token=server.tokens["alice"], max_retries=0) as alice:
        assert alice.voices.retrieve(voice) == {}
        assert alice.voices.delete(voice)["deleted"] is False
        with pytest.raises(BadRequestError, match="voice_url"):
            alice.voices.create("Both", voice_url="https://cdn.example/a.mp3", video_id="v")


async def test_the_async_client(server: RealGateway) -> None:
    async with AsyncClient(server.url, token=server.tokens["alice"]) as client:
        made = await client.voices.create("Calm", voice_url="https://cdn.example/c.mp3")
        assert (await client.voices.retrieve(made["voice_id"]))["voice_name"] == "Calm"
        page = await client.voices.list(limit=1)
        assert page["count"] >= 1 and len(page["items"]) == 1
        assert (await client.voices.delete(made["voice_id"]))["deleted"] is True


def test_a_create_sends_one_idempotency_key(server: RealGateway) -> None:
    with Client(server.url, token=server.tokens["alice"]) as client:
        first = client.voices.create(
            "Once", voice_url="https://cdn.example/o.mp3", idempotency_key="k"
        )
        again = client.voices.create(
            "Once", voice_url="https://cdn.example/o.mp3", idempotency_key="k"
        )
        other = client.voices.create("Once", voice_url="https://cdn.example/o.mp3")
    assert first["voice_id"] == again["voice_id"] != other["voice_id"]
