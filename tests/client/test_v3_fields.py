"""The SDK's §6 fields (docs/contract.md §6) against the real gateway: each is sent, validated
and stored, and a storyboard with audio renders (local provider) into what it asked for."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import av
import pytest

from kling_gateway.client import BadRequestError, Client
from tests.harness import make_settings
from tests.real_gateway import RealGateway, real_gateway


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealGateway]:
    data = tmp_path_factory.mktemp("sdk-v3")
    settings_for = lambda port: make_settings(  # noqa: E731
        data, worker=True, local_delay=0.05, local_max_side=64, port=port
    )
    with real_gateway(settings_for) as gw:
        gw.add_user("alice")
        yield gw


@pytest.fixture
def client(server: RealGateway) -> Iterator[Client]:
    with Client(server.url, token=server.tokens["alice"], max_retries=0) as c:
        yield c


def test_omni_references_and_elements_are_sent(server: RealGateway, client: Client) -> None:
    store = server.app.ctx.store
    element = server.submit(
        store.add_asset(
            user_id=server.user_ids["alice"], kind="element", upstream_id="k-1", now=time.time()
        )
    ).result(10)
    created = client.videos.create(
        "<<<image_1>>> in the style of <<<video_1>>>",
        model="kling-o1",
        image_list=[{"image_url": "https://img.example/a.png", "type": "first_frame"}],
        video_list=[{"video_url": "https://v.example/a.mp4", "refer_type": "feature"}],
        element_list=[{"element_id": element}],
        async_=True,
    )
    record = client.tasks.retrieve(created["task_id"])
    request = record["request"]
    assert request["image_list"] == [
        {"image_url": "https://img.example/a.png", "type": "first_frame"}
    ]
    assert request["video_list"][0]["refer_type"] == "feature"
    assert request["element_list"] == [{"element_id": element}]


def test_a_storyboard_with_audio_renders(
    server: RealGateway, client: Client, tmp_path: Path
) -> None:
    shots = [
        {"index": 1, "prompt": "a fox", "duration": 2},
        {"index": 2, "prompt": "a ship", "duration": 1},
    ]
    record = client.videos.create(
        model="kling-v3", duration=3, multi_shot=True, shot_type="customize",
        multi_prompt=shots, generate_audio=True,
    )  # fmt: skip
    assert record["state"] == "succeed", record
    path = Path(server.settings.data_dir) / "videos" / f"{record['video_id']}.mp4"
    with av.open(str(path)) as container:
        assert [s.type for s in container.streams] == ["video", "audio"]
    assert float(record["duration"]) == pytest.approx(3.0, abs=0.2)


def test_a_rule_of_section_6_is_a_bad_request(client: Client) -> None:
    with pytest.raises(BadRequestError) as info:
        client.videos.create("x", model="kling-v3-turbo", generate_audio=False, async_=True)
    assert "`generate_audio`" in str(info.value)
