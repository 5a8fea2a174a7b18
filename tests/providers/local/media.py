"""Tiny media for the local provider's lip-sync, talking-photo and motion tests: audio encoded
in the formats requests bring, small source videos, and decoding of what was written."""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
from PIL import Image

from kling_gateway.providers.local.audio import SAMPLE_RATE
from kling_gateway.providers.local.render import write_video

Samples = npt.NDArray[np.float32]
Frames = list[npt.NDArray[np.uint8]]
# (container format, codec, sample format) per audio_file format of docs/contract.md §7.
FORMATS = {
    "wav": ("wav", "pcm_s16le", "s16"),
    "mp3": ("mp3", "libmp3lame", "s16p"),
    "m4a": ("ipod", "aac", "fltp"),
    "aac": ("adts", "aac", "fltp"),
}


def silence_then_tone(seconds: float, *, loud_from: float = 0.5) -> Samples:
    """Silence for the first ``loud_from`` share of ``seconds``, a loud 220 Hz tone after it."""
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    tone = 0.6 * np.sin(2 * np.pi * 220 * t)
    tone[t < seconds * loud_from] = 0.0
    return tone.astype(np.float32)


def encode_audio(samples: Samples, fmt: str) -> bytes:
    """``samples`` as a file of format ``fmt`` (a key of FORMATS), made with PyAV."""
    container_format, codec, sample_format = FORMATS[fmt]
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container_format) as out:
        stream = out.add_stream(codec, rate=SAMPLE_RATE)
        stream.layout = "mono"
        size = stream.codec_context.frame_size or 1024
        pts = 0
        for start in range(0, len(samples), size):
            chunk = samples[start : start + size].reshape(1, -1)
            if sample_format.startswith("s16"):
                data = (np.clip(chunk, -1, 1) * 32767).astype(np.int16)
            else:
                data = chunk.astype(np.float32)
            frame = av.AudioFrame.from_ndarray(data, format=sample_format, layout="mono")
            frame.sample_rate = SAMPLE_RATE
            frame.pts = pts
            pts += chunk.shape[1]
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return buffer.getvalue()


def textured(width: int, height: int, seed: int = 1) -> npt.NDArray[np.uint8]:
    """A smooth random texture (blocky noise blurred by upscaling): phase correlation needs
    detail, the mouth test needs a frame that is not one flat colour."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, height // 8), max(2, width // 8), 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.uint8)


def still_video(path: Path, *, seconds: float, fps: int = 8, size: int = 64) -> Path:
    """A video of one unchanging textured frame, silent."""
    frame = textured(size, size)
    count = round(seconds * fps)
    write_video(path, size, size, Fraction(fps), iter([frame] * count))
    return path


def png(pixels: npt.NDArray[np.uint8]) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def decode_video(path: Path) -> Frames:
    with av.open(str(path)) as container:
        return [
            np.asarray(f.to_ndarray(format="rgb24"), dtype=np.uint8)
            for f in container.decode(video=0)
        ]


def decode_track(path: Path) -> tuple[str, Samples] | None:
    """The codec name and mono samples of ``path``'s audio stream, None when it has none."""
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return None
        codec = container.streams.audio[0].codec_context.name
        chunks = [f.to_ndarray().reshape(-1) for f in container.decode(audio=0)]
    return codec, np.concatenate(chunks).astype(np.float32)
