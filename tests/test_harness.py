"""The test harness runs the gateway on the store of the round (``store_backend``): this
module is one of conftest.BOTH_STORES, so it runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from kling_gateway.storage.postgres import PostgresStore
from kling_gateway.storage.sqlite import SQLiteStore
from tests.harness import AppHarness, insert_finished, make_settings, make_task


async def test_the_gateway_runs_on_the_backend_of_the_round(
    gateway: AppHarness, store_backend: str
) -> None:
    expected = {"sqlite": SQLiteStore, "postgres": PostgresStore}[store_backend]
    assert type(gateway.store) is expected


async def test_each_gateway_starts_with_an_empty_store(tmp_path: Path) -> None:
    async with AppHarness.start(make_settings(tmp_path / "a", worker=False)) as first:
        await insert_finished(first.store, make_task(first.user_ids["alice"]))
        listing = await first.tasks({"action": "retrieve_batch"})
        assert listing.json()["count"] == 1
    async with AppHarness.start(make_settings(tmp_path / "b", worker=False)) as second:
        listing = await second.tasks({"action": "retrieve_batch"})
        assert listing.json()["count"] == 0
