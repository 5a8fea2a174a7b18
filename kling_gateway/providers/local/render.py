"""The MP4 renderer behind the built-in "local" provider: real H.264 files, made offline.

Nothing here is generative; the point is that every part of the gateway (storage, URLs,
durations, extend chains, players) handles genuine MP4 files without a paid upstream. The
frames are a deterministic function of the request, so equal requests give equal videos:

- text2video: an animated gradient and moving discs whose colours and paths are seeded by a
  hash of the prompt, with the prompt itself written over them.
- image2video: the start image, fitted to the frame, slowly zooms and pans (direction seeded by
  the prompt) while cross-fading into the end image when one is given; the first frame shows
  the start image and the last frame the end image.
- extend: the source video's frames, re-encoded unchanged, followed by ``duration`` seconds
  that continue from its last frame the way image2video continues from a start image. The
  result keeps the source's size and frame rate (a video cannot change them midway), so
  ``aspect_ratio``, ``mode``, ``max_side`` and ``fps`` of the spec do not apply to it.

Encoding is synchronous and CPU-bound; callers on an event loop run it in a thread.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import os
import struct
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal, get_args

import av
import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageOps

from kling_gateway.providers.local.caption import caption_font, wrap_caption

AspectRatio = Literal["16:9", "9:16", "1:1"]
Mode = Literal["std", "pro", "4k"]
Pixels = npt.NDArray[np.uint8]

# The short side of each mode's resolution class (720p, 1080p, 2160p).
_SHORT_SIDE: dict[str, int] = {"std": 720, "pro": 1080, "4k": 2160}
# Width and height in units of the short side.
_SHAPE: dict[str, tuple[Fraction, Fraction]] = {
    "16:9": (Fraction(16, 9), Fraction(1)),
    "9:16": (Fraction(1), Fraction(16, 9)),
    "1:1": (Fraction(1), Fraction(1)),
}
# Below this libx264 refuses or produces mush; tests render at 32..64.
_MIN_SIDE = 16
# How far image2video and extend zoom in over the whole clip.
_ZOOM = 0.12
# Pillow's ways of saying "these bytes are not an image I can decode"; SyntaxError and
# struct.error come out of some plugins on corrupt headers.
_DECODE_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    struct.error,
    Image.DecompressionBombError,
)


class RenderError(ValueError):
    """The request cannot be rendered: bad parameters, undecodable image or source video."""


@dataclass(frozen=True, slots=True)
class RenderSpec:
    """What to render. ``max_side`` caps the longer side (keeping the aspect ratio) for tests
    and small setups; left at None the resolution follows ``mode`` and ``aspect_ratio``."""

    prompt: str
    duration: float
    aspect_ratio: AspectRatio = "16:9"
    mode: Mode = "std"
    start_image: bytes | None = None
    end_image: bytes | None = None
    source_video: Path | None = None
    fps: int = 24
    max_side: int | None = None
    # docs/contract.md §6 (see compose.py and audio.py): a storyboard's (prompt, seconds)
    # shots, Omni reference images, a reference video and its role, and the audio track.
    shots: tuple[tuple[str, float], ...] = ()
    references: tuple[bytes, ...] = ()
    reference_video: Path | None = None
    reference_role: Literal["base", "feature"] = "base"
    audio: bool = False
    keep_original_sound: bool = False

    def __post_init__(self) -> None:
        # Literal types are not checked at runtime and these values come from requests.
        if self.aspect_ratio not in get_args(AspectRatio):
            raise RenderError(f"unsupported aspect ratio: {self.aspect_ratio!r}")
        if self.mode not in get_args(Mode):
            raise RenderError(f"unsupported mode: {self.mode!r}")
        if not 1 <= self.fps <= 120:
            raise RenderError(f"fps must be between 1 and 120, not {self.fps}")
        if not self.duration > 0 or round(self.duration * self.fps) < 1:
            raise RenderError(f"duration too short to hold a frame: {self.duration}")
        if self.max_side is not None and self.max_side < _MIN_SIDE:
            raise RenderError(f"max_side must be at least {_MIN_SIDE}, not {self.max_side}")
        if self.end_image is not None and self.start_image is None and self.source_video is None:
            raise RenderError("an end image needs a start image")


@dataclass(frozen=True, slots=True)
class RenderedVideo:
    """A video file as measured: pixel size, duration in seconds and number of frames."""

    width: int
    height: int
    duration: float
    frames: int


def frame_size(
    aspect_ratio: AspectRatio, mode: Mode, max_side: int | None = None
) -> tuple[int, int]:
    """Width and height for a mode and aspect ratio, both even as yuv420p requires."""
    short = _SHORT_SIDE[mode]
    kw, kh = _SHAPE[aspect_ratio]
    width, height = int(short * kw), int(short * kh)
    if max_side is not None and max(width, height) > max_side:
        scale = max_side / max(width, height)
        width, height = round(width * scale), round(height * scale)
    return max(2, width - width % 2), max(2, height - height % 2)


def render_video(path: Path, spec: RenderSpec) -> RenderedVideo:
    """Render ``spec`` into an H.264 MP4 at ``path`` and return what was written.

    The file appears at ``path`` complete or not at all: it is written next to it under a
    name of its own (``<name>.<random>.part``) and renamed into place, and the partial file is
    removed on any failure. Two renders of the same path at once (two workers, one of which
    lost its lease mid-render) each write their own file, so neither can publish the other's
    half-written one: the last complete rename wins. Raises RenderError for requests that
    cannot be rendered.
    """
    width, height, rate, frames = _plan(spec)
    return write_video(path, width, height, rate, frames, _sound(spec))


def write_video(
    path: Path,
    width: int,
    height: int,
    rate: Fraction,
    frames: Iterator[Pixels],
    sound: Iterator[npt.NDArray[np.float32]] | None = None,
) -> RenderedVideo:
    """Encode ``frames`` (and ``sound``, an AAC track) into an MP4 at ``path``, published the way
    ``render_video`` describes (complete or not at all), and measure it."""
    part = path.with_name(f"{path.name}.{uuid.uuid4().hex}.part")
    try:
        _encode(part, width, height, rate, frames, sound)
        result = probe_video(part)
        os.replace(part, path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return result


def probe_video(path: Path) -> RenderedVideo:
    """Measure a video file; RenderError when it cannot be read as a video."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise RenderError(f"{path.name} has no video stream")
            stream = container.streams.video[0]
            frames = stream.frames or sum(1 for packet in container.demux(stream) if packet.size)
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            else:
                duration = (container.duration or 0) / av.time_base
            return RenderedVideo(stream.width, stream.height, duration, frames)
    except av.FFmpegError as exc:
        raise RenderError(f"could not read video {path.name}: {exc}") from exc


