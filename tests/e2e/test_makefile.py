"""`make` checks the Python version before it creates a venv (an older one would fail deep
inside pip and leave a broken .venv); the lock pins the setuptools the build needs."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def fake_python(tmp_path: Path, version: str) -> Path:
    """A stand-in interpreter that reports ``version`` and logs every other call."""
    script = tmp_path / "fake-python"
    calls = tmp_path / "calls.log"
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "--version" ]; then echo "Python {version}"; exit 0; fi\n'
        f'echo "$@" >> {calls}\n'
        "exit 1\n"
    )
    script.chmod(0o755)
    return script


def make_install(tmp_path: Path, python: Path) -> subprocess.CompletedProcess[str]:
    work = tmp_path / "project"
    work.mkdir()
    for name in ("Makefile", "pyproject.toml", "requirements.lock"):
        shutil.copy(ROOT / name, work / name)
    return subprocess.run(
        ["make", "-C", str(work), "install", f"PYTHON={python}"],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("version", ["3.9.18", "3.10.14", "2.7.18"])
def test_make_with_an_old_python_fails_first_and_says_what_is_needed(
    tmp_path: Path, version: str
) -> None:
    done = make_install(tmp_path, fake_python(tmp_path, version))
    assert done.returncode != 0
    assert "needs Python 3.11 or newer" in done.stderr
    assert f"Python {version}" in done.stderr
    assert not (tmp_path / "project" / ".venv").exists()
    assert not (tmp_path / "calls.log").exists()  # never asked to build a venv


@pytest.mark.parametrize("version", ["3.11.0", "3.12.3", "3.13.1"])
def test_make_with_a_recent_python_goes_on_to_build_the_venv(tmp_path: Path, version: str) -> None:
    done = make_install(tmp_path, fake_python(tmp_path, version))
    assert "needs Python" not in done.stderr
    assert "-m venv .venv" in (tmp_path / "calls.log").read_text()


def test_the_lock_pins_a_setuptools_the_build_accepts() -> None:
    lock = (ROOT / "requirements.lock").read_text()
    pinned = re.search(r"^setuptools==(\d+)\.", lock, re.MULTILINE)
    required = re.search(r'"setuptools>=(\d+)"', (ROOT / "pyproject.toml").read_text())
    assert pinned and required
    assert int(pinned[1]) >= int(required[1])
    makefile = (ROOT / "Makefile").read_text()
    assert f'"setuptools>={required[1]}"' in makefile  # `make lock` asks for the same
