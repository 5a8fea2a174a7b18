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
from dataclasses import replace

from kling_gateway.domain.billing import (
    BillingState,
    Entry,
    task_model,
)
from kling_gateway.domain.task import Task
from kling_gateway.storage.base import (
    CallbackDelivery,
    CredentialInfo,
    IdempotencyConflict,
    Outcome,
    Principal,
    StoredTask,
    TaskFilter,
    UserInfo,
)
from kling_gateway.storage.health import HEALTHY, StoreHealth
from kling_gateway.storage.listing import task_matches
from kling_gateway.storage.memory_assets import MemoryAssets
from kling_gateway.storage.memory_billing import MemoryBilling
from kling_gateway.storage.memory_callbacks import MemoryCallbacks
from kling_gateway.storage.memory_rows import (
    AppRow,
    CredentialRow,
    MemoryBase,
    MemoryState,
    TaskRow,
)
from kling_gateway.storage.memory_secrets import MemorySecrets
from kling_gateway.storage.memory_upstream import MemoryUpstream
from kling_gateway.storage.rows import (
    IDEMPOTENCY_WINDOW,
    apply_outcome,
)
from kling_gateway.storage.stats import OldestWaiting, StoreStats


class MemoryStore(
    MemoryUpstream, MemoryBilling, MemoryAssets, MemoryCallbacks, MemorySecrets, MemoryBase
):
    """``Store`` in this process's memory; gone when the process ends."""

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._s = MemoryState()

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
        self._s.applications[app_id] = AppRow(user_id, now)
        if default_credits is not None:
            self._s.applications[app_id].metered = True
            self._entry(app_id, Entry.GRANT, default_credits, 0, now, note="default")
        return user_id, app_id

    async def find_user_id(self, user_name: str) -> str | None:
        found = self._s.users.get(user_name)
        return None if found is None else found[0]

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
        self._s.credentials[credential_id] = CredentialRow(info, user_id, token_hash)
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
        row = TaskRow(
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

    def _own(self, user_id: str, task_id: str) -> TaskRow | None:
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

    # -- retention
    def _expired(self, row: TaskRow, before: float) -> bool:
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

    def __repr__(self) -> str:
        return "MemoryStore()"
