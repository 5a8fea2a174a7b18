"""Waiting for a task to finish, woken by task notifications rather than a sleep loop."""

from __future__ import annotations

import time

from kling_gateway.infra.notify import TaskEvents
from kling_gateway.storage.base import Store

# A waiter re-reads the store at least this often, so a lost notification (or a worker in
# another process with no shared notifier) costs latency, never a wrong answer.
RECHECK_SECONDS = 2.0
_FINISHED_AT = b',"finished_at":'


def is_finished(record: bytes) -> bool:
    """Whether a stored record is of a finished task, without decoding it.

    ``finished_at`` is the record's last key and only finished tasks have it at the top level.
    The same key nested inside ``request`` is followed by further keys (so by a quote); a
    string value cannot hold it at all, since JSON escapes its quotes.
    """
    at = record.rfind(_FINISHED_AT)
    return at != -1 and record.find(b'"', at + len(_FINISHED_AT)) == -1


async def wait_until_finished(
    store: Store,
    events: TaskEvents,
    user_id: str,
    task_id: str,
    timeout: float,
    record: bytes | None = None,
) -> bytes | None:
    """The task's record once finished, or as it stands when ``timeout`` runs out."""
    deadline = time.monotonic() + timeout
    if record is None:
        record = await store.get_task_record(user_id, task_id)
    while record is not None and not is_finished(record):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        await events.wait(task_id, min(remaining, RECHECK_SECONDS))
        record = await store.get_task_record(user_id, task_id)
    return record
