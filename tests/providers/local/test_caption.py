"""The caption over text2video frames: CJK drawn as glyphs, and layout work linear in the prompt.

Timings belong to ``bench/caption_layout.py``; here the work is counted (font measure calls).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from PIL import ImageFont

from kling_gateway.providers.local import caption, render
from kling_gateway.providers.local.caption import ELLIPSIS, caption_font, wrap_caption
from kling_gateway.providers.local.render import RenderSpec, render_video
from tests.services import services_required

WIDTH, HEIGHT = 1280, 720
# A 2,500-character Chinese prompt without a space, cycling through 500 distinct ideographs.
CJK = "".join(chr(0x4E00 + (i * 37) % 500) for i in range(2500))
LATIN = "".join(chr(ord("a") + (i * 7) % 26) for i in range(2500))
# Plane-16 private use: no font has glyphs there, so each draws as the missing-glyph box.
TOFU = "".join(chr(0x10FFFD - i % 2) for i in range(2500))


class CountingFont:
    """A font that counts how often it is asked to measure text."""

    def __init__(self, font: caption.Font) -> None:
        self.font = font
        self.calls = 0

    def getlength(self, text: str) -> float:
        self.calls += 1
        return float(self.font.getlength(text))


def counted(text: str, limit: float, max_lines: int) -> tuple[list[str], int]:
    font = CountingFont(caption_font(30))
    proxy: Any = font
    lines = wrap_caption(text, proxy, limit, max_lines=max_lines)
    return lines, font.calls


@pytest.fixture
def cjk_font() -> None:
    if caption.cjk_font_file() is None:
        if services_required():
            pytest.fail("no CJK font installed (make install adds fonts-noto-cjk)")
        pytest.skip("no CJK font installed (Debian: fonts-noto-cjk)")


# --- glyphs, not boxes -----------------------------------------------------------------------


@pytest.mark.usefixtures("cjk_font")
def test_a_long_cjk_prompt_is_drawn_as_glyphs_not_boxes() -> None:
    cjk = render._caption(CJK, WIDTH, HEIGHT)
    boxes = render._caption(TOFU, WIDTH, HEIGHT)
    assert cjk is not None and boxes is not None

    assert cjk.mask.mean() > 0.02  # text was drawn
    rows = min(cjk.mask.shape[0], boxes.mask.shape[0])
    cols = min(cjk.mask.shape[1], boxes.mask.shape[1])
    differing = (cjk.mask[:rows, :cols] != boxes.mask[:rows, :cols]).mean()
    # Rendered as missing-glyph boxes, the two captions would be (nearly) the same bitmap.
    assert differing > 0.05


@pytest.mark.usefixtures("cjk_font")
def test_every_cjk_character_of_the_prompt_has_a_glyph_of_its_own() -> None:
    font = caption_font(30)
    assert isinstance(font, ImageFont.FreeTypeFont)
    missing = np.asarray(font.getmask(TOFU[0]))
    assert np.array_equal(missing, np.asarray(font.getmask(TOFU[1])))  # both the box
    for char in sorted(set(CJK)):
        assert not np.array_equal(np.asarray(font.getmask(char)), missing), hex(ord(char))


def test_the_2500_character_cjk_prompt_renders(tmp_path: Path) -> None:
    out = tmp_path / "v.mp4"
    result = render_video(out, RenderSpec(CJK, 0.25, fps=4, max_side=256))
    assert result.frames == 1
    with av.open(str(out)) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="rgb24")
    assert (frame > 230).all(axis=2).mean() > 0.01  # the caption's white text is there


# --- linear work -----------------------------------------------------------------------------


@pytest.mark.parametrize("text", [LATIN, CJK, "x" * 2500], ids=["latin", "cjk", "one-letter"])
def test_wrapping_measures_each_distinct_character_once(text: str) -> None:
    lines, calls = counted(text, limit=400, max_lines=10**6)

    assert "".join(lines) == text  # nothing lost when everything may be shown
    assert len(lines) > 10
    # One measure per distinct character: no re-measuring of growing prefixes (the old
    # layout measured each line's word once per character it gave back: quadratic).
    assert calls <= len(set(text))


@pytest.mark.parametrize("text", [LATIN, CJK], ids=["latin", "cjk"])
def test_layout_stops_at_the_lines_it_can_show(text: str) -> None:
    shown, calls = counted(text, limit=400, max_lines=3)
    longer, calls_longer = counted(text * 10, limit=400, max_lines=3)

    assert len(shown) == 3 and shown[-1].endswith(ELLIPSIS)
    assert longer == shown
    # Ten times the text, the same work: nothing past the third line is looked at.
    assert calls_longer == calls
    # At most the characters of the three lines, the one that did not fit and the dot.
    assert calls <= sum(len(line) for line in shown[:2]) + 2 * len(shown[0]) + 2


def test_lines_fit_and_break_at_spaces_where_they_can() -> None:
    font = caption_font(30)
    limit = font.getlength("hello world") + 1
    text = "hello world foo " + "z" * 40 + " end"

    lines = wrap_caption(text, font, limit, max_lines=100)

    assert lines[:2] == ["hello world", "foo"]
    assert lines[-1] == "end"
    assert "".join(lines[2:-1]) == "z" * 40  # a word too long for a line breaks anywhere
    # Sums of advances leave out kerning; each line is still within a pixel or two.
    assert all(font.getlength(line) <= limit + 2 for line in lines)


def test_a_cut_caption_ends_with_an_ellipsis_that_fits() -> None:
    font = caption_font(30)
    limit = font.getlength("abcdefghij") * 1.05

    lines = wrap_caption("abcdefghij klmnopqrst uvwxyz", font, limit, max_lines=2)

    assert lines == ["abcdefghij", lines[1]]
    assert lines[1].endswith(ELLIPSIS) and lines[1].startswith("klmn")
    assert font.getlength(lines[1]) <= limit + 2


def test_without_a_cjk_font_the_caption_falls_back_to_pillows(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(caption, "CJK_FONTS", (("/nonexistent/font.ttc", 0),))
    caption.cjk_font_file.cache_clear()
    try:
        font = caption_font(20)
        assert "no CJK font found" in caplog.text and "fonts-noto-cjk" in caplog.text
        assert font.getlength("abc") > 0
        assert render._caption("你好 world", 320, 180) is not None
    finally:
        caption.cjk_font_file.cache_clear()
