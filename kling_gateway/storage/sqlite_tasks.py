"""The task and callback SQL of the SQLite store, as plain functions over a connection.

Each runs inside the caller's transaction (writes on the writer thread, reads on a reader).
"""

from __future__ import annotations

import sqlite3
import time
import uuid

from kling_gateway.domain.task import Task
from kling_gateway.storage.base import (
    CallbackDelivery,
    Outcome,
    QuotaUsedUp,
    StoredTask,
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


def insert_task(
    conn: sqlite3.Connection,
    task: Task,
    next_check_at: float,
    deadline_at: float,
    idempotency_key: str | None,
    request_hash: str | None,
    charge_quota: bool = False,
) -> Task:
    if idempotency_key is not None:
        earlier = _idempotent_match(conn, task, idempotency_key, request_hash)
        if earlier is not None:
            return earlier
    if (
        charge_quota
        and not conn.execute(CHARGE_QUOTA.format(id="?"), (task.application_id,)).rowcount
    ):
        raise QuotaUsedUp("the application's quota is used up")
    conn.execute(
        f"INSERT INTO tasks ({TASK_COLUMNS}, record, idempotency_key, request_hash) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            *task_values(task),
            0,
            next_check_at,
            deadline_at,
            None,
            task.record_json(),
            idempotency_key,
            request_hash,
        ),
    )
    return task


def _idempotent_match(
    conn: sqlite3.Connection, task: Task, key: str, request_hash: str | None
) -> Task | None:
    # tasks_idempotency unique index on (user_id, idempotency_key).
    row = conn.execute(
        f"SELECT {TASK_COLUMNS}, request_hash FROM tasks WHERE user_id = ? AND idempotency_key = ?",
        (task.user_id, key),
    ).fetchone()
    if row is None:
        return None
    earlier = idempotent_replay(row, request_hash, time.time())
    if earlier is None:
        # The key has expired: free it for this new task.
        conn.execute("UPDATE tasks SET idempotency_key = NULL WHERE id = ?", (row["id"],))
    return earlier


def get_records(conn: sqlite3.Connection, user_id: str, ids_json: str) -> dict[str, bytes]:
    # Primary-key probes for each id; "+user_id" keeps SQLite from planning through the
    # user index (which would scan every task of the user).
    rows = conn.execute(
        "SELECT id, record FROM tasks WHERE id IN (SELECT value FROM json_each(?)) "
        "AND +user_id = ?",
        (ids_json, user_id),
    ).fetchall()
    return {row[0]: bytes(row[1]) for row in rows}


def list_records(
    conn: sqlite3.Connection, user_id: str, flt: TaskFilter
) -> tuple[list[bytes], int]:
    # tasks_user_created index on (user_id, created_at DESC): a range scan, newest first.
    where: list[str] = ["user_id = ?"]
    params: list[object] = [user_id]
    if flt.type is not None:
        where.append("type = ?")
        params.append(flt.type)
    if flt.created_at_min is not None:
        where.append("created_at >= ?")
        params.append(flt.created_at_min)
    if flt.created_at_max is not None:
        where.append("created_at <= ?")
        params.append(flt.created_at_max)
    clause = " AND ".join(where)
    total = conn.execute(f"SELECT count(*) FROM tasks WHERE {clause}", params).fetchone()[0]
    rows = conn.execute(
        f"SELECT record FROM tasks WHERE {clause} ORDER BY created_at DESC LIMIT ? OFFSET ?",
        (*params, flt.limit, flt.offset),
    ).fetchall()
    return [bytes(r[0]) for r in rows], int(total)


