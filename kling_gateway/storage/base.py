"""The storage ports: accounts, tasks, the callback outbox and signing secrets; ``Store`` is
all of them with a lifecycle.

Backends (``memory.py``; ``sqlite.py`` and ``postgres.py`` over the one SQL engine in
``engine.py``) are chosen by URL in ``open_store``. Every task write
is a compare-and-set on ``version``, so two workers (or a worker and a sweep) can never both
finish a task. The rendered record is kept beside the task so a retrieve returns stored bytes.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from kling_gateway.domain.accounts import Account, AccountState
from kling_gateway.domain.assets import Asset
from kling_gateway.domain.billing import Application, BillingEffect, LedgerEntry
from kling_gateway.domain.task import Task
from kling_gateway.storage.health import StoreHealth
from kling_gateway.storage.stats import StoreStats


class StoreError(Exception):
    """A storage failure the caller cannot fix by changing its request."""


# Seconds a client is told to wait after an outage answer, unless the store knows better.
DEFAULT_RETRY_AFTER = 1.0


class StoreUnavailable(StoreError):
    """The store cannot be reached or used right now (down, busy, timed out, closed, its
    file gone): the same call may succeed later (the API answers 503 with Retry-After)."""

    def __init__(self, message: str, *, retry_after: float = DEFAULT_RETRY_AFTER) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StorageFull(StoreError):
    """The disk (or the database's size limit) is full: no write succeeds until room is made
    (the API answers 507 ``storage_full``)."""


class IdempotencyConflict(StoreError):
    """The idempotency key was used before with a different request body."""


class QuotaUsedUp(StoreError):
    """The application's credits do not cover a new task's price (docs/billing.md)."""


class TooManyInFlight(StoreError):
    """The application has ``max_in_flight`` tasks unfinished already."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the application has {limit} tasks in flight, its limit")
        self.limit = limit


class UnknownApplication(StoreError):
    """No user (and so no application) of that name."""


class AccountExists(StoreError):
    """An upstream account of that name exists already."""


class AccountBusy(StoreError):
    """The upstream account still has tasks holding slots on it."""


@dataclass(frozen=True, slots=True)
class UpstreamAccountRow:
    """An upstream account as stored: ``account.in_flight`` counted from the slots held, and
    the secret key sealed (``storage.crypto``; the store never sees it in the clear)."""

    account: Account
    sealed_secret: str


@dataclass(frozen=True, slots=True)
class Principal:
    """The owner of a bearer token, as authentication needs it."""

    user_id: str
    user_name: str
    application_id: str
    credential_id: str
    apis: frozenset[str]
    expires_at: float | None
    revoked: bool
    application_disabled: bool


@dataclass(frozen=True, slots=True)
class CredentialInfo:
    id: str
    user_name: str
    application_id: str
    token_prefix: str
    apis: tuple[str, ...]
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    # Coalesced: at most a minute old per API process (``Store.touch_credentials``).
    last_used_at: float | None = None


@dataclass(frozen=True, slots=True)
class UserInfo:
    """A user and what it holds, as the admin API lists them (its application, with credits
    and limits: ``find_application``)."""

    id: str
    name: str
    created_at: float
    tokens: int  # not revoked
    tasks: int


@dataclass(frozen=True, slots=True)
class TaskFilter:
    """The filters of ``retrieve_batch`` without ids; newest first."""

    type: str | None = None
    state: str | None = None  # an extension: one of the four states
    created_at_min: float | None = None
    created_at_max: float | None = None
    limit: int = 20
    offset: int = 0


@dataclass(slots=True)
class StoredTask:
    """A task as the worker sees it: the task plus its scheduling columns."""

    task: Task
    attempts: int = 0
    next_check_at: float = 0.0
    deadline_at: float = 0.0
    lease_owner: str | None = None
    # The upstream account the task holds a slot on (pinned to: never paid twice).
    account: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """A compare-and-set write of a task, with what goes with it in the same transaction."""

    next_check_at: float | None
    attempts: int | None = None
    keep_lease: bool = False
    # The task goes back to the queue (its create was refused: provably never created), and
    # its slot frees in the same transaction.
    release_account: bool = False
    # Callback deliveries to enqueue atomically with this state: (url, event, body JSON).
    callbacks: tuple[tuple[str, str, bytes], ...] = ()
    # The settle or release of the task's hold (``domain.billing``), applied once: only
    # while the task's billing state is still ``held``.
    billing: BillingEffect | None = None


