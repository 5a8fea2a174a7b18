"""The embedded store: SQLite in WAL mode through the stdlib ``sqlite3`` module.

Point lookups run on the event-loop thread (about 7 µs; a thread hop would cost more than the
query). Batch and list reads run on a small reader pool, and every write runs on one writer
thread, which is how SQLite wants writes anyway (one writer at a time) and keeps the loop free.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import msgspec

from kling_gateway.domain.task import Task
from kling_gateway.storage import sqlite_tasks as tasks_sql
from kling_gateway.storage.base import (
    CallbackDelivery,
    CredentialInfo,
    Outcome,
    Principal,
    StoredTask,
    TaskFilter,
)
from kling_gateway.storage.migrations import migration_scripts
from kling_gateway.storage.rows import (
    CREDENTIALS_QUERY,
    OVERDUE_DUE,
    PRINCIPAL_QUERY,
    credential_from_row,
    principal_from_row,
)

T = TypeVar("T")


# Page cache per connection, in KiB (SQLite's default is 2 MB). With a million tasks the id
# index alone is ~50 MB: in 2 MB most lookups re-read index pages from the OS, which made a
# point lookup ~2x slower at 1M tasks than at 100k (bench/RESULTS.md). Grows only as used.
CACHE_KIB = 65536


def _connect(path: str) -> sqlite3.Connection:
    # timeout: the busy handler must be in place before the first statement (journal_mode).
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    conn.row_factory = sqlite3.Row
    _enable_wal(conn)
    conn.execute("PRAGMA busy_timeout=10000")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    return conn


def _enable_wal(conn: sqlite3.Connection, attempts: int = 100) -> None:
    """Switch a new database to WAL (the mode is then kept in the file).

    The switch needs a moment of exclusive access and SQLite answers "locked" at once, without
    its busy handler, while another process is doing the same: so wait and look again.
    """
    for attempt in range(attempts):
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.05)


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (executescript would commit between them)."""
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    leftover = [line for line in buffer.splitlines() if line.strip()]
    if not all(line.strip().startswith("--") for line in leftover):
        raise ValueError("migration script ends with an incomplete statement")
    return statements


