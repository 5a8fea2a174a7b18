"""The offline speech of a text lip-sync: deterministic, as long as the text and 1 / speed say,
loud and quiet by syllable (what the mouth follows), and voiced like speech."""

from __future__ import annotations

import numpy as np
import pytest

from kling_gateway.providers.local.audio import SAMPLE_RATE
from kling_gateway.providers.local.audio_in import loudness_envelope
from kling_gateway.providers.local.render import RenderError
from kling_gateway.providers.local.speech import synthesize_speech

EN = "Hello there, this is the gateway speaking."
ZH = "你好\uff0c欢迎使用可灵网关\u3002"


def seconds(samples: np.ndarray) -> float:
    return len(samples) / SAMPLE_RATE


def test_speech_is_deterministic_and_follows_the_text() -> None:
    first = synthesize_speech(EN, language="en")
    assert first.dtype == np.float32 and first.ndim == 1
    assert np.array_equal(first, synthesize_speech(EN, language="en"))
    assert not np.array_equal(first[:4000], synthesize_speech("Goodbye now.", language="en")[:4000])
    assert 0.3 < float(np.abs(first).max()) <= 0.5


@pytest.mark.parametrize(("text", "language"), [(EN, "en"), (ZH, "zh")])
def test_duration_grows_with_the_text_and_shrinks_with_speed(text: str, language: str) -> None:
    once = seconds(synthesize_speech(text, language=language))  # type: ignore[arg-type]
    twice = seconds(synthesize_speech(text + text, language=language))  # type: ignore[arg-type]
    fast = seconds(synthesize_speech(text, language=language, speed=2.0))  # type: ignore[arg-type]
    slow = seconds(synthesize_speech(text, language=language, speed=0.8))  # type: ignore[arg-type]
    assert twice == pytest.approx(2 * once, rel=0.02)
    assert fast == pytest.approx(once / 2, rel=0.02)
    assert slow == pytest.approx(once / 0.8, rel=0.02)
    assert 1.0 < once < 6.0


def test_a_chinese_character_is_a_syllable() -> None:
    # Ten characters, no punctuation: ten syllables of the same length each.
    assert seconds(synthesize_speech("天" * 10)) == pytest.approx(10 * 0.24, rel=0.02)


def test_loudness_rises_and_falls_syllable_by_syllable() -> None:
    samples = synthesize_speech("ba " * 8, language="en")
    envelope = loudness_envelope(samples, fps=50, count=round(seconds(samples) * 50))
    onsets = int(np.sum((envelope[1:] >= 0.5) & (envelope[:-1] < 0.5)))
    assert onsets == 8
    assert (envelope < 0.1).mean() > 0.15  # closures and gaps between syllables


def test_it_is_voiced_like_speech() -> None:
    samples = synthesize_speech("aaa", language="en").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples)) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / SAMPLE_RATE)
    assert spectrum[freqs < 4000].sum() > 0.95 * spectrum.sum()
    # The fundamental (the autocorrelation's first peak) is a speaking voice's, 80..250 Hz.
    middle = samples[len(samples) // 3 : len(samples) // 3 + 4096]
    corr = np.correlate(middle, middle, "full")[len(middle) - 1 :]
    lag = int(np.argmax(corr[SAMPLE_RATE // 250 : SAMPLE_RATE // 80])) + SAMPLE_RATE // 250
    assert 80 <= SAMPLE_RATE / lag <= 250


@pytest.mark.parametrize(
    "text",
    ["\u043f\u0440\u0438\u0432\u0435\u0442", "\u3053\u3093\u306b\u3061\u306f", "\uc548\ub155"],
)
def test_other_scripts_are_spoken_too(text: str) -> None:
    # Russian, Japanese kana, Korean: syllables all the same, never "nothing to say".
    assert seconds(synthesize_speech(text, language="en")) > 0.3


@pytest.mark.parametrize(
    ("text", "speed", "reason"),
    [(EN, 0.5, "voice_speed"), (EN, 2.5, "voice_speed"), ("... !!! ", 1.0, "nothing to say")],
)
def test_unusable_requests_are_render_errors(text: str, speed: float, reason: str) -> None:
    with pytest.raises(RenderError, match=reason):
        synthesize_speech(text, speed=speed)
