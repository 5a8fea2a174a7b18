"""`python -m bench.caption_layout`: how long the text2video caption takes to lay out.

Lays out 2,500-character prompts (Latin without spaces, and Chinese, which has no spaces) at
720p and 4K, with the layout of ``providers/local/caption.py`` ("now") and with a copy of the
layout it replaced ("before": Pillow's default font, a word shortened one character at a time
and re-measured, every line wrapped before the excess was cut). Prints seconds and font
measure calls per layout, and writes ``bench/caption_layout_results.md``.

``--before-chars`` caps the prompt length for the old layout (it is quadratic: 2,500
characters take it tens of seconds); the figure is then also given for that length "now".
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import ImageFont

from kling_gateway.providers.local import caption

RESULTS = Path(__file__).resolve().parent / "caption_layout_results.md"
CHARS = 2500
LATIN = "".join(chr(ord("a") + (i * 7) % 26) for i in range(CHARS))
CJK = "".join(chr(0x4E00 + (i * 37) % 3000) for i in range(CHARS))
SIZES = {"720p": (1280, 720), "4K": (3840, 2160)}


class Counting:
    def __init__(self, font: Any) -> None:
        self.font, self.calls = font, 0

    def getlength(self, text: str) -> float:
        self.calls += 1
        return float(self.font.getlength(text))

    def getbbox(self, text: str) -> Any:
        return self.font.getbbox(text)


# -- the layout as it was (kept here for comparison only) -------------------------------------


def before_wrap(text: str, font: Any, limit: float, *, max_lines: int) -> list[str]:
    lines: list[str] = []
    line = ""
    for word in text.split(" "):
        candidate = f"{line} {word}" if line else word
        if font.getlength(candidate) <= limit:
            line = candidate
            continue
        if line:
            lines.append(line)
        line = word
        while font.getlength(line) > limit and len(line) > 1:
            cut = len(line)
            while cut > 1 and font.getlength(line[:cut]) > limit:
                cut -= 1
            lines.append(line[:cut])
            line = line[cut:]
    lines.append(line)
    if len(lines) > max_lines:
        last = lines[max_lines - 1]
        while last and font.getlength(last + "...") > limit:
            last = last[:-1]
        lines = [*lines[: max_lines - 1], last + "..."]
    return lines


# -- measuring --------------------------------------------------------------------------------

Layout = Callable[[str, Any, float, int], list[str]]


def _geometry(width: int, height: int, font: Any) -> tuple[float, int]:
    pad = max(2, height // 60)
    bbox = font.getbbox("Ag")
    line_height = max(1, round((bbox[3] - bbox[1]) * 1.3))
    return width * 0.8 - 2 * pad, max(1, int(height * 0.6) // line_height)


def measure(text: str, size: tuple[int, int], *, before: bool) -> tuple[float, int]:
    width, height = size
    font_size = max(8, height // 24)
    started = time.perf_counter()
    raw = ImageFont.load_default(size=font_size) if before else caption.caption_font(font_size)
    font = Counting(raw)
    limit, max_lines = _geometry(width, height, font)
    if before:
        before_wrap(text, font, limit, max_lines=max_lines)
    else:
        caption.wrap_caption(text, font, limit, max_lines=max_lines)  # type: ignore[arg-type]
    return time.perf_counter() - started, font.calls


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before-chars", type=int, default=CHARS)
    parser.add_argument("--no-before", action="store_true", help="skip the old layout")
    args = parser.parse_args(argv)
    font = caption.cjk_font_file()
    rows = [
        "| prompt | frame | layout | chars | seconds | measure calls |",
        "|---|---|---|---|---|---|",
    ]
    for name, text in (("Latin, no spaces", LATIN), ("Chinese", CJK)):
        for frame, size in SIZES.items():
            runs = [("now", text, False)]
            if not args.no_before:
                short = text[: args.before_chars]
                if len(short) < len(text):
                    runs.append(("now", short, False))
                runs.append(("before", short, True))
            for label, prompt, before in runs:
                seconds, calls = measure(prompt, size, before=before)
                row = f"| {name} | {frame} | {label} | {len(prompt)} | {seconds:.4f} | {calls} |"
                print(row, flush=True)
                rows.append(row)
    body = "\n".join(rows)
    RESULTS.write_text(
        "# Caption layout (`python -m bench.caption_layout`)\n\n"
        f"Font now: {font[0] if font else 'none found (Pillow default)'}; "
        "before: Pillow's default font. One layout per row, wall-clock seconds on this "
        "machine (2 cores, shared), font measure calls counted.\n\n"
        f"{body}\n"
    )


if __name__ == "__main__":
    main()
