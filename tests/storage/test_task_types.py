"""Listing a user's tasks of one `type` (retrieve_batch with a type filter, docs/contract.md §1,
§7) reads the index of migration 0009, not every task of the user."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.storage.helpers import migrated_store

COND = "t.user_id = 'u-1' AND t.type = 'lip-sync'"
QUERIES = (
    f"SELECT count(*) FROM tasks t WHERE {COND}",
    f"SELECT r.record FROM tasks t JOIN task_records r ON r.id = t.id WHERE {COND} "
    "ORDER BY t.created_at DESC LIMIT 20 OFFSET 0",
)


async def test_a_type_filter_reads_the_type_index(tmp_path: Path) -> None:
    store = await migrated_store(f"sqlite:///{tmp_path}/store.db")
    await store.close()
    conn = sqlite3.connect(tmp_path / "store.db")
    try:
        for sql in QUERIES:
            plan = " ".join(str(row[3]) for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}"))
            assert "tasks_type_user_created" in plan, plan
            assert "TEMP B-TREE" not in plan  # newest first straight from the index
    finally:
        conn.close()
