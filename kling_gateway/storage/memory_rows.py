"""The rows of the in-memory store and the helpers every memory:// flow shares."""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass, field

from kling_gateway.domain.accounts import Account
from kling_gateway.domain.assets import Asset
from kling_gateway.domain.billing import (
    BillingState,
    Entry,
    LedgerEntry,
)
from kling_gateway.domain.task import Task
from kling_gateway.storage.base import (
    CallbackDelivery,
    CredentialInfo,
    StoredTask,
)


@dataclass(slots=True)
class AppRow:
    user_id: str
    created_at: float
    disabled: bool = False
    metered: bool = False
    max_in_flight: int | None = None


@dataclass(slots=True)
class CredentialRow:
    info: CredentialInfo
    user_id: str
    token_hash: str


@dataclass(slots=True)
class TaskRow:
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
class SecretRow:
    secret: str
    user_id: str
    created_at: float
    retired_at: float | None = None
    expires_at: float | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass(slots=True)
class MemoryState:
    users: dict[str, tuple[str, float]] = field(default_factory=dict)  # name -> (id, created)
    applications: dict[str, AppRow] = field(default_factory=dict)
    credentials: dict[str, CredentialRow] = field(default_factory=dict)
    tasks: dict[str, TaskRow] = field(default_factory=dict)
    idempotency: dict[tuple[str, str], str] = field(default_factory=dict)
    callbacks: dict[str, tuple[CallbackDelivery, str | None]] = field(default_factory=dict)
    secrets: list[SecretRow] = field(default_factory=list)
    upstream: dict[str, tuple[Account, str]] = field(default_factory=dict)  # name -> (, sealed)
    assets: dict[str, Asset] = field(default_factory=dict)
    ledger: list[LedgerEntry] = field(default_factory=list)
    weights: dict[str, float] = field(default_factory=dict)  # user id -> fair-queue weight
    asset_keys: dict[tuple[str, str, str], str] = field(default_factory=dict)  # -> asset id


class MemoryBase:
    """The shared state of a ``MemoryStore`` and the helpers its flows (the mixins) share."""

    _s: MemoryState

    def _default_application(self, user_name: str) -> str | None:
        found = self._s.users.get(user_name)
        if found is None:
            return None
        apps = [(a.created_at, i) for i, a in self._s.applications.items() if a.user_id == found[0]]
        return min(apps)[1]

    def _user_name(self, user_id: str) -> str:
        return next(name for name, (uid, _) in self._s.users.items() if uid == user_id)

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

    def _put(self, row: TaskRow) -> None:
        """Store ``row`` with its record rendered: the one place this store renders it."""
        row.record = row.task.record_json()
        self._s.tasks[row.task.id] = row
