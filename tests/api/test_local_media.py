"""The §7 kinds end to end in one process with the local provider (docs/contract.md §7): the
API, the worker and real renders; the answers name files the gateway serves, decoded here."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kling_gateway.providers.local.audio import SAMPLE_RATE
from tests.harness import AppHarness
from tests.providers.local.media import (
    decode_track,
    decode_video,
    encode_audio,
    png,
    silence_then_tone,
    still_video,
    textured,
)
from tests.servers import serve_asgi


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("inputs")
    bodies = {
        "photo.png": png(textured(96, 54)),
        "face.mp4": still_video(folder / "face.mp4", seconds=2.0, fps=8).read_bytes(),
        "speech.wav": encode_audio(silence_then_tone(1.5), "wav"),
        "broken.mp3": b"ID3 nothing decodable here" * 30,
    }

    async def serve(request: Request) -> Response:
        return Response(bodies[request.path_params["name"]])

    with serve_asgi(Starlette(routes=[Route("/{name}", serve)])) as url:
        yield url


async def download(gateway: AppHarness, url: str, path: Path) -> Path:
    public = gateway.settings.resolved_public_url
    response = await gateway.client.get(url.removeprefix(public))
    assert response.status_code == 200, response.text
    await asyncio.to_thread(path.write_bytes, response.content)
    return path


async def test_talking_photo_answers_both_videos(
    gateway_with_worker: AppHarness, base: str, tmp_path: Path
) -> None:
    gateway = gateway_with_worker
    body = {"image_url": f"{base}/photo.png", "audio_url": f"{base}/speech.wav"}
    response = await gateway.create("/kling/talking-photo", body)

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["state"] == "succeed" and answer["duration"] == "5.0"
    talking = await download(gateway, answer["video_url"], tmp_path / "talking.mp4")
    silent = await download(gateway, answer["source_video_url"], tmp_path / "silent.mp4")
    track = decode_track(talking)
    assert track is not None and track[0] == "aac"
    assert decode_track(silent) is None
    assert len(decode_video(talking)) == len(decode_video(silent))
    record = (await gateway.tasks({"id": answer["task_id"]})).json()
    assert record["type"] == "talking-photo"
    assert record["response"]["source_video_url"] == answer["source_video_url"]


async def test_lip_sync_follows_the_audio_and_bad_audio_fails_the_task(
    gateway_with_worker: AppHarness, base: str, tmp_path: Path
) -> None:
    gateway = gateway_with_worker
    body = {"mode": "audio2video", "video_url": f"{base}/face.mp4"}
    response = await gateway.create("/kling/lip-sync", {**body, "audio_url": f"{base}/speech.wav"})

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["duration"] == "1.5"  # the audio's length, not the source's 2 s
    video = await download(gateway, answer["video_url"], tmp_path / "lip.mp4")
    track = decode_track(video)
    assert track is not None and abs(len(track[1]) / SAMPLE_RATE - 1.5) < 0.2

    failed = await gateway.create("/kling/lip-sync", {**body, "audio_url": f"{base}/broken.mp3"})
    answer = failed.json()
    assert answer["success"] is False, answer
    assert "the audio could not be decoded" in failed.text
    assert "Traceback" not in failed.text