# -- planning ---------------------------------------------------------------------------------

_Plan = tuple[int, int, Fraction, Iterator[Pixels]]


def _plan(spec: RenderSpec) -> _Plan:
    """Size, frame rate and the (lazy) frames of the video ``spec`` asks for."""
    seed = _seed(spec.prompt)
    if spec.source_video is not None:
        return _plan_extend(spec, spec.source_video, seed)
    width, height = frame_size(spec.aspect_ratio, spec.mode, spec.max_side)
    count = round(spec.duration * spec.fps)
    # compose builds on this module's frames, so it is imported here rather than at the top.
    from kling_gateway.providers.local import compose

    base = spec.reference_video if spec.reference_role == "base" else None
    if base is not None:
        frames = compose.base_frames(base, width, height, count)
    elif spec.start_image is not None:
        # Decode now, not inside the generator, so a bad image fails before any encoding.
        start = _fit(_decode_image(spec.start_image, "start"), width, height)
        end = _fit_optional(spec.end_image, width, height)
        frames = _image_frames(start, end, seed, count, first_step=0)
    elif spec.shots:
        frames = compose.storyboard_frames(spec.shots, width, height, spec.fps)
    else:
        frames = _scene_frames(spec.prompt, seed, width, height, count, spec.fps)
    if spec.reference_video is not None and spec.reference_role == "feature":
        frames = compose.washed(frames, compose.feature_look(spec.reference_video))
    if spec.references:
        frames = compose.composited(frames, compose.thumbnails(spec.references, width, height))
    return width, height, Fraction(spec.fps), frames