@dataclass(slots=True)
class CallbackDelivery:
    """One callback to deliver (the durable outbox row)."""

    id: str
    task_id: str
    user_id: str
    url: str
    event: str
    body: bytes
    state: str = "pending"
    attempts: int = 0
    next_attempt_at: float | None = None
    last_status: int | None = None
    last_error: str | None = None
    delivered_at: float | None = None
    created_at: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


class AccountRepo(Protocol):
    """Users, their applications (credits, limits, disabled) and bearer tokens."""

    async def ensure_account(
        self, user_name: str, now: float, *, default_credits: int | None = None
    ) -> tuple[str, str]:
        """The (user_id, application_id) of ``user_name``, creating both when new; a new
        application is metered with a grant of ``default_credits`` (None: unmetered)."""
        ...

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
    ) -> str: ...
    async def find_principal(self, token_hash: str) -> Principal | None: ...
    async def list_credentials(self) -> list[CredentialInfo]: ...
    async def touch_credentials(self, used: dict[str, float]) -> None:
        """Record when each credential id was last used (an earlier time never wins)."""
        ...

    async def revoke_credential(self, id_or_prefix: str, now: float) -> int: ...
    async def count_credentials(self) -> int: ...
    async def set_application(
        self, user_name: str, *, disabled: bool | None = None, max_in_flight: int | None = None
    ) -> bool:
        """Change what is given of the user's applications (``max_in_flight`` 0: no limit);
        whether the user exists."""
        ...

    async def find_user_id(self, user_name: str) -> str | None:
        """The id of the user called ``user_name``, if there is one."""
        ...


class AdminRepo(Protocol):
    """What only an operator reads: every user, every user's tasks (docs/admin.md)."""

    async def list_users(self) -> list[UserInfo]:
        """Every user, oldest first."""
        ...

    async def list_all_task_records(
        self, flt: TaskFilter, user_id: str | None = None
    ) -> tuple[list[bytes], int]:
        """``list_task_records`` across users (or of ``user_id``), newest first."""
        ...


