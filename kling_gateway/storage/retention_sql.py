"""SQL of the retention sweep (``--retention-days``, ``kling-gateway prune``).

A task is expired when it finished (``next_check_at`` NULL and ``finished_at`` set) before the
cut-off and none of its callbacks is still waiting to be delivered: a callback in flight keeps
its task (and so its video) until it is delivered or gives up. Written with ``?``
placeholders and ``{ids_in}`` for the dialect's list test, as storage/engine.py does.
"""

from __future__ import annotations

from kling_gateway.storage.rows import TASK_COLUMNS

_EXPIRED = (
    "next_check_at IS NULL AND finished_at < ? AND NOT EXISTS "
    "(SELECT 1 FROM callbacks c WHERE c.task_id = tasks.id AND c.state = 'pending')"
)
EXPIRED = f"SELECT {TASK_COLUMNS} FROM tasks WHERE {_EXPIRED} ORDER BY finished_at LIMIT ?"
# Purging re-checks the conditions: a task redelivered or retried since it was listed stays.
STILL_EXPIRED = f"SELECT id FROM tasks WHERE id {{ids_in}} AND {_EXPIRED}"
PURGE_CALLBACKS = "DELETE FROM callbacks WHERE task_id {ids_in}"
PURGE_RECORDS = "DELETE FROM task_records WHERE id {ids_in}"
PURGE_TASKS = "DELETE FROM tasks WHERE id {ids_in}"
# The sweep's lock across processes on PostgreSQL (a session advisory lock).
POSTGRES_SWEEP_LOCK_KEY = 0x6B675F7377656570  # "kg_sweep"