class SQLiteStore:
    """``Store`` over one SQLite file (``sqlite:///PATH``)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = url.removeprefix("sqlite:///") or ":memory:"
        self._reader: sqlite3.Connection | None = None
        self._writer_conn: sqlite3.Connection | None = None
        self._pool_lock = threading.Lock()
        self._threads()

    def _threads(self) -> None:
        """Fresh writer thread and reader pool (a closed store has shut its own down)."""
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        self._readers = ThreadPoolExecutor(2, thread_name_prefix="sqlite-reader")
        self._local = threading.local()
        self._pool_conns: list[sqlite3.Connection] = []

    # -- connections
    async def open(self) -> None:
        if self._reader is not None:
            return
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._writer_conn = await self._on_writer_thread(lambda: _connect(self.path))
        self._reader = _connect(self.path)

    async def close(self) -> None:
        if self._reader is None and self._writer_conn is None:
            return
        conns = [c for c in (self._reader, self._writer_conn) if c is not None]
        conns += self._pool_conns
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        for conn in conns:
            conn.close()
        self._reader = self._writer_conn = None
        self._threads()  # so that open() can start it again

    async def _on_writer_thread(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._writer, fn)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one IMMEDIATE transaction on the writer thread."""

        def run() -> T:
            conn = self._writer_conn
            assert conn is not None, "store is not open"
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        return await self._on_writer_thread(run)

    def _pool_conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = _connect(self.path)
            with self._pool_lock:
                self._pool_conns.append(conn)
        return conn

    async def _read_bulk(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, lambda: fn(self._pool_conn()))

    @property
    def _read(self) -> sqlite3.Connection:
        assert self._reader is not None, "store is not open"
        return self._reader

    async def run_write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one write transaction, for tables kept beside the store's own."""
        return await self._write(fn)

    async def run_read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on a reader connection, for tables kept beside the store's own."""
        return await self._read_bulk(fn)

    # -- migrations
    async def migrate(self) -> list[str]:
        return await self._on_writer_thread(self._migrate_sync)

    def _migrate_sync(self) -> list[str]:
        conn = self._writer_conn
        assert conn is not None, "store is not open"
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at REAL)"
        )
        applied = []
        for name, sql in migration_scripts("sqlite"):
            # Check and apply in one IMMEDIATE transaction, so two processes starting at once
            # cannot both apply the same migration.
            conn.execute("BEGIN IMMEDIATE")
            try:
                if conn.execute(
                    "SELECT 1 FROM schema_migrations WHERE name = ?", (name,)
                ).fetchone():
                    conn.execute("COMMIT")
                    continue
                for statement in _statements(sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations VALUES (?, unixepoch('subsec'))", (name,)
                )
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            applied.append(name)
        return applied

    # -- accounts
    async def ensure_account(self, user_name: str, now: float) -> tuple[str, str]:
        def run(conn: sqlite3.Connection) -> tuple[str, str]:
            row = conn.execute(
                "SELECT u.id, a.id FROM users u JOIN applications a ON a.user_id = u.id "
                "WHERE u.name = ? ORDER BY a.created_at LIMIT 1",  # users.name UNIQUE index
                (user_name,),
            ).fetchone()
            if row:
                return row[0], row[1]
            user_id, app_id = str(uuid.uuid4()), str(uuid.uuid4())
            conn.execute("INSERT INTO users VALUES (?, ?, ?)", (user_id, user_name, now))
            conn.execute(
                "INSERT INTO applications (id, user_id, created_at) VALUES (?, ?, ?)",
                (app_id, user_id, now),
            )
            return user_id, app_id

        return await self._write(run)

    async def add_credential(
        self,
        *,
        user_id: str,
        application_id: str,
        token_hash: str,
        token_prefix: str,
        apis: tuple[str, ...],
        expires_at: float | None,
        now: float,
    ) -> str:
        credential_id = str(uuid.uuid4())
        row = (credential_id, application_id, user_id, token_hash, token_prefix, ",".join(apis))

        def run(conn: sqlite3.Connection) -> str:
            conn.execute(
                "INSERT INTO credentials VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                (*row, now, expires_at),
            )
            return credential_id

        return await self._write(run)

    async def find_principal(self, token_hash: str) -> Principal | None:
        # credentials.token_hash UNIQUE index, then two primary-key joins.
        row = self._read.execute(PRINCIPAL_QUERY + "?", (token_hash,)).fetchone()
        return None if row is None else principal_from_row(row)

    async def list_credentials(self) -> list[CredentialInfo]:
        return [
            credential_from_row(row) for row in self._read.execute(CREDENTIALS_QUERY).fetchall()
        ]

    async def revoke_credential(self, id_or_prefix: str, now: float) -> int:
        def run(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "UPDATE credentials SET revoked_at = ? WHERE revoked_at IS NULL "
                "AND (id = ? OR token_prefix = ?)",
                (now, id_or_prefix, id_or_prefix),
            )
            return cur.rowcount

        return await self._write(run)

    async def count_credentials(self) -> int:
        return int(self._read.execute("SELECT count(*) FROM credentials").fetchone()[0])

    async def set_application(
        self, user_name: str, *, disabled: bool | None = None, quota: int | None = None
    ) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE applications SET disabled = COALESCE(?, disabled), "
                "quota_remaining = CASE WHEN ? THEN ? ELSE quota_remaining END "
                "WHERE user_id = (SELECT id FROM users WHERE name = ?)",
                (disabled, quota is not None, quota, user_name),
            )
            return cur.rowcount > 0

        return await self._write(run)

    # -- tasks: the API side
    async def insert_task(
        self,
        task: Task,
        *,
        next_check_at: float,
        deadline_at: float,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
        charge_quota: bool = False,
    ) -> Task:
        return await self._write(
            lambda conn: tasks_sql.insert_task(
                conn, task, next_check_at, deadline_at, idempotency_key, request_hash, charge_quota
            )
        )

    async def get_task_record(self, user_id: str, task_id: str) -> bytes | None:
        # Primary-key lookup; the user check makes a foreign task look missing.
        row = self._read.execute(
            "SELECT record FROM tasks WHERE id = ? AND user_id = ?", (task_id, user_id)
        ).fetchone()
        return None if row is None else bytes(row[0])

    async def get_task_records(self, user_id: str, task_ids: list[str]) -> dict[str, bytes]:
        ids_json = msgspec.json.encode(task_ids).decode()
        return await self._read_bulk(lambda conn: tasks_sql.get_records(conn, user_id, ids_json))

    async def list_task_records(self, user_id: str, flt: TaskFilter) -> tuple[list[bytes], int]:
        return await self._read_bulk(lambda conn: tasks_sql.list_records(conn, user_id, flt))

    async def delete_task(self, user_id: str, task_id: str) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            cur = conn.execute("DELETE FROM tasks WHERE id = ? AND user_id = ?", (task_id, user_id))
            return cur.rowcount > 0

        return await self._write(run)

    async def find_user_video(self, user_id: str, video_id: str) -> str | None:
        # A point lookup in the tasks_user_video index (migration 0005), so it stays on the
        # loop like the other point lookups; video_id is set only on succeeded tasks.
        row = self._read.execute(
            "SELECT id FROM tasks WHERE user_id = ? AND video_id = ? LIMIT 1",
            (user_id, video_id),
        ).fetchone()
        return None if row is None else str(row[0])

    # -- tasks: the worker side
    async def load_task(self, task_id: str) -> StoredTask | None:
        return tasks_sql.load_task(self._read, task_id)

    async def claim_due_tasks(
        self, worker_id: str, now: float, limit: int, lease_seconds: float
    ) -> list[StoredTask]:
        return await self._write(
            lambda conn: tasks_sql.claim_due(conn, worker_id, now, limit, lease_seconds)
        )

    async def save_task(
        self, task: Task, *, expected_version: int, worker_id: str | None, outcome: Outcome
    ) -> bool:
        return await self._write(
            lambda conn: tasks_sql.save_task(conn, task, expected_version, worker_id, outcome)
        )

    async def release_tasks(self, worker_id: str, task_ids: list[str], now: float) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE tasks SET lease_owner = NULL, next_check_at = ? "
                "WHERE id = ? AND lease_owner = ? AND next_check_at IS NOT NULL",
                [(now, task_id, worker_id) for task_id in task_ids],
            )

        await self._write(run)

    async def make_overdue_due(self, now: float) -> int:
        def run(conn: sqlite3.Connection) -> int:
            return int(conn.execute(OVERDUE_DUE.replace("$1", "?"), (now, now, now)).rowcount)

        return await self._write(run)

    # -- callbacks
    async def claim_due_callbacks(
        self, worker_id: str, now: float, limit: int, lease_seconds: float
    ) -> list[CallbackDelivery]:
        return await self._write(
            lambda conn: tasks_sql.claim_callbacks(conn, worker_id, now, limit, lease_seconds)
        )

    async def finish_callback_attempt(self, delivery: CallbackDelivery, worker_id: str) -> None:
        await self._write(lambda conn: tasks_sql.finish_callback(conn, delivery, worker_id))

    async def list_callbacks(
        self, *, task_id: str | None = None, failed_only: bool = False, limit: int = 100
    ) -> list[CallbackDelivery]:
        return await self._read_bulk(
            lambda conn: tasks_sql.list_callbacks(conn, task_id, failed_only, limit)
        )

    async def redeliver_callback(self, delivery_id: str, now: float) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                # attempts stay as history: a delivery that used up its schedule gets one
                # more attempt, now, per redelivery.
                "UPDATE callbacks SET state = 'pending', next_attempt_at = ?, lease_owner = NULL "
                "WHERE id = ?",
                (now, delivery_id),
            )
            return cur.rowcount > 0

        return await self._write(run)

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"
