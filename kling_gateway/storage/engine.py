"""The SQL engine: every store flow written once, against a small ``Dialect``.

``sqlite.py`` and ``postgres.py`` subclass ``SQLStore`` and only say how statements run: they
open connections and provide a ``Tx`` (placeholders are written ``?`` here and translated by
the backend). Where the backends really differ (row locks, SKIP LOCKED, id lists, a
transaction-scoped lock) the dialect supplies the fragment.

SQLite gets its safety from one writer at a time; PostgreSQL from ``FOR UPDATE`` on every
read-then-write and ``FOR UPDATE SKIP LOCKED`` in claims, so any number of processes can share
its database. The rendered record lives in ``task_records`` (narrow, so PostgreSQL keeps it
inline and uncompressed) and is written by ``_store_record`` only: every write that changes
what a client sees goes through it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from kling_gateway.domain.task import Task
from kling_gateway.storage import retention_sql
from kling_gateway.storage.assets_sql import AssetFlows
from kling_gateway.storage.base import (
    CallbackDelivery,
    CredentialInfo,
    Outcome,
    Principal,
    StoredTask,
    StoreError,
    TaskFilter,
    UserInfo,
)
from kling_gateway.storage.billing import BillingFlows
from kling_gateway.storage.listing import USERS_QUERY, task_filter_sql, user_from_row
from kling_gateway.storage.migrations import migration_scripts
from kling_gateway.storage.rows import (
    CALLBACK_COLUMNS,
    CREDENTIALS_QUERY,
    PRINCIPAL_QUERY,
    TASK_COLUMNS,
    TASK_UPDATE_COLUMNS,
    apply_outcome,
    callback_from_row,
    callback_view,
    credential_from_row,
    dump_json,
    dump_usage,
    is_final_event,
    load_json,
    principal_from_row,
    replay_is_due,
    task_from_row,
    task_update_values,
    task_values,
)
from kling_gateway.storage.stats import StatsFlows
from kling_gateway.storage.upstream import UpstreamFlows

T = TypeVar("T")
Row = Any  # sqlite3.Row or asyncpg.Record: both index by position and by name


class Tx(Protocol):
    """Statements on one connection (in a transaction where the caller opened one)."""

    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...
    async def fetchrow(self, sql: str, *args: Any) -> Row | None: ...
    async def fetchval(self, sql: str, *args: Any) -> Any: ...
    async def execute(self, sql: str, *args: Any) -> int:
        """Run one statement; return the number of rows it changed."""
        ...

    async def executemany(self, sql: str, args: Iterable[Sequence[Any]]) -> None: ...
    async def script(self, sql: str) -> None:
        """Run a migration script (several statements, no parameters)."""
        ...


Flow = Callable[[Tx], Coroutine[Any, Any, T]]


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between the SQL of the backends."""

    name: str  # the migrations folder
    for_update: str  # locks the rows read for the rest of the transaction
    skip_locked: str  # ... passing over rows another transaction holds (claims)
    ids_in: str  # "{col} <this>": the column is one of a list bound as one parameter
    ids_param: Callable[[list[str]], object]  # that parameter
    # A statement taking a transaction-scoped lock on a text key, or None where every write
    # transaction is exclusive anyway.
    lock_key: str | None


# pg_advisory... key text serialising migrate() across processes.
MIGRATION_LOCK = "kling-gateway:migrations"

