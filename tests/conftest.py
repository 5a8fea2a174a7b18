"""Shared test setup. ``tests`` is a package mirroring ``kling_gateway``: helpers are imported
as ``tests.harness`` (the in-process gateway), ``tests.services`` (PostgreSQL/Redis detection)
and ``tests.servers`` (real servers on loopback)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from kling_gateway.storage.sqlite import SQLiteStore
from tests.harness import AppHarness, make_settings, open_sqlite_store, use_database
from tests.services import fresh_postgres_database

pytest_plugins = ["tests.fake_upstream_fixtures", "tests.tmpfs"]

# The API suites that run once per SQL backend: the gateway must answer the same on both.
BOTH_STORES = frozenset(
    {
        "tests.api.test_tasks",
        "tests.api.test_videos",
        "tests.api.test_events",
        "tests.api.test_kinds",
        "tests.api.test_assets",
        "tests.providers.kling.test_kinds_gateway",
        "tests.providers.kling.test_pool_kinds",
        "tests.test_harness",
    }
)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.module.__name__ in BOTH_STORES and "store_backend" in metafunc.fixturenames:
        metafunc.parametrize("store_backend", ["sqlite", "postgres"], indirect=True, scope="module")


@pytest.fixture(scope="module", autouse=True)
def store_backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """The backend ``make_settings`` gives the gateway: SQLite unless a module of
    ``BOTH_STORES`` runs its PostgreSQL round, in a throwaway database of its own."""
    backend = str(getattr(request, "param", "sqlite"))
    if backend == "sqlite":
        yield backend
        return
    with fresh_postgres_database("kg_api") as url:
        use_database(url)
        try:
            yield backend
        finally:
            use_database(None)


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


@pytest.fixture
def embedded_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """``kling-gateway`` run in-process on its embedded defaults: no database, object
    storage, Redis or server key from the environment (CI may set them)."""
    for name in ("DATABASE_URL", "SECRET_KEY", "STORAGE_URL", "REDIS_URL"):
        monkeypatch.delenv(f"KLING_GATEWAY_{name}", raising=False)


@pytest.fixture(autouse=True)
def _root_logging() -> Iterator[None]:
    """Tests that run ``kling_gateway.cli.main`` in-process get its logging set up: the root
    handlers replaced by one on the ``sys.stderr`` of that moment (pytest's capture, closed
    when the test ends) and the repeat-folding filter (runtime/log_fold.py) put on them. Put
    the root logger back, so later messages reach pytest (its caplog too), not a closed stream.

    pytest swaps its own per-phase capture handlers between setup and teardown, so only the
    handlers that are not pytest's are taken off, and pytest's session handlers put back."""
    import logging

    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    filters = {handler: list(handler.filters) for handler in before}
    yield
    pytest_now = [h for h in root.handlers if type(h).__module__ == "_pytest.logging"]
    session = [h for h in before if type(h).__name__ != "LogCaptureHandler"]
    root.handlers[:] = [h for h in session if h not in pytest_now] + pytest_now
    root.setLevel(level)
    for handler in root.handlers:
        if handler in filters:
            handler.filters[:] = filters[handler]
