"""The store's credits and limits (docs/billing.md), written once for every SQL dialect.

A create holds the task's price in its insert transaction, under a lock on the application's
row (FOR UPDATE on PostgreSQL, the one writer on SQLite): concurrent creates of one
application take turns between reading the sums and writing the hold, so the available
credits never go below zero. The transaction that finishes a task settles or releases its
hold, and a delete of an unfinished task releases it, each through a compare-and-set on
``tasks.billing``: whoever finishes the task (a worker, a Kling callback, a worker ending it
after the deadline sweep), the hold is closed exactly once.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from kling_gateway.domain.billing import (
    Application,
    BillingEffect,
    BillingState,
    Entry,
    LedgerEntry,
    entry_moves,
    new_state,
    task_model,
)
from kling_gateway.domain.task import Task
from kling_gateway.storage.base import QuotaUsedUp, TooManyInFlight, UnknownApplication

if TYPE_CHECKING:
    from kling_gateway.storage.engine import Dialect, Tx

T = TypeVar("T")

_INSERT_ENTRY = (
    "INSERT INTO ledger (id, application_id, entry, credits, held, task_id, model, note, "
    "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# ledger_application index: an index-only scan of the application's entries.
_SUMS = (
    "SELECT COALESCE(SUM(credits), 0), COALESCE(SUM(held), 0) FROM ledger WHERE application_id = ?"
)
# tasks_application_open partial index.
_IN_FLIGHT = "SELECT count(*) FROM tasks WHERE application_id = ? AND next_check_at IS NOT NULL"
_CLOSE_HOLD = (
    "UPDATE tasks SET billing = ? WHERE id = ? AND billing = 'held' "
    "RETURNING held_credits, application_id"
)
_APPLICATIONS = (
    "SELECT a.id, a.user_id, u.name, a.created_at, a.disabled, a.metered, a.max_in_flight, "
    "(SELECT COALESCE(SUM(l.credits), 0) FROM ledger l WHERE l.application_id = a.id), "
    "(SELECT COALESCE(SUM(l.held), 0) FROM ledger l WHERE l.application_id = a.id), "
    "(SELECT count(*) FROM tasks t WHERE t.application_id = a.id "
    "AND t.next_check_at IS NOT NULL) "
    "FROM applications a JOIN users u ON u.id = a.user_id"
)
_ENTRIES = (
    "SELECT l.id, l.application_id, u.name, l.entry, l.credits, l.held, l.created_at, "
    "l.task_id, l.model, l.note FROM ledger l JOIN applications a ON a.id = l.application_id "
    "JOIN users u ON u.id = a.user_id"
)
# The user's default application: the first one (``tokens create`` makes it).
_DEFAULT_APPLICATION = (
    "SELECT a.id, a.metered FROM applications a WHERE a.user_id = "
    "(SELECT id FROM users WHERE name = ?) ORDER BY a.created_at LIMIT 1"
)


def application_from_row(row: Any) -> Application:
    return Application(
        id=row[0],
        user_id=row[1],
        user_name=row[2],
        created_at=float(row[3]),
        disabled=bool(row[4]),
        metered=bool(row[5]),
        max_in_flight=None if row[6] is None else int(row[6]),
        balance=int(row[7]),
        held=int(row[8]),
        in_flight=int(row[9]),
    )


def entry_from_row(row: Any) -> LedgerEntry:
    return LedgerEntry(
        id=row[0],
        application_id=row[1],
        user_name=row[2],
        entry=Entry(row[3]),
        credits=int(row[4]),
        held=int(row[5]),
        created_at=float(row[6]),
        task_id=row[7],
        model=row[8],
        note=row[9],
    )


def check_admission(
    *, metered: bool, max_in_flight: int | None, in_flight: int, available: int, price: int
) -> None:
    """Refuse a create over the application's limits (shared with memory://); ``in_flight``
    counts the new task."""
    if max_in_flight is not None and in_flight > max_in_flight:
        raise TooManyInFlight(max_in_flight)
    if metered and available < price:
        raise QuotaUsedUp(f"the application has {available} credits left; this task costs {price}")


def grant_entries(metered: bool, balance: int, credits: int) -> list[tuple[Entry, int, str | None]]:
    """The entries of a grant (shared with memory://): metering an unmetered application
    first zeroes what it used while unmetered, so it starts with the granted balance."""
    entries: list[tuple[Entry, int, str | None]] = []
    if not metered and balance:
        entries.append((Entry.ADJUSTMENT, -balance, "metering starts: usage before it zeroed"))
    entries.append((Entry.GRANT if credits >= 0 else Entry.ADJUSTMENT, credits, None))
    return entries


class BillingFlows:
    """The credit flows of ``SQLStore`` (mixed in; see ``engine.py``)."""

    dialect: Dialect

    @property
    def _point(self) -> Tx:
        raise NotImplementedError

    async def _write(self, flow: Callable[[Tx], Coroutine[Any, Any, T]]) -> T:
        raise NotImplementedError

    async def _read_bulk(self, flow: Callable[[Tx], Coroutine[Any, Any, T]]) -> T:
        raise NotImplementedError

    @staticmethod
    async def _entry(
        tx: Tx,
        application_id: str,
        entry: Entry,
        credits: int,
        held: int,
        now: float,
        *,
        task_id: str | None = None,
        model: str | None = None,
        note: str | None = None,
    ) -> None:
        values = (str(uuid.uuid4()), application_id, entry.value, credits, held)
        await tx.execute(_INSERT_ENTRY, *values, task_id, model, note, float(now))

    @staticmethod
    async def _sums(tx: Tx, application_id: str) -> tuple[int, int]:
        row = await tx.fetchrow(_SUMS, application_id)
        return (0, 0) if row is None else (int(row[0]), int(row[1]))

    # -- in the transactions of the task flows
    async def _grant_new(self, tx: Tx, application_id: str, credits: int, now: float) -> None:
        """A new application's --default-credits."""
        await tx.execute("UPDATE applications SET metered = TRUE WHERE id = ?", application_id)
        await self._entry(tx, application_id, Entry.GRANT, credits, 0, now, note="default")

    async def _admit(self, tx: Tx, task: Task, now: float) -> None:
        """Admit a just-inserted task under its application's limits and hold its price."""
        sql = "SELECT metered, max_in_flight FROM applications WHERE id = ?"
        row = await tx.fetchrow(sql, task.application_id)
        checks = row is not None and (row[0] or row[1] is not None)
        if checks and self.dialect.for_update:
            # Something to check: take turns with the application's other creates (SQLite's
            # one writer takes turns anyway). An unmetered application without a limit has
            # nothing to check, and its creates stay parallel.
            row = await tx.fetchrow(sql + self.dialect.for_update, task.application_id)
        if row is None:
            return  # no such application: nothing to limit or hold against
        price = 0 if task.usage is None else task.usage.credits
        metered, limit = bool(row[0]), row[1]
        in_flight = 0 if limit is None else int(await tx.fetchval(_IN_FLIGHT, task.application_id))
        balance, held = await self._sums(tx, task.application_id) if metered else (0, 0)
        check_admission(
            metered=metered,
            max_in_flight=limit,
            in_flight=in_flight,
            available=balance - held,
            price=price,
        )
        if task.usage is None:
            return
        await self._entry(
            tx, task.application_id, Entry.HOLD, 0, price, now,
            task_id=task.id, model=task_model(task),
        )  # fmt: skip
        await tx.execute(
            "UPDATE tasks SET billing = 'held', held_credits = ? WHERE id = ?", price, task.id
        )

    async def _close_hold(self, tx: Tx, task: Task, effect: BillingEffect, now: float) -> None:
        """Settle or release ``task``'s hold, if it still has one (the compare-and-set)."""
        row = await tx.fetchrow(_CLOSE_HOLD, new_state(effect).value, task.id)
        if row is None:
            return
        entry, credits, held = entry_moves(effect, int(row[0]))
        await self._entry(
            tx, str(row[1]), entry, credits, held, now, task_id=task.id, model=task_model(task)
        )

    async def _release_deleted(self, tx: Tx, user_id: str, task_id: str, now: float) -> None:
        """A task deleted unfinished never finishes: its hold is released with the delete."""
        row = await tx.fetchrow(
            "UPDATE tasks SET billing = 'released' WHERE id = ? AND user_id = ? "
            "AND billing = 'held' RETURNING held_credits, application_id",
            task_id,
            user_id,
        )
        if row is None:
            return
        model = await tx.fetchval(
            "SELECT model FROM ledger WHERE task_id = ? AND entry = 'hold'", task_id
        )
        await self._entry(
            tx, str(row[1]), Entry.RELEASE, 0, -int(row[0]), now, task_id=task_id, model=model,
            note="deleted unfinished",
        )  # fmt: skip

    # -- the operator's flows (BillingRepo)
    async def grant_credits(
        self, user_name: str, credits: int, now: float, *, note: str | None = None
    ) -> Application:
        return await self._write(lambda tx: self._grant(tx, user_name, credits, now, note))

    async def _grant(
        self, tx: Tx, user_name: str, credits: int, now: float, note: str | None
    ) -> Application:
        row = await tx.fetchrow(_DEFAULT_APPLICATION + self.dialect.for_update, user_name)
        if row is None:
            raise UnknownApplication(f"no user named {user_name!r}")
        app_id, metered = str(row[0]), bool(row[1])
        balance = 0 if metered else (await self._sums(tx, app_id))[0]
        for entry, amount, why in grant_entries(metered, balance, credits):
            await self._entry(tx, app_id, entry, amount, 0, now, note=why or note)
        if not metered:
            await tx.execute("UPDATE applications SET metered = TRUE WHERE id = ?", app_id)
        found = await self._application(tx, user_name)
        assert found is not None  # locked above
        return found

    async def refund_task(self, task_id: str, now: float, *, note: str | None = None) -> int:
        return await self._write(lambda tx: self._refund(tx, task_id, now, note))

    async def _refund(self, tx: Tx, task_id: str, now: float, note: str | None) -> int:
        app_id = await tx.fetchval(
            "UPDATE tasks SET billing = ? WHERE id = ? AND billing = ? RETURNING application_id",
            BillingState.REFUNDED.value,
            task_id,
            BillingState.SETTLED.value,
        )
        if app_id is None:
            return 0
        row = await tx.fetchrow(
            "SELECT credits, model FROM ledger WHERE task_id = ? AND entry = 'settle'", task_id
        )
        charged = 0 if row is None else -int(row[0])
        model = None if row is None else row[1]
        await self._entry(
            tx, str(app_id), Entry.REFUND, charged, 0, now, task_id=task_id, model=model, note=note
        )
        return charged

    async def find_application(self, user_name: str) -> Application | None:
        return await self._read_bulk(lambda tx: self._application(tx, user_name))

    @staticmethod
    async def _application(tx: Tx, user_name: str) -> Application | None:
        row = await tx.fetchrow(
            _APPLICATIONS + " WHERE u.name = ? ORDER BY a.created_at LIMIT 1", user_name
        )
        return None if row is None else application_from_row(row)

    async def get_application(self, application_id: str) -> Application | None:
        sql = _APPLICATIONS + " WHERE a.id = ?"
        row = await self._read_bulk(lambda tx: tx.fetchrow(sql, application_id))
        return None if row is None else application_from_row(row)

    async def list_applications(self) -> list[Application]:
        sql = _APPLICATIONS + " ORDER BY u.name, a.created_at"
        rows = await self._read_bulk(lambda tx: tx.fetch(sql))
        return [application_from_row(row) for row in rows]

    async def ledger_entries(
        self,
        *,
        user_name: str | None = None,
        application_id: str | None = None,
        since: float | None = None,
    ) -> list[LedgerEntry]:
        where: list[str] = []
        params: list[object] = []
        if user_name is not None:
            where.append("u.name = ?")
            params.append(user_name)
        if application_id is not None:
            where.append("l.application_id = ?")
            params.append(application_id)
        if since is not None:
            where.append("l.created_at >= ?")  # ledger_created index
            params.append(float(since))
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        sql = f"{_ENTRIES}{clause} ORDER BY l.created_at, l.id"
        rows = await self._read_bulk(lambda tx: tx.fetch(sql, *params))
        return [entry_from_row(row) for row in rows]
