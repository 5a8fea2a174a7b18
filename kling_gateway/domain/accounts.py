"""Upstream accounts as the scheduler sees them, and how upstream signals change them.

Pure: no I/O. The store keeps ``Account`` rows; the worker applies ``after_signal`` when an
upstream answer says something about the account (kling-upstream.md, "Capacity").
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, replace
from typing import Any

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# The account the old --kling-access-key/--kling-secret-key settings make.
IMPLICIT_ACCOUNT = "default"
# How long an account counts as full after 1302/1303 (Kling advises >= 1 s), doubled per
# signal in a row, capped.
FULL_BACKOFF_FIRST = 1.0
FULL_BACKOFF_CAP = 30.0
# Pack balances are read at most this often per account (the endpoint allows QPS 1).
COSTS_INTERVAL = 60.0
ACCOUNT_LEVEL_CODES = frozenset({1100, 1101, 1102, 1103})
FULL_CODES = frozenset({1302, 1303})
MAX_CONCURRENCY = 100_000  # an account's slots (a 32-bit column)


class AccountState(enum.StrEnum):
    ENABLED = "enabled"
    DISABLED = "disabled"  # by an operator or by an account-level upstream error


class AccountNameError(ValueError):
    """An account the CLI or the admin API refuses: ``field`` names what is wrong, ``rule``
    what it must be (each caller words the field its own way: a flag, a JSON field)."""

    def __init__(self, message: str, field: str = "name", rule: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.rule = rule or message


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise AccountNameError(
            f"account name {name!r}: 1-64 letters, digits, '.', '_', '-', a letter or digit first"
        )
    return name


@dataclass(slots=True, frozen=True)
class Account:
    """One upstream account. ``models`` empty: it serves every model."""

    name: str
    access_key: str
    max_concurrency: int
    state: AccountState = AccountState.ENABLED
    models: frozenset[str] = frozenset()
    weight: float = 1.0
    base_url: str | None = None
    in_flight: int = 0
    # Epoch seconds until which the account counts as full (after 1302/1303).
    full_until: float = 0.0
    full_streak: int = 0
    last_error: str | None = None
    # Resource packs: remaining quantity summed over online packs; None: never read.
    packs_remaining: float | None = None
    packs_run_out: bool = False
    packs_checked_at: float | None = None

    def serves(self, model: str) -> bool:
        return not self.models or model in self.models

    def free_slots(self, now: float) -> int:
        """Slots a new task may take now (0 when disabled, full for a backoff, or run out)."""
        if self.state is not AccountState.ENABLED or self.packs_run_out or now < self.full_until:
            return 0
        return max(0, self.max_concurrency - self.in_flight)

    def costs_due(self, now: float) -> bool:
        checked = self.packs_checked_at
        return checked is None or now - checked >= COSTS_INTERVAL


@dataclass(slots=True, frozen=True)
class Signal:
    """What one upstream answer said about an account: its Kling code and message."""

    code: int
    message: str
    http_status: int = 0
    # The upstream's Retry-After, when it gave one: the pause instead of our backoff.
    retry_after: float | None = None


def after_signal(account: Account, signal: Signal, now: float) -> Account:
    """The account after an upstream answer: full for a backoff, disabled, or as it was.

    401 reaches here only after the JWT was refreshed once (kling-upstream.md, "Envelope").
    """
    if signal.code in FULL_CODES:
        if now < account.full_until:
            # Refusals of creates sent together are one signal, not a streak.
            return account
        streak = account.full_streak + 1
        pause = min(FULL_BACKOFF_CAP, FULL_BACKOFF_FIRST * 2 ** (streak - 1))
        if signal.retry_after is not None:
            pause = min(FULL_BACKOFF_CAP, signal.retry_after)
        return replace(account, full_until=now + pause, full_streak=streak)
    if signal.code in ACCOUNT_LEVEL_CODES or signal.http_status == 401:
        reason = f"upstream {signal.code}: {signal.message}"
        return replace(account, state=AccountState.DISABLED, last_error=reason)
    return account


def after_success(account: Account) -> Account:
    """A create went through: the full-streak ends."""
    return replace(account, full_streak=0) if account.full_streak else account


@dataclass(slots=True, frozen=True)
class PackInfo:
    """One resource pack from ``GET /account/costs``."""

    status: str
    remaining: float


def after_costs(account: Account, packs: list[PackInfo], now: float) -> Account:
    """Remaining quantity of the usable packs; run out when it has packs and none is usable."""
    usable = [pack for pack in packs if pack.status in ("online", "toBeOnline")]
    return replace(
        account,
        packs_remaining=sum(pack.remaining for pack in usable if pack.status == "online"),
        packs_run_out=bool(packs) and not usable,
        packs_checked_at=now,
    )


def new_account(
    name: str,
    access_key: str,
    *,
    max_concurrency: int,
    models: frozenset[str],
    weight: float,
    base_url: str | None,
) -> Account:
    """An account an operator adds (CLI or admin API); AccountNameError names what is wrong."""
    check_name(name)
    for field, wrong, rule in (
        ("access_key", not access_key.strip(), "must not be blank"),
        (
            "max_concurrency",
            not 1 <= max_concurrency <= MAX_CONCURRENCY,
            f"must be from 1 to {MAX_CONCURRENCY}",
        ),
        ("weight", not weight > 0, "must be positive"),
    ):
        if wrong:
            raise AccountNameError(f"{field} {rule}", field, rule)
    return Account(
        name=name,
        access_key=access_key,
        max_concurrency=max_concurrency,
        models=models,
        weight=weight,
        base_url=base_url,
    )


def account_view(account: Account) -> dict[str, Any]:
    """What an operator is shown: never the secret key, the access key only by prefix."""
    return {
        "name": account.name,
        "state": account.state.value,
        "access_key": account.access_key[:6] + "…",
        "in_flight": account.in_flight,
        "max_concurrency": account.max_concurrency,
        "models": sorted(account.models),
        "weight": account.weight,
        "base_url": account.base_url,
        "packs_remaining": account.packs_remaining,
        "packs_run_out": account.packs_run_out,
        "packs_checked_at": account.packs_checked_at,
        "full_until": account.full_until or None,
        "last_error": account.last_error,
    }