def _sound(spec: RenderSpec) -> Iterator[npt.NDArray[np.float32]] | None:
    """The audio track's samples, or None for a silent video (no audio stream)."""
    from kling_gateway.providers.local import audio

    if spec.keep_original_sound and spec.reference_video is not None:
        kept = audio.source_samples(spec.reference_video, spec.duration)
        if kept is not None:
            return kept
    return audio.tone_samples(spec.prompt, spec.duration) if spec.audio else None


def scene_frames(prompt: str, width: int, height: int, count: int, fps: int) -> Iterator[Pixels]:
    """The text2video scene of ``prompt`` (a storyboard draws each shot with it)."""
    return _scene_frames(prompt, _seed(prompt), width, height, count, fps)


def decode_image(data: bytes, which: str) -> Image.Image:
    return _decode_image(data, which)


def fit_image(image: Image.Image, width: int, height: int) -> Image.Image:
    return _fit(image, width, height)


def image_frames(
    start: Image.Image, prompt: str, count: int, sources: Iterator[Image.Image] | None = None
) -> Iterator[Pixels]:
    """image2video's slow zoom and pan into ``start`` (direction seeded by ``prompt``); with
    ``sources``, frame by frame from those images of ``start`` instead (see _image_frames)."""
    return _image_frames(start, None, _seed(prompt), count, first_step=0, sources=sources)


def decode_frames(source: Path) -> Iterator[Pixels]:
    """The RGB frames of a video file; RenderError when it cannot be decoded."""
    return _decode_frames(source)


def source_rate(source: Path, fallback: int) -> Fraction:
    return _source_rate(source, fallback)


def _plan_extend(spec: RenderSpec, source: Path, seed: int) -> _Plan:
    info = probe_video(source)
    rate = _source_rate(source, spec.fps)
    count = round(spec.duration * rate)
    end = _fit_optional(spec.end_image, info.width, info.height)

    def frames() -> Iterator[Pixels]:
        last: Pixels | None = None
        for last in _decode_frames(source):
            yield last
        if last is None:
            raise RenderError(f"source video {source.name} has no frames")
        # Step 1, not 0: the last source frame is already in the video.
        start = Image.fromarray(last)
        yield from _image_frames(start, end, seed, count, first_step=1)

    return info.width, info.height, rate, frames()


def _source_rate(source: Path, fallback: int) -> Fraction:
    """The source's frame rate, so its frames keep their timing when re-encoded."""
    with av.open(str(source)) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
    return Fraction(rate).limit_denominator(1001) if rate else Fraction(fallback)


def _decode_frames(source: Path) -> Iterator[Pixels]:
    try:
        with av.open(str(source)) as container:
            for frame in container.decode(video=0):
                yield np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)
    except av.FFmpegError as exc:
        raise RenderError(f"could not decode source video {source.name}: {exc}") from exc


def _seed(prompt: str) -> int:
    """A stable seed: Python's own hash() of a str changes from process to process."""
    return int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "big")


# -- images -----------------------------------------------------------------------------------


def _decode_image(data: bytes, which: str) -> Image.Image:
    try:
        with Image.open(io.BytesIO(data)) as image:
            # Apply EXIF rotation so phone photos are upright; convert() forces a full decode.
            return ImageOps.exif_transpose(image).convert("RGB")
    except _DECODE_ERRORS as exc:
        raise RenderError(f"the {which} image could not be decoded: {exc}") from exc


def _fit(image: Image.Image, width: int, height: int) -> Image.Image:
    """Cover the frame (scale and centre-crop) so no letterbox bars appear."""
    return ImageOps.fit(image, (width, height), Image.Resampling.BILINEAR)