def load_task(conn: sqlite3.Connection, task_id: str) -> StoredTask | None:
    row = conn.execute(f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?", (task_id,)).fetchone()
    return None if row is None else task_from_row(row)


def claim_due(
    conn: sqlite3.Connection, worker_id: str, now: float, limit: int, lease_seconds: float
) -> list[StoredTask]:
    # tasks_due partial index on next_check_at; the lease is the pushed-back next check time.
    rows = conn.execute(
        f"UPDATE tasks SET lease_owner = ?, next_check_at = ?, version = version + 1 "
        "WHERE id IN (SELECT id FROM tasks WHERE next_check_at IS NOT NULL "
        "AND next_check_at <= ? ORDER BY next_check_at LIMIT ?) "
        f"RETURNING {TASK_COLUMNS}",
        (worker_id, now + lease_seconds, now, limit),
    ).fetchall()
    return [task_from_row(row) for row in rows]


def save_task(
    conn: sqlite3.Connection,
    task: Task,
    expected_version: int,
    worker_id: str | None,
    outcome: Outcome,
) -> bool:
    row = conn.execute(
        "SELECT version, callback, attempts FROM tasks WHERE id = ? AND next_check_at IS NOT NULL",
        (task.id,),
    ).fetchone()
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
    assignments = ", ".join(f"{column} = ?" for column in TASK_UPDATE_COLUMNS)
    conn.execute(
        f"UPDATE tasks SET {assignments} WHERE id = ?",
        task_update_values(task, attempts, next_check_at, lease_owner),
    )
    for url, event, body in outcome.callbacks:
        conn.execute(
            "INSERT INTO callbacks (id, task_id, user_id, url, event, body, next_attempt_at, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (str(uuid.uuid4()), task.id, task.user_id, url, event, body, now, now),
        )
    return True


def claim_callbacks(
    conn: sqlite3.Connection, worker_id: str, now: float, limit: int, lease_seconds: float
) -> list[CallbackDelivery]:
    # callbacks_due partial index on next_attempt_at.
    rows = conn.execute(
        "UPDATE callbacks SET lease_owner = ?, next_attempt_at = ? WHERE id IN ("
        "SELECT id FROM callbacks WHERE next_attempt_at IS NOT NULL AND next_attempt_at <= ? "
        f"ORDER BY next_attempt_at LIMIT ?) RETURNING {CALLBACK_COLUMNS}",
        (worker_id, now + lease_seconds, now, limit),
    ).fetchall()
    return [callback_from_row(row) for row in rows]


def finish_callback(conn: sqlite3.Connection, delivery: CallbackDelivery, worker_id: str) -> None:
    cur = conn.execute(
        "UPDATE callbacks SET state = ?, attempts = ?, next_attempt_at = ?, last_status = ?, "
        "last_error = ?, delivered_at = ?, lease_owner = NULL WHERE id = ? AND lease_owner = ?",
        (
            delivery.state,
            delivery.attempts,
            delivery.next_attempt_at,
            delivery.last_status,
            delivery.last_error,
            delivery.delivered_at,
            delivery.id,
            worker_id,
        ),
    )
    if cur.rowcount and is_final_event(delivery.event):
        _refresh_task_callback(conn, delivery)


def _refresh_task_callback(conn: sqlite3.Connection, delivery: CallbackDelivery) -> None:
    """Show the delivery state in the task's record (without bumping the task's version)."""
    stored = load_task(conn, delivery.task_id)
    if stored is None:
        return
    stored.task.callback = callback_view(delivery)
    conn.execute(
        "UPDATE tasks SET callback = ?, record = ? WHERE id = ?",
        (dump_json(stored.task.callback), stored.task.record_json(), delivery.task_id),
    )


def list_callbacks(
    conn: sqlite3.Connection, task_id: str | None, failed_only: bool, limit: int
) -> list[CallbackDelivery]:
    where, params = [], []
    if task_id is not None:
        where.append("task_id = ?")  # callbacks_task index
        params.append(task_id)
    if failed_only:
        where.append("state = 'failed'")
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = conn.execute(
        f"SELECT {CALLBACK_COLUMNS} FROM callbacks {clause} ORDER BY created_at DESC LIMIT ?",
        (*params, limit),
    ).fetchall()
    return [callback_from_row(row) for row in rows]
