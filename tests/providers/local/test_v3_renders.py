"""The §6 shapes rendered by the local provider (docs/contract.md §6), checked by decoding the
MP4 with PyAV: storyboard shot boundaries by frame difference at the declared times, the audio
track present and not silent, Omni images in the frames, a reference video carried through.
References come from a real loopback HTTP server, through the guarded fetcher."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kling_gateway.domain.ids import new_object_id, new_task_id, new_trace_id
from kling_gateway.domain.task import Task
from kling_gateway.domain.videos import params_from_stored
from kling_gateway.providers.local.render import RenderSpec, render_video
from kling_gateway.storage.sqlite import SQLiteStore
from tests.providers.local.test_images import failure, make_provider, run
from tests.servers import serve_asgi

FPS = 8
RED, BLUE, GREEN = (220, 20, 20), (20, 20, 220), (20, 200, 20)


def png(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (160, 90), colour).save(out, format="PNG")
    return out.getvalue()


def reference_video(path: Path) -> bytes:
    render_video(path, RenderSpec(prompt="the reference", duration=2, fps=FPS, max_side=64,
                                  audio=True))  # fmt: skip
    return path.read_bytes()


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    video = reference_video(tmp_path_factory.mktemp("ref") / "ref.mp4")
    bodies = {"red.png": png(RED), "blue.png": png(BLUE), "green.png": png(GREEN),
              "ref.mp4": video, "text.mp4": b"this is not a video"}  # fmt: skip

    async def serve(request: Request) -> Response:
        return Response(bodies[request.path_params["name"]])

    with serve_asgi(Starlette(routes=[Route("/{name}", serve)])) as url:
        yield url


@pytest.fixture
async def provider(store: SQLiteStore, tmp_path: Path) -> AsyncIterator[Any]:
    prov = make_provider(store, tmp_path, allow_private=True)
    prov._fps = FPS
    yield prov
    await prov.aclose()


def task_of(**request: Any) -> Task:
    params = params_from_stored(request)
    assert params is not None, f"invalid request {request}"
    return Task(
        id=new_task_id(), object_id=new_object_id(), user_id="user-1", application_id="app-1",
        credential_id="cred-1", trace_id=new_trace_id(), request=request, params=params,
        created_at=0.0,
    )  # fmt: skip


async def rendered(provider: Any, tmp_path: Path, **request: Any) -> Path:
    status = await run(provider, task_of(**request))
    assert status.video is not None, status
    return tmp_path / "videos" / f"{status.video.video_id}.mp4"


def frames(path: Path) -> list[np.ndarray[Any, Any]]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24").astype(np.float32) for f in container.decode(video=0)]


def cuts(path: Path, n: int) -> list[int]:
    """The frame indices where the ``n`` largest changes from the frame before happen."""
    seen = frames(path)
    diffs = [float(np.abs(seen[i] - seen[i - 1]).mean()) for i in range(1, len(seen))]
    return sorted(i + 1 for i in np.argsort(diffs)[-n:])


def audio_rms(path: Path) -> float | None:
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return None
        assert container.streams.audio[0].codec_context.name == "aac"
        samples = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    return float(np.sqrt(np.mean(samples**2)))


V3 = {"action": "text2video", "model": "kling-v3", "prompt": "unused"}


async def test_a_customised_storyboard_changes_at_the_declared_boundaries(
    provider: Any, tmp_path: Path
) -> None:
    shots = [{"index": 1, "prompt": "a red fox", "duration": 1},
             {"index": 2, "prompt": "a blue ship at sea", "duration": 2},
             {"index": 3, "prompt": "green hills at dawn", "duration": 1}]  # fmt: skip
    path = await rendered(provider, tmp_path, **V3, duration=4, multi_shot=True,
                          shot_type="customize", multi_prompt=shots)  # fmt: skip
    assert len(frames(path)) == 4 * FPS
    assert cuts(path, 2) == [1 * FPS, 3 * FPS]


async def test_an_intelligence_storyboard_splits_the_prompt(provider: Any, tmp_path: Path) -> None:
    prompt = "A fox runs through snow. A ship sails at night. A hill glows at dawn."
    path = await rendered(provider, tmp_path, **{**V3, "prompt": prompt}, duration=3,
                          multi_shot=True, shot_type="intelligence")  # fmt: skip
    assert cuts(path, 2) == [1 * FPS, 2 * FPS]


async def test_generate_audio_gives_a_non_silent_aac_track(provider: Any, tmp_path: Path) -> None:
    loud = await rendered(provider, tmp_path, **V3, duration=3, generate_audio=True)
    rms = audio_rms(loud)
    assert rms is not None and rms > 0.02
    silent = await rendered(provider, tmp_path, **V3, duration=3)
    assert audio_rms(silent) is None


async def test_turbo_always_has_audio(provider: Any, tmp_path: Path) -> None:
    path = await rendered(provider, tmp_path, action="text2video", model="kling-v3-turbo",
                          prompt="a drum", duration=3)  # fmt: skip
    rms = audio_rms(path)
    assert rms is not None and rms > 0.02


def centre(frame: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    h, w = frame.shape[:2]
    return frame[h // 4 : h // 2, w // 4 : 3 * w // 4].reshape(-1, 3).mean(axis=0)


async def test_omni_frames_are_the_first_and_last_frame(
    provider: Any, base: str, tmp_path: Path
) -> None:
    images = [{"image_url": f"{base}/red.png", "type": "first_frame"},
              {"image_url": f"{base}/blue.png", "type": "end_frame"}]  # fmt: skip
    path = await rendered(provider, tmp_path, action="text2video", model="kling-o1",
                          prompt="red to blue", image_list=images)  # fmt: skip
    seen = frames(path)
    np.testing.assert_allclose(centre(seen[0]), RED, atol=14)
    np.testing.assert_allclose(centre(seen[-1]), BLUE, atol=14)


async def test_other_omni_images_are_composited(provider: Any, base: str, tmp_path: Path) -> None:
    path = await rendered(provider, tmp_path, action="text2video", model="kling-o1",
                          prompt="<<<image_1>>> on a table",
                          image_list=[{"image_url": f"{base}/green.png"}])  # fmt: skip
    first = frames(path)[0]
    h = first.shape[0]
    side = int(h * 0.28)
    margin = max(1, h // 40)
    thumb = first[h - side - margin + 1 : h - margin - 1, margin + 1 : margin + side - 1]
    np.testing.assert_allclose(thumb.reshape(-1, 3).mean(axis=0), GREEN, atol=16)


async def test_a_base_video_is_carried_through_with_its_sound(
    provider: Any, base: str, tmp_path: Path
) -> None:
    source = tmp_path / "source.mp4"
    source.write_bytes(reference_video(tmp_path / "again.mp4"))
    video = [{"video_url": f"{base}/ref.mp4", "refer_type": "base", "keep_original_sound": "yes"}]
    path = await rendered(provider, tmp_path, action="text2video", model="kling-o1",
                          prompt="edit <<<video_1>>>", video_list=video)  # fmt: skip
    ours, theirs = frames(path), frames(source)
    assert len(ours) == 5 * FPS
    for i in (0, len(theirs) - 1, len(theirs)):  # looped past its end
        assert float(np.abs(ours[i] - theirs[i % len(theirs)]).mean()) < 6
    rms, source_rms = audio_rms(path), audio_rms(source)
    assert rms is not None and source_rms is not None
    assert rms == pytest.approx(source_rms, rel=0.25)


async def test_a_feature_video_lends_its_look(provider: Any, base: str, tmp_path: Path) -> None:
    plain = await rendered(provider, tmp_path, action="text2video", model="kling-o1",
                           prompt="a calm lake")  # fmt: skip
    video = [{"video_url": f"{base}/ref.mp4", "refer_type": "feature"}]
    styled = await rendered(provider, tmp_path, action="text2video", model="kling-o1",
                            prompt="a calm lake", video_list=video)  # fmt: skip
    look = frames(Path(tmp_path / "videos") / styled.name)[0]
    source = tmp_path / "look.mp4"
    source.write_bytes(reference_video(tmp_path / "look-src.mp4"))
    target = frames(source)[0].reshape(-1, 3).mean(axis=0)
    before = np.abs(frames(plain)[0].reshape(-1, 3).mean(axis=0) - target).sum()
    after = np.abs(look.reshape(-1, 3).mean(axis=0) - target).sum()
    assert after < before


async def test_a_reference_that_is_not_a_video_fails_the_task(
    provider: Any, base: str, tmp_path: Path
) -> None:
    video = [{"video_url": f"{base}/text.mp4", "refer_type": "feature"}]
    error = await failure(provider, task_of(action="text2video", model="kling-o1", prompt="x",
                                            video_list=video))  # fmt: skip
    assert error.code == "render_failed"
    assert "not a video" in error.message
