"""Offline speech for a local text2video lip-sync (docs/contract.md §7: ``text`` up to 120
characters, ``voice_language`` zh | en, ``voice_speed`` 0.8..2.0): a small formant synthesiser.

Why this and not a TTS package: ``make test`` must pass on a fresh machine that has Python and
make and nothing else. piper-tts needs neural voice weights fetched from a model hub at run
time; espeakng and pyttsx3 are bindings to the system's libespeak-ng, which pip cannot
install (Debian's espeak-ng can be, but not everywhere the gateway runs). So the speech is
made here, in numpy, and is honest about what it is: not words anyone can understand, but
audio shaped like speech from the text itself, deterministic and dependency-free:

- the text is cut into syllables: a Chinese character is one (its vowel and its tone, one of
  Mandarin's four contours, picked from the character; kana and hangul alike), a Latin word
  has one per vowel group (its onset consonants and vowel from the letters), a word of another
  script one per two letters; punctuation makes pauses;
- a vowel is a harmonic series on a moving pitch (F0) shaped by the vowel's three formants;
  a consonant is band-limited noise (fricatives), a closure and burst (plosives) or a quiet
  voiced murmur (nasals and liquids);
- each syllable and pause lasts a fixed time over ``speed``, so the duration grows with the
  text and shrinks as 1 / ``voice_speed``, and the loudness rises and falls syllable by
  syllable, which is what the lip-sync's mouth follows.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from kling_gateway.providers.local.audio import SAMPLE_RATE, Samples
from kling_gateway.providers.local.render import RenderError

Language = Literal["zh", "en"]
MIN_SPEED, MAX_SPEED = 0.8, 2.0

# F1, F2, F3 (Hz) of each vowel (Peterson & Barney's averages, rounded).
_FORMANTS: dict[str, tuple[float, float, float]] = {
    "a": (730, 1090, 2440),
    "e": (530, 1840, 2480),
    "i": (270, 2290, 3010),
    "o": (570, 840, 2410),
    "u": (300, 870, 2240),
}
_BANDWIDTHS = (90.0, 110.0, 170.0)
_VOWELS = "aeiou"
# The noise band (Hz) of each fricative.
_FRICATIVES = {
    "s": (3800, 8000), "z": (3800, 8000), "c": (3000, 7000), "x": (2000, 6000),
    "f": (1200, 6500), "v": (1200, 6500), "h": (800, 5000), "j": (2000, 6000),
}  # fmt: skip
_PLOSIVES = frozenset("pbtdkgq")
# Seconds at speed 1: a syllable's consonant and vowel, the gap after a word, the pauses.
_CONSONANT = 0.06
_VOWEL = {"en": 0.15, "zh": 0.18}
_WORD_GAP = 0.04
_PAUSE = {",": 0.16, ";": 0.2, ":": 0.2, ".": 0.32, "!": 0.32, "?": 0.32}
# Loudness (RMS) of a vowel, a fricative and a plosive's burst: consonants are quieter.
_VOICED_RMS, _FRICATIVE_RMS, _BURST_RMS = 0.3, 0.1, 0.15
_PITCH = {"en": 135.0, "zh": 150.0}
# Mandarin's tones as pitch contours (start, middle, end) relative to the voice's pitch.
_TONES = ((1.18, 1.18, 1.18), (0.95, 1.05, 1.22), (0.92, 0.76, 0.96), (1.28, 1.05, 0.82))
# Full-width punctuation, read as its ASCII twin (escapes: ruff flags the look-alikes).
_CJK_PUNCTUATION = "\uff0c\uff1b\uff1a\u3002\uff01\uff1f\u3001"
# One syllable per character: CJK ideographs, kana, hangul. Latin words by their vowels;
# words of any other script one syllable per two letters.
_SYLLABIC = "\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff"
_TOKENS = re.compile(rf"[{_SYLLABIC}]|[A-Za-z']+|[0-9]+|[,;:.!?]|[^\W\d_{_SYLLABIC}]+")
_ONE_SYLLABLE = re.compile(rf"[{_SYLLABIC}]")
_DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_FULL_WIDTH = str.maketrans(_CJK_PUNCTUATION, ",;:.!?,")


@dataclass(frozen=True, slots=True)
class _Syllable:
    onset: str  # consonant letters before the vowel ("" for none)
    vowel: str  # one of _VOWELS
    tone: int | None  # a Mandarin tone (index into _TONES) or None


@dataclass(frozen=True, slots=True)
class _Pause:
    seconds: float


_Unit = _Syllable | _Pause


def synthesize_speech(text: str, *, language: Language = "zh", speed: float = 1.0) -> Samples:
    """Speech-like mono samples at ``SAMPLE_RATE`` for ``text`` (see the module docstring)."""
    if not MIN_SPEED <= speed <= MAX_SPEED:
        raise RenderError(f"voice_speed must be between {MIN_SPEED} and {MAX_SPEED}, not {speed}")
    if language not in _VOWEL:
        raise RenderError(f"unsupported voice_language: {language!r}")
    units = list(_units(text))
    if not any(isinstance(u, _Syllable) for u in units):
        raise RenderError("the text has nothing to say (no letters or characters)")
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big"))
    pitch = _PITCH[language]
    parts: list[Samples] = []
    syllables = sum(isinstance(u, _Syllable) for u in units)
    done = 0
    for unit in units:
        if isinstance(unit, _Pause):
            parts.append(np.zeros(round(unit.seconds / speed * SAMPLE_RATE), dtype=np.float32))
            continue
        # A gentle fall of the pitch over the utterance (declination), a little jitter.
        base = pitch * (1.08 - 0.16 * done / max(1, syllables - 1)) * rng.uniform(0.97, 1.03)
        parts.append(_syllable(unit, base, _VOWEL[language] / speed, _CONSONANT / speed, rng))
        done += 1
    out = np.concatenate(parts)
    peak = float(np.abs(out).max())
    return np.asarray(out * (0.5 / peak) if peak > 0 else out, dtype=np.float32)


def _units(text: str) -> Iterator[_Unit]:
    for token in _TOKENS.findall(text.translate(_FULL_WIDTH)):
        if token in _PAUSE:
            yield _Pause(_PAUSE[token])
        elif _ONE_SYLLABLE.fullmatch(token):
            yield _from_code(ord(token), tone=True)
        elif token.isascii():
            yield from _word(token.lower())
            yield _Pause(_WORD_GAP)
        else:
            # Another script: no spelling rules here, a syllable per two letters.
            yield from (_from_code(ord(c), tone=False) for c in token[::2])
            yield _Pause(_WORD_GAP)


def _from_code(code: int, *, tone: bool) -> _Syllable:
    """A syllable picked by a character's code point (its sound is not known offline)."""
    return _Syllable(
        onset="szhtkpmnl"[code % 9], vowel=_VOWELS[code // 9 % 5],
        tone=code // 45 % 4 if tone else None,
    )  # fmt: skip


def _word(word: str) -> Iterator[_Syllable]:
    """A Latin word's syllables: one per vowel group, with the consonants before it."""
    if word.isdigit():  # said digit by digit
        word = "".join(_DIGITS[int(d)] for d in word)
    found = False
    for onset, vowels in re.findall(r"([^aeiouy]*)([aeiouy]+)", word):
        found = True
        vowel = next((v for v in vowels if v in _VOWELS), "i")  # "y" sounds like "i"
        yield _Syllable(onset=onset.replace("'", "")[-2:], vowel=vowel, tone=None)
    if not found:  # "hmm", "pst": a murmur on a neutral vowel
        yield _Syllable(onset=word[-2:], vowel="e", tone=None)


def _syllable(
    syllable: _Syllable, pitch: float, vowel_s: float, consonant_s: float, rng: np.random.Generator
) -> Samples:
    onset = _consonant(syllable.onset, pitch, consonant_s, rng) if syllable.onset else None
    contour = _TONES[syllable.tone] if syllable.tone is not None else (1.04, 1.0, 0.94)
    vowel = _voiced(_FORMANTS[syllable.vowel], pitch, contour, vowel_s, 1.0)
    return vowel if onset is None else np.concatenate([onset, vowel])


def _voiced(
    formants: tuple[float, float, float],
    pitch: float,
    contour: tuple[float, float, float],
    seconds: float,
    gain: float,
) -> Samples:
    """A harmonic series on a pitch following ``contour``, shaped by ``formants``."""
    n = max(1, round(seconds * SAMPLE_RATE))
    t = np.linspace(0.0, 1.0, n)
    f0 = pitch * np.interp(t, (0.0, 0.5, 1.0), contour)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    harmonics = np.arange(1, int(4500 / f0.max()) + 1)
    freqs = harmonics * float(f0.mean())
    shape = sum(
        1.0 / (1.0 + ((freqs - f) / b) ** 2) for f, b in zip(formants, _BANDWIDTHS, strict=True)
    )
    amps = shape / harmonics  # the glottal source's roll-off, radiation included
    wave = amps @ np.sin(np.outer(harmonics, phase))
    wave *= _VOICED_RMS * gain / max(1e-9, float(np.sqrt(np.mean(wave**2))))
    return np.asarray(wave * _fade(n, 0.015, 0.035), dtype=np.float32)


def _consonant(letters: str, pitch: float, seconds: float, rng: np.random.Generator) -> Samples:
    n = max(1, round(seconds * SAMPLE_RATE))
    last = letters[-1]
    if last in _FRICATIVES:
        low, high = _FRICATIVES[last]
        return np.asarray(
            _noise(n, low, high, rng) * _FRICATIVE_RMS * _fade(n, 0.01, 0.01), np.float32
        )
    if last in _PLOSIVES:
        # A closure (silence) and then a short burst of broadband noise.
        burst = min(n, round(0.015 * SAMPLE_RATE))
        out = np.zeros(n, dtype=np.float32)
        out[n - burst :] = _noise(burst, 500, 5000, rng) * _BURST_RMS * _fade(burst, 0.001, 0.008)
        return out
    # Nasals, liquids and glides: voiced, quiet, with a low first formant.
    return _voiced((280, 1300, 2600), pitch, (1.0, 1.0, 1.0), seconds, 0.3)


def _noise(n: int, low: float, high: float, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """White noise limited to ``low``..``high`` Hz (in the frequency domain), unit RMS."""
    spectrum = np.fft.rfft(rng.normal(0.0, 1.0, n))
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    spectrum[(freqs < low) | (freqs > high)] = 0
    out = np.fft.irfft(spectrum, n)
    rms = float(np.sqrt(np.mean(out**2)))
    return out / rms if rms > 0 else out


def _fade(n: int, attack: float, release: float) -> npt.NDArray[np.float64]:
    """Raised-cosine attack and release, so segments join without clicks."""
    envelope = np.ones(n)
    a, r = min(n, round(attack * SAMPLE_RATE)), min(n, round(release * SAMPLE_RATE))
    if a:
        envelope[:a] *= 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, a))
    if r:
        envelope[n - r :] *= 0.5 + 0.5 * np.cos(np.linspace(0, np.pi, r))
    return envelope
