"""A local talking photo, decoded: the animated photo with the audio and a mouth that follows
its loudness, for the requested duration, and the silent animation beside it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kling_gateway.providers.local.audio import SAMPLE_RATE
from kling_gateway.providers.local.audio_in import AudioError
from kling_gateway.providers.local.mouth import mouth_box
from kling_gateway.providers.local.render import RenderError
from kling_gateway.providers.local.talking import nearest_aspect, talking_photo
from tests.providers.local.media import decode_track, decode_video, png, silence_then_tone, textured

FPS = 8


def render(tmp_path: Path, audio_seconds: float, duration: float) -> tuple[Path, Path]:
    talking, silent = tmp_path / "talk.mp4", tmp_path / "silent.mp4"
    talking_photo(
        talking, silent, png(textured(48, 48)), silence_then_tone(audio_seconds),
        duration=duration, fps=FPS, max_side=48,
    )  # fmt: skip
    return talking, silent


def test_talking_video_carries_the_audio_for_the_duration(tmp_path: Path) -> None:
    talking, silent = render(tmp_path, audio_seconds=2.0, duration=2.0)

    frames = decode_video(talking)
    assert len(frames) == 2 * FPS and frames[0].shape == (48, 48, 3)
    track = decode_track(talking)
    assert track is not None and track[0] == "aac"
    assert abs(len(track[1]) / SAMPLE_RATE - 2.0) < 0.1
    # The silent animation: same frames count and size, no audio stream.
    assert len(decode_video(silent)) == 2 * FPS
    assert decode_track(silent) is None


def test_the_photo_moves_and_the_mouth_follows_the_loudness(tmp_path: Path) -> None:
    talking, silent = render(tmp_path, audio_seconds=2.0, duration=2.0)
    spoken = [f.astype(np.float64) for f in decode_video(talking)]
    still = [f.astype(np.float64) for f in decode_video(silent)]

    # The animation itself moves (zoom and pan), even where there is no mouth.
    assert np.abs(still[-1] - still[0]).mean() > 3
    x0, y0, x1, y1 = mouth_box(48, 48)
    inside = np.zeros((48, 48), dtype=bool)
    inside[y0:y1, x0:x1] = True
    # Against the silent animation, the talking one differs in the mouth region, more when loud.
    diff = [np.abs(s - q).mean(axis=2) for s, q in zip(spoken, still, strict=True)]
    quiet, loud = np.mean(diff[1:7], axis=0), np.mean(diff[9:15], axis=0)
    assert loud[inside].mean() > 2 * quiet[inside].mean()
    assert loud[inside].mean() > 10 * loud[~inside].mean()


def test_short_audio_is_followed_by_silence_long_audio_is_cut(tmp_path: Path) -> None:
    talking, _ = render(tmp_path, audio_seconds=0.5, duration=1.0)
    track = decode_track(talking)
    assert track is not None and abs(len(track[1]) / SAMPLE_RATE - 1.0) < 0.1
    assert len(decode_video(talking)) == FPS

    talking, _ = render(tmp_path, audio_seconds=2.0, duration=1.0)
    track = decode_track(talking)
    assert track is not None and abs(len(track[1]) / SAMPLE_RATE - 1.0) < 0.1


@pytest.mark.parametrize(
    ("size", "aspect"), [((1920, 1080), "16:9"), ((1000, 1700), "9:16"), ((500, 520), "1:1")]
)
def test_frame_shape_follows_the_photo(size: tuple[int, int], aspect: str) -> None:
    assert nearest_aspect(*size) == aspect


def test_bad_photo_or_empty_audio_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match="the talking-photo image could not be decoded"):
        talking_photo(
            tmp_path / "a.mp4", tmp_path / "b.mp4", b"nope", silence_then_tone(1.0),
            duration=1.0, fps=FPS, max_side=48,
        )  # fmt: skip
    with pytest.raises(AudioError):
        talking_photo(
            tmp_path / "a.mp4", tmp_path / "b.mp4", png(textured(48, 48)),
            np.zeros(0, dtype=np.float32), duration=1.0, fps=FPS, max_side=48,
        )  # fmt: skip
    assert list(tmp_path.iterdir()) == []
