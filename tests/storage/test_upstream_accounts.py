"""Upstream accounts and their slots in the store: one suite over memory, SQLite, PostgreSQL.

A task holds a slot from its assignment (``claim_for_slots``) until it finishes; 1303 sends it
back (``Outcome.release_account``). The concurrency test runs several stores (connection
pools) on one database at once: the account rows' lock keeps every account within its limit.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import pytest

from kling_gateway.domain.accounts import Account, AccountState
from kling_gateway.domain.videos import validate
from kling_gateway.protocol.requests import VideoRequestBody
from kling_gateway.storage.base import AccountBusy, AccountExists, Outcome, Store, StoredTask
from tests.services import fresh_postgres_database
from tests.storage.helpers import LEASE, finish, insert, migrated_store, new_task, owner


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    with fresh_postgres_database("kg_upstream") as url:
        yield url


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store.db"
    return str(request.getfixturevalue("pg_database"))


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    st = await migrated_store(store_url)
    yield st
    await st.close()


def account(name: str, slots: int, **kw: object) -> Account:
    return Account(name=name, access_key=f"ak-{name}", max_concurrency=slots, **kw)  # type: ignore[arg-type]


async def listed(store: Store) -> dict[str, Account]:
    return {row.account.name: row.account for row in await store.list_upstream_accounts()}


async def claim(store: Store, limit: int = 100, worker: str = "w1") -> list[StoredTask]:
    return await store.claim_for_slots(worker, time.time(), limit, LEASE)


async def test_accounts_are_added_listed_disabled_and_removed(store: Store) -> None:
    await store.add_upstream_account(
        account("one", 5, models=frozenset({"kling-v1", "kling-v3"}), weight=2.0),
        "v1:sealed",
        time.time(),
    )
    with pytest.raises(AccountExists):
        await store.add_upstream_account(account("one", 1), "v1:other", time.time())
    (row,) = await store.list_upstream_accounts()
    assert row.sealed_secret == "v1:sealed"
    assert row.account.models == frozenset({"kling-v1", "kling-v3"})
    assert (row.account.max_concurrency, row.account.weight, row.account.in_flight) == (5, 2.0, 0)
    assert await store.set_upstream_account_state("one", AccountState.DISABLED, "upstream 1101")
    one = (await listed(store))["one"]
    assert (one.state, one.last_error) == (AccountState.DISABLED, "upstream 1101")
    assert await store.set_upstream_account_state("one", AccountState.ENABLED, None)
    one = (await listed(store))["one"]
    assert (one.state, one.last_error) == (AccountState.ENABLED, None)
    assert not await store.set_upstream_account_state("nope", AccountState.ENABLED, None)
    assert await store.remove_upstream_account("one")
    assert not await store.remove_upstream_account("one")
    assert await store.list_upstream_accounts() == []


async def test_slots_are_taken_until_the_task_finishes(store: Store) -> None:
    who = await owner(store)
    await store.add_upstream_account(account("one", 2), "s", time.time())
    await store.add_upstream_account(account("two", 1), "s", time.time())
    tasks = [await insert(store, who, created_at=time.time() + i) for i in range(5)]
    claimed = await claim(store)
    assert Counter(s.account for s in claimed) == Counter({"one": 2, "two": 1})
    assert await claim(store) == []
    state = await listed(store)
    assert (state["one"].in_flight, state["two"].in_flight) == (2, 1)
    # The waiting tasks are not claimed by the pinned claim; the assigned ones are, once due.
    later = time.time() + LEASE + 1
    pinned = await store.claim_due_pinned("w2", later, 100, LEASE)
    assert {s.task.id for s in pinned} == {s.task.id for s in claimed}
    assert {s.account for s in pinned} == {"one", "two"}
    with pytest.raises(AccountBusy):
        await store.remove_upstream_account("two")
    done = next(s for s in pinned if s.account == "two")
    finish(done.task)
    saved = await store.save_task(
        done.task, expected_version=done.task.version, worker_id="w2", outcome=Outcome(None)
    )
    assert saved
    assert (await listed(store))["two"].in_flight == 0
    (next_one,) = await claim(store)
    assert next_one.account == "two"
    assert next_one.task.id in {t.id for t in tasks}


async def test_a_refused_create_frees_the_slot_and_requeues(store: Store) -> None:
    who = await owner(store)
    await store.add_upstream_account(account("one", 1), "s", time.time())
    await insert(store, who)
    (held,) = await claim(store)
    assert held.account == "one"
    outcome = Outcome(next_check_at=time.time(), release_account=True)
    version = held.task.version
    assert await store.save_task(
        held.task, expected_version=version, worker_id="w1", outcome=outcome
    )
    assert (await listed(store))["one"].in_flight == 0
    loaded = await store.load_task(held.task.id)
    assert loaded is not None and loaded.account is None
    (again,) = await claim(store)
    assert again.task.id == held.task.id


async def test_users_are_served_fairly_oldest_first(store: Store) -> None:
    alice, bob = await owner(store, "alice"), await owner(store, "bob")
    await store.add_upstream_account(account("one", 3), "s", time.time())
    start = time.time() - 100
    burst = [await insert(store, alice, created_at=start + i) for i in range(20)]
    late = await insert(store, bob, created_at=start + 50)
    claimed = {s.task.id for s in await claim(store)}
    assert late.id in claimed
    assert burst[0].id in claimed and burst[1].id in claimed


async def test_fairness_weights_change_the_share_of_slots(store: Store) -> None:
    alice, bob = await owner(store, "alice"), await owner(store, "bob")
    await store.add_upstream_account(account("one", 8), "s", time.time())
    start = time.time() - 100
    for i in range(20):  # both have a backlog; bob's tasks are the older ones
        await insert(store, bob, created_at=start + i)
        await insert(store, alice, created_at=start + 30 + i)
    await store.set_fairness_weight(alice.user_id, 3.0, time.time())
    assert await store.fairness_weights() == {alice.user_id: 3.0}
    share = Counter(s.task.user_id for s in await claim(store))
    assert share == {alice.user_id: 6, bob.user_id: 2}
    # Weight 1 is the default again: the next slots are shared evenly.
    await store.set_fairness_weight(alice.user_id, 1.0, time.time())
    assert await store.fairness_weights() == {}
    await store.add_upstream_account(account("two", 8), "s", time.time())
    share = Counter(s.task.user_id for s in await claim(store))
    assert share == {alice.user_id: 2, bob.user_id: 6}  # bob catches up to 8 and 8


async def test_disabled_full_and_run_out_accounts_and_models(store: Store) -> None:
    who = await owner(store)
    now = time.time()
    await store.add_upstream_account(account("off", 5), "s", now)
    await store.add_upstream_account(account("full", 5), "s", now)
    await store.add_upstream_account(account("dry", 5), "s", now)
    await store.add_upstream_account(account("v3", 5, models=frozenset({"kling-v3"})), "s", now)
    await store.set_upstream_account_state("off", AccountState.DISABLED, "operator")
    await store.mark_upstream_account_full("full", now + 60, 1)
    await store.record_upstream_costs("dry", 0.0, True, now)
    await insert(store, who)  # kling-v1: no account may take it
    assert await claim(store) == []
    dry = (await listed(store))["dry"]
    assert (dry.packs_remaining, dry.packs_run_out, dry.packs_checked_at) == (0.0, True, now)
    await store.record_upstream_costs("dry", 12.5, False, now)
    (taken,) = await claim(store)
    assert taken.account == "dry"


async def test_an_account_takes_only_the_models_it_serves(store: Store) -> None:
    who = await owner(store)
    now = time.time()
    await store.add_upstream_account(account("v3", 5, models=frozenset({"kling-v3"})), "s", now)
    v1 = await insert(store, who)  # the default model, kling-v1
    v3 = new_task(who)
    v3.params = validate(VideoRequestBody(action="text2video", prompt="a cat", model="kling-v3"))
    await store.insert_task(v3, next_check_at=now, deadline_at=now + 3600)
    claimed = await claim(store)
    assert [(s.task.id, s.account) for s in claimed] == [(v3.id, "v3")]
    assert v1.id not in {s.task.id for s in claimed}


async def test_concurrent_claims_never_exceed_max_concurrency(store_url: str) -> None:
    stores = [await migrated_store(store_url)] if store_url == "memory://" else []
    if not stores:
        first = await migrated_store(store_url)
        stores = [first] + [await migrated_store_no_truncate(store_url) for _ in range(3)]
    try:
        main = stores[0]
        who = await owner(main)
        await main.add_upstream_account(account("one", 3), "s", time.time())
        await main.add_upstream_account(account("two", 2), "s", time.time())
        for i in range(30):
            await insert(main, who, created_at=time.time() + i)
        rounds = await asyncio.gather(
            *(claim(stores[i % len(stores)], 2, f"w{i}") for i in range(12))
        )
        per_account = Counter(s.account for got in rounds for s in got)
        assert per_account == Counter({"one": 3, "two": 2})
        ids = [s.task.id for got in rounds for s in got]
        assert len(ids) == len(set(ids))
    finally:
        for st in stores:
            await st.close()


async def migrated_store_no_truncate(url: str) -> Store:
    from tests.storage.helpers import open_store

    st = await open_store(url)
    await st.migrate()
    return st


async def test_waiting_tasks_show_their_queue_position(store: Store) -> None:
    alice, bob = await owner(store, "alice"), await owner(store, "bob")
    await store.add_upstream_account(account("one", 1), "s", time.time())
    start = time.time() - 100
    first, second, third = [await insert(store, alice, created_at=start + i) for i in range(3)]
    late = await insert(store, bob, created_at=start + 10)
    (taken,) = await claim(store)
    assert taken.task.id == first.id

    async def position(task_id: str, user_id: str) -> object:
        record = await store.get_task_record(user_id, task_id)
        assert record is not None
        response = msgspec.json.decode(record)["response"]
        assert response["state"] == "pending"
        return response.get("queue_position")

    # Alice holds the slot: Bob's task is next, then Alice's in order.
    assert await position(late.id, bob.user_id) == 1
    assert await position(second.id, alice.user_id) == 2
    assert await position(third.id, alice.user_id) == 3
    loaded = await store.load_task(second.id)
    assert loaded is not None and loaded.task.version == 0  # a view, not a change


async def test_a_waiting_task_past_its_deadline_is_claimed_to_end(store: Store) -> None:
    who = await owner(store)
    task = await insert(store, who)
    now = time.time()
    assert await store.claim_due_pinned("w1", now, 10, LEASE) == []
    (overdue,) = await store.claim_due_pinned("w1", now + 7200, 10, LEASE)
    assert overdue.task.id == task.id and overdue.account is None
