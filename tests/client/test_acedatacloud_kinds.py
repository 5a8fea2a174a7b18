"""The hosted service's own Python SDK (``acedatacloud``) against a live gateway for the §7
endpoints (docs/contract.md §7): its ``kling.motion(...)``, ``kling.lip_sync(**body)`` and
``kling.talking_photo(**body)``, blocking as it calls them, with the local provider rendering.
Its inputs come from a loopback server (the gateway may fetch private addresses here)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from acedatacloud import AceDataCloud
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.harness import make_settings
from tests.providers.local.media import (
    decode_track,
    encode_audio,
    png,
    silence_then_tone,
    still_video,
    textured,
)
from tests.real_gateway import RealGateway, real_gateway
from tests.servers import serve_asgi


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("inputs")
    bodies = {
        "photo.png": png(textured(96, 54)),
        "dance.mp4": still_video(folder / "dance.mp4", seconds=2.0, fps=8).read_bytes(),
        "speech.mp3": encode_audio(silence_then_tone(2.5), "mp3"),
    }

    async def serve(request: Request) -> Response:
        return Response(bodies[request.path_params["name"]])

    with serve_asgi(Starlette(routes=[Route("/{name}", serve)])) as url:
        yield url


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealGateway]:
    data = tmp_path_factory.mktemp("acedatacloud-kinds")
    settings_for = lambda port: make_settings(  # noqa: E731
        data, worker=True, local_delay=0.05, local_max_side=64, port=port,
        callback_allow_private=True,
    )  # fmt: skip
    with real_gateway(settings_for) as gw:
        gw.add_user("alice")
        yield gw


@pytest.fixture
def ace(server: RealGateway) -> Iterator[Any]:
    client = AceDataCloud(api_token=server.tokens["alice"], base_url=server.url, max_retries=0)
    yield client.kling


def _file(server: RealGateway, video_id: str) -> Path:
    return Path(server.settings.data_dir) / "videos" / f"{video_id}.mp4"


def test_motion(server: RealGateway, ace: Any, media: str) -> None:
    result = ace.motion(mode="std", image_url=f"{media}/photo.png",
                        video_url=f"{media}/dance.mp4", character_orientation="image")  # fmt: skip
    assert result["state"] == "succeed", result
    assert _file(server, result["video_id"]).stat().st_size > 0
    headers = {"authorization": f"Bearer {server.tokens['alice']}"}
    record = httpx.post(f"{server.url}/kling/tasks", json={"id": result["task_id"]},
                        headers=headers).json()  # fmt: skip
    assert record["type"] == "motion"


def test_lip_sync_of_a_video_url_with_an_audio_file(
    server: RealGateway, ace: Any, media: str
) -> None:
    clip = base64.b64encode(encode_audio(silence_then_tone(1.5), "wav")).decode()
    result = ace.lip_sync(mode="audio2video", video_url=f"{media}/dance.mp4",
                          audio_type="file", audio_file=clip)  # fmt: skip
    assert result["state"] == "succeed", result
    track = decode_track(_file(server, result["video_id"]))
    assert track is not None  # the audio is muxed in


def test_text_lip_sync_of_an_own_video(server: RealGateway, ace: Any, media: str) -> None:
    made = ace.generate(action="text2video", model="kling-v1", prompt="a face", duration=5)
    result = ace.lip_sync(mode="text2video", video_id=made["video_id"], text="hello there",
                          voice_id="any", voice_language="en")  # fmt: skip
    assert result["state"] == "succeed", result
    assert decode_track(_file(server, result["video_id"])) is not None


def test_talking_photo(server: RealGateway, ace: Any, media: str) -> None:
    result = ace.talking_photo(image_url=f"{media}/photo.png", audio_url=f"{media}/speech.mp3")
    assert result["state"] == "succeed", result
    assert result["source_video_url"] != result["video_url"]
