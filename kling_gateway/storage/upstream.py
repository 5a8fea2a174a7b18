"""The store's upstream accounts and their slots, written once for every SQL dialect.

A task holds a slot on ``tasks.upstream_account`` from its assignment until it finishes
(``next_check_at`` NULL), so the slot count is a count of rows and cannot drift: a finished
task frees its slot in the transaction that finishes it, a task refused with 1303 frees it in
the save that sends it back (``Outcome.release_account``), and a crashed worker's task keeps
its slot, correctly, because the upstream may be running it; its lease runs out and another
worker looks it up on that account. ``claim_for_slots`` locks every account row (FOR UPDATE on
PostgreSQL, the database on SQLite) while it counts and assigns, so any number of workers
never put more tasks on an account than its max concurrency.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from kling_gateway.domain.accounts import Account, AccountState
from kling_gateway.domain.fair_queue import (
    DEFAULT_WEIGHT,
    Waiting,
    assign,
    fair_order,
    positions,
)
from kling_gateway.domain.params import LipSyncParams, VideoParams
from kling_gateway.domain.task import Task
from kling_gateway.protocol.task import progress_response
from kling_gateway.storage.base import AccountBusy, AccountExists, StoredTask, UpstreamAccountRow
from kling_gateway.storage.rows import TASK_COLUMNS, dump_json, task_from_row

if TYPE_CHECKING:
    from kling_gateway.storage.engine import Dialect, Tx

T = TypeVar("T")
DEFAULT_MODEL = "kling-v1"  # what the upstream takes when a request names none

ACCOUNT_COLUMNS = (
    "name, access_key, secret_key, max_concurrency, models, weight, base_url, state, "
    "full_until, full_streak, last_error, packs_remaining, packs_run_out, packs_checked_at"
)
_HELD_BY_ACCOUNT = (
    "SELECT upstream_account, count(*) FROM tasks WHERE upstream_account IS NOT NULL "
    "AND next_check_at IS NOT NULL GROUP BY upstream_account"
)
_HELD_BY_USER = (
    "SELECT user_id, count(*) FROM tasks WHERE upstream_account IS NOT NULL "
    "AND next_check_at IS NOT NULL GROUP BY user_id"
)
# Waiting: due, never created upstream, on no account. The oldest ``?`` of each user are
# enough to fill ``?`` free slots whatever the fair order picks.
_WAITING_HEADS = (
    f"SELECT {TASK_COLUMNS} FROM (SELECT *, "
    "row_number() OVER (PARTITION BY user_id ORDER BY created_at, id) AS rank FROM tasks "
    "WHERE next_check_at IS NOT NULL AND next_check_at <= ? AND upstream_account IS NULL "
    "AND job_id IS NULL) heads WHERE rank <= ?"
)
# Queue positions are shown for this many waiting tasks of each user (an estimate: they are
# refreshed whenever slots are handed out).
QUEUE_VIEW = 10
QUEUE_POSITION = "queue_position"
_ASSIGN = (
    "UPDATE tasks SET upstream_account = ?, lease_owner = ?, next_check_at = ?, "
    "version = version + 1 WHERE id = ? AND upstream_account IS NULL "
    f"AND next_check_at IS NOT NULL RETURNING {TASK_COLUMNS}"
)


def account_from_row(row: Any, in_flight: int) -> UpstreamAccountRow:
    account = Account(
        name=row["name"],
        access_key=row["access_key"],
        max_concurrency=int(row["max_concurrency"]),
        state=AccountState(row["state"]),
        models=frozenset(filter(None, str(row["models"]).split(","))),
        weight=float(row["weight"]),
        base_url=row["base_url"],
        in_flight=in_flight,
        full_until=float(row["full_until"]),
        full_streak=int(row["full_streak"]),
        last_error=row["last_error"],
        packs_remaining=row["packs_remaining"],
        packs_run_out=bool(row["packs_run_out"]),
        packs_checked_at=row["packs_checked_at"],
    )
    return UpstreamAccountRow(account, row["secret_key"])


def waiting_of(task: Task) -> Waiting:
    waiting = _waiting(task.id, task.user_id, _model_of(task), task.created_at)
    pinned = asset_account(task)
    return waiting if pinned is None else replace(waiting, pinned=pinned)


def asset_account(task: Task) -> str | None:
    """The upstream account the task's elements and voices live on (their ids mean nothing on
    another account; the API let only one account's through, see api/ownership.py), or the
    one that made the video a lip-sync names or an extend continues."""
    params = task.params
    if isinstance(params, LipSyncParams):
        return params.video_account
    if not isinstance(params, VideoParams):  # only videos name elements and voices (§6)
        return None
    if params.video_account is not None:  # an extend (its models take no elements or voices)
        return params.video_account
    refs = (*params.element_list, *params.voice_list)
    return next((ref.account for ref in refs if ref.account is not None), None)


def queue_moves(
    waiting: Sequence[Task],
    chosen: Sequence[tuple[str, str]],
    held_by_user: dict[str, int],
    weights: dict[str, float] | None = None,
) -> list[Task]:
    """The waiting tasks whose ``response.queue_position`` changes, set to the new one (a
    gateway extension clients may ignore: docs/contract.md §8.7)."""
    taken = {task_id for task_id, _ in chosen}
    left = [waiting_of(task) for task in waiting if task.id not in taken]
    places = positions(fair_order(left, held_by_user, weights))
    moved = []
    for task in waiting:
        place = places.get(task.id)
        if place is None or (task.response or {}).get(QUEUE_POSITION) == place:
            continue
        task.response = {**progress_response(task.id, task.state), QUEUE_POSITION: place}
        moved.append(task)
    return moved


def _model_of(task: Task) -> str:
    """The model the task asks the upstream for, from its validated params (the raw request's
    field is ``model``, and its defaults are the validator's to apply); a kind that names no
    model (lip-sync) runs on what the upstream takes by default."""
    model = getattr(task.params, "model", None)
    return model if isinstance(model, str) else DEFAULT_MODEL


def _waiting(task_id: str, user: str, model: str, created_at: float) -> Waiting:
    return Waiting(task_id=task_id, user=user, model=model, created_at=created_at)


def choose(
    accounts: Sequence[Account],
    waiting: Sequence[Waiting],
    held_by_user: dict[str, int],
    now: float,
    limit: int,
    weights: dict[str, float] | None = None,
) -> list[tuple[str, str]]:
    """(task id, account) pairs for the free slots, in fair order (shared with memory://)."""
    chosen = assign(fair_order(waiting, held_by_user, weights), accounts, now, limit)
    return [(c.task_id, c.account) for c in chosen]


class UpstreamFlows:
    """The upstream-account flows of ``SQLStore`` (mixed in; see ``engine.py``)."""

    dialect: Dialect

    @property
    def _point(self) -> Tx:
        raise NotImplementedError

    async def _write(self, flow: Callable[[Tx], Coroutine[Any, Any, T]]) -> T:
        raise NotImplementedError

    @staticmethod
    async def _store_record(tx: Tx, task: Task) -> None:
        raise NotImplementedError

    async def add_upstream_account(self, account: Account, sealed_secret: str, now: float) -> None:
        sql = (
            "INSERT INTO upstream_accounts (name, access_key, secret_key, max_concurrency, "
            "models, weight, base_url, state, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (name) DO NOTHING"
        )
        args = (
            account.name,
            account.access_key,
            sealed_secret,
            account.max_concurrency,
            ",".join(sorted(account.models)),
            account.weight,
            account.base_url,
            account.state.value,
            now,
        )
        if not await self._write(lambda tx: tx.execute(sql, *args)):
            raise AccountExists(f"an upstream account named {account.name!r} exists already")

    async def list_upstream_accounts(self) -> list[UpstreamAccountRow]:
        return await self._write(self._list_accounts)

    async def _list_accounts(self, tx: Tx, lock: bool = False) -> list[UpstreamAccountRow]:
        lock_clause = self.dialect.for_update if lock else ""
        rows = await tx.fetch(
            f"SELECT {ACCOUNT_COLUMNS} FROM upstream_accounts ORDER BY name{lock_clause}"
        )
        held = {row[0]: int(row[1]) for row in await tx.fetch(_HELD_BY_ACCOUNT)}
        return [account_from_row(row, held.get(row["name"], 0)) for row in rows]

    async def set_upstream_account_state(
        self, name: str, state: AccountState, reason: str | None
    ) -> bool:
        # Enabling clears the last error and the full backoff: an operator acted.
        sql = (
            "UPDATE upstream_accounts SET state = ?, last_error = CASE WHEN ? THEN ? "
            "ELSE last_error END, full_until = CASE WHEN ? THEN 0 ELSE full_until END "
            "WHERE name = ?"
        )
        enabling = state is AccountState.ENABLED
        args = (state.value, enabling or reason is not None, reason, enabling, name)
        return await self._write(lambda tx: tx.execute(sql, *args)) > 0

    async def remove_upstream_account(self, name: str) -> bool:
        return await self._write(lambda tx: self._remove(tx, name))

    async def _remove(self, tx: Tx, name: str) -> bool:
        found = await tx.fetchval(
            f"SELECT name FROM upstream_accounts WHERE name = ?{self.dialect.for_update}", name
        )
        if found is None:
            return False
        held = await tx.fetchval(
            "SELECT count(*) FROM tasks WHERE upstream_account = ? AND next_check_at IS NOT NULL",
            name,
        )
        if held:
            raise AccountBusy(f"upstream account {name!r} has {held} tasks in flight")
        return await tx.execute("DELETE FROM upstream_accounts WHERE name = ?", name) > 0

    async def mark_upstream_account_full(self, name: str, until: float, streak: int) -> None:
        sql = "UPDATE upstream_accounts SET full_until = ?, full_streak = ? WHERE name = ?"
        await self._write(lambda tx: tx.execute(sql, until, streak, name))

    async def record_upstream_costs(
        self, name: str, remaining: float | None, run_out: bool, now: float
    ) -> None:
        sql = (
            "UPDATE upstream_accounts SET packs_remaining = ?, packs_run_out = ?, "
            "packs_checked_at = ? WHERE name = ?"
        )
        await self._write(lambda tx: tx.execute(sql, remaining, run_out, now, name))

    async def claim_for_slots(
        self, worker_id: str, now: float, limit: int, lease_seconds: float
    ) -> list[StoredTask]:
        return await self._write(
            lambda tx: self._claim_for_slots(tx, worker_id, now, limit, lease_seconds)
        )

    async def _claim_for_slots(
        self, tx: Tx, worker_id: str, now: float, limit: int, lease_seconds: float
    ) -> list[StoredTask]:
        # The account rows stay locked until commit: concurrent claims count one at a time.
        accounts = [row.account for row in await self._list_accounts(tx, lock=True)]
        free = min(limit, sum(account.free_slots(now) for account in accounts))
        if free <= 0:
            return []
        rows = await tx.fetch(_WAITING_HEADS, now, max(free, QUEUE_VIEW))
        heads = [task_from_row(row).task for row in rows]
        held_by_user = Counter({row[0]: int(row[1]) for row in await tx.fetch(_HELD_BY_USER)})
        weights = await self._weights(tx)
        chosen = choose(accounts, [waiting_of(t) for t in heads], held_by_user, now, free, weights)
        claimed: list[StoredTask] = []
        for task_id, name in chosen:
            rows = await tx.fetch(_ASSIGN, name, worker_id, now + lease_seconds, task_id)
            claimed.extend(task_from_row(row) for row in rows)
        held_by_user.update(Counter(s.task.user_id for s in claimed))
        for task in queue_moves(heads, chosen, held_by_user, weights):
            # Not a version bump: the position is a view, like the callback state.
            await tx.execute(
                "UPDATE tasks SET response = ? WHERE id = ?", dump_json(task.response), task.id
            )
            await self._store_record(tx, task)
        return claimed

    async def set_fairness_weight(self, user_id: str, weight: float, now: float) -> None:
        args: tuple[object, ...]
        if weight == DEFAULT_WEIGHT:
            sql, args = "DELETE FROM fairness_weights WHERE user_id = ?", (user_id,)
        else:
            sql = (
                "INSERT INTO fairness_weights (user_id, weight, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (user_id) DO UPDATE SET weight = excluded.weight, "
                "updated_at = excluded.updated_at"
            )
            args = (user_id, weight, now)
        await self._write(lambda tx: tx.execute(sql, *args))

    async def fairness_weights(self) -> dict[str, float]:
        return await self._weights(self._point)

    @staticmethod
    async def _weights(tx: Tx) -> dict[str, float]:
        # A handful of rows (only users an operator weighted): read whole at each claim.
        rows = await tx.fetch("SELECT user_id, weight FROM fairness_weights")
        return {str(row[0]): float(row[1]) for row in rows}

    async def claim_due_pinned(
        self, worker_id: str, now: float, limit: int, lease_seconds: float
    ) -> list[StoredTask]:
        sql = (
            "WITH due AS MATERIALIZED (SELECT id FROM tasks WHERE next_check_at IS NOT NULL "
            # A waiting task past its deadline too: no slot may ever come, it must end.
            "AND next_check_at <= ? AND (upstream_account IS NOT NULL OR job_id IS NOT NULL "
            "OR deadline_at <= ?) "
            f"ORDER BY next_check_at LIMIT ?{self.dialect.skip_locked}) "
            "UPDATE tasks SET lease_owner = ?, next_check_at = ?, version = version + 1 "
            f"WHERE id IN (SELECT id FROM due) RETURNING {TASK_COLUMNS}"
        )
        args = (now, now, limit, worker_id, now + lease_seconds)
        rows = await self._write(lambda tx: tx.fetch(sql, *args))
        return [task_from_row(row) for row in rows]
