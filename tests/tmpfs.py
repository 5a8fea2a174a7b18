"""A real, tiny, full-able filesystem for the disk-full tests: a 1 MB tmpfs where the tests
may mount one (root), else the test is skipped with the reason."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(directory: Path, leave: int = 0) -> Path:
    """Fill the filesystem of ``directory`` until about ``leave`` bytes are free; the filler
    file is returned (delete it to make room again)."""
    filler = directory / "filler"
    with filler.open("wb") as out:
        free = os.statvfs(directory).f_bavail * os.statvfs(directory).f_frsize
        try:
            out.write(b"\0" * max(0, free - leave))
            out.flush()
        except OSError:
            pass
    return filler