def _fit_optional(data: bytes | None, width: int, height: int) -> Image.Image | None:
    return None if data is None else _fit(_decode_image(data, "end"), width, height)


def _image_frames(
    start: Image.Image,
    end: Image.Image | None,
    seed: int,
    count: int,
    *,
    first_step: int,
    sources: Iterator[Image.Image] | None = None,
) -> Iterator[Pixels]:
    """Slow zoom and pan into ``start``, cross-fading into an unmoving ``end``.

    Progress runs from ``first_step / last`` to 1, so the final frame is exactly the end
    image (or the most zoomed start image) and, with ``first_step=0``, the first frame is
    exactly the start image. With ``sources`` (images of ``start``'s size), each frame is cut
    from the next of them instead, so what is drawn on them moves with the picture.
    """
    width, height = start.size
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0, 2 * np.pi)
    pan_x, pan_y = float(np.cos(angle)), float(np.sin(angle))
    last = max(1, count - 1 + first_step)
    for index in range(count):
        progress = (index + first_step) / last
        zoom = 1 + _ZOOM * progress
        box_w, box_h = width / zoom, height / zoom
        left = (width - box_w) / 2 * (1 + pan_x)
        top = (height - box_h) / 2 * (1 + pan_y)
        box = (left, top, left + box_w, top + box_h)
        image = start if sources is None else next(sources)
        frame = image.resize((width, height), Image.Resampling.BILINEAR, box=box)
        if end is not None:
            frame = Image.blend(frame, end, _smoothstep(progress))
        yield np.asarray(frame, dtype=np.uint8)


def _smoothstep(x: float) -> float:
    return x * x * (3 - 2 * x)


# -- text2video scene -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Disc:
    radius: float
    colour: tuple[int, int, int]
    freq: tuple[float, float]
    phase: tuple[float, float]


@dataclass(frozen=True, slots=True)
class _Caption:
    """The prompt as a bitmap: white where text is, over a darkened box at (top, left)."""

    top: int
    left: int
    mask: npt.NDArray[np.bool_]

    def draw(self, frame: Pixels) -> None:
        rows, cols = self.mask.shape
        region = frame[self.top : self.top + rows, self.left : self.left + cols]
        region //= 2
        region[self.mask] = 255


def _scene_frames(
    prompt: str, seed: int, width: int, height: int, count: int, fps: int
) -> Iterator[Pixels]:
    """A drifting diagonal gradient with discs moving over it and the prompt written on top."""
    rng = np.random.default_rng(seed)
    palette = _palette(rng)
    # Gradient index as a sum of a row and a column term: cheap to shift every frame.
    bands = rng.uniform(0.6, 1.6)
    angle = rng.uniform(0, 2 * np.pi)
    gx = (np.arange(width) / width * 256 * bands * np.cos(angle)).astype(np.int64)
    gy = (np.arange(height) / height * 256 * bands * np.sin(angle)).astype(np.int64)
    # uint8 so shifting wraps around the palette for free; np.take beats fancy indexing 4x.
    base = ((gy[:, None] + gx[None, :]) & 255).astype(np.uint8)
    speed = rng.uniform(40, 90) * rng.choice([-1, 1])
    discs = [_disc(rng, palette, height) for _ in range(3)]
    caption = _caption(prompt, width, height)
    for index in range(count):
        t = index / fps
        frame = np.take(palette, base + np.uint8(int(t * speed) & 255), axis=0)
        for disc in discs:
            _draw_disc(frame, disc, t)
        if caption is not None:
            caption.draw(frame)
        yield frame


def _palette(rng: np.random.Generator) -> Pixels:
    """256 colours cycling smoothly through three prompt-chosen hues (a lookup table)."""
    hue = rng.uniform(0, 1)
    anchors = np.array(
        [
            colorsys.hsv_to_rgb((hue + k / 3 + rng.uniform(-0.08, 0.08)) % 1, 0.75, 0.9)
            for k in range(3)
        ]
    )
    anchors = np.vstack([anchors, anchors[:1]]) * 255
    steps = np.linspace(0, 3, 256, endpoint=False)
    low = steps.astype(np.int32)
    frac = (steps - low)[:, None]
    return (anchors[low] * (1 - frac) + anchors[low + 1] * frac).astype(np.uint8)


