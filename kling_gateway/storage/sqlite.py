"""The embedded store: SQLite in WAL mode through the stdlib ``sqlite3`` module.

The flows are the engine's (``engine.py``); this module only runs their statements. Point
lookups run on the event-loop thread (about 7 µs; a thread hop would cost more than the
query). Batch and list reads run on a small reader pool, and every write transaction runs on
one writer thread, which is how SQLite wants writes anyway (one writer at a time) and keeps
the loop free. A flow is a coroutine whose statements never suspend here, so on a thread it
is run to its end with one ``send`` (``run_to_end``): one thread hop per transaction.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Coroutine, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar, cast

import msgspec

from kling_gateway.storage.base import StoreUnavailable
from kling_gateway.storage.engine import Dialect, Flow, Row, SQLStore
from kling_gateway.storage.errors import classify
from kling_gateway.storage.health import HEALTHY, FileIdentity, StoreHealth

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


def _create_private(path: Path) -> None:
    """Create a missing database file 0600 in a 0700 directory (it holds every account): SQLite
    gives its -wal and -shm files the database file's mode."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


def _raise_typed(exc: sqlite3.Error) -> NoReturn:
    """Raise ``exc`` as StoreUnavailable or StorageFull when it is one, else as it is."""
    typed = classify(exc)
    if typed is None:
        raise exc
    raise typed from exc


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


def run_to_end(coro: Coroutine[Any, Any, T]) -> T:
    """The result of a coroutine that never suspends (a flow over a ``SQLiteTx``)."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return cast(T, stop.value)
    coro.close()
    raise RuntimeError("a SQLite flow awaited something that suspends")


class SQLiteTx:
    """The engine's ``Tx`` over one ``sqlite3`` connection (statements run at once)."""

    __slots__ = ("conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    # Errors are typed where SQLite raises them (a full disk is StorageFull on reads too:
    # a sort may need temporary space), whichever runner ran the statement.
    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        try:
            return self.conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            _raise_typed(exc)

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        try:
            return self.conn.execute(sql, args).fetchone()
        except sqlite3.Error as exc:
            _raise_typed(exc)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        try:
            row = self.conn.execute(sql, args).fetchone()
        except sqlite3.Error as exc:
            _raise_typed(exc)
        return None if row is None else row[0]

    async def execute(self, sql: str, *args: Any) -> int:
        try:
            return self.conn.execute(sql, args).rowcount
        except sqlite3.Error as exc:
            _raise_typed(exc)

    async def executemany(self, sql: str, args: Iterable[Sequence[Any]]) -> None:
        self.conn.executemany(sql, args)

    async def script(self, sql: str) -> None:
        for statement in _statements(sql):
            self.conn.execute(statement)


def _ids_json(ids: list[str]) -> str:
    return msgspec.json.encode(ids).decode()


SQLITE = Dialect(
    name="sqlite",
    for_update="",  # a write transaction holds the whole database (BEGIN IMMEDIATE)
    skip_locked="",
    ids_in="IN (SELECT value FROM json_each(?))",
    ids_param=_ids_json,
    lock_key=None,
)


class SQLiteStore(SQLStore):
    """``Store`` over one SQLite file (``sqlite:///PATH``)."""

    dialect = SQLITE

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = url.removeprefix("sqlite:///") or ":memory:"
        self._reader: SQLiteTx | None = None
        self._writer_tx: SQLiteTx | None = None
        self._pool_lock = threading.Lock()
        self._file = FileIdentity(self.path)
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
        if self.path != ":memory:":
            _create_private(Path(self.path))
        loop = asyncio.get_running_loop()
        writer = await loop.run_in_executor(self._writer, lambda: _connect(self.path))
        self._writer_tx, self._reader = SQLiteTx(writer), SQLiteTx(_connect(self.path))
        if self.path != ":memory:":
            self._file.capture()

    async def health(self) -> StoreHealth:
        """Unhealthy when closed or when the database file is no longer at its path."""
        if self._reader is None:
            return StoreHealth(False, "the SQLite store is closed")
        problem = self._file.problem()
        if problem is not None:
            return StoreHealth(False, problem)
        try:
            self._reader.conn.execute("SELECT 1").fetchall()
        except sqlite3.Error as exc:
            return StoreHealth(False, f"the SQLite database cannot be read: {exc}")
        return HEALTHY

    async def close(self) -> None:
        if self._reader is None and self._writer_tx is None:
            return
        conns = [tx.conn for tx in (self._reader, self._writer_tx) if tx is not None]
        conns += self._pool_conns
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        for conn in conns:
            conn.close()
        self._reader = self._writer_tx = None
        self._threads()  # so that open() can start it again

    @property
    def _point(self) -> SQLiteTx:
        if self._reader is None:
            raise StoreUnavailable("the SQLite store is closed")
        return self._reader

    async def _write(self, flow: Flow[T]) -> T:
        """Run ``flow`` in one IMMEDIATE transaction on the writer thread."""

        def run() -> T:
            tx = self._writer_tx
            if tx is None:
                raise StoreUnavailable("the SQLite store is closed")
            # Refuse rather than write into a deleted file (lost at the next restart).
            if (problem := self._file.problem()) is not None:
                raise StoreUnavailable(problem)
            tx.conn.execute("BEGIN IMMEDIATE")
            try:
                result = run_to_end(flow(tx))
                tx.conn.execute("COMMIT")
            except BaseException:
                # SQLite may have rolled back already (a full disk does): keep the first error.
                if tx.conn.in_transaction:
                    tx.conn.execute("ROLLBACK")
                raise
            return result

        try:
            return await asyncio.get_running_loop().run_in_executor(self._writer, run)
        except sqlite3.Error as exc:
            _raise_typed(exc)

    async def scrub_secrets(self) -> None:
        """Rebuild the file without freed pages (they may hold secrets stored in the clear
        before 0014), and empty the WAL, whose frames may too."""

        def run() -> None:
            if self._writer_tx is not None:
                self._writer_tx.conn.execute("VACUUM")
                self._writer_tx.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

        try:
            await asyncio.get_running_loop().run_in_executor(self._writer, run)
        except sqlite3.Error as exc:
            _raise_typed(exc)

    def _pool_tx(self) -> SQLiteTx:
        tx: SQLiteTx | None = getattr(self._local, "tx", None)
        if tx is None:
            tx = self._local.tx = SQLiteTx(_connect(self.path))
            with self._pool_lock:
                self._pool_conns.append(tx.conn)
        return tx

    async def _read_bulk(self, flow: Flow[T]) -> T:
        if self._reader is None:
            raise StoreUnavailable("the SQLite store is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                self._readers, lambda: run_to_end(flow(self._pool_tx()))
            )
        except sqlite3.Error as exc:
            _raise_typed(exc)

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    @asynccontextmanager
    async def sweep_lock(self) -> AsyncIterator[bool]:
        # A `worker` beside `serve` shares the file: an flock beside it is their one lock.
        with open(f"{self.path}.sweep-lock", "a") as handle:  # noqa: ASYNC230 - one open
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
