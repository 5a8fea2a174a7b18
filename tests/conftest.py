"""Shared test setup. ``tests`` is a package mirroring ``kling_gateway``: helpers are imported
as ``tests.harness`` (the in-process gateway), ``tests.services`` (PostgreSQL/Redis detection)
and ``tests.servers`` (real servers on loopback)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kling_gateway.storage.sqlite import SQLiteStore
from tests.harness import AppHarness, make_settings, open_sqlite_store

pytest_plugins = ["tests.fake_upstream_fixtures"]


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    store = await open_sqlite_store(tmp_path)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[AppHarness]:
    """The whole gateway in-process (no worker), with a token for user ``alice``."""
    async with AppHarness.start(make_settings(tmp_path, worker=False)) as harness:
        yield harness


@pytest.fixture
async def gateway_with_worker(tmp_path: Path) -> AsyncIterator[AppHarness]:
    """The gateway with its worker and the local provider (fast, small renders)."""
    settings = make_settings(tmp_path, worker=True, local_delay=0.05)
    async with AppHarness.start(settings) as harness:
        yield harness