class TaskRepo(Protocol):
    """Tasks: created by the API, driven by the worker through compare-and-set saves."""

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
        """Store a new task before anyone is told its id. With an idempotency key already used
        by the same user, return that earlier task instead (or raise IdempotencyConflict).
        With ``charge_quota``, a task really inserted is admitted under its application's
        limits and holds its price (``task.usage``) in the same transaction (a replay holds
        nothing): over ``max_in_flight``, TooManyInFlight; a metered application whose
        available credits do not cover it, QuotaUsedUp; either way nothing is inserted."""
        ...

    async def get_task_record(self, user_id: str, task_id: str) -> bytes | None: ...
    async def get_task_records(self, user_id: str, task_ids: list[str]) -> dict[str, bytes]: ...
    async def list_task_records(self, user_id: str, flt: TaskFilter) -> tuple[list[bytes], int]: ...
    async def delete_task(self, user_id: str, task_id: str) -> bool: ...

    async def find_user_video(self, user_id: str, video_id: str) -> str | None:
        """The id of ``user_id``'s succeeded task whose result is ``video_id``, if any."""
        ...

    async def load_task(self, task_id: str) -> StoredTask | None: ...
    async def claim_due_tasks(
        self, worker_id: str, now: float, limit: int, lease_seconds: float
    ) -> list[StoredTask]:
        """Lease up to ``limit`` tasks whose next check is due. The lease is the next check
        time itself: a worker that dies leaves its tasks due again when the lease runs out."""
        ...

    async def save_task(
        self, task: Task, *, expected_version: int, worker_id: str | None, outcome: Outcome
    ) -> bool:
        """Compare-and-set: write ``task`` only if its stored version is still
        ``expected_version`` and it is not finished. Returns whether the write happened; on
        success ``task.version`` is the new version."""
        ...

    async def release_tasks(self, worker_id: str, task_ids: list[str], now: float) -> None: ...
    async def make_overdue_due(self, now: float) -> int:
        """The deadline sweep: make every unfinished task past its deadline whose next check is
        later than ``now`` (and that no worker holds) due now; return how many."""
        ...

    # -- upstream accounts and their slots (issue 14)
    async def add_upstream_account(self, account: Account, sealed_secret: str, now: float) -> None:
        """Raises AccountExists when the name is taken."""
        ...

    async def list_upstream_accounts(self) -> list[UpstreamAccountRow]: ...
    async def set_upstream_account_state(
        self, name: str, state: AccountState, reason: str | None
    ) -> bool: ...
    async def remove_upstream_account(self, name: str) -> bool:
        """Raises AccountBusy while tasks hold slots on it."""
        ...

    async def mark_upstream_account_full(self, name: str, until: float, streak: int) -> None: ...
    async def record_upstream_costs(
        self, name: str, remaining: float | None, run_out: bool, now: float
    ) -> None: ...
    async def claim_for_slots(
        self, worker_id: str, now: float, limit: int, lease_seconds: float
    ) -> list[StoredTask]:
        """Lease up to ``limit`` waiting tasks (due, never assigned) onto accounts with free
        slots, in fair order (``domain.fair_queue``), in one transaction with the slot count:
        never more tasks on an account than its max concurrency, with any number of workers."""
        ...

    async def claim_due_pinned(
        self, worker_id: str, now: float, limit: int, lease_seconds: float
    ) -> list[StoredTask]:
        """``claim_due_tasks`` without the waiting tasks (those go through claim_for_slots)."""
        ...

    async def set_fairness_weight(self, user_id: str, weight: float, now: float) -> None:
        """The user's share in the fair queue (1, the default, removes the row)."""
        ...

    async def fairness_weights(self) -> dict[str, float]:
        """Every user's weight that is not the default 1, by user id."""
        ...


class OutboxRepo(Protocol):
    """The durable callback outbox (rows written with the task state they report)."""

    async def claim_due_callbacks(
        self, worker_id: str, now: float, limit: int, lease_seconds: float
    ) -> list[CallbackDelivery]: ...
    async def finish_callback_attempt(self, delivery: CallbackDelivery, worker_id: str) -> None:
        """Record an attempt (only by the lease holder); a final event's delivery state is
        shown in the task's record."""
        ...

    async def list_callbacks(
        self, *, task_id: str | None = None, failed_only: bool = False, limit: int = 100
    ) -> list[CallbackDelivery]:
        """Newest first; ``failed_only``: those failing now, given up or retrying (pending
        after a failed attempt)."""
        ...

    async def redeliver_callback(self, delivery_id: str, now: float) -> bool:
        """Make the delivery due at ``now``; False when there is no such id. A delivery being
        sent right now (leased) is left as it is, so it is never sent twice at once."""
        ...


class SecretRepo(Protocol):
    """Per-user callback signing secrets. The caller makes the secret values; the store keeps
    at most one current secret per user, and retired ones until they expire."""

    async def put_first_secret(self, user_id: str, secret: str, now: float) -> str:
        """The user's current secret; ``secret`` becomes it when the user has none."""
        ...

    async def replace_secret(
        self, user_id: str, secret: str, grace_seconds: float, now: float
    ) -> None:
        """Retire the current secret (valid ``grace_seconds`` more) and make ``secret``
        current. Concurrent replacements are serialised: each retires the one before it."""
        ...

    async def signing_secrets(self, user_id: str, now: float) -> list[str]:
        """Every secret that signs at ``now``: the current one first, then retired ones."""
        ...

    async def stored_secrets(self) -> list[tuple[str, str, str]]:
        """Every stored secret as (id, user id, stored value): for sealing at start."""
        ...

    async def reseal_secret(self, secret_id: str, old: str, new: str) -> bool:
        """Replace the stored value of secret ``secret_id`` if it is still ``old``."""
        ...

    async def scrub_secrets(self) -> None:
        """Drop what the backend keeps of replaced values (freed pages, old row versions)."""
        ...


