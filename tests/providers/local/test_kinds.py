"""The §7 kinds through the local provider (docs/contract.md §7): motion, lip-sync (audio URL,
base64 audio file, text) and talking-photo, their inputs served by a real loopback HTTP server
and fetched through the guarded fetcher, the results decoded; bad audio fails the task."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kling_gateway.domain.ids import new_object_id, new_task_id, new_trace_id
from kling_gateway.domain.kinds import KINDS
from kling_gateway.domain.task import Task
from kling_gateway.infra.files import videos_of
from kling_gateway.protocol.task import TaskState
from kling_gateway.providers.local.audio import SAMPLE_RATE
from kling_gateway.providers.local.provider import LocalProvider
from kling_gateway.providers.local.render import probe_video
from kling_gateway.storage.sqlite import SQLiteStore
from tests.providers.local.media import (
    decode_track,
    decode_video,
    encode_audio,
    png,
    silence_then_tone,
    still_video,
    textured,
)
from tests.providers.local.test_images import FPS, failure, make_provider, run
from tests.providers.local.test_motion import disc_frames, write_reference
from tests.providers.local.test_provider import record_success
from tests.servers import serve_asgi


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("inputs")
    bodies = {
        "photo.png": png(textured(96, 54)),
        "dance.mp4": write_reference(folder / "dance.mp4", disc_frames()).read_bytes(),
        "face.mp4": still_video(folder / "face.mp4", seconds=2.0, fps=FPS).read_bytes(),
        "speech.mp3": encode_audio(silence_then_tone(1.5), "mp3"),
        "speech.m4a": encode_audio(silence_then_tone(0.5), "m4a"),
        "noise.mp3": b"ID3 this is no audio at all" * 40,
        "list.mp4": b"ffconcat version 1.0\nfile 'other.mp4'\n",
    }

    async def serve(request: Request) -> Response:
        name = request.path_params["name"]
        return Response(bodies[name]) if name in bodies else Response(status_code=404)

    with serve_asgi(Starlette(routes=[Route("/{name}", serve)])) as url:
        yield url


@pytest.fixture
async def provider(store: SQLiteStore, tmp_path: Path) -> AsyncIterator[LocalProvider]:
    prov = make_provider(store, tmp_path, allow_private=True)
    yield prov
    await prov.aclose()


def task_of(task_type: str, **request: Any) -> Task:
    (kind,) = [k for k in KINDS if k.task_type == task_type]
    params = kind.validate(msgspec.convert(request, kind.body))
    return Task(
        id=new_task_id(), object_id=new_object_id(), user_id="user-1", application_id="app-1",
        credential_id="cred-1", trace_id=new_trace_id(), request=request, params=params,
        created_at=0.0, type=task_type,
    )  # fmt: skip


def file_of(tmp_path: Path, video_id: str) -> Path:
    return tmp_path / "videos" / f"{video_id}.mp4"


async def test_motion_moves_the_photo_along_the_reference(
    provider: LocalProvider, base: str, tmp_path: Path
) -> None:
    task = task_of("motion", image_url=f"{base}/photo.png", video_url=f"{base}/dance.mp4",
                   character_orientation="image", mode="std")  # fmt: skip
    status = await run(provider, task)

    assert status.state is TaskState.SUCCEED and status.video is not None
    assert status.video.source_video_url is None
    path = file_of(tmp_path, status.video.video_id)
    measured = probe_video(path)
    assert (measured.width, measured.height, measured.frames) == (64, 36, len(disc_frames()))
    assert status.video.duration == "2.0"
    seen = [f.astype(np.float64) for f in decode_video(path)]
    assert np.abs(seen[4] - seen[0]).mean() > 3  # the reference moves, so does the photo


async def test_lip_sync_with_an_audio_url_follows_the_audio(
    provider: LocalProvider, base: str, tmp_path: Path
) -> None:
    task = task_of("lip-sync", mode="audio2video", video_url=f"{base}/face.mp4",
                   audio_url=f"{base}/speech.mp3")  # fmt: skip
    status = await run(provider, task)

    assert status.state is TaskState.SUCCEED and status.video is not None
    path = file_of(tmp_path, status.video.video_id)
    assert abs(probe_video(path).duration - 1.5) < 0.2  # the audio's 1.5 s, not the source's 2
    track = decode_track(path)
    assert track is not None and track[0] == "aac"
    assert abs(len(track[1]) / SAMPLE_RATE - 1.5) < 0.2


async def test_lip_sync_of_an_own_video_with_a_base64_audio_file(
    provider: LocalProvider, store: SQLiteStore, base: str, tmp_path: Path
) -> None:
    source_task = task_of("lip-sync", mode="audio2video", video_url=f"{base}/face.mp4",
                          audio_url=f"{base}/speech.mp3")  # fmt: skip
    source = await run(provider, source_task)
    await record_success(store, source_task, source)
    assert source.video is not None
    audio = base64.b64encode(encode_audio(silence_then_tone(1.0), "wav")).decode()

    task = task_of("lip-sync", mode="audio2video", video_id=source.video.video_id,
                   audio_type="file", audio_file=audio)  # fmt: skip
    status = await run(provider, task)

    assert status.state is TaskState.SUCCEED and status.video is not None
    assert abs(probe_video(file_of(tmp_path, status.video.video_id)).duration - 1.0) < 0.2


async def test_text_lip_sync_speaks_offline(
    provider: LocalProvider, base: str, tmp_path: Path
) -> None:
    task = task_of("lip-sync", mode="text2video", video_url=f"{base}/face.mp4", text="hi",
                   voice_id="v1", voice_language="en", voice_speed=1.0)  # fmt: skip
    status = await run(provider, task)

    assert status.state is TaskState.SUCCEED and status.video is not None
    track = decode_track(file_of(tmp_path, status.video.video_id))
    assert track is not None
    assert float(np.sqrt(np.mean(track[1] ** 2))) > 0.05


async def test_talking_photo_answers_the_silent_animation_too(
    provider: LocalProvider, store: SQLiteStore, base: str, tmp_path: Path
) -> None:
    task = task_of("talking-photo", image_url=f"{base}/photo.png", audio_url=f"{base}/speech.mp3")
    status = await run(provider, task)

    assert status.state is TaskState.SUCCEED and status.video is not None
    assert status.video.duration == "5.0"
    silent_id = task.provider_data["source_video_id"]
    assert status.video.source_video_id == silent_id
    # stored as the file's stable path; the API makes it absolute when it sends it (domain/links)
    assert status.video.source_video_url == f"/files/videos/{silent_id}.mp4"
    talking, silent = file_of(tmp_path, status.video.video_id), file_of(tmp_path, silent_id)
    assert decode_track(talking) is not None and decode_track(silent) is None
    assert len(decode_video(talking)) == len(decode_video(silent)) == 5 * FPS
    # A deleted talking photo takes both files with it.
    assert set(videos_of(task)) == {status.video.video_id, silent_id}


@pytest.mark.parametrize(
    ("task_type", "request_", "code", "words"),
    [
        ("lip-sync", {"mode": "audio2video", "video_url": "face.mp4", "audio_url": "noise.mp3"},
         "render_failed", "the audio could not be decoded"),
        ("lip-sync", {"mode": "audio2video", "video_url": "face.mp4", "audio_url": "gone.mp3"},
         "audio_fetch_failed", "could not fetch the audio (`audio_url`)"),
        ("talking-photo", {"image_url": "photo.png", "audio_url": "noise.mp3"},
         "render_failed", "the audio could not be decoded"),
        ("motion", {"image_url": "photo.png", "video_url": "speech.m4a",
                    "character_orientation": "video", "mode": "std"},
         "render_failed", "the video of `video_url` has no video stream"),
        ("lip-sync", {"mode": "audio2video", "video_url": "list.mp4", "audio_url": "speech.mp3"},
         "render_failed", "the video of `video_url` is not an MP4 or MOV file"),
    ],
)  # fmt: skip
async def test_unusable_inputs_fail_the_task_with_a_clear_reason(
    provider: LocalProvider, base: str, tmp_path: Path,
    task_type: str, request_: dict[str, str], code: str, words: str,
) -> None:  # fmt: skip
    request = {k: f"{base}/{v}" if k.endswith("_url") else v for k, v in request_.items()}
    error = await failure(provider, task_of(task_type, **request))
    assert (error.code, error.retryable) == (code, False), error.message
    assert words in error.message
    assert list((tmp_path / "videos").glob("*.mp4")) == []
