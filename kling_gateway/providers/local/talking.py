"""A local talking photo (docs/contract.md §7): Kling runs image2video on the photo and then
lip-syncs the result, and so does this, offline. The silent animation is image2video's gentle
zoom and pan into the photo (render.image_frames); the talking video is that animation with the
mouth (mouth.py) opened by the audio's loudness, drawn on the photo before each frame is cut
from it (so it moves with the face), and the audio carried as AAC. Both files are
returned: the second is the record's ``source_video_url``.

The frame's shape follows the photo (the nearest of 16:9, 9:16 and 1:1, as image2video
without an aspect ratio does), its resolution the ``mode``. The video lasts the requested
``duration``: longer audio is cut there, shorter audio is followed by silence (a closed mouth).
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from kling_gateway.providers.local.audio import Samples
from kling_gateway.providers.local.audio_in import AudioError, loudness_envelope
from kling_gateway.providers.local.lipsync import audio_under
from kling_gateway.providers.local.mouth import draw_mouth
from kling_gateway.providers.local.render import (
    AspectRatio,
    Mode,
    RenderedVideo,
    RenderError,
    decode_image,
    fit_image,
    frame_size,
    image_frames,
    write_video,
)

_RATIOS: dict[AspectRatio, float] = {"16:9": 16 / 9, "9:16": 9 / 16, "1:1": 1.0}


def nearest_aspect(width: int, height: int) -> AspectRatio:
    """The supported aspect ratio closest to ``width`` x ``height`` (on a log scale)."""
    ratio = width / height
    return min(_RATIOS, key=lambda name: abs(math.log(ratio / _RATIOS[name])))


def talking_photo(
    path: Path,
    silent_path: Path,
    image: bytes,
    samples: Samples,
    *,
    duration: float,
    mode: Mode = "pro",
    fps: int = 24,
    max_side: int | None = None,
    prompt: str = "",
) -> tuple[RenderedVideo, RenderedVideo]:
    """Write the talking video at ``path`` and the silent animation at ``silent_path`` (each
    atomically); return both as measured, talking first."""
    if not len(samples):
        raise AudioError("the audio holds no samples")
    count = round(duration * fps)
    if count < 1:
        raise RenderError(f"duration too short to hold a frame: {duration}")
    photo = decode_image(image, "talking-photo")
    width, height = frame_size(nearest_aspect(*photo.size), mode, max_side)
    start = fit_image(photo, width, height)
    rate = Fraction(fps)
    silent = write_video(silent_path, width, height, rate, image_frames(start, prompt, count))
    envelope = loudness_envelope(samples, fps, count)
    # The mouth is drawn on the photo, then zoomed and panned with it: it stays on the face.
    still = np.asarray(start, dtype=np.uint8)
    faces = (Image.fromarray(draw_mouth(still, float(value))) for value in envelope)
    frames = image_frames(start, prompt, count, faces)
    sound = iter([audio_under(samples, count, rate)])
    return write_video(path, width, height, rate, frames, sound), silent
