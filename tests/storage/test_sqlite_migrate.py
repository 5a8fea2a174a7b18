"""SQLite migrations when several processes start on a new database at once."""

from __future__ import annotations

import asyncio
from pathlib import Path

from kling_gateway.storage.migrations import migration_scripts
from kling_gateway.storage.sqlite import SQLiteStore, _statements


async def _migrate(url: str) -> list[str]:
    store = SQLiteStore(url)
    await store.open()
    try:
        return await store.migrate()
    finally:
        await store.close()


async def test_concurrent_first_starts_apply_each_migration_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    results = await asyncio.gather(*(_migrate(url) for _ in range(4)))
    names = [name for name, _ in migration_scripts("sqlite")]
    assert sorted(results, key=len) == [[], [], [], names]
    assert await _migrate(url) == []


def test_scripts_split_into_complete_statements() -> None:
    for _, sql in migration_scripts("sqlite"):
        statements = _statements(sql)
        assert statements and all(s.rstrip().endswith(";") for s in statements)
