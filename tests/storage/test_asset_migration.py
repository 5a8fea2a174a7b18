"""Migration 0010 on a database that has assets already (an operator's `assets add` before
it): the rows stay, ready (`succeed`), with their upstream ids, on both SQL backends."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from kling_gateway.storage import open_store
from kling_gateway.storage.migrations import migration_scripts
from tests.services import fresh_postgres_database, run_sync

BEFORE = "0010"
USER = ("u-1", "alice", 1.0)
ASSETS = [("el_old", "u-1", "element", "up-el", 2.0), ("vo_old", "u-1", "voice", "up-vo", 3.0)]


def _earlier(backend: str) -> list[tuple[str, str]]:
    return [(name, sql) for name, sql in migration_scripts(backend) if name < BEFORE]


def _sqlite_before(path: Path) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.execute("CREATE TABLE schema_migrations (name TEXT PRIMARY KEY, applied_at REAL)")
        for name, sql in _earlier("sqlite"):
            conn.executescript(sql)
            conn.execute("INSERT INTO schema_migrations VALUES (?, 0)", (name,))
        conn.execute("INSERT INTO users VALUES (?, ?, ?)", USER)
        conn.executemany("INSERT INTO assets VALUES (?, ?, ?, ?, ?)", ASSETS)
        conn.commit()
    finally:
        conn.close()


async def _postgres_before(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "CREATE TABLE schema_migrations (name TEXT PRIMARY KEY, applied_at DOUBLE PRECISION)"
        )
        for name, sql in _earlier("postgres"):
            await conn.execute(sql)
            await conn.execute("INSERT INTO schema_migrations VALUES ($1, 0)", name)
        await conn.execute("INSERT INTO users VALUES ($1, $2, $3)", *USER)
        await conn.executemany("INSERT INTO assets VALUES ($1, $2, $3, $4, $5)", ASSETS)
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
def old_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        _sqlite_before(tmp_path / "old.db")
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    with fresh_postgres_database("kg_assets_mig") as url:
        run_sync(lambda: _postgres_before(url))
        yield url


async def test_registered_assets_survive_ready(old_database: str) -> None:
    store = open_store(old_database)
    await store.open()
    try:
        applied = await store.migrate()
        assert applied and all(name >= BEFORE for name in applied)
        found = await store.find_user_assets("u-1", "element", ["el_old"])
        assert found["el_old"].upstream_id == "up-el" and found["el_old"].state == "succeed"
        voice = await store.get_asset("u-1", "voice", "vo_old")
        assert voice is not None and voice.created_at == 3.0 and voice.account is None
        items, total = await store.list_assets("u-1", "element", 10, 0)
        assert [a.id for a in items] == ["el_old"] and total == 1
    finally:
        await store.close()
