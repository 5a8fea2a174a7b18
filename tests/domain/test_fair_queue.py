"""The fair queue and slot accounting, as pure functions."""

from __future__ import annotations

from dataclasses import replace

import pytest

from kling_gateway.domain.accounts import (
    Account,
    AccountNameError,
    AccountState,
    PackInfo,
    Signal,
    after_costs,
    after_signal,
    after_success,
    check_name,
)
from kling_gateway.domain.fair_queue import Waiting, assign, fair_order, positions

NOW = 1_000_000.0


def burst(user: str, count: int, start: float = 0.0, model: str = "kling-v1") -> list[Waiting]:
    return [Waiting(f"{user}-{i}", user, model, start + i) for i in range(count)]


def test_users_take_turns_oldest_first_within_a_user() -> None:
    waiting = burst("a", 4) + burst("b", 2, start=10.0)
    order = [t.task_id for t in fair_order(waiting)]
    assert order == ["a-0", "b-0", "a-1", "b-1", "a-2", "a-3"]


def test_a_user_holding_slots_waits_behind_one_who_holds_none() -> None:
    waiting = [*burst("a", 50), Waiting("b-0", "b", "kling-v1", 500.0)]
    order = fair_order(waiting, held={"a": 15})
    assert order[0].task_id == "b-0"
    assert positions(order)["b-0"] == 1


def test_weights_give_shares() -> None:
    waiting = burst("a", 30) + burst("b", 30)
    order = fair_order(waiting, weights={"a": 2.0})
    first_twelve = [t.user for t in order[:12]]
    assert first_twelve.count("a") == 8
    assert first_twelve.count("b") == 4


def test_assign_fills_free_slots_only() -> None:
    accounts = [
        Account("one", "ak1", max_concurrency=5, in_flight=4),
        Account("two", "ak2", max_concurrency=5, in_flight=3),
    ]
    chosen = assign(fair_order(burst("a", 10)), accounts, NOW)
    per_account = [c.account for c in chosen]
    assert len(chosen) == 3
    assert per_account.count("one") == 1
    assert per_account.count("two") == 2


def test_assign_respects_models_and_does_not_block_behind_a_task() -> None:
    accounts = [Account("v3-only", "ak", max_concurrency=2, models=frozenset({"kling-v3"}))]
    waiting = burst("a", 1, model="kling-v1") + burst("b", 1, start=5.0, model="kling-v3")
    chosen = assign(fair_order(waiting), accounts, NOW)
    assert [(c.task_id, c.account) for c in chosen] == [("b-0", "v3-only")]


def test_a_pinned_task_goes_to_its_account_or_waits() -> None:
    accounts = [
        Account("one", "ak1", max_concurrency=1, in_flight=1),
        Account("two", "ak2", max_concurrency=5),
    ]
    pinned = [Waiting("t", "a", "kling-v1", 0.0, pinned="one")]
    assert assign(pinned, accounts, NOW) == []
    accounts[0] = replace(accounts[0], in_flight=0)
    assert [c.account for c in assign(pinned, accounts, NOW)] == ["one"]


def test_disabled_full_and_run_out_accounts_take_no_work() -> None:
    base = Account("one", "ak1", max_concurrency=5)
    assert base.free_slots(NOW) == 5
    assert replace(base, state=AccountState.DISABLED).free_slots(NOW) == 0
    assert replace(base, full_until=NOW + 1).free_slots(NOW) == 0
    assert replace(base, packs_run_out=True).free_slots(NOW) == 0
    assert replace(base, in_flight=7).free_slots(NOW) == 0


def test_1303_makes_the_account_full_for_a_growing_backoff() -> None:
    account = Account("one", "ak1", max_concurrency=5)
    first = after_signal(account, Signal(1303, "over limit", 429), NOW)
    # A refusal while already full (creates sent together) does not lengthen the pause.
    assert after_signal(first, Signal(1303, "over limit", 429), NOW + 0.5) == first
    later = first.full_until + 0.1
    second = after_signal(first, Signal(1302, "rate limit", 429), later)
    assert first.state is AccountState.ENABLED
    assert 1.0 <= first.full_until - NOW < second.full_until - later
    assert after_success(second).full_streak == 0
    told = after_signal(account, Signal(1302, "rate limit", 429, retry_after=0.2), NOW)
    assert told.full_until == NOW + 0.2


@pytest.mark.parametrize(("code", "status"), [(1100, 429), (1101, 429), (1102, 429), (1103, 403)])
def test_account_level_codes_disable_with_the_reason(code: int, status: int) -> None:
    account = after_signal(Account("one", "ak1", 5), Signal(code, "arrears", status), NOW)
    assert account.state is AccountState.DISABLED
    assert account.last_error is not None and str(code) in account.last_error


def test_401_disables_and_other_errors_leave_the_account_alone() -> None:
    account = Account("one", "ak1", 5)
    assert after_signal(account, Signal(1004, "expired", 401), NOW).state is AccountState.DISABLED
    assert after_signal(account, Signal(5000, "internal", 500), NOW) == account


def test_costs_sum_online_packs_and_detect_run_out() -> None:
    account = Account("one", "ak1", 5)
    assert account.costs_due(NOW)
    read = after_costs(account, [PackInfo("online", 40.0), PackInfo("expired", 9.0)], NOW)
    assert (read.packs_remaining, read.packs_run_out) == (40.0, False)
    assert not read.costs_due(NOW + 59) and read.costs_due(NOW + 60)
    gone = after_costs(account, [PackInfo("runOut", 0.0)], NOW)
    assert gone.packs_run_out and gone.free_slots(NOW) == 0
    assert not after_costs(account, [], NOW).packs_run_out


def test_names_are_checked() -> None:
    assert check_name("acct-1.main") == "acct-1.main"
    with pytest.raises(AccountNameError):
        check_name("-bad name")
