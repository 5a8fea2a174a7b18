"""A closed SQLite store opens again, with its writer thread and reader pool (defect #11)."""

from __future__ import annotations

from pathlib import Path

from kling_gateway.storage.sqlite import SQLiteStore
from tests.storage.helpers import insert, owner


async def test_a_closed_store_reopens_for_reads_and_writes(tmp_path: Path) -> None:
    store = SQLiteStore(f"sqlite:///{tmp_path / 'store.db'}")
    await store.open()
    await store.migrate()
    who = await owner(store)
    first = await insert(store, who)
    assert await store.get_task_records(who.user_id, [first.id])  # starts the reader pool
    await store.close()

    await store.open()
    try:
        second = await insert(store, who)  # the writer thread
        records = await store.get_task_records(who.user_id, [first.id, second.id])  # the pool
        assert set(records) == {first.id, second.id}
        assert await store.get_task_record(who.user_id, first.id) is not None  # the loop reader
    finally:
        await store.close()


async def test_close_twice_and_close_unopened_are_harmless(tmp_path: Path) -> None:
    never_opened = SQLiteStore(f"sqlite:///{tmp_path / 'a.db'}")
    await never_opened.close()
    store = SQLiteStore(f"sqlite:///{tmp_path / 'b.db'}")
    await store.open()
    await store.close()
    await store.close()
    await store.open()
    try:
        assert await store.migrate()
    finally:
        await store.close()
