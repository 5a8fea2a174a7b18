"""Audio that a request brings (docs/contract.md §7): lip-sync's ``audio_file`` (base64, at most
5 MB, mp3/wav/m4a/aac) or ``audio_url``, talking-photo's ``audio_url``. Decoded with PyAV to
the mono float samples the rest of the local provider works with, and measured as a loudness
envelope, one value per output frame, that opens the drawn mouth (mouth.py).

Nothing about the bytes is trusted: they must be one of the four formats by their magic
number, are read with that format's demuxer only, and whatever FFmpeg cannot decode (or
decodes to nothing) is an ``AudioError``, a RenderError whose message is the failed task's
reason.
"""

from __future__ import annotations

import io

import av
import httpx
import numpy as np
import numpy.typing as npt

from kling_gateway.domain.audio_input import decode_audio_file, sniff_audio
from kling_gateway.domain.outcomes import ProviderError
from kling_gateway.infra.fetch import FetchError, fetch_bytes
from kling_gateway.protocol.enums import AUDIO_FORMATS
from kling_gateway.protocol.errors import BadRequest
from kling_gateway.providers.local.audio import SAMPLE_RATE, Samples
from kling_gateway.providers.local.render import RenderError

# The demuxer of each format the contract accepts (recognised by its bytes, as the request's
# validation does): FFmpeg is never left to guess, so no playlist or concat script is opened.
_DEMUXERS = {"wav": "wav", "mp3": "mp3", "m4a": "mov", "aac": "aac"}
_FORMATS = ", ".join(AUDIO_FORMATS)
# Below this RMS a frame is silence, whatever the clip's loud level (dithering, hiss).
_SILENCE_RMS = 1e-3
# The loud level the envelope is normalised by: a high percentile, so one click does not
# flatten the rest of the clip.
_LOUD_PERCENTILE = 95


class AudioError(RenderError):
    """The request's audio is unusable; the message says why, fit for a task's error."""

    code = "audio_invalid"


def audio_from_base64(text: str) -> bytes:
    """The bytes of a base64 ``audio_file`` (a ``data:...;base64,`` prefix allowed), by the
    request's own rules (``domain.audio_input``): a stored request passed them already."""
    try:
        return decode_audio_file(text)[1]
    except BadRequest as exc:
        raise AudioError(exc.message) from exc


def decode_audio(data: bytes, *, max_seconds: float | None = None) -> Samples:
    """``data`` (any container/codec FFmpeg reads: mp3, wav, m4a, aac...) as mono samples at
    ``SAMPLE_RATE``, at most ``max_seconds`` of them. AudioError when undecodable or empty."""
    limit = None if max_seconds is None else max(0, round(max_seconds * SAMPLE_RATE))
    kind = sniff_audio(data)
    if kind is None:
        raise AudioError(f"the audio could not be decoded: it is not {_FORMATS} audio")
    try:
        chunks = _decoded(data, _DEMUXERS[kind], limit)
    except (av.FFmpegError, ValueError, IndexError, EOFError) as exc:
        raise AudioError(f"the audio could not be decoded: {_reason(exc)}") from exc
    samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    if not len(samples):
        raise AudioError("the audio could not be decoded: it holds no samples")
    if not np.all(np.isfinite(samples)):
        raise AudioError("the audio could not be decoded: it holds invalid samples")
    return samples


def _decoded(data: bytes, demuxer: str, limit: int | None) -> list[Samples]:
    chunks: list[Samples] = []
    left = limit
    with av.open(io.BytesIO(data), mode="r", format=demuxer) as container:
        if not container.streams.audio:
            raise ValueError("it has no audio stream")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                chunk = np.asarray(out.to_ndarray(), dtype=np.float32).reshape(-1)
                if left is not None:
                    chunk, left = chunk[:left], left - min(left, len(chunk))
                chunks.append(chunk)
            if left == 0:
                break
        else:
            chunks.extend(
                np.asarray(out.to_ndarray(), dtype=np.float32).reshape(-1)[:left]
                for out in resampler.resample(None)
            )
    return chunks


def _reason(exc: BaseException) -> str:
    # FFmpeg's messages name a temporary "file" (the bytes); its words after the colon say why.
    text = str(exc) or type(exc).__name__
    return text.rsplit(": ", 1)[-1] if isinstance(exc, av.FFmpegError) else text


def loudness_envelope(samples: Samples, fps: float, count: int) -> npt.NDArray[np.float32]:
    """How loud each of ``count`` output frames (at ``fps``) is, in [0, 1]: the RMS of the
    samples under that frame over the clip's loud level; 0 past the end of the audio."""
    per_frame = SAMPLE_RATE / fps
    envelope = np.zeros(count, dtype=np.float32)
    for index in range(count):
        window = samples[round(index * per_frame) : round((index + 1) * per_frame)]
        if len(window):
            envelope[index] = float(np.sqrt(np.mean(np.square(window, dtype=np.float64))))
    loud = float(np.percentile(envelope, _LOUD_PERCENTILE)) if count else 0.0
    if loud < _SILENCE_RMS:
        return np.zeros(count, dtype=np.float32)
    envelope[envelope < _SILENCE_RMS] = 0.0
    return np.asarray(np.clip(envelope / loud, 0.0, 1.0), dtype=np.float32)


async def fetch_audio(
    http: httpx.AsyncClient,
    url: str,
    *,
    max_bytes: int,
    timeout: float,
    field: str = "audio_url",
) -> bytes:
    """The bytes at ``url``, through the SSRF-guarded, size-capped fetcher."""
    try:
        return await fetch_bytes(http, url, max_bytes=max_bytes, timeout=timeout)
    except FetchError as exc:
        raise ProviderError(
            f"could not fetch the audio (`{field}`): {exc}", code="audio_fetch_failed"
        ) from exc
