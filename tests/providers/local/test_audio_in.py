"""Decoding the audio a request brings: every documented format, the base64 rules, a clear
failure for anything else, and the loudness envelope that drives the mouth."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest

from kling_gateway.protocol.enums import MAX_AUDIO_FILE_BYTES
from kling_gateway.providers.local.audio import SAMPLE_RATE
from kling_gateway.providers.local.audio_in import (
    AudioError,
    audio_from_base64,
    decode_audio,
    loudness_envelope,
)
from kling_gateway.providers.local.render import RenderError
from tests.providers.local.media import FORMATS, encode_audio, silence_then_tone, still_video


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_each_documented_format_decodes_to_mono_samples(fmt: str) -> None:
    samples = silence_then_tone(1.0)
    decoded = decode_audio(encode_audio(samples, fmt))

    assert decoded.dtype == np.float32 and decoded.ndim == 1
    # Lossy codecs pad a frame or two at either end; the length is the clip's, give or take.
    assert abs(len(decoded) / SAMPLE_RATE - 1.0) < 0.1
    half = len(decoded) // 2
    quiet = float(np.sqrt(np.mean(decoded[: half - 4096] ** 2)))
    loud = float(np.sqrt(np.mean(decoded[half + 4096 :] ** 2)))
    assert quiet < 0.02 < 0.3 < loud


def test_max_seconds_caps_the_decode() -> None:
    decoded = decode_audio(encode_audio(silence_then_tone(1.0), "wav"), max_seconds=0.25)
    assert len(decoded) == round(0.25 * SAMPLE_RATE)


@pytest.mark.parametrize(
    "data",
    [b"", b"not audio at all" * 50, b"RIFF\x00\x00\x00\x00WAVEjunk", bytes(range(256)) * 20],
)
def test_undecodable_audio_is_a_clear_audio_error(data: bytes) -> None:
    with pytest.raises(AudioError, match=r"^the audio could not be decoded: ") as caught:
        decode_audio(data)
    # A RenderError: the local provider fails the task with it, it never escapes the worker.
    assert isinstance(caught.value, RenderError)
    assert "Traceback" not in str(caught.value)


@pytest.mark.parametrize(
    "data",
    [
        b"ffconcat version 1.0\nfile '/etc/passwd'\n",
        b"#EXTM3U\n#EXTINF:1,\nhttp://127.0.0.1/secret.ts\n",
        b"fLaC\x00\x00\x00\x22" + bytes(64),
    ],
)
def test_only_the_four_formats_are_read_never_a_playlist(data: bytes) -> None:
    with pytest.raises(AudioError, match="it is not mp3, wav, m4a, aac audio"):
        decode_audio(data)


def test_a_video_without_sound_is_not_audio(tmp_path: Path) -> None:
    video = still_video(tmp_path / "v.mp4", seconds=0.5)
    with pytest.raises(AudioError, match="no audio stream"):
        decode_audio(video.read_bytes())


def test_base64_audio_file_round_trips_and_accepts_a_data_url() -> None:
    data = encode_audio(silence_then_tone(0.2), "mp3")
    text = base64.b64encode(data).decode()
    assert audio_from_base64(text) == data
    assert audio_from_base64("data:audio/mpeg;base64," + text) == data


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("%%% not base64 %%%", "not valid base64"),
        (base64.b64encode(b"plain text, not audio").decode(), "must be mp3, wav, m4a"),
        ("", "empty"),
        ("A" * (MAX_AUDIO_FILE_BYTES * 4 // 3 + 16), "larger than 5 MB"),
    ],
)
def test_bad_base64_audio_files_are_refused(text: str, reason: str) -> None:
    with pytest.raises(AudioError, match=reason):
        audio_from_base64(text)


def test_exactly_five_megabytes_is_allowed() -> None:
    wav = encode_audio(silence_then_tone(0.1), "wav")
    padded = wav + b"\x00" * (MAX_AUDIO_FILE_BYTES - len(wav))
    assert len(audio_from_base64(base64.b64encode(padded).decode())) == MAX_AUDIO_FILE_BYTES
    with pytest.raises(AudioError, match="larger"):
        audio_from_base64(base64.b64encode(padded + b"\x00").decode())


def test_envelope_follows_loudness_one_value_per_frame() -> None:
    envelope = loudness_envelope(silence_then_tone(2.0), fps=8, count=20)

    assert envelope.shape == (20,) and envelope.dtype == np.float32
    assert np.all(envelope[:8] == 0.0)  # the silent first second
    assert np.all(envelope[8:16] > 0.9)  # the tone
    assert np.all(envelope[16:] == 0.0)  # frames past the end of the audio
    assert float(envelope.max()) <= 1.0


def test_envelope_of_silence_is_closed() -> None:
    silent = np.zeros(SAMPLE_RATE, dtype=np.float32)
    assert not loudness_envelope(silent, fps=8, count=8).any()
