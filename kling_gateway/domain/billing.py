"""Credits: the ledger's entries, what finishing a task does to them, and usage reports.

Each application has an append-only ledger (docs/billing.md). An entry moves two sums: the
balance (``credits``: grants, settlements, refunds, adjustments) and the credits held by tasks
not finished (``held``: a hold adds the price, its settle or release takes it away again). What
an application may still spend is ``balance - held``; neither sum is kept anywhere else.

What a change does to a task's hold is decided here, beside the transition function, as data
(``BillingEffect``); the store applies it in the transaction that writes the change, once: a
compare-and-set on the task's billing state.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kling_gateway.domain.pricing import PriceTable, Usage, actual_price, total_units
from kling_gateway.domain.task import Task
from kling_gateway.protocol.task import TaskState


class Entry(enum.StrEnum):
    GRANT = "grant"
    HOLD = "hold"
    SETTLE = "settle"
    RELEASE = "release"
    REFUND = "refund"
    ADJUSTMENT = "adjustment"


class BillingState(enum.StrEnum):
    """A task's billing state (the compare-and-set column); NULL: never held."""

    HELD = "held"
    SETTLED = "settled"
    RELEASED = "released"
    REFUNDED = "refunded"


@dataclass(frozen=True, slots=True)
class Settle:
    """The task succeeded: charge ``usage.credits`` and drop its hold."""

    usage: Usage


@dataclass(frozen=True, slots=True)
class Release:
    """The task failed (or was deleted unfinished): drop its hold, charge nothing."""


BillingEffect = Settle | Release


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    id: str
    application_id: str
    user_name: str
    entry: Entry
    credits: int  # change of the balance
    held: int  # change of the credits held
    created_at: float
    task_id: str | None = None
    model: str | None = None
    note: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "application_id": self.application_id,
            "user": self.user_name,
            "entry": self.entry.value,
            "credits": self.credits,
            "held": self.held,
            "created_at": self.created_at,
            "task_id": self.task_id,
            "model": self.model,
            "note": self.note,
        }


@dataclass(frozen=True, slots=True)
class Application:
    """An application with its credits and limits (``apps show``)."""

    id: str
    user_id: str
    user_name: str
    created_at: float
    disabled: bool
    metered: bool  # False: unmetered (never refused for credits)
    max_in_flight: int | None
    balance: int
    held: int
    in_flight: int

    @property
    def available(self) -> int | None:
        return self.balance - self.held if self.metered else None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "user": self.user_name,
            "user_id": self.user_id,
            "created_at": self.created_at,
            "disabled": self.disabled,
            "metered": self.metered,
            "balance": self.balance,
            "held": self.held,
            "available": self.available,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
        }


# provider_data key: the units of a task's earlier paid upstream jobs (a list; the current
# job's are ``final_unit_deduction``), so a multi-job task settles every job it paid for.
UNITS_SPENT = "units_spent"


def billing_effect(before: Task, after: Task, prices: PriceTable) -> BillingEffect | None:
    """What the change from ``before`` to ``after`` does to the task's hold: a settle at the
    actual price when it succeeds, a release when it fails, nothing otherwise (or for a task
    with no price). Sets ``after.usage`` to what it finally costs."""
    if before.usage is None or before.state.is_terminal or not after.state.is_terminal:
        return None
    if after.state is TaskState.FAILED:
        after.usage = Usage(0, 0.0)
        return Release()
    response = after.response or {}
    usage = actual_price(
        prices,
        after.type,
        after.params,
        before.usage,
        seconds=_seconds(response.get("duration")),
        units=total_units(
            after.provider_data.get("final_unit_deduction"), after.provider_data.get(UNITS_SPENT)
        ),
    )
    after.usage = usage
    return Settle(usage)


def entry_moves(effect: BillingEffect, held: int) -> tuple[Entry, int, int]:
    """The ledger entry (kind, credits, held) of ``effect`` on a task holding ``held``."""
    if isinstance(effect, Settle):
        return Entry.SETTLE, -effect.usage.credits, -held
    return Entry.RELEASE, 0, -held


def new_state(effect: BillingEffect) -> BillingState:
    return BillingState.SETTLED if isinstance(effect, Settle) else BillingState.RELEASED


def task_model(task: Task) -> str:
    """What a usage report groups a task's entries by: its model, else its kind."""
    model = getattr(task.params, "model", None) or getattr(task.params, "model_name", None)
    return str(model) if model else task.type


# -- usage reports ---------------------------------------------------------------------------

GROUPINGS = ("day", "model")


@dataclass(slots=True)
class UsageRow:
    user: str
    key: str | None  # the day (YYYY-MM-DD, UTC) or the model; None without --by
    tasks: int = 0  # settled tasks
    credits: int = 0  # credits settled, less refunds
    failed: int = 0  # released holds (failures and unfinished deletes: never charged)
    refunded: int = 0  # credits refunded

    def as_json(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "key": self.key,
            "tasks": self.tasks,
            "credits": self.credits,
            "failed": self.failed,
            "refunded": self.refunded,
        }


@dataclass(slots=True)
class UsageReport:
    by: str | None
    since: float | None
    rows: list[UsageRow] = field(default_factory=list)

    @property
    def total_credits(self) -> int:
        return sum(row.credits for row in self.rows)

    def as_json(self) -> dict[str, Any]:
        return {
            "by": self.by,
            "since": self.since,
            "rows": [row.as_json() for row in self.rows],
            "total": {
                "tasks": sum(row.tasks for row in self.rows),
                "credits": self.total_credits,
                "failed": sum(row.failed for row in self.rows),
                "refunded": sum(row.refunded for row in self.rows),
            },
        }


def usage_report(
    entries: Iterable[LedgerEntry], *, by: str | None = None, since: float | None = None
) -> UsageReport:
    """Usage per user (and day or model) from ledger entries: the credits column is exactly
    minus the sum of their settle and refund entries' ``credits``."""
    if by is not None and by not in GROUPINGS:
        raise ValueError(f"by must be one of {', '.join(GROUPINGS)}, not {by!r}")
    rows: dict[tuple[str, str | None], UsageRow] = {}
    for e in entries:
        if e.entry not in (Entry.SETTLE, Entry.RELEASE, Entry.REFUND):
            continue
        key = _key(e, by)
        row = rows.setdefault((e.user_name, key), UsageRow(e.user_name, key))
        if e.entry is Entry.SETTLE:
            row.tasks += 1
            row.credits -= e.credits
        elif e.entry is Entry.RELEASE:
            row.failed += 1
        else:
            row.credits -= e.credits
            row.refunded += e.credits
    ordered = sorted(rows.values(), key=lambda r: (r.user, r.key or ""))
    return UsageReport(by, since, ordered)


def _key(entry: LedgerEntry, by: str | None) -> str | None:
    if by == "day":
        return time.strftime("%Y-%m-%d", time.gmtime(entry.created_at))
    if by == "model":
        return entry.model or "-"
    return None


def _seconds(value: Any) -> float | None:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if seconds >= 0 else None