class AssetRepo(Protocol):
    """Elements and voices per user (docs/contract.md §6, §6.1; migrations 0008, 0010): a gateway
    id names an upstream id that only its user's requests may use. Every read names the user
    and the kind: another user's asset (or one of the other kind) is not found."""

    async def add_asset(self, *, user_id: str, kind: str, upstream_id: str, now: float) -> str:
        """Register an upstream element or voice id for ``user_id`` (ready at once); returns
        its gateway id."""
        ...

    async def insert_asset(self, asset: Asset, idempotency_key: str | None = None) -> Asset:
        """Store a new asset before anyone is told its id. With an idempotency key the user
        used for a create of this kind in the last 24 hours, return that earlier asset instead
        (or raise IdempotencyConflict when it came from another body)."""
        ...

    async def get_asset(self, user_id: str, kind: str, asset_id: str) -> Asset | None: ...
    async def list_assets(
        self, user_id: str, kind: str, limit: int, offset: int
    ) -> tuple[list[Asset], int]:
        """One page of the user's assets of ``kind``, newest first, and how many there are."""
        ...

    async def save_asset(self, asset: Asset, *, expected_version: int) -> bool:
        """Compare-and-set: write ``asset`` only if its stored version is still
        ``expected_version`` and it is unfinished; on success ``asset.version`` is the new one."""
        ...

    async def delete_asset(self, user_id: str, kind: str, asset_id: str) -> bool: ...
    async def find_user_assets(self, user_id: str, kind: str, ids: list[str]) -> dict[str, Asset]:
        """Each of ``ids`` that is a ready (``succeed``) ``kind`` asset of ``user_id``."""
        ...


class RetentionRepo(Protocol):
    """What the retention sweep needs (storage/retention_sql.py)."""

    async def expired_tasks(self, before: float, limit: int) -> list[StoredTask]:
        """Up to ``limit`` tasks finished before ``before`` with no callback still pending,
        oldest first."""
        ...

    async def purge_tasks(self, task_ids: list[str], before: float) -> int:
        """Delete those of ``task_ids`` still expired at ``before``, with their records and
        callbacks; how many tasks went."""
        ...

    def sweep_lock(self) -> AbstractAsyncContextManager[bool]:
        """Held while one process sweeps; yields False when another process holds it."""
        ...


class BillingRepo(Protocol):
    """Credits and usage (docs/billing.md): the ledger is append-only; balances are sums."""

    async def grant_credits(
        self, user_name: str, credits: int, now: float, *, note: str | None = None
    ) -> Application:
        """Add ``credits`` (negative: take away, an adjustment) to the user's application.
        An unmetered application is metered from now on, with the granted balance (an
        adjustment first zeroes what it used while unmetered). UnknownApplication when the
        user does not exist."""
        ...

    async def refund_task(self, task_id: str, now: float, *, note: str | None = None) -> int:
        """Give back what a settled task was charged, once; the credits refunded (0: it was
        not settled, or refunded already)."""
        ...

    async def find_application(self, user_name: str) -> Application | None:
        """The user's default application (the first one) with its balance and holds."""
        ...

    async def get_application(self, application_id: str) -> Application | None:
        """Application ``application_id`` (a token's) with its balance and holds."""
        ...

    async def list_applications(self) -> list[Application]: ...
    async def ledger_entries(
        self,
        *,
        user_name: str | None = None,
        application_id: str | None = None,
        since: float | None = None,
    ) -> list[LedgerEntry]:
        """Entries oldest first, of one user's applications (or one application) or all,
        created at or after ``since``."""
        ...


class Store(
    AccountRepo,
    TaskRepo,
    OutboxRepo,
    SecretRepo,
    AssetRepo,
    RetentionRepo,
    BillingRepo,
    AdminRepo,
    Protocol,
):
    """What the gateway keeps. All methods are coroutines; a backend owns its connections."""

    url: str

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def health(self) -> StoreHealth:
        """Whether the store can take writes now (readiness); never raises."""
        ...

    async def stats(self, now: float) -> StoreStats:
        """Unfinished tasks, the queue, leases, account slots (``/metrics``, ``status``)."""
        ...

    async def migrate(self) -> list[str]:
        """Apply the numbered migrations not yet applied; return their names."""
        ...
