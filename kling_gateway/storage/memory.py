"""An in-memory ``Store`` (``memory://``) for fast tests: the ports of ``base.py`` over dicts.

Safe under asyncio concurrency because no method awaits between reading and writing its
state: each call runs to its end before another starts, which is the transaction. Tasks are
copied in and out, so a caller mutating its ``Task`` changes nothing stored until it saves.
The decisions the SQL engine makes (idempotent replay, what a save writes, the callback
view) come from ``rows.py``, so both kinds of store agree by construction.
"""

from __future__ import annotations

import copy
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace

from kling_gateway.domain.accounts import Account, AccountState
from kling_gateway.domain.assets import Asset, registered
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
from kling_gateway.domain.fair_queue import DEFAULT_WEIGHT
from kling_gateway.domain.task import Task
from kling_gateway.storage.base import (
    AccountBusy,
    AccountExists,
    CallbackDelivery,
    CredentialInfo,
    IdempotencyConflict,
    Outcome,
    Principal,
    StoredTask,
    TaskFilter,
    UnknownApplication,
    UpstreamAccountRow,
    UserInfo,
)
from kling_gateway.storage.billing import check_admission, grant_entries
from kling_gateway.storage.health import HEALTHY, StoreHealth
from kling_gateway.storage.listing import task_matches
from kling_gateway.storage.rows import (
    IDEMPOTENCY_WINDOW,
    apply_outcome,
    callback_view,
    dump_json,
    is_failing,
    is_final_event,
    replay_is_due,
)
from kling_gateway.storage.stats import OldestWaiting, StoreStats
from kling_gateway.storage.upstream import choose, queue_moves, waiting_of


@dataclass(slots=True)
class _Application:
    user_id: str
    created_at: float
    disabled: bool = False
    metered: bool = False
    max_in_flight: int | None = None


@dataclass(slots=True)
class _Credential:
    info: CredentialInfo
    user_id: str
    token_hash: str


@dataclass(slots=True)
class _TaskRow:
    task: Task
    record: bytes
    attempts: int
    next_check_at: float | None
    deadline_at: float
    lease_owner: str | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None
    account: str | None = None  # the upstream account it holds a slot on
    billing: BillingState | None = None
    held_credits: int = 0

    def stored(self) -> StoredTask:
        return StoredTask(
            task=copy.deepcopy(self.task),
            attempts=self.attempts,
            next_check_at=self.next_check_at or 0.0,
            deadline_at=self.deadline_at,
            lease_owner=self.lease_owner,
            account=self.account,
        )

    @property
    def holds_slot(self) -> bool:
        return self.account is not None and self.next_check_at is not None


@dataclass(slots=True)
class _Secret:
    secret: str
    user_id: str
    created_at: float
    retired_at: float | None = None
    expires_at: float | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass(slots=True)
class _State:
    users: dict[str, tuple[str, float]] = field(default_factory=dict)  # name -> (id, created)
    applications: dict[str, _Application] = field(default_factory=dict)
    credentials: dict[str, _Credential] = field(default_factory=dict)
    tasks: dict[str, _TaskRow] = field(default_factory=dict)
    idempotency: dict[tuple[str, str], str] = field(default_factory=dict)
    callbacks: dict[str, tuple[CallbackDelivery, str | None]] = field(default_factory=dict)
    secrets: list[_Secret] = field(default_factory=list)
    upstream: dict[str, tuple[Account, str]] = field(default_factory=dict)  # name -> (, sealed)
    assets: dict[str, Asset] = field(default_factory=dict)
    ledger: list[LedgerEntry] = field(default_factory=list)
    weights: dict[str, float] = field(default_factory=dict)  # user id -> fair-queue weight
    asset_keys: dict[tuple[str, str, str], str] = field(default_factory=dict)  # -> asset id


