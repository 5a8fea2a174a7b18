"""Which waiting task goes to which account: a fair queue over users (pure, no I/O).

Among waiting tasks, users are served by weighted fair share of slots: the next task comes from
the user with the fewest slots held (in flight plus already chosen) per unit of weight; oldest
first within a user. A burst from one user thus cannot starve a user who submits one task at a
time: that user always holds fewer slots, so its task is next (issue 14, "A fair queue").
"""

from __future__ import annotations

import heapq
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from kling_gateway.domain.accounts import Account

DEFAULT_WEIGHT = 1.0
MAX_WEIGHT = 1000.0


class WeightError(ValueError):
    """A fairness weight out of range (the message says the range)."""


def check_weight(weight: float) -> float:
    """``weight`` when it is a usable share: above 0, at most ``MAX_WEIGHT``."""
    if not 0 < weight <= MAX_WEIGHT:  # also refuses NaN
        raise WeightError(f"a weight must be above 0 and at most {MAX_WEIGHT:g}, not {weight!r}")
    return weight


@dataclass(slots=True, frozen=True)
class Waiting:
    """One task waiting for a slot. ``pinned``: it may only go to that account (never paid
    twice: the task may exist there already)."""

    task_id: str
    user: str
    model: str
    created_at: float
    pinned: str | None = None


@dataclass(slots=True, frozen=True)
class Assignment:
    task_id: str
    account: str


def _by_user(waiting: Iterable[Waiting]) -> dict[str, deque[Waiting]]:
    queues: dict[str, list[Waiting]] = defaultdict(list)
    for task in waiting:
        queues[task.user].append(task)
    return {
        user: deque(sorted(tasks, key=lambda t: (t.created_at, t.task_id)))
        for user, tasks in queues.items()
    }


def fair_order(
    waiting: Iterable[Waiting],
    held: Mapping[str, int] | None = None,
    weights: Mapping[str, float] | None = None,
) -> list[Waiting]:
    """Every waiting task in the order they should get slots.

    ``held``: slots each user holds now; ``weights``: a user's share (default 1, set with
    ``kling-gateway fairness set``). Ties go to the user whose next task is oldest.
    """
    held = held or {}
    weights = weights or {}
    queues = _by_user(waiting)
    heap = [
        (held.get(user, 0) / weights.get(user, 1.0), q[0].created_at, user)
        for user, q in queues.items()
    ]
    heapq.heapify(heap)
    order: list[Waiting] = []
    counts = dict(held)
    while heap:
        _, _, user = heapq.heappop(heap)
        queue = queues[user]
        order.append(queue.popleft())
        counts[user] = counts.get(user, 0) + 1
        if queue:
            share = counts[user] / weights.get(user, 1.0)
            heapq.heappush(heap, (share, queue[0].created_at, user))
    return order


def _pick_account(
    task: Waiting, free: dict[str, int], accounts: Mapping[str, Account]
) -> str | None:
    """The account with the most free slots (per weight) that serves the task's model."""
    if task.pinned is not None:
        return task.pinned if free.get(task.pinned, 0) > 0 else None
    best: str | None = None
    best_score = 0.0
    for name, slots in free.items():
        if slots <= 0 or not accounts[name].serves(task.model):
            continue
        score = slots * accounts[name].weight
        if score > best_score:
            best, best_score = name, score
    return best


def assign(
    ordered: Sequence[Waiting], accounts: Sequence[Account], now: float, limit: int | None = None
) -> list[Assignment]:
    """Assignments for the free slots, in fair order; a task no account can take now waits
    (and does not block tasks behind it that another account can take)."""
    by_name = {account.name: account for account in accounts}
    free = {account.name: account.free_slots(now) for account in accounts}
    chosen: list[Assignment] = []
    for task in ordered:
        if limit is not None and len(chosen) >= limit:
            break
        if not any(slots > 0 for slots in free.values()):
            break
        name = _pick_account(task, free, by_name)
        if name is None:
            continue
        free[name] -= 1
        chosen.append(Assignment(task.task_id, name))
    return chosen


def positions(ordered: Sequence[Waiting]) -> dict[str, int]:
    """Each task's 1-based place in the queue (the ``queue_position`` extension field)."""
    return {task.task_id: index for index, task in enumerate(ordered, start=1)}
