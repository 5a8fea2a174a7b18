"""Fixtures shared by the local provider's tests (a module's own fixture of the same name
takes precedence)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kling_gateway.storage.sqlite import SQLiteStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    """A migrated SQLite store in the test's own directory."""
    db = SQLiteStore(f"sqlite:///{tmp_path}/t.db")
    await db.open()
    await db.migrate()
    yield db
    await db.close()
