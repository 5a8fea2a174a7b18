"""A local motion control (docs/contract.md §7): the image's character performs the motion of
the reference video. Offline there is no pose model, so "the motion" is the reference's
trajectory, estimated frame to frame with numpy, and the image is moved along it:

- global motion (a camera pan, or a subject filling the frame) is the shift between two frames
  found by phase correlation (the peak of the normalised cross-power spectrum, refined to a
  fraction of a pixel by a parabola through its neighbours);
- local motion (a subject moving over a still background: a step whose shift explains the
  change worse than standing still) is followed, over each run of such steps, as the centroid
  of what differs from that run's median frame (its background).

Their sum, accumulated, is the subject's path in shares of the reference's width and height;
the output moves the image by the same shares of its own frame, one output frame per reference
frame (so the output keeps the reference's length and rate). The image is fitted with a margin
around it, so a moving picture does not uncover blank edges (beyond the margin, edge pixels
repeat). ``character_orientation`` picks the frame's shape (``image`` frames like the photo,
``video`` like the reference) and the reference's longest length (10 s and 30 s, as on Kling).
``keep_original_sound`` carries the reference's audio.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from PIL import Image

from kling_gateway.protocol.enums import MOTION_MAX_SECONDS
from kling_gateway.providers.local import audio
from kling_gateway.providers.local.render import (
    Mode,
    Pixels,
    RenderedVideo,
    RenderError,
    decode_frames,
    decode_image,
    fit_image,
    frame_size,
    probe_video,
    source_rate,
    write_video,
)
from kling_gateway.providers.local.talking import nearest_aspect

Orientation = Literal["image", "video"]
Gray = npt.NDArray[np.float64]
Path2D = npt.NDArray[np.float64]

# A reference a little over its limit (a container's rounding) is still taken.
_LIMIT_SLACK = 0.25
# Frames are analysed at this longer side: motion is a coarse signal and 4K FFTs are not cheap.
_ANALYSIS_SIDE = 96
# A residual pixel counts as moving above this level (0..255), or a share of the largest.
_MOVING_LEVEL = 12.0
_MOVING_SHARE = 0.3
# The margin fitted around the image, as a share of the frame, at most.
_MAX_MARGIN = 0.25


def phase_shift(a: Gray, b: Gray) -> tuple[float, float]:
    """(dx, dy) such that ``b`` is ``a`` moved by dx pixels right and dy down."""
    window = np.outer(np.hanning(a.shape[0]), np.hanning(a.shape[1]))
    fa = np.fft.fft2((a - a.mean()) * window)
    fb = np.fft.fft2((b - b.mean()) * window)
    cross = fb * np.conj(fa)
    surface = np.fft.ifft2(cross / np.maximum(np.abs(cross), 1e-9)).real
    py, px = np.unravel_index(int(np.argmax(surface)), surface.shape)
    dy = _refined(surface[:, px], int(py))
    dx = _refined(surface[py, :], int(px))
    return dx, dy


def _refined(line: Gray, peak: int) -> float:
    """The peak's position to a fraction of a pixel, as a signed (wrapped) shift."""
    n = len(line)
    left, mid, right = line[(peak - 1) % n], line[peak], line[(peak + 1) % n]
    denom = left - 2 * mid + right
    offset = 0.5 * (left - right) / denom if denom < 0 else 0.0
    shift = peak + max(-0.5, min(0.5, offset))
    return shift - n if shift > n / 2 else shift


def trajectory(frames: Sequence[Gray]) -> Path2D:
    """The subject's cumulative (dx, dy) at each frame, in pixels of ``frames`` (grayscale,
    0..255), starting at (0, 0). Each step is global (the shift explains the change) or local;
    a run of local steps is one still-camera stretch, measured against its own background."""
    count = len(frames)
    path = np.zeros((count, 2), dtype=np.float64)
    steps = [_global_step(frames[i - 1], frames[i]) for i in range(1, count)]
    index = 1
    while index < count:
        step = steps[index - 1]
        if step is not None:
            path[index] = path[index - 1] + step
            index += 1
            continue
        first, end = index - 1, index + 1
        while end < count and steps[end - 1] is None:
            end += 1
        path[first:end] = path[first] + subject_positions(frames[first:end])
        index = end
    return path


def _global_step(prev: Gray, cur: Gray) -> tuple[float, float] | None:
    """The phase-correlation shift from ``prev`` to ``cur`` when it explains the change better
    than standing still does; None when the change is a subject moving over a still scene."""
    dx, dy = phase_shift(prev, cur)
    ix, iy = round(dx), round(dy)
    my, mx = abs(iy) + 1, abs(ix) + 1
    if 2 * my >= cur.shape[0] or 2 * mx >= cur.shape[1]:
        return dx, dy
    # Compare on the part both frames show; the border a shift uncovers is new content.
    shifted = np.abs(cur - np.roll(prev, (iy, ix), axis=(0, 1)))[my:-my, mx:-mx]
    still = np.abs(cur - prev)[my:-my, mx:-mx]
    if (ix, iy) == (0, 0):
        # A drift below a pixel, unless something in the scene clearly moves.
        return (dx, dy) if not (still > _MOVING_LEVEL).any() else None
    return (dx, dy) if shifted.mean() < still.mean() else None


