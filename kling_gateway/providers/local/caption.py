"""Laying out the prompt written over text2video frames: a font that covers CJK, and a wrap
whose work is linear in the text and stops at the lines it can show.

Prompts come from clients, so their length and shape are not ours to choose: Chinese and
Japanese prompts have no spaces, and a hostile one may be thousands of characters of one
"word". The wrap therefore never re-measures a growing string. It measures each distinct
character once (its advance width), sums advances to find where a line ends, and stops after
the last line that fits in the caption box. A line's true width can differ from the sum of its
advances by kerning; ``_caption`` measures each shown line once to size the box.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from PIL import ImageFont

log = logging.getLogger("kling_gateway.providers.local")

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont

# (path, face index) in order of preference. Debian's fonts-noto-cjk is what the Makefile
# installs where apt is present (face 2 of the collection is Simplified Chinese; every face
# covers all CJK ideographs, kana, hangul and Latin); the others are smaller Debian packages.
CJK_FONTS: tuple[tuple[str, int], ...] = (
    ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", 2),
    ("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc", 0),
    ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", 0),
    ("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf", 0),
)
ELLIPSIS = "..."


@functools.cache
def cjk_font_file() -> tuple[str, int] | None:
    """The first installed font of ``CJK_FONTS``; None (logged once) when there is none."""
    for path, index in CJK_FONTS:
        if Path(path).is_file():
            return path, index
    log.warning(
        "no CJK font found (looked for %s): captions fall back to Pillow's default font and "
        "show CJK characters as boxes; install Debian's fonts-noto-cjk to fix it",
        ", ".join(path for path, _ in CJK_FONTS),
    )
    return None


def caption_font(size: int) -> Font:
    """A caption font of ``size`` pixels: a CJK-covering one if installed, else Pillow's.

    Loaded anew per caption (about a millisecond): a FreeType face is not safe to share
    between the render threads.
    """
    found = cjk_font_file()
    if found is None:
        # Without FreeType, Pillow falls back to a fixed-size bitmap font; both work here.
        return ImageFont.load_default(size=size)
    path, index = found
    return ImageFont.truetype(path, size, index=index)


class _Advances:
    """Advance widths of single characters, each measured with the font once."""

    def __init__(self, font: Font) -> None:
        self._font = font
        self._widths: dict[str, float] = {}

    def __call__(self, char: str) -> float:
        width = self._widths.get(char)
        if width is None:
            width = self._widths[char] = float(self._font.getlength(char))
        return width


def wrap_caption(text: str, font: Font, limit: float, *, max_lines: int) -> list[str]:
    """Greedy wrap of ``text`` (single-spaced) into at most ``max_lines`` lines of at most
    ``limit`` pixels: at spaces where a line has one, anywhere in a word (or CJK run) that
    does not fit; text beyond the last line is cut and marked with an ellipsis."""
    advance = _Advances(font)
    lines: list[str] = []
    start, size = 0, len(text)
    # Line by line, and no further than the last line shown: the rest is never looked at.
    while start < size and len(lines) < max_lines:
        end, resume = _line_end(text, start, advance, limit)
        lines.append(text[start:end])
        start = resume
    if start < size and lines:
        lines[-1] = _ellipsized(lines[-1], advance, limit)
    return lines or [""]


def _line_end(text: str, start: int, advance: _Advances, limit: float) -> tuple[int, int]:
    """Where the line that starts at ``start`` ends, and where the next one starts.

    Each character is visited at most twice overall (once more when a line breaks at its last
    space and the word after it begins the next line), so wrapping is linear in the text.
    """
    width = 0.0
    last_space = -1
    for index in range(start, len(text)):
        char = text[index]
        if char == " ":
            last_space = index
        width += advance(char)
        if width <= limit:
            continue
        if index == start:  # not even one character fits: show it anyway
            return index + 1, index + 1
        if char == " ":
            return index, index + 1
        if last_space > start:
            return last_space, last_space + 1
        return index, index
    return len(text), len(text)


def _ellipsized(line: str, advance: _Advances, limit: float) -> str:
    budget = limit - sum(advance(char) for char in ELLIPSIS)
    width = 0.0
    for index, char in enumerate(line):
        width += advance(char)
        if width > budget:
            return line[:index].rstrip(" ") + ELLIPSIS
    return line.rstrip(" ") + ELLIPSIS