_INSERT_TASK = (
    f"INSERT INTO tasks ({TASK_COLUMNS}, idempotency_key, request_hash) "
    f"VALUES ({', '.join(['?'] * (TASK_COLUMNS.count(',') + 3))}) "
    # A concurrent create with the same key wins; we then answer with its task.
    "ON CONFLICT (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING "
    "RETURNING id"
)
_STORE_RECORD = (
    "INSERT INTO task_records (id, user_id, record) VALUES (?, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET record = excluded.record"
)
_UPDATE_TASK = f"UPDATE tasks SET {', '.join(f'{c} = ?' for c in TASK_UPDATE_COLUMNS)} WHERE id = ?"
_INSERT_CALLBACK = (
    "INSERT INTO callbacks (id, task_id, user_id, url, event, body, next_attempt_at, "
    "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_SECRET_CURRENT = "SELECT secret FROM webhook_secrets WHERE user_id = ? AND retired_at IS NULL"


class SQLStore(UpstreamFlows, BillingFlows, StatsFlows, AssetFlows):
    """``Store`` over SQL; a backend sets ``dialect`` and implements the four runners."""

    dialect: Dialect
    url: str

    # -- what a backend provides
    @property
    def _point(self) -> Tx:
        """A Tx for short reads and single-statement writes, without a transaction."""
        raise NotImplementedError

    async def _read_bulk(self, flow: Flow[T]) -> T:
        """Run a heavier read (batches, listings) off the hot path."""
        raise NotImplementedError

    async def _write(self, flow: Flow[T]) -> T:
        """Run ``flow`` in one write transaction (rolled back when it raises)."""
        raise NotImplementedError

    async def _write_one(self, flow: Flow[T]) -> T:
        """Run a flow of one statement that needs no explicit transaction."""
        return await self._write(flow)

    # -- migrations
    async def migrate(self) -> list[str]:
        return await self._write(self._migrate)

    async def _migrate(self, tx: Tx) -> list[str]:
        # One transaction for all of them (DDL is transactional on both backends): processes
        # starting together wait for each other and exactly one applies each migration.
        await self._lock(tx, MIGRATION_LOCK)
        await tx.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(name TEXT PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
        )
        done = {row[0] for row in await tx.fetch("SELECT name FROM schema_migrations")}
        applied = []
        for name, sql in migration_scripts(self.dialect.name):
            if name not in done:
                await tx.script(sql)
                await tx.execute("INSERT INTO schema_migrations VALUES (?, ?)", name, time.time())
                applied.append(name)
        return applied

    async def _lock(self, tx: Tx, key: str) -> None:
        if self.dialect.lock_key is not None:
            await tx.execute(self.dialect.lock_key, key)

    # -- accounts
    async def ensure_account(
        self, user_name: str, now: float, *, default_credits: int | None = None
    ) -> tuple[str, str]:
        return await self._write(
            lambda tx: self._ensure_account(tx, user_name, now, default_credits)
        )

    async def _ensure_account(
        self, tx: Tx, user_name: str, now: float, default_credits: int | None
    ) -> tuple[str, str]:
        found = await self._account(tx, user_name)
        if found is not None:
            return found
        user_id, app_id = str(uuid.uuid4()), str(uuid.uuid4())
        # users.name is UNIQUE: on PostgreSQL a concurrent ensure of the same name makes this
        # wait for the other transaction and insert nothing; its rows are then visible.
        inserted = await tx.fetchval(
            "INSERT INTO users VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING RETURNING id",
            user_id,
            user_name,
            now,
        )
        if inserted is None:
            found = await self._account(tx, user_name)
            if found is None:
                raise StoreError(f"account {user_name!r} vanished while being created")
            return found
        await tx.execute(
            "INSERT INTO applications (id, user_id, created_at) VALUES (?, ?, ?)",
            app_id,
            user_id,
            now,
        )
        if default_credits is not None:
            await self._grant_new(tx, app_id, default_credits, now)
        return user_id, app_id

    @staticmethod
    async def _account(tx: Tx, user_name: str) -> tuple[str, str] | None:
        row = await tx.fetchrow(
            "SELECT u.id, a.id FROM users u JOIN applications a ON a.user_id = u.id "
            "WHERE u.name = ? ORDER BY a.created_at LIMIT 1",  # users.name UNIQUE index
            user_name,
        )
        return None if row is None else (row[0], row[1])

    async def find_user_id(self, user_name: str) -> str | None:
        value = await self._point.fetchval("SELECT id FROM users WHERE name = ?", user_name)
        return None if value is None else str(value)

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
        values = (credential_id, application_id, user_id, token_hash, token_prefix)
        sql = (
            "INSERT INTO credentials (id, application_id, user_id, token_hash, token_prefix, "
            "apis, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )
        await self._write_one(lambda tx: tx.execute(sql, *values, ",".join(apis), now, expires_at))
        return credential_id

    async def find_principal(self, token_hash: str) -> Principal | None:
        # credentials.token_hash UNIQUE index, then two primary-key joins.
        row = await self._point.fetchrow(PRINCIPAL_QUERY + "?", token_hash)
        return None if row is None else principal_from_row(row)

    async def list_credentials(self) -> list[CredentialInfo]:
        return [credential_from_row(row) for row in await self._point.fetch(CREDENTIALS_QUERY)]

    async def touch_credentials(self, used: dict[str, float]) -> None:
        # Primary key; a later use never moves back (two processes report out of order).
        sql = (
            "UPDATE credentials SET last_used_at = ? WHERE id = ? "
            "AND (last_used_at IS NULL OR last_used_at < ?)"
        )
        rows = [(at, credential_id, at) for credential_id, at in used.items()]
        await self._write(lambda tx: tx.executemany(sql, rows))

    async def revoke_credential(self, id_or_prefix: str, now: float) -> int:
        # Primary key or a scan by prefix: an operator's command, rare.
        sql = (
            "UPDATE credentials SET revoked_at = ? WHERE revoked_at IS NULL "
            "AND (id = ? OR token_prefix = ?)"
        )
        return await self._write_one(lambda tx: tx.execute(sql, now, id_or_prefix, id_or_prefix))

    async def count_credentials(self) -> int:
        return int(await self._point.fetchval("SELECT count(*) FROM credentials"))

    async def set_application(
        self, user_name: str, *, disabled: bool | None = None, max_in_flight: int | None = None
    ) -> bool:
        # applications_user index through users.name UNIQUE.
        sql = (
            "UPDATE applications SET disabled = COALESCE(?, disabled), "
            "max_in_flight = CASE WHEN ? THEN ? ELSE max_in_flight END "
            "WHERE user_id = (SELECT id FROM users WHERE name = ?)"
        )
        limit = max_in_flight or None  # 0: no limit
        args = (disabled, max_in_flight is not None, limit, user_name)
        return await self._write_one(lambda tx: tx.execute(sql, *args)) > 0

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
        schedule = (next_check_at, deadline_at, idempotency_key, request_hash)
        return await self._write(lambda tx: self._insert(tx, task, *schedule, charge_quota))

    async def _insert(
        self,
        tx: Tx,
        task: Task,
        next_check_at: float,
        deadline_at: float,
        key: str | None,
        request_hash: str | None,
        charge_quota: bool,
    ) -> Task:
        if key is not None:
            earlier = await self._idempotent_match(tx, task, key, request_hash)
            if earlier is not None:
                return earlier
        # version, attempts, the schedule, no lease and no upstream account yet.
        schedule = (0, next_check_at, deadline_at, None, None)
        values = (*task_values(task), *schedule, dump_usage(task.usage), key, request_hash)
        if await tx.fetchval(_INSERT_TASK, *values) is not None:
            # Held after the insert won: a replay that lost the race for the key holds nothing.
            if charge_quota:
                await self._admit(tx, task, time.time())
            await self._store_record(tx, task)
            return task
        # Lost the race for the key to a create that has committed since (PostgreSQL): read
        # statements in READ COMMITTED see it now, so answer as if it had come first.
        assert key is not None  # only the idempotency index is a conflict target
        earlier = await self._idempotent_match(tx, task, key, request_hash)
        if earlier is None:
            raise StoreError("idempotency key conflict could not be resolved; try again")
        return earlier

    async def _idempotent_match(
        self, tx: Tx, task: Task, key: str, request_hash: str | None
    ) -> Task | None:
        # tasks_idempotency unique index on (user_id, idempotency_key).
        row = await tx.fetchrow(
            f"SELECT {TASK_COLUMNS}, request_hash FROM tasks "
            f"WHERE user_id = ? AND idempotency_key = ?{self.dialect.for_update}",
            task.user_id,
            key,
        )
        if row is None:
            return None
        if not replay_is_due(row["created_at"], row["request_hash"], request_hash, time.time()):
            # The key has expired: free it for this new task (primary key).
            await tx.execute("UPDATE tasks SET idempotency_key = NULL WHERE id = ?", row["id"])
            return None
        return task_from_row(row).task

    @staticmethod
    async def _store_record(tx: Tx, task: Task) -> None:
        """Render ``task``'s record and store it: the one place a record is rendered."""
        await tx.execute(_STORE_RECORD, task.id, task.user_id, task.record_json())

    async def get_task_record(self, user_id: str, task_id: str) -> bytes | None:
        # Primary-key lookup; the user check makes a foreign task look missing.
        record: bytes | None = await self._point.fetchval(
            "SELECT record FROM task_records WHERE id = ? AND user_id = ?", task_id, user_id
        )
        return record

    async def get_task_records(self, user_id: str, task_ids: list[str]) -> dict[str, bytes]:
        # One query: a primary-key probe per id; the user check drops foreign tasks.
        sql = f"SELECT id, record FROM task_records WHERE id {self.dialect.ids_in} AND user_id = ?"
        ids = self.dialect.ids_param(task_ids)
        rows = await self._read_bulk(lambda tx: tx.fetch(sql, ids, user_id))
        return {row[0]: row[1] for row in rows}

    async def list_task_records(self, user_id: str, flt: TaskFilter) -> tuple[list[bytes], int]:
        return await self._read_bulk(lambda tx: self._list_records(tx, user_id, flt))

    async def list_all_task_records(
        self, flt: TaskFilter, user_id: str | None = None
    ) -> tuple[list[bytes], int]:
        return await self._read_bulk(lambda tx: self._list_records(tx, user_id, flt))

    @staticmethod
    async def _list_records(
        tx: Tx, user_id: str | None, flt: TaskFilter
    ) -> tuple[list[bytes], int]:
        # tasks_user_created on (user_id, created_at DESC), or with a type tasks_user_type_created
        # (migration 0009): a range scan, newest first.
        cond, params = task_filter_sql(user_id, flt)
        total = await tx.fetchval(f"SELECT count(*) FROM tasks t WHERE {cond}", *params)
        rows = await tx.fetch(
            f"SELECT r.record FROM tasks t JOIN task_records r ON r.id = t.id WHERE {cond} "
            "ORDER BY t.created_at DESC LIMIT ? OFFSET ?",
            *params,
            flt.limit,
            flt.offset,
        )
        return [row[0] for row in rows], int(total)

    async def list_users(self) -> list[UserInfo]:
        return [
            user_from_row(row) for row in await self._read_bulk(lambda tx: tx.fetch(USERS_QUERY))
        ]

    async def delete_task(self, user_id: str, task_id: str) -> bool:
        return await self._write(lambda tx: self._delete(tx, user_id, task_id))

    async def _delete(self, tx: Tx, user_id: str, task_id: str) -> bool:
        await self._release_deleted(tx, user_id, task_id, time.time())
        if not await tx.execute("DELETE FROM tasks WHERE id = ? AND user_id = ?", task_id, user_id):
            return False
        await tx.execute("DELETE FROM task_records WHERE id = ?", task_id)
        return True

    async def find_user_video(self, user_id: str, video_id: str) -> str | None:
        # A point lookup in the tasks_user_video index (migration 0005); video_id is set only
        # on succeeded tasks.
        task_id = await self._point.fetchval(
            "SELECT id FROM tasks WHERE user_id = ? AND video_id = ? LIMIT 1", user_id, video_id
        )
        return None if task_id is None else str(task_id)

    # -- retention
    async def expired_tasks(self, before: float, limit: int) -> list[StoredTask]:
        rows = await self._read_bulk(
            lambda tx: tx.fetch(retention_sql.EXPIRED, float(before), limit)
        )
        return [task_from_row(row) for row in rows]

    async def purge_tasks(self, task_ids: list[str], before: float) -> int:
        return await self._write(lambda tx: self._purge(tx, task_ids, float(before)))

    async def _purge(self, tx: Tx, task_ids: list[str], before: float) -> int:
        ids_in = self.dialect.ids_in
        still = await tx.fetch(
            retention_sql.STILL_EXPIRED.format(ids_in=ids_in),
            self.dialect.ids_param(task_ids),
            before,
        )
        ids = self.dialect.ids_param([str(row[0]) for row in still])
        for sql in (
            retention_sql.PURGE_CALLBACKS,
            retention_sql.PURGE_RECORDS,
            retention_sql.PURGE_TASKS,
        ):
            count = await tx.execute(sql.format(ids_in=ids_in), ids)
        return count if still else 0

    # -- tasks: the worker side
    async def load_task(self, task_id: str) -> StoredTask | None:
        row = await self._point.fetchrow(f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?", task_id)
        return None if row is None else task_from_row(row)

    async def claim_due_tasks(
        self, worker_id: str, now: float, limit: int, lease_seconds: float
    ) -> list[StoredTask]:
        # tasks_due partial index on next_check_at. SKIP LOCKED passes over rows another worker
        # is claiming right now; once it commits, their pushed-back next check is no longer due.
        # The lease is the pushed-back next check time.
        sql = (
            "WITH due AS MATERIALIZED (SELECT id FROM tasks WHERE next_check_at IS NOT NULL "
            f"AND next_check_at <= ? ORDER BY next_check_at LIMIT ?{self.dialect.skip_locked}) "
            "UPDATE tasks SET lease_owner = ?, next_check_at = ?, version = version + 1 "
            f"WHERE id IN (SELECT id FROM due) RETURNING {TASK_COLUMNS}"
        )
        args = (now, limit, worker_id, now + lease_seconds)
        rows = await self._write_one(lambda tx: tx.fetch(sql, *args))
        return [task_from_row(row) for row in rows]

    async def save_task(
        self, task: Task, *, expected_version: int, worker_id: str | None, outcome: Outcome
    ) -> bool:
        return await self._write(
            lambda tx: self._save(tx, task, expected_version, worker_id, outcome)
        )

    async def _save(
        self, tx: Tx, task: Task, expected_version: int, worker_id: str | None, outcome: Outcome
    ) -> bool:
        # Primary key; FOR UPDATE makes a concurrent save wait, then fail the version check.
        row = await tx.fetchrow(
            "SELECT version, callback, attempts FROM tasks "
            f"WHERE id = ? AND next_check_at IS NOT NULL{self.dialect.for_update}",
            task.id,
        )
        if row is None or row[0] != expected_version:
            return False
        now = time.time()
        attempts, next_check_at, lease_owner = apply_outcome(
            task,
            expected_version=expected_version,
            stored_callback=load_json(row[1]),
            stored_attempts=row[2],
            worker_id=worker_id,
            outcome=outcome,
            now=now,
        )
        await tx.execute(
            _UPDATE_TASK, *task_update_values(task, attempts, next_check_at, lease_owner)
        )
        if outcome.release_account:
            await tx.execute("UPDATE tasks SET upstream_account = NULL WHERE id = ?", task.id)
        if outcome.billing is not None and task.state.is_terminal:
            await self._close_hold(tx, task, outcome.billing, now)
        await self._store_record(tx, task)
        if outcome.callbacks:
            await tx.executemany(
                _INSERT_CALLBACK,
                [
                    (str(uuid.uuid4()), task.id, task.user_id, url, event, body, now, now)
                    for url, event, body in outcome.callbacks
                ],
            )
        return True

    async def release_tasks(self, worker_id: str, task_ids: list[str], now: float) -> None:
        # One statement for the batch, by primary key; only our own leases.
        sql = (
            "UPDATE tasks SET lease_owner = NULL, next_check_at = ? "
            f"WHERE id {self.dialect.ids_in} AND lease_owner = ? AND next_check_at IS NOT NULL"
        )
        ids = self.dialect.ids_param(task_ids)
        await self._write_one(lambda tx: tx.execute(sql, now, ids, worker_id))

    async def make_overdue_due(self, now: float) -> int:
        # The deadline sweep: a task past its deadline whose next check is later (and that no
        # worker holds) is made due now, so a worker claims it and ends it.
        sql = (
            "UPDATE tasks SET next_check_at = ? WHERE next_check_at IS NOT NULL "
            "AND next_check_at > ? AND deadline_at <= ? AND lease_owner IS NULL"
        )
        return await self._write_one(lambda tx: tx.execute(sql, now, now, now))

    # -- callbacks
    async def claim_due_callbacks(
        self, worker_id: str, now: float, limit: int, lease_seconds: float
    ) -> list[CallbackDelivery]:
        # callbacks_due partial index on next_attempt_at; SKIP LOCKED as for tasks.
        sql = (
            "WITH due AS MATERIALIZED (SELECT id FROM callbacks WHERE next_attempt_at IS NOT NULL "
            f"AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?{self.dialect.skip_locked}) "
            "UPDATE callbacks SET lease_owner = ?, next_attempt_at = ? "
            f"WHERE id IN (SELECT id FROM due) RETURNING {CALLBACK_COLUMNS}"
        )
        args = (now, limit, worker_id, now + lease_seconds)
        rows = await self._write_one(lambda tx: tx.fetch(sql, *args))
        return [callback_from_row(row) for row in rows]

    async def finish_callback_attempt(self, delivery: CallbackDelivery, worker_id: str) -> None:
        await self._write(lambda tx: self._finish_callback(tx, delivery, worker_id))

    async def _finish_callback(self, tx: Tx, delivery: CallbackDelivery, worker_id: str) -> None:
        # Primary key; only the lease holder may record the attempt.
        changed = await tx.execute(
            "UPDATE callbacks SET state = ?, attempts = ?, next_attempt_at = ?, last_status = ?, "
            "last_error = ?, delivered_at = ?, lease_owner = NULL WHERE id = ? AND lease_owner = ?",
            delivery.state,
            delivery.attempts,
            delivery.next_attempt_at,
            delivery.last_status,
            delivery.last_error,
            delivery.delivered_at,
            delivery.id,
            worker_id,
        )
        if changed and is_final_event(delivery.event):
            await self._show_callback(tx, delivery)

    async def _show_callback(self, tx: Tx, delivery: CallbackDelivery) -> None:
        """Show the delivery state in the task's record (without bumping the task's version)."""
        # Primary key; the row lock keeps a concurrent save from rendering an older record.
        row = await tx.fetchrow(
            f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?{self.dialect.for_update}",
            delivery.task_id,
        )
        if row is None:
            return
        task = task_from_row(row).task
        task.callback = callback_view(delivery)
        await tx.execute(
            "UPDATE tasks SET callback = ? WHERE id = ?", dump_json(task.callback), task.id
        )
        await self._store_record(tx, task)

    async def list_callbacks(
        self, *, task_id: str | None = None, failed_only: bool = False, limit: int = 100
    ) -> list[CallbackDelivery]:
        where, params = [], []
        if task_id is not None:
            where.append("task_id = ?")  # callbacks_task index
            params.append(task_id)
        if failed_only:
            # Failing now: given up, or retrying (pending after a failed attempt).
            where.append("(state = 'failed' OR (state = 'pending' AND attempts > 0))")
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        sql = f"SELECT {CALLBACK_COLUMNS} FROM callbacks {clause} ORDER BY created_at DESC LIMIT ?"
        rows = await self._read_bulk(lambda tx: tx.fetch(sql, *params, limit))
        return [callback_from_row(row) for row in rows]

    async def redeliver_callback(self, delivery_id: str, now: float) -> bool:
        return await self._write(lambda tx: self._redeliver(tx, delivery_id, now))

    async def _redeliver(self, tx: Tx, delivery_id: str, now: float) -> bool:
        # attempts stay as history: a delivery that used up its schedule gets one more attempt,
        # now, per redelivery. One being sent right now (leased, lease not run out) is left
        # alone: clearing its lease would start a second, concurrent send.
        sql = (
            "UPDATE callbacks SET state = 'pending', next_attempt_at = ?, lease_owner = NULL "
            "WHERE id = ? AND (lease_owner IS NULL OR next_attempt_at <= ?)"
        )
        if await tx.execute(sql, now, delivery_id, now) > 0:
            return True
        found = await tx.fetchval("SELECT 1 FROM callbacks WHERE id = ?", delivery_id)
        return found is not None

    # -- signing secrets
    async def put_first_secret(self, user_id: str, secret: str, now: float) -> str:
        current = await self._point.fetchval(_SECRET_CURRENT, user_id)
        if current is not None:
            return str(current)
        return await self._write(lambda tx: self._put_first_secret(tx, user_id, secret, now))

    async def _put_first_secret(self, tx: Tx, user_id: str, secret: str, now: float) -> str:
        # Takes turns with rotations (see _replace_secret); two first uses racing: the partial
        # unique index lets one insert win, and both read it back.
        await self._lock(tx, f"webhook-secret:{user_id}")
        await tx.execute(
            "INSERT INTO webhook_secrets (id, secret, user_id, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (user_id) WHERE retired_at IS NULL DO NOTHING",
            uuid.uuid4().hex,
            secret,
            user_id,
            now,
        )
        return str(await tx.fetchval(_SECRET_CURRENT, user_id))

    async def replace_secret(
        self, user_id: str, secret: str, grace_seconds: float, now: float
    ) -> None:
        await self._write(lambda tx: self._replace_secret(tx, user_id, secret, grace_seconds, now))

    async def _replace_secret(
        self, tx: Tx, user_id: str, secret: str, grace_seconds: float, now: float
    ) -> None:
        # Rotations of one user take turns: without this lock, two on PostgreSQL both retire
        # the same current secret and the second insert of a current one violates the unique
        # index. After the lock each statement sees the rotation committed before it.
        await self._lock(tx, f"webhook-secret:{user_id}")
        await tx.execute(
            "DELETE FROM webhook_secrets WHERE user_id = ? AND expires_at <= ?", user_id, now
        )
        await tx.execute(
            "UPDATE webhook_secrets SET retired_at = ?, expires_at = ? "
            "WHERE user_id = ? AND retired_at IS NULL",
            now,
            now + grace_seconds,
            user_id,
        )
        await tx.execute(
            "INSERT INTO webhook_secrets (id, secret, user_id, created_at) VALUES (?, ?, ?, ?)",
            uuid.uuid4().hex,
            secret,
            user_id,
            now,
        )

    async def signing_secrets(self, user_id: str, now: float) -> list[str]:
        # webhook_secrets_user index; the current secret (retired_at NULL) sorts first.
        rows = await self._point.fetch(
            "SELECT secret FROM webhook_secrets WHERE user_id = ? "
            "AND (retired_at IS NULL OR expires_at > ?) "
            "ORDER BY retired_at IS NOT NULL, created_at DESC",
            user_id,
            now,
        )
        return [str(row[0]) for row in rows]

    async def stored_secrets(self) -> list[tuple[str, str, str]]:
        rows = await self._point.fetch("SELECT id, user_id, secret FROM webhook_secrets")
        return [(str(row[0]), str(row[1]), str(row[2])) for row in rows]

    async def reseal_secret(self, secret_id: str, old: str, new: str) -> bool:
        sql = "UPDATE webhook_secrets SET secret = ? WHERE id = ? AND secret = ?"
        return await self._write_one(lambda tx: tx.execute(sql, new, secret_id, old)) > 0

    async def scrub_secrets(self) -> None:
        # Rewrites the table without the row versions that held values in the clear.
        await self._point.execute("VACUUM FULL webhook_secrets")
