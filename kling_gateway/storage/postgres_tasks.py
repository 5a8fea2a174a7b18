"""The task and callback SQL of the PostgreSQL store, as coroutines over one connection.

The semantics are those of ``sqlite_tasks``; the decisions both backends make (idempotent
replay, what a save writes) live in ``rows``. SQLite gets its safety from a single writer;
here every read-then-write locks its rows (``FOR UPDATE``) and every claim skips rows another
worker holds (``FOR UPDATE SKIP LOCKED``), so any number of processes can share the database.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from kling_gateway.domain.task import Task
from kling_gateway.storage.base import (
    CallbackDelivery,
    Outcome,
    QuotaUsedUp,
    StoredTask,
    StoreError,
    TaskFilter,
)
from kling_gateway.storage.rows import (
    CALLBACK_COLUMNS,
    CHARGE_QUOTA,
    TASK_COLUMNS,
    TASK_UPDATE_COLUMNS,
    apply_outcome,
    callback_from_row,
    callback_view,
    dump_json,
    idempotent_replay,
    is_final_event,
    load_json,
    task_from_row,
    task_update_values,
    task_values,
)

# An asyncpg connection (asyncpg ships no type stubs).
Conn = Any

_INSERT_TASK = (
    f"INSERT INTO tasks ({TASK_COLUMNS}, record, idempotency_key, request_hash) "
    f"VALUES ({', '.join(f'${i}' for i in range(1, 26))}) "
    # A concurrent create with the same key wins; we then answer with its task.
    "ON CONFLICT (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING "
    "RETURNING id"
)


def rowcount(status: str) -> int:
    """The row count of a command status such as ``UPDATE 3``."""
    return int(status.rsplit(" ", 1)[-1])


async def insert_task(
    conn: Conn,
    task: Task,
    next_check_at: float,
    deadline_at: float,
    idempotency_key: str | None,
    request_hash: str | None,
    charge_quota: bool = False,
) -> Task:
    async with conn.transaction():
        if idempotency_key is not None:
            earlier = await _idempotent_match(conn, task, idempotency_key, request_hash)
            if earlier is not None:
                return earlier
        values = (*task_values(task), 0, next_check_at, deadline_at, None, task.record_json())
        inserted = await conn.fetchval(_INSERT_TASK, *values, idempotency_key, request_hash)
        if inserted is not None:
            # Charged after the insert won: a replay that lost the race for the key pays nothing.
            if charge_quota and not rowcount(
                await conn.execute(CHARGE_QUOTA.format(id="$1"), task.application_id)
            ):
                raise QuotaUsedUp("the application's quota is used up")
            return task
        # Lost the race for the key to a create that has committed since: read statements
        # in READ COMMITTED see it now, so answer as if it had come first.
        assert idempotency_key is not None  # only the idempotency index is a conflict target
        earlier = await _idempotent_match(conn, task, idempotency_key, request_hash)
        if earlier is None:
            raise StoreError("idempotency key conflict could not be resolved; try again")
        return earlier


async def _idempotent_match(
    conn: Conn, task: Task, key: str, request_hash: str | None
) -> Task | None:
    # tasks_idempotency unique index on (user_id, idempotency_key).
    row = await conn.fetchrow(
        f"SELECT {TASK_COLUMNS}, request_hash FROM tasks "
        "WHERE user_id = $1 AND idempotency_key = $2 FOR UPDATE",
        task.user_id,
        key,
    )
    if row is None:
        return None
    earlier = idempotent_replay(row, request_hash, time.time())
    if earlier is None:
        # The key has expired: free it for this new task (primary key).
        await conn.execute("UPDATE tasks SET idempotency_key = NULL WHERE id = $1", row["id"])
    return earlier


async def get_records(conn: Conn, user_id: str, task_ids: list[str]) -> dict[str, bytes]:
    # One query: a primary-key probe per id; the user check drops foreign tasks.
    rows = await conn.fetch(
        "SELECT id, record FROM tasks WHERE id = ANY($1::text[]) AND user_id = $2",
        task_ids,
        user_id,
    )
    return {row[0]: row[1] for row in rows}


async def list_records(conn: Conn, user_id: str, flt: TaskFilter) -> tuple[list[bytes], int]:
    # tasks_user_created index on (user_id, created_at DESC): a range scan, newest first.
    where = ["user_id = $1"]
    params: list[object] = [user_id]
    for clause, value in (
        ("type = ${}", flt.type),
        ("created_at >= ${}::float8", flt.created_at_min),
        ("created_at <= ${}::float8", flt.created_at_max),
    ):
        if value is not None:
            params.append(value)
            where.append(clause.format(len(params)))
    cond = " AND ".join(where)
    total = await conn.fetchval(f"SELECT count(*) FROM tasks WHERE {cond}", *params)
    n = len(params)
    rows = await conn.fetch(
        f"SELECT record FROM tasks WHERE {cond} "
        f"ORDER BY created_at DESC LIMIT ${n + 1} OFFSET ${n + 2}",
        *params,
        flt.limit,
        flt.offset,
    )
    return [row[0] for row in rows], int(total)


async def load_task(conn: Conn, task_id: str) -> StoredTask | None:
    row = await conn.fetchrow(f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1", task_id)
    return None if row is None else task_from_row(row)


async def claim_due(
    conn: Conn, worker_id: str, now: float, limit: int, lease_seconds: float
) -> list[StoredTask]:
    # tasks_due partial index on next_check_at. SKIP LOCKED passes over rows another worker is
    # claiming right now; once it commits, their pushed-back next check is no longer due. The
    # lease is the pushed-back next check time, as in SQLite.
    rows = await conn.fetch(
        "WITH due AS MATERIALIZED (SELECT id FROM tasks WHERE next_check_at IS NOT NULL "
        "AND next_check_at <= $3 ORDER BY next_check_at LIMIT $4 FOR UPDATE SKIP LOCKED) "
        "UPDATE tasks SET lease_owner = $1, next_check_at = $2, version = version + 1 "
        f"WHERE id IN (SELECT id FROM due) RETURNING {TASK_COLUMNS}",
        worker_id,
        now + lease_seconds,
        now,
        limit,
    )
    return [task_from_row(row) for row in rows]


async def save_task(
    conn: Conn, task: Task, expected_version: int, worker_id: str | None, outcome: Outcome
) -> bool:
    async with conn.transaction():
        # Primary key; FOR UPDATE makes a concurrent save wait, then fail the version check.
        row = await conn.fetchrow(
            "SELECT version, callback, attempts FROM tasks "
            "WHERE id = $1 AND next_check_at IS NOT NULL FOR UPDATE",
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
        await _write_task(conn, task, attempts, next_check_at, lease_owner)
        if outcome.callbacks:
            await conn.executemany(
                "INSERT INTO callbacks (id, task_id, user_id, url, event, body, "
                "next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                [
                    (str(uuid.uuid4()), task.id, task.user_id, url, event, body, now, now)
                    for url, event, body in outcome.callbacks
                ],
            )
    return True


async def _write_task(
    conn: Conn, task: Task, attempts: int, next_check_at: float | None, lease_owner: str | None
) -> None:
    assignments = ", ".join(f"{c} = ${n}" for n, c in enumerate(TASK_UPDATE_COLUMNS, start=1))
    where = f"${len(TASK_UPDATE_COLUMNS) + 1}"
    await conn.execute(
        f"UPDATE tasks SET {assignments} WHERE id = {where}",
        *task_update_values(task, attempts, next_check_at, lease_owner),
    )


async def claim_callbacks(
    conn: Conn, worker_id: str, now: float, limit: int, lease_seconds: float
) -> list[CallbackDelivery]:
    # callbacks_due partial index on next_attempt_at; SKIP LOCKED as for tasks.
    rows = await conn.fetch(
        "WITH due AS MATERIALIZED (SELECT id FROM callbacks WHERE next_attempt_at IS NOT NULL "
        "AND next_attempt_at <= $3 ORDER BY next_attempt_at LIMIT $4 FOR UPDATE SKIP LOCKED) "
        "UPDATE callbacks SET lease_owner = $1, next_attempt_at = $2 "
        f"WHERE id IN (SELECT id FROM due) RETURNING {CALLBACK_COLUMNS}",
        worker_id,
        now + lease_seconds,
        now,
        limit,
    )
    return [callback_from_row(row) for row in rows]


async def finish_callback(conn: Conn, delivery: CallbackDelivery, worker_id: str) -> None:
    async with conn.transaction():
        # Primary key; only the lease holder may record the attempt.
        status = await conn.execute(
            "UPDATE callbacks SET state = $1, attempts = $2, next_attempt_at = $3, "
            "last_status = $4, last_error = $5, delivered_at = $6, lease_owner = NULL "
            "WHERE id = $7 AND lease_owner = $8",
            delivery.state,
            delivery.attempts,
            delivery.next_attempt_at,
            delivery.last_status,
            delivery.last_error,
            delivery.delivered_at,
            delivery.id,
            worker_id,
        )
        if rowcount(status) and is_final_event(delivery.event):
            await _refresh_task_callback(conn, delivery)


async def _refresh_task_callback(conn: Conn, delivery: CallbackDelivery) -> None:
    """Show the delivery state in the task's record (without bumping the task's version)."""
    # Primary key; the row lock keeps a concurrent write from rendering an older record.
    row = await conn.fetchrow(
        f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1 FOR UPDATE", delivery.task_id
    )
    if row is None:
        return
    task = task_from_row(row).task
    task.callback = callback_view(delivery)
    await conn.execute(
        "UPDATE tasks SET callback = $1, record = $2 WHERE id = $3",
        dump_json(task.callback),
        task.record_json(),
        delivery.task_id,
    )


async def list_callbacks(
    conn: Conn, task_id: str | None, failed_only: bool, limit: int
) -> list[CallbackDelivery]:
    where: list[str] = []
    params: list[object] = []
    if task_id is not None:
        params.append(task_id)
        where.append(f"task_id = ${len(params)}")  # callbacks_task index
    if failed_only:
        where.append("state = 'failed'")
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = await conn.fetch(
        f"SELECT {CALLBACK_COLUMNS} FROM callbacks {clause} "
        f"ORDER BY created_at DESC LIMIT ${len(params) + 1}",
        *params,
        limit,
    )
    return [callback_from_row(row) for row in rows]
