"""The audio of a local render (docs/contract.md §6): ``generate_audio`` (and kling-v3-turbo,
always) gives the MP4 an AAC track derived from the prompt, a chord of tones with a slow
tremolo over a quiet noise bed, never silence; ``keep_original_sound`` copies a reference
video's audio instead. Deterministic like the frames: equal prompts give equal sound."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 44100
_FRAME = 1024  # AAC's frame size
Samples = npt.NDArray[np.float32]


def _seed(prompt: str) -> int:
    return int.from_bytes(hashlib.sha256(b"audio:" + prompt.encode()).digest()[:8], "big")


def tone_samples(prompt: str, seconds: float) -> Iterator[Samples]:
    """Mono float samples in [-1, 1], ``_FRAME`` at a time, for ``seconds`` of audio."""
    rng = np.random.default_rng(_seed(prompt))
    base = rng.uniform(180.0, 440.0)
    freqs = base * np.array([1.0, 1.25, 1.5])  # a major triad on a prompt-chosen root
    tremolo = rng.uniform(0.5, 2.0)
    total = round(seconds * SAMPLE_RATE)
    for start in range(0, total, _FRAME):
        n = min(_FRAME, total - start)
        t = (start + np.arange(n)) / SAMPLE_RATE
        chord = sum(np.sin(2 * np.pi * f * t) for f in freqs) / len(freqs)
        envelope = 0.6 + 0.4 * np.sin(2 * np.pi * tremolo * t)
        noise = rng.normal(0.0, 0.02, n)
        yield (0.3 * chord * envelope + noise).astype(np.float32)


def source_samples(path: Path, seconds: float) -> Iterator[Samples] | None:
    """The first ``seconds`` of ``path``'s audio as mono samples at ``SAMPLE_RATE``; None
    when it has no audio stream."""
    with av.open(str(path)) as probe:
        if not probe.streams.audio:
            return None

    def read() -> Iterator[Samples]:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        left = round(seconds * SAMPLE_RATE)
        with av.open(str(path)) as container:
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    data = out.to_ndarray().reshape(-1)[:left]
                    left -= len(data)
                    yield data.astype(np.float32)
                    if left <= 0:
                        return

    return read()


def add_audio_stream(container: av.container.OutputContainer) -> av.audio.stream.AudioStream:
    stream = container.add_stream("aac", rate=SAMPLE_RATE)
    stream.layout = "mono"
    return stream


def encode_audio(
    container: av.container.OutputContainer,
    stream: av.audio.stream.AudioStream,
    chunks: Iterator[Samples],
) -> None:
    """Encode ``chunks`` (any sizes) as AAC frames of ``_FRAME`` samples."""
    pending = np.zeros(0, dtype=np.float32)
    pts = 0
    for chunk in chunks:
        pending = np.concatenate([pending, chunk])
        while len(pending) >= _FRAME:
            pts = _write(container, stream, pending[:_FRAME], pts)
            pending = pending[_FRAME:]
    if len(pending):
        pts = _write(container, stream, pending, pts)
    container.mux(stream.encode(None))


def _write(
    container: av.container.OutputContainer,
    stream: av.audio.stream.AudioStream,
    samples: Samples,
    pts: int,
) -> int:
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="fltp", layout="mono")
    frame.sample_rate = SAMPLE_RATE
    frame.pts = pts
    container.mux(stream.encode(frame))
    return pts + len(samples)
