"""A full disk is StorageFull, not a bare sqlite3 error (issue 18 item 8), and the store keeps
working once there is room again: on a real 1 MB tmpfs where the tests may mount one (root),
and always against SQLite's own size limit (``max_page_count``)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from kling_gateway.storage import StorageFull
from kling_gateway.storage.sqlite import SQLiteStore
from tests.storage.helpers import Owner, insert, new_task, owner

BIG_PROMPT = "x" * 20_000


async def _fill(store: SQLiteStore, who: Owner, most: int = 500) -> StorageFull:
    """Insert large tasks until the store says it is full."""
    for _ in range(most):
        task = new_task(who)
        task.request = {**task.request, "prompt": BIG_PROMPT + uuid.uuid4().hex}
        try:
            await store.insert_task(task, next_check_at=0.0, deadline_at=1e12)
        except StorageFull as exc:
            return exc
    raise AssertionError(f"{most} large tasks fit: the disk never filled")


async def test_a_full_tmpfs_is_storage_full_and_room_makes_it_writable(tiny_tmpfs: Path) -> None:
    filler = tiny_tmpfs / "filler"
    filler.write_bytes(b"\0" * 200_000)  # room to make later
    store = SQLiteStore(f"sqlite:///{tiny_tmpfs / 'store.db'}")
    await store.open()
    try:
        await store.migrate()
        who = await owner(store)
        first = await insert(store, who)
        error = await _fill(store, who)
        assert "full" in str(error)
        assert await store.get_task_record(who.user_id, first.id) is not None  # reads go on
        filler.unlink()
        later = await insert(store, who)  # the writer connection survived the failure
        assert await store.get_task_record(who.user_id, later.id) is not None
    finally:
        await store.close()


async def _on_writer(store: SQLiteStore, sql: str) -> object:
    """Run one statement on the store's writer connection (page limits are per connection)."""

    def run() -> object:
        assert store._writer_tx is not None
        return store._writer_tx.conn.execute(sql).fetchone()

    return await asyncio.get_running_loop().run_in_executor(store._writer, run)


async def test_the_database_size_limit_is_storage_full(tmp_path: Path) -> None:
    store = SQLiteStore(f"sqlite:///{tmp_path / 'store.db'}")
    await store.open()
    try:
        await store.migrate()
        who = await owner(store)
        (pages,) = await _on_writer(store, "PRAGMA page_count")  # type: ignore[misc]
        await _on_writer(store, f"PRAGMA max_page_count = {pages + 20}")
        await _fill(store, who)
        await _on_writer(store, "PRAGMA max_page_count = 1000000")
        assert await insert(store, who)  # the store writes again once the limit is lifted
    finally:
        await store.close()
