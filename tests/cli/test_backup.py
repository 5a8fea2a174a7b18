"""`kling-gateway backup PATH`: a consistent copy of a live SQLite database (WAL included)."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from pathlib import Path

import pytest

from kling_gateway.cli import main
from tests.harness import make_task, open_sqlite_store

TASKS = 25


def count_tasks(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return int(conn.execute("SELECT count(*) FROM tasks").fetchone()[0])
    finally:
        conn.close()


async def test_a_backup_of_a_live_database_has_every_task(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = await open_sqlite_store(tmp_path)  # open: its WAL is not checkpointed
    try:
        for _ in range(TASKS):
            task = make_task("alice")
            await store.insert_task(task, next_check_at=task.created_at, deadline_at=1e12)
        database = tmp_path / "store.db"
        # What a plain `cp` of the main file gets: the tasks still sit in the WAL.
        shutil.copy(database, tmp_path / "cp.db")
        try:
            copied = count_tasks(tmp_path / "cp.db")
        except sqlite3.OperationalError:  # not even the schema has left the WAL yet
            copied = 0
        assert copied < TASKS

        target = tmp_path / "backup" / "kg.db"
        target.parent.mkdir()
        argv = ["backup", str(target), "--database-url", f"sqlite:///{database}"]
        code = await asyncio.to_thread(main, argv)
        assert code == 0
        assert count_tasks(target) == TASKS
        assert target.stat().st_mode & 0o777 == 0o600
        assert not list(target.parent.glob(".*partial"))
        assert "backed up" in capsys.readouterr().out
    finally:
        await store.close()


def test_backup_of_postgres_points_at_pg_dump(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["backup", str(tmp_path / "x.db"), "--database-url", "postgresql://db/kg"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pg_dump" in err[0]


def test_backup_of_a_missing_database_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["backup", str(tmp_path / "x.db"), "--data-dir", str(tmp_path / "nothing")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--database-url" in err[0]
