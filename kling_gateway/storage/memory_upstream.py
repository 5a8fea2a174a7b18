"""Upstream accounts, slots and fairness on memory:// (as storage/upstream.py)."""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import replace

from kling_gateway.domain.accounts import Account, AccountState
from kling_gateway.domain.fair_queue import DEFAULT_WEIGHT
from kling_gateway.storage.base import (
    AccountBusy,
    AccountExists,
    StoredTask,
    UpstreamAccountRow,
)
from kling_gateway.storage.memory_rows import (
    MemoryBase,
)
from kling_gateway.storage.upstream import choose, queue_moves, waiting_of


class MemoryUpstream(MemoryBase):
    """The upstream account and slot flows of ``MemoryStore``."""

    def _held(self) -> Counter[str]:
        return Counter(r.account for r in self._s.tasks.values() if r.holds_slot and r.account)

    async def add_upstream_account(self, account: Account, sealed_secret: str, now: float) -> None:
        if account.name in self._s.upstream:
            raise AccountExists(f"an upstream account named {account.name!r} exists already")
        self._s.upstream[account.name] = (replace(account, in_flight=0), sealed_secret)

    async def list_upstream_accounts(self) -> list[UpstreamAccountRow]:
        held = self._held()
        return [
            UpstreamAccountRow(replace(account, in_flight=held[name]), sealed)
            for name, (account, sealed) in sorted(self._s.upstream.items())
        ]

    def _update_account(self, name: str, **changes: object) -> bool:
        found = self._s.upstream.get(name)
        if found is None:
            return False
        self._s.upstream[name] = (replace(found[0], **changes), found[1])  # type: ignore[arg-type]
        return True

    async def set_upstream_account_state(
        self, name: str, state: AccountState, reason: str | None
    ) -> bool:
        found = self._s.upstream.get(name)
        if found is None:
            return False
        enabling = state is AccountState.ENABLED
        last_error = reason if enabling or reason is not None else found[0].last_error
        full_until = 0.0 if enabling else found[0].full_until
        return self._update_account(name, state=state, last_error=last_error, full_until=full_until)

    async def remove_upstream_account(self, name: str) -> bool:
        if name not in self._s.upstream:
            return False
        if held := self._held()[name]:
            raise AccountBusy(f"upstream account {name!r} has {held} tasks in flight")
        del self._s.upstream[name]
        return True

    async def mark_upstream_account_full(self, name: str, until: float, streak: int) -> None:
        self._update_account(name, full_until=until, full_streak=streak)

    async def record_upstream_costs(
        self, name: str, remaining: float | None, run_out: bool, now: float
    ) -> None:
        self._update_account(
            name, packs_remaining=remaining, packs_run_out=run_out, packs_checked_at=now
        )

    async def set_fairness_weight(self, user_id: str, weight: float, now: float) -> None:
        if weight == DEFAULT_WEIGHT:
            self._s.weights.pop(user_id, None)
        else:
            self._s.weights[user_id] = weight

    async def fairness_weights(self) -> dict[str, float]:
        return dict(self._s.weights)

    async def claim_for_slots(
        self, worker_id: str, now: float, limit: int, lease_seconds: float
    ) -> list[StoredTask]:
        accounts = [row.account for row in await self.list_upstream_accounts()]
        free = min(limit, sum(account.free_slots(now) for account in accounts))
        if free <= 0:
            return []
        waiting = [
            r.task
            for r in self._s.tasks.values()
            if r.next_check_at is not None and r.next_check_at <= now
            and r.account is None and r.task.job_id is None
        ]  # fmt: skip
        held_by_user = Counter(r.task.user_id for r in self._s.tasks.values() if r.holds_slot)
        weights = dict(self._s.weights)
        chosen = choose(
            accounts, [waiting_of(t) for t in waiting], held_by_user, now, free, weights
        )
        claimed = []
        for task_id, name in chosen:
            row = self._s.tasks[task_id]
            row.account, row.lease_owner, row.next_check_at = name, worker_id, now + lease_seconds
            row.task.version += 1
            claimed.append(row.stored())
        held_by_user.update(Counter(s.task.user_id for s in claimed))
        for task in queue_moves([copy.deepcopy(t) for t in waiting], chosen, held_by_user, weights):
            row = self._s.tasks[task.id]
            row.task.response = task.response
            self._put(row)
        return claimed

    async def claim_due_pinned(
        self, worker_id: str, now: float, limit: int, lease_seconds: float
    ) -> list[StoredTask]:
        due = [
            r
            for r in self._s.tasks.values()
            if r.next_check_at is not None and r.next_check_at <= now
            and (r.account is not None or r.task.job_id is not None or r.deadline_at <= now)
        ]  # fmt: skip
        due.sort(key=lambda r: r.next_check_at or 0.0)
        claimed: list[StoredTask] = []
        for row in due[:limit]:
            row.lease_owner, row.next_check_at = worker_id, now + lease_seconds
            row.task.version += 1
            claimed.append(row.stored())
        return claimed