def _disc(rng: np.random.Generator, palette: Pixels, height: int) -> _Disc:
    colour = palette[int(rng.integers(0, 256))]
    # The complement stands out against a gradient drawn from the same palette.
    inverted = tuple(int(255 - c) for c in colour)
    return _Disc(
        radius=height * rng.uniform(0.07, 0.16),
        colour=(inverted[0], inverted[1], inverted[2]),
        freq=(rng.uniform(0.1, 0.35), rng.uniform(0.1, 0.35)),
        phase=(rng.uniform(0, 2 * np.pi), rng.uniform(0, 2 * np.pi)),
    )


def _draw_disc(frame: Pixels, disc: _Disc, t: float) -> None:
    """Paint one disc, touching only its bounding box to keep 4K frames affordable."""
    height, width = frame.shape[:2]
    cx = width * (0.5 + 0.38 * np.sin(2 * np.pi * disc.freq[0] * t + disc.phase[0]))
    cy = height * (0.5 + 0.38 * np.sin(2 * np.pi * disc.freq[1] * t + disc.phase[1]))
    r = disc.radius
    x0, x1 = max(0, int(cx - r)), min(width, int(cx + r) + 1)
    y0, y1 = max(0, int(cy - r)), min(height, int(cy + r) + 1)
    yy, xx = np.ogrid[y0:y1, x0:x1]
    inside = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    frame[y0:y1, x0:x1][inside] = disc.colour


def _caption(prompt: str, width: int, height: int) -> _Caption | None:
    """Wrap the prompt into a centred box covering at most the middle of the frame."""
    text = " ".join(prompt.split())
    if not text:
        return None
    font = caption_font(max(8, height // 24))
    pad = max(2, height // 60)
    bbox = font.getbbox("Ag")
    line_height = max(1, round((bbox[3] - bbox[1]) * 1.3))
    max_lines = max(1, int(height * 0.6) // line_height)
    lines = wrap_caption(text, font, width * 0.8 - 2 * pad, max_lines=max_lines)
    # One real measure per shown line: the sums of advances behind the wrap leave out kerning.
    box_w = min(width, round(max(font.getlength(line) for line in lines)) + 2 * pad)
    box_h = min(height, line_height * len(lines) + 2 * pad)
    canvas = Image.new("L", (box_w, box_h), 0)
    draw = ImageDraw.Draw(canvas)
    for row, line in enumerate(lines):
        draw.text((pad, pad + row * line_height), line, fill=255, font=font)
    mask = np.asarray(canvas) > 127
    return _Caption(top=(height - box_h) // 2, left=(width - box_w) // 2, mask=mask)


# -- encoding ---------------------------------------------------------------------------------


def _encode(
    path: Path,
    width: int,
    height: int,
    rate: Fraction,
    frames: Iterator[Pixels],
    sound: Iterator[npt.NDArray[np.float32]] | None = None,
) -> None:
    """H.264 yuv420p in MP4, one frame per 1/rate second, moov atom first for streaming; with
    ``sound``, an AAC track beside it."""
    from kling_gateway.providers.local import audio

    with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        # "superfast" encodes 5 s of 720p in about a second on two cores at an acceptable
        # size; 4K gets "ultrafast" because anything slower runs well behind real time.
        preset = "ultrafast" if width * height > 1920 * 1080 else "superfast"
        stream.options = {"preset": preset, "crf": "23"}
        # Every stream before the first packet: the header is written with it.
        track = audio.add_audio_stream(out) if sound is not None else None
        time_base = 1 / rate
        for index, pixels in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = index
            frame.time_base = time_base
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
        if track is not None and sound is not None:
            audio.encode_audio(out, track, sound)
