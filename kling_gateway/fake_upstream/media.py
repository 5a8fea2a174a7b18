"""The one small real MP4 the fake serves for every finished task."""

from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np

SIZE = 64
FPS = 10


def make_tiny_mp4(seconds: int = 1) -> bytes:
    """A valid H.264 MP4, 64x64, ``seconds`` long, encoded in memory with PyAV."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(FPS))
        stream.width = SIZE
        stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast"}
        for index in range(FPS * seconds):
            pixels = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
            pixels[:, :, 0] = (index * 25) % 256
            pixels[:, :, 2] = 255 - (index * 25) % 256
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def make_wav(seconds: float, rate: int = 16000) -> bytes:
    """A mono 16-bit PCM WAV of a 220 Hz tone, ``seconds`` long (the fake's speech)."""
    import wave

    count = max(1, round(seconds * rate))
    t = np.arange(count) / rate
    samples = (0.3 * np.sin(2 * np.pi * 220.0 * t) * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return buffer.getvalue()
