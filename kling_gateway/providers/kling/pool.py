"""A pool of Kling accounts behind one provider (issue 14).

Each task is pinned to the account the store assigned it (``Store.claim_for_slots``, in fair
order, within the account's free slots) and every call for it goes to that account: a
resubmission after a crash looks the task up there by ``external_task_id`` first
(``KlingProvider.submit``), so it is never paid twice. It leaves the account only when the
create was refused (1302/1303: full; 1100-1103, 401 after a JWT refresh: disabled), which
proves the upstream never created it: then its slot frees and it waits in the queue again,
never failed. Resource packs are read from ``/account/costs`` at most once a minute.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, NoReturn, TypeVar

from kling_gateway.domain.accounts import (
    ACCOUNT_LEVEL_CODES,
    FULL_CODES,
    IMPLICIT_ACCOUNT,
    Account,
    AccountState,
    PackInfo,
    Signal,
    after_costs,
    after_signal,
)
from kling_gateway.domain.outcomes import ProviderError, Status, Step, Submission
from kling_gateway.domain.task import Task
from kling_gateway.domain.videos import params_of
from kling_gateway.infra.files import VideoFiles
from kling_gateway.infra.metrics import ACCOUNT_SIGNALS
from kling_gateway.protocol.task import TASK_TYPE_VIDEOS
from kling_gateway.providers.base import RELEASE_SLOT, UPSTREAM_ACCOUNT
from kling_gateway.providers.kling.callbacks import status_from_callback
from kling_gateway.providers.kling.client import KlingClient
from kling_gateway.providers.kling.kind_steps import ACCOUNT_BOUND
from kling_gateway.providers.kling.mapping import KIND_VIDEO_EXTEND, KlingApiError, kind_for
from kling_gateway.providers.kling.provider import KlingProvider, KlingProviderConfig
from kling_gateway.storage.base import Store, StoredTask
from kling_gateway.storage.upstream import DEFAULT_MODEL
from kling_gateway.storage.upstream_keys import (
    Credentials,
    Sealer,
    ensure_implicit_account,
    load_credentials,
)

log = logging.getLogger("kling_gateway.accounts")
# How often the pool re-reads the accounts (an operator's add/disable/enable takes effect).
REFRESH_SECONDS = 5.0
# A refused create waits this long before it is offered to the accounts again.
REQUEUE_SECONDS = 0.5
COSTS_WINDOW_MS = 30 * 86_400_000


T = TypeVar("T")


def is_account_signal(exc: KlingApiError) -> bool:
    code = exc.kling_code
    return code in FULL_CODES or code in ACCOUNT_LEVEL_CODES or exc.http_status == 401


class KlingPool:
    """The ``kling`` provider over the stored accounts, one ``KlingProvider`` each."""

    name = "kling"

    def __init__(
        self,
        template: KlingProviderConfig,
        *,
        store: Store,
        sealer: Sealer,
        files: VideoFiles | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._template, self._store, self._sealer = template, store, sealer
        self._files, self._clock = files, clock
        self._providers: dict[str, tuple[Credentials, KlingProvider]] = {}
        self._accounts: dict[str, Account] = {}
        self._loaded_at = -REFRESH_SECONDS

    # --- the accounts --------------------------------------------------------------------

    async def start(self, access_key: str, secret_key: str, max_concurrency: int) -> None:
        """Store the implicit account of the old single key pair (when given), load all."""
        if access_key and secret_key:
            base_url = self._template.client.base_url
            added = await ensure_implicit_account(
                self._store, self._sealer, access_key, secret_key, base_url, max_concurrency
            )
            if added:
                log.info("stored the implicit upstream account %s", IMPLICIT_ACCOUNT)
        await self.refresh(force=True)
        stored = self._providers.get(IMPLICIT_ACCOUNT)
        if access_key and stored is not None and _keys(stored[0])[:2] != (access_key, secret_key):
            log.warning(
                "the stored upstream account %s has other keys than --kling-access-key/"
                "--kling-secret-key; the stored ones are used (`accounts remove %s` to replace)",
                IMPLICIT_ACCOUNT,
                IMPLICIT_ACCOUNT,
            )
        if not self._providers:
            log.error("no upstream accounts: add one with `kling-gateway accounts add`")

    async def refresh(self, force: bool = False) -> None:
        now = self._clock()
        if not force and now - self._loaded_at < REFRESH_SECONDS:
            return
        self._loaded_at = now
        found = {c.account.name: c for c in await load_credentials(self._store, self._sealer)}
        for name in list(self._providers):
            creds, provider = self._providers[name]
            fresh = found.get(name)
            if fresh is None or _keys(fresh) != _keys(creds):
                del self._providers[name]
                await provider.aclose()
        for name, creds in found.items():
            if name not in self._providers:
                self._providers[name] = (creds, self._build(creds))
        self._accounts = {name: creds.account for name, creds in found.items()}

    def _build(self, creds: Credentials) -> KlingProvider:
        client = replace(
            self._template.client,
            access_key=creds.account.access_key,
            secret_key=creds.secret_key,
            base_url=creds.account.base_url or self._template.client.base_url,
        )
        return KlingProvider(
            replace(self._template, client=client), store=self._store, files=self._files
        )

    async def _provider(self, name: str | None) -> KlingProvider | None:
        await self.refresh()
        if name is not None and name not in self._providers:
            await self.refresh(force=True)
        found = self._providers.get(name) if name is not None else None
        return found[1] if found is not None else None

    async def enabled_accounts(self) -> list[Account]:
        """The enabled accounts, freshly read at most every ``REFRESH_SECONDS``."""
        await self.refresh()
        return [a for a in self._accounts.values() if a.state is AccountState.ENABLED]

    async def account_client(self, name: str) -> KlingClient | None:
        """The client of account ``name`` (the element and voice calls, assets.py)."""
        provider = await self._provider(name)
        return None if provider is None else provider.client

    # --- the Provider interface ----------------------------------------------------------

    async def submit(self, task: Task) -> Submission | Step:
        name = task.provider_data.get(UPSTREAM_ACCOUNT)
        provider = await self._provider(name if isinstance(name, str) else None)
        if provider is None or not isinstance(name, str):
            self._requeue(task, "its upstream account is gone")
        try:
            submission = await self._signalled(name, provider.submit(task))
        except KlingApiError as exc:
            if not is_account_signal(exc):
                raise
            disabled = (
                self._accounts.get(name) is None
                or self._accounts[name].state is AccountState.DISABLED
            )
            if disabled and not self._others(task):
                raise  # no account left for it: the task fails with the upstream's error
            self._requeue(task, exc.message)
        submission.provider_data[UPSTREAM_ACCOUNT] = name
        if isinstance(submission, Submission):
            await self._after_create(name, provider)
        return submission

    async def check(self, task: Task) -> Status | Step:
        name = task.provider_data.get(UPSTREAM_ACCOUNT)
        provider = await self._provider(name if isinstance(name, str) else None)
        if provider is None:
            raise ProviderError(
                f"the task's upstream account {name!r} is not configured",
                code="upstream_account_missing",
                retryable=True,
            )
        # A talking photo's lip-sync steps create upstream work here: the account's signals
        # count as on submit, but the task stays on its account (its animation is there).
        outcome = await self._signalled(name, provider.check(task))
        if isinstance(outcome, Step) and outcome.job_id is not None and isinstance(name, str):
            await self._after_create(name, provider)
        return outcome

    def needs_submit_marker(self, task: Task) -> bool:
        """video-extend only, as for one account (see ``KlingProvider.needs_submit_marker``)."""
        if task.type != TASK_TYPE_VIDEOS:
            return False
        try:
            return kind_for(params_of(task)) == KIND_VIDEO_EXTEND
        except ProviderError:
            return False

    def status_from_callback(self, payload: Any) -> tuple[str | None, str, Status]:
        any_one = self._any()
        if any_one is not None:
            return any_one.status_from_callback(payload)
        return status_from_callback(payload)

    @property
    def fetch_timeout(self) -> float | None:
        template = self._template
        return template.download_timeout if template.download_results else None

    async def materialize(self, status: Status) -> Status:
        """Copy a finished video (from any account's client: result links are public)."""
        await self.refresh()
        any_one = self._any()
        if any_one is None:
            raise ProviderError(
                "no upstream account to fetch with", code="upstream_account_missing", retryable=True
            )
        return await any_one.materialize(status)

    def _any(self) -> KlingProvider | None:
        return next((provider for _, provider in self._providers.values()), None)

    async def aclose(self) -> None:
        for _, provider in self._providers.values():
            await provider.aclose()
        self._providers.clear()

    # --- signals -------------------------------------------------------------------------

    def _others(self, task: Task) -> bool:
        """Whether an enabled account other than the task's serves its model."""
        model = task.request.get("model_name")
        wanted = model if isinstance(model, str) else DEFAULT_MODEL
        pinned = task.provider_data.get(UPSTREAM_ACCOUNT)
        return any(
            a.state is AccountState.ENABLED and a.serves(wanted) and a.name != pinned
            for a in self._accounts.values()
        )

    def _requeue(self, task: Task, why: str) -> NoReturn:
        """Free the task's slot and put it back in the queue (the retryable error the worker
        saves with ``Outcome.release_account``), without what only its account could use."""
        task.provider_data[RELEASE_SLOT] = True
        for key in ACCOUNT_BOUND:
            task.provider_data.pop(key, None)
        raise ProviderError(
            f"queued again: {why}",
            code="upstream_account_unavailable",
            retryable=True,
            retry_after=REQUEUE_SECONDS,
        )

    async def _signalled(self, name: object, call: Awaitable[T]) -> T:
        """``call``'s answer; an account-level error it raises is counted against account
        ``name`` (disabled, or full) before it goes on up."""
        try:
            return await call
        except KlingApiError as exc:
            if isinstance(name, str) and is_account_signal(exc):
                await self._signal(name, exc)
            raise

    async def _signal(self, name: str, exc: KlingApiError) -> None:
        account = self._accounts.get(name)
        if account is None:
            return
        signal = Signal(exc.kling_code or 0, exc.message, exc.http_status, exc.retry_after)
        after = after_signal(account, signal, self._clock())
        self._accounts[name] = after
        if after.state is AccountState.DISABLED and account.state is AccountState.ENABLED:
            ACCOUNT_SIGNALS.labels(name, "disabled").inc()
            log.error("upstream account %s disabled: %s", name, after.last_error)
            await self._store.set_upstream_account_state(name, after.state, after.last_error)
        elif after.full_until != account.full_until:
            ACCOUNT_SIGNALS.labels(name, "full").inc()
            await self._store.mark_upstream_account_full(name, after.full_until, after.full_streak)

    async def _after_create(self, name: str, provider: KlingProvider) -> None:
        account = self._accounts.get(name)
        if account is None:
            return
        if account.full_streak:
            await self._store.mark_upstream_account_full(name, account.full_until, 0)
            account = replace(account, full_streak=0)
        now = self._clock()
        due = account.costs_due(now)
        # Marked as read before the call: concurrent creates on the account read once, and a
        # failing endpoint is tried again a minute later.
        self._accounts[name] = replace(account, packs_checked_at=now) if due else account
        if due:
            self._accounts[name] = await self._read_costs(account, provider, now)

    async def _read_costs(self, account: Account, provider: KlingProvider, now: float) -> Account:
        read = replace(account, packs_checked_at=now)
        try:
            infos = await provider.client.costs(
                int((now * 1000) - COSTS_WINDOW_MS), int(now * 1000)
            )
        except ProviderError as exc:
            log.warning("reading the packs of upstream account %s failed: %s", account.name, exc)
            return read
        packs = [
            PackInfo(str(i.get("status")), _number(i.get("remaining_quantity"))) for i in infos
        ]
        read = after_costs(account, packs, now)
        await self._store.record_upstream_costs(
            account.name, read.packs_remaining, read.packs_run_out, now
        )
        return read


def _keys(creds: Credentials) -> tuple[str, str, str | None]:
    return creds.account.access_key, creds.secret_key, creds.account.base_url


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


async def claim_pooled(
    store: Store, worker_id: str, now: float, limit: int, lease_seconds: float
) -> list[StoredTask]:
    """The worker's claim with a pool: tasks already on an account first (checks, and
    resubmissions after a crash, on the account they are pinned to), then waiting tasks into
    free slots in fair order. Each claimed task carries its account in ``provider_data``."""
    claimed = await store.claim_due_pinned(worker_id, now, limit, lease_seconds)
    if len(claimed) < limit:
        claimed += await store.claim_for_slots(worker_id, now, limit - len(claimed), lease_seconds)
    for stored in claimed:
        if stored.account is not None:
            stored.task.provider_data[UPSTREAM_ACCOUNT] = stored.account
    return claimed