class MemoryStore:
    """``Store`` in this process's memory; gone when the process ends."""

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._s = _State()

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def health(self) -> StoreHealth:
        return HEALTHY  # nothing outside the process to lose

    async def migrate(self) -> list[str]:
        return []  # nothing to migrate: the layout is this module's dataclasses

    async def stats(self, now: float) -> StoreStats:
        live = [r for r in self._s.tasks.values() if r.next_check_at is not None]
        waiting = sorted(
            (r for r in live if r.account is None and r.task.job_id is None),
            key=lambda r: r.task.created_at,
        )
        pending = [d for d, _ in self._s.callbacks.values() if d.next_attempt_at is not None]
        leased = (r.lease_owner for r in live if r.lease_owner and (r.next_check_at or 0) > now)
        return StoreStats(
            tasks=dict(Counter((r.task.type, r.task.state.value) for r in live)),
            queue_depth=len(waiting),
            oldest_waiting=(
                OldestWaiting(waiting[0].task.id, waiting[0].task.created_at) if waiting else None
            ),
            in_flight_by_worker=dict(Counter(leased)),
            accounts=tuple(row.account for row in await self.list_upstream_accounts()),
            callbacks_pending=len(pending),
            callbacks_retrying=sum(1 for d in pending if d.attempts > 0),
        )

    # -- accounts
    async def ensure_account(
        self, user_name: str, now: float, *, default_credits: int | None = None
    ) -> tuple[str, str]:
        found = self._default_application(user_name)
        if found is not None:
            return self._s.applications[found].user_id, found
        user_id, app_id = str(uuid.uuid4()), str(uuid.uuid4())
        self._s.users[user_name] = (user_id, now)
        self._s.applications[app_id] = _Application(user_id, now)
        if default_credits is not None:
            self._s.applications[app_id].metered = True
            self._entry(app_id, Entry.GRANT, default_credits, 0, now, note="default")
        return user_id, app_id

    def _default_application(self, user_name: str) -> str | None:
        found = self._s.users.get(user_name)
        if found is None:
            return None
        apps = [(a.created_at, i) for i, a in self._s.applications.items() if a.user_id == found[0]]
        return min(apps)[1]

    async def find_user_id(self, user_name: str) -> str | None:
        found = self._s.users.get(user_name)
        return None if found is None else found[0]

    def _user_name(self, user_id: str) -> str:
        return next(name for name, (uid, _) in self._s.users.items() if uid == user_id)

    async def add_credential(
        self,
        *,
        user_id: str,
        application_id: str,
        token_hash: str,
        token_prefix: str,
        apis: tuple[str, ...],
        expires_at: float | None,
        now: float,
    ) -> str:
        if any(c.token_hash == token_hash for c in self._s.credentials.values()):
            raise ValueError("token_hash is not unique")
        credential_id = str(uuid.uuid4())
        info = CredentialInfo(
            credential_id, self._user_name(user_id), application_id, token_prefix,
            tuple(apis), now, expires_at, None,
        )  # fmt: skip
        self._s.credentials[credential_id] = _Credential(info, user_id, token_hash)
        return credential_id

    async def find_principal(self, token_hash: str) -> Principal | None:
        cred = next((c for c in self._s.credentials.values() if c.token_hash == token_hash), None)
        if cred is None:
            return None
        app = self._s.applications[cred.info.application_id]
        return Principal(
            user_id=cred.user_id,
            user_name=cred.info.user_name,
            application_id=cred.info.application_id,
            credential_id=cred.info.id,
            apis=frozenset(cred.info.apis),
            expires_at=cred.info.expires_at,
            revoked=cred.info.revoked_at is not None,
            application_disabled=app.disabled,
        )

    async def list_credentials(self) -> list[CredentialInfo]:
        return sorted((c.info for c in self._s.credentials.values()), key=lambda i: i.created_at)

    async def touch_credentials(self, used: dict[str, float]) -> None:
        for credential_id, at in used.items():
            cred = self._s.credentials.get(credential_id)
            if cred is not None and (cred.info.last_used_at or 0.0) < at:
                cred.info = replace(cred.info, last_used_at=at)

    async def revoke_credential(self, id_or_prefix: str, now: float) -> int:
        hits = [
            c
            for c in self._s.credentials.values()
            if c.info.revoked_at is None and id_or_prefix in (c.info.id, c.info.token_prefix)
        ]
        for cred in hits:
            cred.info = replace(cred.info, revoked_at=now)
        return len(hits)

    async def count_credentials(self) -> int:
        return len(self._s.credentials)

    async def set_application(
        self, user_name: str, *, disabled: bool | None = None, max_in_flight: int | None = None
    ) -> bool:
        found = self._s.users.get(user_name)
        apps = [a for a in self._s.applications.values() if found and a.user_id == found[0]]
        for app in apps:
            if disabled is not None:
                app.disabled = disabled
            if max_in_flight is not None:
                app.max_in_flight = max_in_flight or None
        return bool(apps)

    # -- tasks: the API side
    async def insert_task(
        self,
        task: Task,
        *,
        next_check_at: float,
        deadline_at: float,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
        charge_quota: bool = False,
    ) -> Task:
        if idempotency_key is not None:
            earlier = self._idempotent_match(task.user_id, idempotency_key, request_hash)
            if earlier is not None:
                return earlier
        row = _TaskRow(
            copy.deepcopy(task), b"", 0, next_check_at, deadline_at,
            idempotency_key=idempotency_key, request_hash=request_hash,
        )  # fmt: skip
        if charge_quota:
            self._admit(row, time.time())
        self._put(row)
        if idempotency_key is not None:
            self._s.idempotency[(task.user_id, idempotency_key)] = task.id
        return task

    def _idempotent_match(self, user_id: str, key: str, request_hash: str | None) -> Task | None:
        task_id = self._s.idempotency.get((user_id, key))
        row = None if task_id is None else self._s.tasks.get(task_id)
        if row is None:
            return None
        if row.task.created_at < time.time() - IDEMPOTENCY_WINDOW:
            # The key has expired: free it for the new task.
            del self._s.idempotency[(user_id, key)]
            row.idempotency_key = None
            return None
        if row.request_hash != request_hash:
            raise IdempotencyConflict("this Idempotency-Key was used with a different request body")
        return copy.deepcopy(row.task)

    def _admit(self, row: _TaskRow, now: float) -> None:
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

    def _sums(self, application_id: str) -> tuple[int, int]:
        mine = [e for e in self._s.ledger if e.application_id == application_id]
        return sum(e.credits for e in mine), sum(e.held for e in mine)

    def _entry(
        self,
        application_id: str,
        entry: Entry,
        credits: int,
        held: int,
        now: float,
        task: Task | str | None = None,
        model: str | None = None,
        note: str | None = None,
    ) -> None:
        user_id = self._s.applications[application_id].user_id
        task_id = task.id if isinstance(task, Task) else task
        name = self._user_name(user_id)
        values = (credits, held, now, task_id, model, note)
        self._s.ledger.append(LedgerEntry(str(uuid.uuid4()), application_id, name, entry, *values))

    def _close_hold(self, row: _TaskRow, effect: BillingEffect, now: float) -> None:
        if row.billing is not BillingState.HELD:
            return
        row.billing = new_state(effect)
        entry, credits, held = entry_moves(effect, row.held_credits)
        task = row.task
        self._entry(task.application_id, entry, credits, held, now, task, task_model(task))

    def _put(self, row: _TaskRow) -> None:
        """Store ``row`` with its record rendered: the one place this store renders it."""
        row.record = row.task.record_json()
        self._s.tasks[row.task.id] = row

    def _own(self, user_id: str, task_id: str) -> _TaskRow | None:
        row = self._s.tasks.get(task_id)
        return row if row is not None and row.task.user_id == user_id else None

    async def get_task_record(self, user_id: str, task_id: str) -> bytes | None:
        row = self._own(user_id, task_id)
        return None if row is None else row.record

    async def get_task_records(self, user_id: str, task_ids: list[str]) -> dict[str, bytes]:
        rows = (self._own(user_id, task_id) for task_id in task_ids)
        return {row.task.id: row.record for row in rows if row is not None}

    async def list_task_records(self, user_id: str, flt: TaskFilter) -> tuple[list[bytes], int]:
        return await self.list_all_task_records(flt, user_id)

    async def list_all_task_records(
        self, flt: TaskFilter, user_id: str | None = None
    ) -> tuple[list[bytes], int]:
        rows = [row for row in self._s.tasks.values() if task_matches(row.task, user_id, flt)]
        rows.sort(key=lambda row: row.task.created_at, reverse=True)
        page = rows[flt.offset : flt.offset + flt.limit]
        return [row.record for row in page], len(rows)

    async def list_users(self) -> list[UserInfo]:
        found = []
        for name, (user_id, created_at) in self._s.users.items():
            creds = [c for c in self._s.credentials.values() if c.user_id == user_id]
            tokens = sum(1 for c in creds if c.info.revoked_at is None)
            tasks = sum(1 for row in self._s.tasks.values() if row.task.user_id == user_id)
            found.append(UserInfo(user_id, name, created_at, tokens=tokens, tasks=tasks))
        return sorted(found, key=lambda user: (user.created_at, user.name))

    async def delete_task(self, user_id: str, task_id: str) -> bool:
        row = self._own(user_id, task_id)
        if row is None:
            return False
        if row.billing is BillingState.HELD:
            row.billing = BillingState.RELEASED
            task = row.task
            self._entry(
                task.application_id, Entry.RELEASE, 0, -row.held_credits, time.time(), task,
                task_model(task), "deleted unfinished",
            )  # fmt: skip
        del self._s.tasks[task_id]
        if row.idempotency_key is not None:
            self._s.idempotency.pop((user_id, row.idempotency_key), None)
        return True

    async def add_asset(self, *, user_id: str, kind: str, upstream_id: str, now: float) -> str:
        asset = registered(user_id, kind, upstream_id, now)
        await self.insert_asset(asset)
        return asset.id

    async def insert_asset(self, asset: Asset, idempotency_key: str | None = None) -> Asset:
        slot = (asset.user_id, asset.kind, idempotency_key or "")
        earlier = self._s.asset_keys.get(slot) if idempotency_key else None
        found = self._s.assets.get(earlier) if earlier is not None else None
        if found is not None and replay_is_due(
            found.created_at, dump_json(found.spec), dump_json(asset.spec), time.time()
        ):
            return copy.deepcopy(found)
        self._s.assets[asset.id] = copy.deepcopy(asset)
        if idempotency_key:
            self._s.asset_keys[slot] = asset.id
        return asset

    def _asset(self, user_id: str, kind: str, asset_id: str) -> Asset | None:
        found = self._s.assets.get(asset_id)
        if found is None or (found.user_id, found.kind) != (user_id, kind):
            return None
        return found

    async def get_asset(self, user_id: str, kind: str, asset_id: str) -> Asset | None:
        found = self._asset(user_id, kind, asset_id)
        return None if found is None else copy.deepcopy(found)

    async def list_assets(
        self, user_id: str, kind: str, limit: int, offset: int
    ) -> tuple[list[Asset], int]:
        mine = [a for a in self._s.assets.values() if (a.user_id, a.kind) == (user_id, kind)]
        mine.sort(key=lambda a: (-a.created_at, a.id))
        return [copy.deepcopy(a) for a in mine[offset : offset + limit]], len(mine)

    async def save_asset(self, asset: Asset, *, expected_version: int) -> bool:
        stored = self._s.assets.get(asset.id)
        if stored is None or stored.version != expected_version or stored.finished:
            return False
        asset.version = expected_version + 1
        self._s.assets[asset.id] = copy.deepcopy(asset)
        return True

    async def delete_asset(self, user_id: str, kind: str, asset_id: str) -> bool:
        if self._asset(user_id, kind, asset_id) is None:
            return False
        del self._s.assets[asset_id]
        return True

    async def find_user_assets(self, user_id: str, kind: str, ids: list[str]) -> dict[str, Asset]:
        found = {i: self._asset(user_id, kind, i) for i in ids}
        return {
            i: copy.deepcopy(a) for i, a in found.items() if a is not None and a.state == "succeed"
        }

    # -- retention
    def _expired(self, row: _TaskRow, before: float) -> bool:
        finished = row.task.finished_at
        pending = any(
            d.task_id == row.task.id and d.state == "pending" for d, _ in self._s.callbacks.values()
        )
        return (
            row.next_check_at is None
            and finished is not None
            and finished < before
            and not (pending)
        )

    async def expired_tasks(self, before: float, limit: int) -> list[StoredTask]:
        rows = [row for row in self._s.tasks.values() if self._expired(row, before)]
        rows.sort(key=lambda row: row.task.finished_at or 0.0)
        return [row.stored() for row in rows[:limit]]

    async def purge_tasks(self, task_ids: list[str], before: float) -> int:
        gone = 0
        for task_id in task_ids:
            row = self._s.tasks.get(task_id)
            if row is None or not self._expired(row, before):
                continue
            await self.delete_task(row.task.user_id, task_id)
            callbacks = self._s.callbacks
            for delivery_id in [i for i, (d, _) in callbacks.items() if d.task_id == task_id]:
                del callbacks[delivery_id]
            gone += 1
        return gone

    @asynccontextmanager
    async def sweep_lock(self) -> AsyncIterator[bool]:
        # One process by definition: the store lives in it.
        yield True

    async def find_user_video(self, user_id: str, video_id: str) -> str | None:
        for row in self._s.tasks.values():
            task = row.task
            succeeded = task.user_id == user_id and task.state.value == "succeed"
            if succeeded and (task.response or {}).get("video_id") == video_id:
                return task.id
        return None

    # -- tasks: the worker side
    async def load_task(self, task_id: str) -> StoredTask | None:
        row = self._s.tasks.get(task_id)
        return None if row is None else row.stored()

    async def claim_due_tasks(
        self, worker_id: str, now: float, limit: int, lease_seconds: float
    ) -> list[StoredTask]:
        due = [
            r
            for r in self._s.tasks.values()
            if r.next_check_at is not None and r.next_check_at <= now
        ]
        due.sort(key=lambda r: r.next_check_at or 0.0)
        claimed: list[StoredTask] = []
        for row in due[:limit]:
            # As in SQL: the claim bumps the version but leaves the record as it was.
            row.lease_owner, row.next_check_at = worker_id, now + lease_seconds
            row.task.version += 1
            claimed.append(row.stored())
        return claimed

    async def save_task(
        self, task: Task, *, expected_version: int, worker_id: str | None, outcome: Outcome
    ) -> bool:
        row = self._s.tasks.get(task.id)
        if row is None or row.next_check_at is None or row.task.version != expected_version:
            return False
        now = time.time()
        attempts, next_check_at, lease_owner = apply_outcome(
            task,
            expected_version=expected_version,
            stored_callback=copy.deepcopy(row.task.callback),
            stored_attempts=row.attempts,
            worker_id=worker_id,
            outcome=outcome,
            now=now,
        )
        row.task, row.attempts = copy.deepcopy(task), attempts
        row.next_check_at, row.lease_owner = next_check_at, lease_owner
        if outcome.release_account:
            row.account = None
        if outcome.billing is not None and task.state.is_terminal:
            self._close_hold(row, outcome.billing, now)
        self._put(row)
        for url, event, body in outcome.callbacks:
            delivery = CallbackDelivery(
                id=str(uuid.uuid4()), task_id=task.id, user_id=task.user_id, url=url,
                event=event, body=body, next_attempt_at=now, created_at=now,
            )  # fmt: skip
            self._s.callbacks[delivery.id] = (delivery, None)
        return True

    async def release_tasks(self, worker_id: str, task_ids: list[str], now: float) -> None:
        for task_id in task_ids:
            row = self._s.tasks.get(task_id)
            if row is not None and row.lease_owner == worker_id and row.next_check_at is not None:
                row.lease_owner, row.next_check_at = None, now

    async def make_overdue_due(self, now: float) -> int:
        overdue = [
            row
            for row in self._s.tasks.values()
            if row.next_check_at is not None
            and row.next_check_at > now
            and row.deadline_at <= now
            and row.lease_owner is None
        ]
        for row in overdue:
            row.next_check_at = now
        return len(overdue)

    # -- callbacks
    # -- upstream accounts and slots (as storage/upstream.py, over dicts)
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

    async def claim_due_callbacks(
        self, worker_id: str, now: float, limit: int, lease_seconds: float
    ) -> list[CallbackDelivery]:
        due = [
            d
            for d, _ in self._s.callbacks.values()
            if d.next_attempt_at is not None and d.next_attempt_at <= now
        ]
        due.sort(key=lambda d: d.next_attempt_at or 0.0)
        claimed = []
        for delivery in due[:limit]:
            delivery.next_attempt_at = now + lease_seconds
            self._s.callbacks[delivery.id] = (delivery, worker_id)
            claimed.append(copy.deepcopy(delivery))
        return claimed

    async def finish_callback_attempt(self, delivery: CallbackDelivery, worker_id: str) -> None:
        stored = self._s.callbacks.get(delivery.id)
        if stored is None or stored[1] != worker_id:
            return
        self._s.callbacks[delivery.id] = (copy.deepcopy(delivery), None)
        row = self._s.tasks.get(delivery.task_id)
        if row is not None and is_final_event(delivery.event):
            # Shown in the record without bumping the task's version.
            row.task.callback = callback_view(delivery)
            self._put(row)

    async def list_callbacks(
        self, *, task_id: str | None = None, failed_only: bool = False, limit: int = 100
    ) -> list[CallbackDelivery]:
        found = [
            copy.deepcopy(d)
            for d, _ in self._s.callbacks.values()
            if (task_id is None or d.task_id == task_id) and (not failed_only or is_failing(d))
        ]
        found.sort(key=lambda d: d.created_at, reverse=True)
        return found[:limit]

    async def redeliver_callback(self, delivery_id: str, now: float) -> bool:
        stored = self._s.callbacks.get(delivery_id)
        if stored is None:
            return False
        delivery, owner = stored
        if owner is not None and (delivery.next_attempt_at or 0.0) > now:
            return True  # being sent right now: see the engine's _redeliver
        delivery.state, delivery.next_attempt_at = "pending", now
        self._s.callbacks[delivery_id] = (delivery, None)
        return True

    # -- signing secrets
    def _current_secret(self, user_id: str) -> _Secret | None:
        return next(
            (s for s in self._s.secrets if s.user_id == user_id and s.retired_at is None), None
        )

    async def put_first_secret(self, user_id: str, secret: str, now: float) -> str:
        current = self._current_secret(user_id)
        if current is None:
            current = _Secret(secret, user_id, now)
            self._s.secrets.append(current)
        return current.secret

    async def replace_secret(
        self, user_id: str, secret: str, grace_seconds: float, now: float
    ) -> None:
        self._s.secrets = [
            s
            for s in self._s.secrets
            if not (s.user_id == user_id and s.expires_at is not None and s.expires_at <= now)
        ]
        current = self._current_secret(user_id)
        if current is not None:
            current.retired_at, current.expires_at = now, now + grace_seconds
        self._s.secrets.append(_Secret(secret, user_id, now))

    async def signing_secrets(self, user_id: str, now: float) -> list[str]:
        mine = [
            s
            for s in self._s.secrets
            if s.user_id == user_id
            and (s.retired_at is None or (s.expires_at is not None and s.expires_at > now))
        ]
        mine.sort(key=lambda s: (s.retired_at is not None, -s.created_at))
        return [s.secret for s in mine]

    # -- credits (as storage/billing.py)
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

    async def stored_secrets(self) -> list[tuple[str, str, str]]:
        return [(s.id, s.user_id, s.secret) for s in self._s.secrets]

    async def scrub_secrets(self) -> None:
        return None

    async def reseal_secret(self, secret_id: str, old: str, new: str) -> bool:
        for s in self._s.secrets:
            if s.id == secret_id and s.secret == old:
                s.secret = new
                return True
        return False

    def __repr__(self) -> str:
        return "MemoryStore()"
