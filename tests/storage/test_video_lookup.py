"""find_user_video (every extend) is an index lookup on (user_id, video_id), on both backends,
and the migration that adds the column fills it for tasks stored before it (defect #6)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from kling_gateway.storage.base import Outcome, Store
from kling_gateway.storage.migrations import migration_scripts
from kling_gateway.storage.postgres import PostgresStore
from kling_gateway.storage.rows import TASK_COLUMNS, task_values
from kling_gateway.storage.sqlite import SQLiteStore, _statements
from tests.services import fresh_postgres_database
from tests.storage.helpers import (
    LEASE,
    Owner,
    claim_one,
    finish,
    insert,
    migrated_store,
    new_task,
    open_store,
    owner,
)

VIDEO_MIGRATION = "0005_video_id.sql"


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/store.db"
        return
    with fresh_postgres_database("kg_video") as url:
        yield url


async def _apply_before(url: str, stop: str) -> None:
    """Apply, and record, the migrations older than ``stop``: a database as an older release
    left it."""
    backend = "postgres" if url.startswith("postgresql") else "sqlite"
    scripts = [(n, sql) for n, sql in migration_scripts(backend) if n < stop]
    if backend == "sqlite":
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        conn.execute("CREATE TABLE schema_migrations (name TEXT PRIMARY KEY, applied_at REAL)")
        for name, sql in scripts:
            for statement in _statements(sql):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_migrations VALUES (?, 0)", (name,))
        conn.close()
        return
    pg = await asyncpg.connect(url)
    try:
        await pg.execute(
            "CREATE TABLE schema_migrations (name TEXT PRIMARY KEY, applied_at DOUBLE PRECISION)"
        )
        for name, sql in scripts:
            await pg.execute(sql)
            await pg.execute("INSERT INTO schema_migrations VALUES ($1, 0)", name)
    finally:
        await pg.close()


async def _store_as_before(url: str, who: Owner, video_id: str) -> str:
    """A succeeded task written as a release before ``VIDEO_MIGRATION`` wrote it (the record
    still in ``tasks``: its own table came with a later migration)."""
    task = new_task(who)
    finish(task, video_id=video_id)
    values = (*task_values(task), 1, None, task.created_at + 3600, None, task.record_json())
    # The columns of that release: upstream_account and usage came with later migrations.
    columns = TASK_COLUMNS.removesuffix(", upstream_account, usage")
    sql = f"INSERT INTO tasks ({columns}, record) VALUES ({{}})"
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        conn.execute(sql.format(", ".join("?" * len(values))), values)
        conn.close()
        return task.id
    pg = await asyncpg.connect(url)
    try:
        await pg.execute(sql.format(", ".join(f"${n + 1}" for n in range(len(values)))), *values)
    finally:
        await pg.close()
    return task.id


async def _succeed(store: Store, video_id: str, user: str = "alice") -> str:
    who = await owner(store, user)
    task = await insert(store, who)
    stored = await claim_one(store, task)
    finish(stored.task, video_id=video_id)
    outcome = Outcome(None)
    version = stored.task.version
    assert await store.save_task(
        stored.task, expected_version=version, worker_id="w1", outcome=outcome
    )
    return task.id


async def test_migration_fills_video_id_of_tasks_stored_before_it(store_url: str) -> None:
    await _apply_before(store_url, VIDEO_MIGRATION)
    store = await open_store(store_url)
    try:
        old_task = await _store_as_before(store_url, await owner(store), "old-video")
        assert VIDEO_MIGRATION in await store.migrate()
        alice, _ = await store.ensure_account("alice", time.time())
        bob, _ = await store.ensure_account("bob", time.time())
        assert await store.find_user_video(alice, "old-video") == old_task
        assert await store.find_user_video(bob, "old-video") is None
        # ... and tasks that succeed afterwards get theirs on the same write.
        new_task = await _succeed(store, "new-video")
        assert await store.find_user_video(alice, "new-video") == new_task
    finally:
        await store.close()


async def test_a_task_that_is_not_succeeded_has_no_video_id(store_url: str) -> None:
    store = await migrated_store(store_url)
    try:
        who = await owner(store)
        task = await insert(store, who)
        stored = await claim_one(store, task)
        stored.task.response = {"video_id": "early", "state": "processing"}
        outcome = Outcome(time.time() + LEASE)
        version = stored.task.version
        assert await store.save_task(
            stored.task, expected_version=version, worker_id="w1", outcome=outcome
        )
        assert await store.find_user_video(who.user_id, "early") is None
    finally:
        await store.close()


async def test_lookup_reads_the_user_video_index(store_url: str) -> None:
    if store_url.startswith("postgresql"):
        # A small table would be read whole; what matters is that the index serves the query.
        await _admin(store_url, "ALTER DATABASE {db} SET enable_seqscan = off")
    store = await migrated_store(store_url)
    try:
        ids = [await _succeed(store, f"video-{n}", user=f"user-{n % 3}") for n in range(20)]
        user_id, _ = await store.ensure_account("user-1", time.time())
        if isinstance(store, SQLiteStore):
            statements = await _sqlite_statements(store, user_id)
            plans = [await _sqlite_plan(store, sql) for sql in statements]
            assert any("tasks_user_video" in plan for plan in plans), plans
        else:
            assert isinstance(store, PostgresStore)
            assert await store.find_user_video(user_id, "video-4") == ids[4]
            assert await _pg_index_scans(store) > 0
    finally:
        await store.close()


async def _sqlite_statements(store: SQLiteStore, user_id: str) -> list[str]:
    """The statements ``find_user_video`` runs (it reads on the loop's reader connection)."""
    seen: list[str] = []
    reader = store._point.conn
    reader.set_trace_callback(seen.append)
    try:
        assert await store.find_user_video(user_id, "video-4") is not None
    finally:
        reader.set_trace_callback(None)
    assert seen, "find_user_video ran no statement on the reader connection"
    return seen


async def _sqlite_plan(store: SQLiteStore, sql: str) -> str:
    def explain(conn: sqlite3.Connection) -> str:
        return " ".join(str(row[3]) for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}"))

    return explain(store._point.conn)


async def _admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        db = await conn.fetchval("SELECT current_database()")
        await conn.execute(sql.format(db=f'"{db}"'))
    finally:
        await conn.close()


async def _pg_index_scans(store: PostgresStore) -> int:
    """Scans of tasks_user_video so far. Statistics reach the view a moment after the scanning
    session goes idle: look until they do (or give up after ten seconds)."""
    for _ in range(100):
        scans = await store.pool.fetchval(
            "SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = 'tasks_user_video'"
        )
        if scans:
            return int(scans)
        await asyncio.sleep(0.1)
        await store.pool.execute("SELECT pg_stat_clear_snapshot()")
    return 0
