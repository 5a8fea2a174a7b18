"""What the store can tell an operator at a glance: ``/metrics`` gauges and ``status``.

Read at scrape time (or when ``kling-gateway status`` runs), never kept in a process: every
process and every operator sees the same numbers. Only unfinished tasks are counted, through
the ``tasks_due`` partial index (``next_check_at IS NOT NULL``), so a scrape stays cheap however
many finished tasks the store keeps; finished tasks are counted as they finish
(``kling_gateway_tasks_finished_total``).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from kling_gateway.domain.accounts import Account

if TYPE_CHECKING:
    from kling_gateway.storage.base import UpstreamAccountRow
    from kling_gateway.storage.engine import Tx

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class OldestWaiting:
    task_id: str
    created_at: float


@dataclass(frozen=True, slots=True)
class StoreStats:
    """Unfinished tasks by (type, state); the queue (tasks not yet submitted upstream); the
    tasks each worker holds a live lease on; the accounts with their slots in use; callback
    deliveries still to make (``callbacks_retrying``: those whose earlier attempts failed)."""

    tasks: dict[tuple[str, str], int] = field(default_factory=dict)
    queue_depth: int = 0
    oldest_waiting: OldestWaiting | None = None
    in_flight_by_worker: dict[str, int] = field(default_factory=dict)
    accounts: tuple[Account, ...] = ()
    callbacks_pending: int = 0
    callbacks_retrying: int = 0


_TASKS = (
    "SELECT type, state, count(*) FROM tasks WHERE next_check_at IS NOT NULL GROUP BY type, state"
)
# Waiting: never created upstream and on no account (what the fair queue hands out).
_WAITING = (
    "FROM tasks WHERE next_check_at IS NOT NULL AND upstream_account IS NULL AND job_id IS NULL"
)
_QUEUE_DEPTH = f"SELECT count(*) {_WAITING}"
_OLDEST = f"SELECT id, created_at {_WAITING} ORDER BY created_at LIMIT 1"
# A live lease: the next check (the lease's end) is still ahead.
_BY_WORKER = (
    "SELECT lease_owner, count(*) FROM tasks WHERE next_check_at > ? "
    "AND lease_owner IS NOT NULL GROUP BY lease_owner"
)
_CALLBACKS = (
    "SELECT count(*), coalesce(sum(CASE WHEN attempts > 0 THEN 1 ELSE 0 END), 0) "
    "FROM callbacks WHERE next_attempt_at IS NOT NULL"
)


class StatsFlows:
    """``Store.stats`` for ``SQLStore`` (mixed in; see ``engine.py``)."""

    async def _read_bulk(self, flow: Callable[[Tx], Coroutine[Any, Any, T]]) -> T:
        raise NotImplementedError

    async def _list_accounts(self, tx: Tx, lock: bool = False) -> list[UpstreamAccountRow]:
        raise NotImplementedError

    async def stats(self, now: float) -> StoreStats:
        return await self._read_bulk(lambda tx: self._stats(tx, float(now)))

    async def _stats(self, tx: Tx, now: float) -> StoreStats:
        tasks = {(str(r[0]), str(r[1])): int(r[2]) for r in await tx.fetch(_TASKS)}
        oldest = await tx.fetchrow(_OLDEST)
        callbacks = await tx.fetchrow(_CALLBACKS)
        return StoreStats(
            tasks=tasks,
            queue_depth=int(await tx.fetchval(_QUEUE_DEPTH)),
            oldest_waiting=None if oldest is None else OldestWaiting(oldest[0], oldest[1]),
            in_flight_by_worker={str(r[0]): int(r[1]) for r in await tx.fetch(_BY_WORKER, now)},
            accounts=tuple(row.account for row in await self._list_accounts(tx)),
            callbacks_pending=int(callbacks[0]) if callbacks else 0,
            callbacks_retrying=int(callbacks[1]) if callbacks else 0,
        )