def subject_positions(frames: Sequence[Gray]) -> Path2D:
    """Where the moving mass of a still-camera stretch is, relative to its first frame: the
    centroid of what differs from the stretch's median (its background). A frame where
    nothing stands out keeps the previous position."""
    background = np.median(np.stack(frames), axis=0)
    positions = np.zeros((len(frames), 2), dtype=np.float64)
    known: tuple[float, float] | None = None
    origin: tuple[float, float] | None = None
    for index, frame in enumerate(frames):
        found = _centroid(np.abs(frame - background))
        known = found or known
        if known is not None:
            origin = origin or known
            positions[index] = (known[0] - origin[0], known[1] - origin[1])
    return positions


def _centroid(residual: Gray) -> tuple[float, float] | None:
    level = max(_MOVING_LEVEL, _MOVING_SHARE * float(residual.max(initial=0.0)))
    ys, xs = np.nonzero(residual > level)
    if not len(xs):
        return None
    weights = residual[ys, xs]
    return float(np.average(xs, weights=weights)), float(np.average(ys, weights=weights))


def to_gray(pixels: Pixels, side: int = _ANALYSIS_SIDE) -> Gray:
    """``pixels`` as grayscale floats, shrunk so the longer side is at most ``side``."""
    image = Image.fromarray(pixels).convert("L")
    scale = side / max(image.size)
    if scale < 1:
        size = (max(2, round(image.width * scale)), max(2, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.float64)


def reference_path(reference: Path, max_frames: int) -> Path2D:
    """The reference's trajectory in shares of its width and height, one row per frame."""
    frames: list[Gray] = []
    for pixels in decode_frames(reference):
        frames.append(to_gray(pixels))
        if len(frames) >= max_frames:
            break
    if not frames:
        raise RenderError(f"reference video {reference.name} has no frames")
    height, width = frames[0].shape
    return trajectory(frames) / (width, height)


def motion_video(
    path: Path,
    image: bytes,
    reference: Path,
    *,
    orientation: Orientation = "image",
    mode: Mode = "std",
    max_side: int | None = None,
    keep_original_sound: bool = False,
) -> RenderedVideo:
    """Write at ``path`` (atomically) the image moved along the reference's motion. The
    reference may be at most ``MOTION_MAX_SECONDS[orientation]`` long (docs/contract.md §7)."""
    if orientation not in MOTION_MAX_SECONDS:
        raise RenderError(f"unsupported character_orientation: {orientation!r}")
    info = probe_video(reference)
    limit = MOTION_MAX_SECONDS[orientation]
    if info.duration > limit + _LIMIT_SLACK:
        raise RenderError(
            f"the reference video is {info.duration:.1f} s long; with character_orientation "
            f"`{orientation}` it may be at most {limit:g} s"
        )
    rate = source_rate(reference, 24)
    moves = reference_path(reference, max(1, math.ceil((limit + _LIMIT_SLACK) * rate)))
    photo = decode_image(image, "motion")
    shape = (photo.width, photo.height) if orientation == "image" else (info.width, info.height)
    width, height = frame_size(nearest_aspect(*shape), mode, max_side)
    frames = moved_frames(photo, moves * (width, height), width, height)
    sound = None
    if keep_original_sound:
        sound = audio.source_samples(reference, len(moves) / float(rate))
    return write_video(path, width, height, rate, frames, sound)


def moved_frames(photo: Image.Image, moves: Path2D, width: int, height: int) -> Iterator[Pixels]:
    """``photo`` fitted to the frame and moved by each (dx, dy) of ``moves`` (output pixels)."""
    reach_x, reach_y = (float(np.abs(moves[:, k]).max(initial=0.0)) for k in (0, 1))
    margin_x = math.ceil(min(reach_x, width * _MAX_MARGIN))
    margin_y = math.ceil(min(reach_y, height * _MAX_MARGIN))
    canvas = np.asarray(fit_image(photo, width + 2 * margin_x, height + 2 * margin_y))
    # Beyond the margin, repeat the edge pixels rather than show a blank.
    extra_x, extra_y = math.ceil(reach_x) - margin_x + 1, math.ceil(reach_y) - margin_y + 1
    padded = np.pad(canvas, ((extra_y, extra_y), (extra_x, extra_x), (0, 0)), mode="edge")
    board = Image.fromarray(padded)
    origin_x, origin_y = margin_x + extra_x, margin_y + extra_y
    for dx, dy in moves:
        # The window moves against the subject, so the subject moves with the reference.
        left, top = origin_x - dx, origin_y - dy
        box = (left, top, left + width, top + height)
        frame = board.resize((width, height), Image.Resampling.BILINEAR, box=box)
        yield np.asarray(frame, dtype=np.uint8)
