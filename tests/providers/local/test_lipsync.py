"""A local lip-sync, decoded: the audio is muxed in as AAC, the video's length follows the
audio (capped by the source), and the mouth region changes with the audio's loudness."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kling_gateway.providers.local.audio import SAMPLE_RATE
from kling_gateway.providers.local.audio_in import AudioError, decode_audio
from kling_gateway.providers.local.lipsync import lip_sync_video
from kling_gateway.providers.local.mouth import draw_mouth, mouth_box
from kling_gateway.providers.local.render import RenderError, probe_video
from tests.providers.local.media import (
    decode_track,
    decode_video,
    encode_audio,
    silence_then_tone,
    still_video,
    textured,
)

FPS = 8


def test_output_carries_the_audio_and_follows_its_length(tmp_path: Path) -> None:
    source = still_video(tmp_path / "src.mp4", seconds=2.0, fps=FPS)
    samples = decode_audio(encode_audio(silence_then_tone(1.0), "mp3"))
    out = tmp_path / "out.mp4"

    result = lip_sync_video(out, source, samples)

    assert result.frames == len(decode_video(out)) == FPS  # 1 s of audio, not the 2 s source
    assert abs(result.duration - 1.0) < 0.2
    track = decode_track(out)
    assert track is not None
    codec, decoded = track
    assert codec == "aac"
    assert abs(len(decoded) / SAMPLE_RATE - 1.0) < 0.1
    assert float(np.sqrt(np.mean(decoded[len(decoded) // 2 + 4096 :] ** 2))) > 0.2
    assert (result.width, result.height) == (64, 64)
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".part"] == []


def test_audio_longer_than_the_source_is_capped_by_it(tmp_path: Path) -> None:
    source = still_video(tmp_path / "src.mp4", seconds=1.0, fps=FPS)
    out = tmp_path / "out.mp4"

    result = lip_sync_video(out, source, silence_then_tone(2.0))

    assert result.frames == FPS
    assert abs(probe_video(out).duration - 1.0) < 0.2
    track = decode_track(out)
    assert track is not None
    assert len(track[1]) / SAMPLE_RATE < 1.2


def test_the_mouth_region_changes_with_loudness(tmp_path: Path) -> None:
    # Silent for the first second, loud for the second; the source never changes.
    source = still_video(tmp_path / "src.mp4", seconds=2.0, fps=FPS)
    out = tmp_path / "out.mp4"
    lip_sync_video(out, source, silence_then_tone(2.0))
    frames = [f.astype(np.float64) for f in decode_video(out)]
    assert len(frames) == 2 * FPS

    x0, y0, x1, y1 = mouth_box(64, 64)
    inside = np.zeros((64, 64), dtype=bool)
    inside[y0:y1, x0:x1] = True
    silent = np.mean(frames[1 : FPS - 1], axis=0)
    loud = np.mean(frames[FPS + 1 : -1], axis=0)
    change = np.abs(loud - silent).mean(axis=2)
    # Loud frames differ from silent ones in the mouth region, and (codec noise aside) only there.
    assert change[inside].mean() > 20
    assert change[inside].mean() > 10 * change[~inside].mean()
    # Within each half the mouth holds still: it follows the loudness, not the clock.
    assert np.abs(frames[2] - frames[5])[inside].mean() < 5


def test_drawn_mouth_opens_with_openness() -> None:
    frame = textured(64, 64)
    closed, half, wide = (draw_mouth(frame, v) for v in (0.0, 0.5, 1.0))
    dark = [int((f.mean(axis=2) < 50).sum()) for f in (closed, half, wide)]
    assert dark[0] < dark[1] < dark[2]
    x0, y0, x1, y1 = mouth_box(64, 64)
    outside = np.ones((64, 64), dtype=bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(wide[outside], frame[outside])
    assert np.array_equal(draw_mouth(frame, 0.0), closed)  # deterministic, input untouched


def test_empty_audio_and_a_bad_source_fail_clearly(tmp_path: Path) -> None:
    source = still_video(tmp_path / "src.mp4", seconds=0.5, fps=FPS)
    with pytest.raises(AudioError, match="no samples"):
        lip_sync_video(tmp_path / "o.mp4", source, np.zeros(0, dtype=np.float32))
    bogus = tmp_path / "bogus.mp4"
    bogus.write_bytes(b"not a video" * 100)
    with pytest.raises(RenderError):
        lip_sync_video(tmp_path / "o.mp4", bogus, silence_then_tone(0.5))
    assert not (tmp_path / "o.mp4").exists()
