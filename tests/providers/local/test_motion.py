"""A local motion control: the reference's motion estimated (global pans and a subject moving
over a still background), and the image moved along it; the output's own motion, measured the
same way, follows the reference's."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from kling_gateway.providers.local.motion import (
    motion_video,
    phase_shift,
    reference_path,
    to_gray,
    trajectory,
)
from kling_gateway.providers.local.render import RenderError, write_video
from tests.providers.local.media import (
    decode_track,
    decode_video,
    encode_audio,
    png,
    silence_then_tone,
    textured,
)

FPS = 8
COUNT = 16  # 2 s
Pixels = npt.NDArray[np.uint8]


def disc_path() -> npt.NDArray[np.float64]:
    """Where the subject is at each frame: a swing left and right, a drift down."""
    t = np.arange(COUNT) / FPS
    return np.stack([32 + 14 * np.sin(np.pi * t), 24 + 6 * t], axis=1)


def disc_frames() -> list[Pixels]:
    """A bright disc (the subject) moving over a still textured background."""
    background = textured(64, 64, seed=3)
    yy, xx = np.mgrid[0:64, 0:64]
    frames = []
    for cx, cy in disc_path():
        frame = background.copy()
        frame[(xx - cx) ** 2 + (yy - cy) ** 2 <= 36] = (250, 250, 250)
        frames.append(frame)
    return frames


def pan_frames(shifts: list[tuple[int, int]]) -> list[Pixels]:
    """A camera pan: a large texture seen through a moving 64x64 window."""
    big = textured(160, 160, seed=5)
    frames, x, y = [], 48, 48
    for dx, dy in [(0, 0), *shifts]:
        # The scene moves right by dx when the window moves left by dx.
        x, y = x - dx, y - dy
        frames.append(big[y : y + 64, x : x + 64].copy())
    return frames


def correlation(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def test_phase_shift_finds_a_known_shift() -> None:
    a = to_gray(textured(64, 64, seed=7))
    b = np.roll(a, (3, -5), axis=(0, 1))
    dx, dy = phase_shift(a, b)
    assert dx == pytest.approx(-5, abs=0.3) and dy == pytest.approx(3, abs=0.3)


def test_trajectory_of_a_camera_pan() -> None:
    shifts = [(2, 1), (2, 1), (3, 0), (1, -1), (-2, -2), (-3, 0)]
    path = trajectory([to_gray(f) for f in pan_frames(shifts)])
    expected = np.cumsum([(0, 0), *shifts], axis=0)
    assert np.abs(path - expected).max() < 1.0


def test_trajectory_of_a_subject_over_a_still_background() -> None:
    path = trajectory([to_gray(f) for f in disc_frames()])
    truth = disc_path() - disc_path()[0]
    assert correlation(path[:, 0], truth[:, 0]) > 0.95
    assert correlation(path[:, 1], truth[:, 1]) > 0.9
    # Of the right size too, not only the right shape.
    assert np.ptp(path[:, 0]) == pytest.approx(np.ptp(truth[:, 0]), rel=0.15)


def write_reference(path: Path, frames: list[Pixels], sound: bool = False) -> Path:
    tone = iter([silence_then_tone(len(frames) / FPS, loud_from=0.0)]) if sound else None
    write_video(path, 64, 64, Fraction(FPS), iter(frames), tone)
    return path


@pytest.mark.parametrize("kind", ["subject", "pan"])
def test_output_motion_follows_the_reference(tmp_path: Path, kind: str) -> None:
    frames = disc_frames() if kind == "subject" else pan_frames([(2, 1)] * 6 + [(-2, 0)] * 9)
    reference = write_reference(tmp_path / "ref.mp4", frames)
    image = png(textured(96, 54, seed=11))  # a 16:9 photo
    out = tmp_path / "out.mp4"

    result = motion_video(out, image, reference, orientation="image", max_side=64)

    assert (result.width, result.height) == (64, 36)  # framed like the photo
    assert result.frames == len(frames)  # the reference's length and rate
    assert abs(result.duration - len(frames) / FPS) < 0.2
    assert decode_track(out) is None
    moved = trajectory([to_gray(f) for f in decode_video(out)]) / (64, 36)
    wanted = reference_path(reference, 1000)
    for axis in (0, 1):
        assert correlation(moved[:, axis], wanted[:, axis]) > 0.9


def test_orientation_video_frames_like_the_reference_and_sound_is_kept(tmp_path: Path) -> None:
    reference = write_reference(tmp_path / "ref.mp4", disc_frames(), sound=True)
    out = tmp_path / "out.mp4"

    result = motion_video(
        out, png(textured(96, 54)), reference, orientation="video", max_side=64,
        keep_original_sound=True,
    )  # fmt: skip

    assert (result.width, result.height) == (64, 64)
    track = decode_track(out)
    assert track is not None and track[0] == "aac"
    assert float(np.sqrt(np.mean(track[1] ** 2))) > 0.2


def test_a_still_reference_gives_a_still_picture(tmp_path: Path) -> None:
    reference = write_reference(tmp_path / "ref.mp4", [textured(64, 64)] * 8)
    out = tmp_path / "out.mp4"
    motion_video(out, png(textured(64, 64, seed=2)), reference, max_side=64)
    frames = [f.astype(np.float64) for f in decode_video(out)]
    assert np.abs(frames[-1] - frames[0]).mean() < 3


def test_bad_inputs_fail_clearly(tmp_path: Path) -> None:
    reference = write_reference(tmp_path / "ref.mp4", disc_frames()[:4])
    with pytest.raises(RenderError, match="the motion image could not be decoded"):
        motion_video(tmp_path / "o.mp4", b"not an image", reference, max_side=64)
    audio_only = tmp_path / "a.mp3"
    audio_only.write_bytes(encode_audio(silence_then_tone(0.5), "mp3"))
    with pytest.raises(RenderError):
        motion_video(tmp_path / "o.mp4", png(textured(64, 64)), audio_only, max_side=64)
    assert not (tmp_path / "o.mp4").exists()


def test_a_reference_over_its_orientations_limit_is_refused(tmp_path: Path) -> None:
    # 11 s at 1 fps: over the 10 s of orientation `image`, within the 30 s of `video`.
    reference = tmp_path / "long.mp4"
    write_video(reference, 64, 64, Fraction(1), iter([textured(64, 64)] * 11))
    image = png(textured(64, 64))
    with pytest.raises(RenderError, match=r"is 11\.0 s long; .* `image` it may be at most 10 s"):
        motion_video(tmp_path / "o.mp4", image, reference, orientation="image", max_side=64)
    result = motion_video(tmp_path / "o.mp4", image, reference, orientation="video", max_side=64)
    assert result.frames == 11
