"""Headless Chromium (Debian's, driven by Playwright) against a real gateway, and where the
screenshots of the dashboard's pages go (test artefacts: the path is printed once)."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ARTIFACTS_ENV = "KLING_GATEWAY_TEST_ARTIFACTS"
_announced: set[Path] = set()


def artifacts_dir() -> Path:
    root = Path(
        os.environ.get(ARTIFACTS_ENV) or Path(tempfile.gettempdir()) / "kling-gateway-artifacts"
    )
    folder = root / "ui"
    folder.mkdir(parents=True, exist_ok=True)
    if folder not in _announced:
        _announced.add(folder)
        # Past pytest's capture, so a CI log shows where the pictures are.
        sys.__stderr__.write(f"\n[ui] screenshots in {folder}\n")
    return folder


def screenshot(page: Any, name: str) -> Path:
    path = artifacts_dir() / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@contextmanager
def chromium(executable: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=executable,
            headless=True,
            # Root in a container has no user namespace for the sandbox; no GPU either.
            args=["--no-sandbox", "--disable-gpu", "--autoplay-policy=no-user-gesture-required"],
        )
        try:
            yield browser
        finally:
            browser.close()


def sign_in(page: Any, base_url: str, token: str) -> None:
    """Sign in afresh (a token kept in the tab from before is dropped first)."""
    page.goto(f"{base_url}/ui/")
    page.evaluate("sessionStorage.clear()")
    page.reload()
    page.fill("#signin input[name=token]", token)
    page.click("#signin button[type=submit]")
    page.wait_for_selector("#task-list")
