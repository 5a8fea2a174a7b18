"""The §6 shapes of a local render (docs/contract.md §6), as frames:

- a storyboard is its shots one after the other, each drawn from its own prompt, so the picture
  changes exactly at the declared boundaries; ``intelligence`` splits the prompt into shots
  itself (by sentence, else in halves) and shares the duration out in whole seconds;
- Omni reference images are composited, as a row of thumbnails along the bottom edge, over
  every frame (first and end frames are the video's first and last frame instead);
- a ``base`` reference video is the video edited: its frames, fitted to the output and looped
  to the duration, carried through; a ``feature`` one lends its look, its mean colour washed
  over the frames.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageOps

from kling_gateway.providers.local import render

Pixels = render.Pixels
_SENTENCE = re.compile(r"(?<=[.!?;])\s+|\n+")
_THUMB = 0.28  # a reference thumbnail's height, as a share of the frame's
_FEATURE_WASH = 0.35


def split_prompt(prompt: str, duration: int, max_shots: int = 6) -> list[tuple[str, int]]:
    """An ``intelligence`` storyboard: the prompt's sentences as shots (its halves when it is
    one sentence), at most ``max_shots`` and at most one per second, sharing ``duration``."""
    parts = [p.strip() for p in _SENTENCE.split(prompt) if p.strip()]
    if len(parts) < 2:
        words = prompt.split()
        half = max(1, len(words) // 2)
        parts = [" ".join(words[:half]), " ".join(words[half:])] if len(words) > 1 else [prompt]
    parts = parts[: max(1, min(max_shots, duration))]
    base, extra = divmod(duration, len(parts))
    return [(text, base + (1 if i < extra else 0)) for i, text in enumerate(parts)]


def storyboard_frames(
    shots: tuple[tuple[str, float], ...], width: int, height: int, fps: int
) -> Iterator[Pixels]:
    """Each shot's scene from its own prompt, for its own whole number of frames."""
    done = 0.0
    for prompt, seconds in shots:
        # Frame counts from the running total, so rounding never moves a boundary.
        count = round((done + seconds) * fps) - round(done * fps)
        done += seconds
        yield from render.scene_frames(prompt, width, height, count, fps)


def thumbnails(images: tuple[bytes, ...], width: int, height: int) -> list[Image.Image]:
    side = max(4, int(height * _THUMB))
    return [ImageOps.fit(render.decode_image(data, "reference"), (side, side)) for data in images]


def composited(frames: Iterator[Pixels], thumbs: list[Image.Image]) -> Iterator[Pixels]:
    """``frames`` with the reference thumbnails along the bottom edge, left to right."""
    for frame in frames:
        out = np.array(frame, dtype=np.uint8, copy=True)
        height, width = out.shape[:2]
        margin = max(1, height // 40)
        left = margin
        for thumb in thumbs:
            w, h = thumb.size
            if left + w > width:
                break
            top = height - h - margin
            out[top : top + h, left : left + w] = np.asarray(thumb, dtype=np.uint8)
            left += w + margin
        yield out


def base_frames(source: Path, width: int, height: int, count: int) -> Iterator[Pixels]:
    """The reference video's own frames, fitted to the output, looped to ``count``."""
    first = True
    made = 0
    while made < count:
        seen = 0
        for frame in _decoded(source):
            seen += 1
            image = ImageOps.fit(Image.fromarray(frame), (width, height))
            yield np.asarray(image, dtype=np.uint8)
            made += 1
            if made >= count:
                return
        if seen == 0:
            if first:
                raise render.RenderError(f"reference video {source.name} has no frames")
            return
        first = False


def feature_look(source: Path) -> Pixels:
    """The reference video's look: the mean colour of its first frame."""
    for frame in _decoded(source):
        return np.asarray(frame.reshape(-1, 3).mean(axis=0), dtype=np.uint8)
    raise render.RenderError(f"reference video {source.name} has no frames")


def washed(frames: Iterator[Pixels], look: Pixels) -> Iterator[Pixels]:
    tint = look.astype(np.float32) * _FEATURE_WASH
    for frame in frames:
        yield (frame.astype(np.float32) * (1 - _FEATURE_WASH) + tint).astype(np.uint8)


def _decoded(source: Path) -> Iterator[Pixels]:
    try:
        with av.open(str(source)) as container:
            if not container.streams.video:
                raise render.RenderError(f"reference video {source.name} is not a video")
            for frame in container.decode(video=0):
                yield np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)
    except av.FFmpegError as exc:
        raise render.RenderError(f"reference video {source.name} is not a video: {exc}") from exc
