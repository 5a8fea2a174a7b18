"""Credits on memory:// (as storage/billing.py): admission, holds, grants, refunds."""

from __future__ import annotations

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
from kling_gateway.storage.base import (
    UnknownApplication,
)
from kling_gateway.storage.billing import check_admission, grant_entries
from kling_gateway.storage.memory_rows import (
    MemoryBase,
    TaskRow,
)


class MemoryBilling(MemoryBase):
    """The credits flows of ``MemoryStore`` over its shared state."""

    def _admit(self, row: TaskRow, now: float) -> None:
        task = row.task
        app = self._s.applications.get(task.application_id)
        if app is None:
            return
        price = 0 if task.usage is None else task.usage.credits
        in_flight = 1 + sum(
            1
            for r in self._s.tasks.values()
            if r.task.application_id == task.application_id and r.next_check_at is not None
        )
        balance, held = self._sums(task.application_id)
        check_admission(
            metered=app.metered,
            max_in_flight=app.max_in_flight,
            in_flight=in_flight,
            available=balance - held,
            price=price,
        )
        if task.usage is None:
            return
        self._entry(task.application_id, Entry.HOLD, 0, price, now, task, task_model(task))
        row.billing, row.held_credits = BillingState.HELD, price

    def _close_hold(self, row: TaskRow, effect: BillingEffect, now: float) -> None:
        if row.billing is not BillingState.HELD:
            return
        row.billing = new_state(effect)
        entry, credits, held = entry_moves(effect, row.held_credits)
        task = row.task
        self._entry(task.application_id, entry, credits, held, now, task, task_model(task))

    async def grant_credits(
        self, user_name: str, credits: int, now: float, *, note: str | None = None
    ) -> Application:
        app_id = self._default_application(user_name)
        if app_id is None:
            raise UnknownApplication(f"no user named {user_name!r}")
        app = self._s.applications[app_id]
        balance = self._sums(app_id)[0]
        for entry, amount, why in grant_entries(app.metered, balance, credits):
            self._entry(app_id, entry, amount, 0, now, note=why or note)
        app.metered = True
        return self._application(app_id)

    async def refund_task(self, task_id: str, now: float, *, note: str | None = None) -> int:
        row = self._s.tasks.get(task_id)
        if row is None or row.billing is not BillingState.SETTLED:
            return 0
        row.billing = BillingState.REFUNDED
        settled = [e for e in self._s.ledger if e.task_id == task_id and e.entry is Entry.SETTLE]
        charged = -settled[0].credits if settled else 0
        model = settled[0].model if settled else None
        self._entry(row.task.application_id, Entry.REFUND, charged, 0, now, task_id, model, note)
        return charged

    def _application(self, app_id: str) -> Application:
        app = self._s.applications[app_id]
        balance, held = self._sums(app_id)
        in_flight = sum(
            1
            for r in self._s.tasks.values()
            if r.task.application_id == app_id and r.next_check_at is not None
        )
        return Application(
            app_id, app.user_id, self._user_name(app.user_id), app.created_at, app.disabled,
            app.metered, app.max_in_flight, balance, held, in_flight,
        )  # fmt: skip

    async def find_application(self, user_name: str) -> Application | None:
        app_id = self._default_application(user_name)
        return None if app_id is None else self._application(app_id)

    async def get_application(self, application_id: str) -> Application | None:
        known = application_id in self._s.applications
        return self._application(application_id) if known else None

    async def list_applications(self) -> list[Application]:
        apps = [self._application(app_id) for app_id in self._s.applications]
        return sorted(apps, key=lambda a: (a.user_name, a.created_at))

    async def ledger_entries(
        self,
        *,
        user_name: str | None = None,
        application_id: str | None = None,
        since: float | None = None,
    ) -> list[LedgerEntry]:
        return [
            e
            for e in self._s.ledger
            if (user_name is None or e.user_name == user_name)
            and (application_id is None or e.application_id == application_id)
            and (since is None or e.created_at >= since)
        ]
