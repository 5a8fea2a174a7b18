"""A SQLite store whose database file was deleted or replaced under it says so in ``health()``
and refuses writes with StoreUnavailable instead of writing into an unlinked file (defect #16)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from kling_gateway.storage import StoreUnavailable
from kling_gateway.storage.sqlite import SQLiteStore
from tests.storage.helpers import insert, migrated_store, owner


async def test_a_deleted_data_directory_is_unhealthy_and_refuses_writes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = await migrated_store(f"sqlite:///{data / 'kling-gateway.db'}")
    try:
        who = await owner(store)
        task = await insert(store, who)
        assert (await store.health()).ok
        shutil.rmtree(data)
        health = await store.health()
        assert not health.ok and "deleted" in health.reason
        with pytest.raises(StoreUnavailable, match="deleted"):
            await insert(store, who)
        assert not data.exists()  # the refused write recreated nothing
        assert await store.get_task_record(who.user_id, task.id) is not None  # reads go on
    finally:
        await store.close()


async def test_a_replaced_database_file_is_unhealthy(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = await migrated_store(url)
    try:
        (tmp_path / "store.db").unlink()
        newcomer = await migrated_store(url)  # someone starts afresh at the same path
        await newcomer.close()
        health = await store.health()
        assert not health.ok and "replaced" in health.reason
        with pytest.raises(StoreUnavailable, match="replaced"):
            await store.ensure_account("alice", 0.0)
    finally:
        await store.close()


async def test_health_of_an_open_and_a_closed_store(tmp_path: Path) -> None:
    store = SQLiteStore(f"sqlite:///{tmp_path / 'store.db'}")
    await store.open()
    assert (await store.health()).ok
    await store.close()
    closed = await store.health()
    assert not closed.ok and "closed" in closed.reason
