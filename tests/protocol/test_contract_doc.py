"""docs/contract.md has every section that the code, the tests and the docs cite.

In this project a `§N` (or `§N.M`) always means a section of docs/contract.md: comments, the
OpenAPI document's descriptions and the README cite it so. A citation of a section that does
not exist fails here, and so does a contract without the spec's numbering (§1 to §7, then the
gateway's own §8).
"""

from __future__ import annotations

import re
from pathlib import Path

from kling_gateway.protocol.errors import ERRORS_BY_CODE

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = ROOT / "docs" / "contract.md"
CITATION = re.compile(r"§(\d+(?:\.\d+)?)")
HEADING = re.compile(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", re.MULTILINE)
SUFFIXES = {".py", ".md", ".json", ".sql", ".html"}


def _cited() -> dict[str, set[str]]:
    """Section -> the files citing it."""
    sources = [*(ROOT / "kling_gateway").rglob("*"), *(ROOT / "tests").rglob("*")]
    sources += [*(ROOT / "docs").glob("*.md"), ROOT / "README.md", ROOT / "CHANGELOG.md"]
    found: dict[str, set[str]] = {}
    for path in sources:
        if path.suffix not in SUFFIXES or not path.is_file() or path == Path(__file__):
            continue
        for section in CITATION.findall(path.read_text("utf-8")):
            found.setdefault(section, set()).add(str(path.relative_to(ROOT)))
    return found


def _sections() -> list[str]:
    return HEADING.findall(CONTRACT.read_text("utf-8"))


def test_every_cited_section_exists() -> None:
    missing = {s: files for s, files in _cited().items() if s not in _sections()}
    assert not missing, f"cited but not in docs/contract.md: {missing}"


def test_the_sections_keep_the_specs_numbers() -> None:
    top = [s for s in _sections() if "." not in s]
    assert top == [str(n) for n in range(1, 9)]


def test_the_citations_are_found() -> None:
    # The code cites at least the five implemented sections; an empty scan would pass above.
    assert {"1", "2", "3", "4", "5"} <= set(_cited())


def _section(number: str) -> str:
    text = CONTRACT.read_text("utf-8")
    start = re.search(rf"^## {number}\. .*$", text, re.MULTILINE)
    assert start is not None, number
    end = re.search(r"^## \d+\. ", text[start.end() :], re.MULTILINE)
    return text[start.end() : start.end() + end.start() if end else None]


def test_section_4_lists_every_error_code_with_its_status() -> None:
    rows = re.findall(r"^\| (\d{3}) \| `([a-z_]+)` \|", _section("4"), re.MULTILINE)
    documented = {code: int(status) for status, code in rows}
    assert documented == {code: cls.status for code, cls in ERRORS_BY_CODE.items()}
