"""A local lip-sync (docs/contract.md §7): the source video re-encoded with the request's audio
muxed in as AAC and a mouth (mouth.py) opening with the audio's loudness over each frame.

The result keeps the source's size and frame rate. Its length follows the audio, capped by
the source: a short clip of speech gives a short video, speech longer than the source is cut
where the source ends (as Kling's own lip-sync does).
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import numpy.typing as npt

from kling_gateway.providers.local.audio import SAMPLE_RATE, Samples
from kling_gateway.providers.local.audio_in import AudioError, loudness_envelope
from kling_gateway.providers.local.mouth import draw_mouth
from kling_gateway.providers.local.render import (
    Pixels,
    RenderedVideo,
    RenderError,
    decode_frames,
    probe_video,
    source_rate,
    write_video,
)


def lip_sync_video(path: Path, source: Path, samples: Samples) -> RenderedVideo:
    """Write the lip-synced MP4 of ``source`` and ``samples`` at ``path`` (atomically)."""
    if not len(samples):
        raise AudioError("the audio holds no samples")
    info = probe_video(source)
    if info.frames < 1:
        raise RenderError(f"source video {source.name} has no frames")
    rate = source_rate(source, 24)
    count = frames_for(len(samples) / SAMPLE_RATE, rate, info.frames)
    envelope = loudness_envelope(samples, float(rate), count)
    # yuv420p needs even sides; Kling's videos have them, an odd upload loses one row/column.
    width, height = info.width - info.width % 2, info.height - info.height % 2
    if width < 2 or height < 2:
        raise RenderError(f"source video {source.name} is too small: {info.width}x{info.height}")
    frames = mouthed(decode_frames(source), envelope, width, height)
    return write_video(path, width, height, rate, frames, iter([audio_under(samples, count, rate)]))


def frames_for(audio_seconds: float, rate: Fraction, available: int) -> int:
    """Frames of a video following ``audio_seconds`` at ``rate``, capped by ``available``."""
    return max(1, min(available, round(audio_seconds * rate)))


def mouthed(
    frames: Iterator[Pixels], envelope: npt.NDArray[np.float32], width: int, height: int
) -> Iterator[Pixels]:
    """The first ``len(envelope)`` of ``frames`` (cut to ``width`` x ``height``), each with the
    mouth opened by its envelope value."""
    for pixels, loudness in zip(frames, envelope, strict=False):
        yield draw_mouth(pixels[:height, :width], float(loudness))


def audio_under(samples: Samples, count: int, rate: Fraction) -> Samples:
    """The audio under ``count`` frames, padded with silence if it is shorter."""
    total = round(count / rate * SAMPLE_RATE)
    if len(samples) >= total:
        return samples[:total]
    return np.concatenate([samples, np.zeros(total - len(samples), dtype=np.float32)])
