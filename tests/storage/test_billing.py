"""Credits on every backend (docs/billing.md): holds at create, settle or release exactly once
when the task finishes, limits, grants, refunds, the quota migration, and the concurrency
invariants of issue 15.

Part of the store contract: the fixtures are test_contract.py's (memory, SQLite, PostgreSQL).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from kling_gateway.domain.billing import Entry, usage_report
from kling_gateway.domain.transitions import Deadline
from kling_gateway.storage import PoolLimits
from kling_gateway.storage import open_store as store_for_url
from kling_gateway.storage.base import (
    QuotaUsedUp,
    Store,
    TaskFilter,
    TooManyInFlight,
    UnknownApplication,
)
from kling_gateway.storage.migrations import migration_scripts
from tests.storage import test_contract as contract
from tests.storage.billing_helpers import (
    create,
    entries_of,
    fail_outcome,
    finish_stored,
    finish_task,
    priced_task,
    succeed_outcome,
)
from tests.storage.helpers import LEASE, new_task, open_store, owner

# The contract's fixtures: every test runs on memory://, SQLite and PostgreSQL.
pg_database, backend, store_url, store = (
    contract.pg_database, contract.backend, contract.store_url, contract.store,
)  # fmt: skip
sql_backend, fresh_url = contract.sql_backend, contract.fresh_url


async def _balance(store: Store, user: str = "alice") -> tuple[int, int]:
    app = await store.find_application(user)
    assert app is not None
    return app.balance, app.held


async def test_a_new_application_is_unmetered_and_never_refused(store: Store) -> None:
    who = await owner(store)
    for _ in range(3):
        await create(store, priced_task(who))
    app = await store.find_application("alice")
    assert app is not None and not app.metered and app.available is None
    assert (app.balance, app.held, app.in_flight) == (0, 15, 3)  # holds tracked for usage


async def test_create_holds_and_success_settles_at_the_actual_price(store: Store) -> None:
    who = await owner(store)
    await store.grant_credits("alice", 20, time.time())
    task = await create(store, priced_task(who, duration=10))
    assert task.usage is not None and task.usage.credits == 10
    assert await _balance(store) == (20, 10)
    # The upstream made a shorter video than asked: it settles at what it made.
    assert await finish_task(store, task.id, succeed_outcome(seconds=5.04))
    assert await _balance(store) == (15, 0)
    stored = await store.load_task(task.id)
    assert stored is not None and stored.task.usage is not None
    assert (stored.task.usage.credits, stored.task.usage.duration) == (5, 5.0)


async def test_a_settle_never_exceeds_the_hold(store: Store) -> None:
    who = await owner(store)
    await store.grant_credits("alice", 20, time.time())
    task = await create(store, priced_task(who, duration=5))
    assert await finish_task(store, task.id, succeed_outcome(seconds=9.0))
    assert await _balance(store) == (15, 0)


async def test_failure_releases_the_hold(store: Store) -> None:
    who = await owner(store)
    await store.grant_credits("alice", 5, time.time())
    task = await create(store, priced_task(who))
    assert await _balance(store) == (5, 5)
    assert await finish_task(store, task.id, fail_outcome())
    assert await _balance(store) == (5, 0)
    stored = await store.load_task(task.id)
    assert stored is not None and stored.task.usage is not None
    assert stored.task.usage.credits == 0
    assert await entries_of(store, "alice", Entry.RELEASE) == [task.id]


async def test_no_credits_is_refused_and_inserts_nothing(store: Store) -> None:
    who = await owner(store)
    await store.grant_credits("alice", 7, time.time())
    await create(store, priced_task(who))
    with pytest.raises(QuotaUsedUp):
        await create(store, priced_task(who))
    _, total = await store.list_task_records(who.user_id, TaskFilter(limit=10))
    assert total == 1
    assert await _balance(store) == (7, 5)


async def test_an_idempotent_replay_holds_nothing(store: Store) -> None:
    who = await owner(store)
    await store.grant_credits("alice", 5, time.time())
    first = await create(store, priced_task(who), key="order-1")
    again = await create(store, priced_task(who), key="order-1")
    assert again.id == first.id
    assert await _balance(store) == (5, 5)
    assert len(await entries_of(store, "alice", Entry.HOLD)) == 1


async def test_a_finished_task_is_never_settled_twice(store: Store) -> None:
    who = await owner(store)
    await store.grant_credits("alice", 20, time.time())
    task = await create(store, priced_task(who))
    stored = await store.load_task(task.id)
    assert stored is not None
    assert await finish_stored(store, stored, succeed_outcome())
    # The same observation again (a second worker, a late callback): refused, nothing moves.
    assert not await finish_stored(store, stored, succeed_outcome())
    assert not await finish_stored(store, stored, fail_outcome())
    assert await _balance(store) == (15, 0)
    assert await entries_of(store, "alice", Entry.SETTLE) == [task.id]


async def test_deleting_an_unfinished_task_releases_its_hold(store: Store) -> None:
    who = await owner(store)
    await store.grant_credits("alice", 10, time.time())
    open_task = await create(store, priced_task(who))
    done = await create(store, priced_task(who))
    assert await finish_task(store, done.id, succeed_outcome())
    assert await store.delete_task(who.user_id, open_task.id)
    assert await store.delete_task(who.user_id, done.id)  # settled stays settled
    assert await _balance(store) == (5, 0)
    assert await entries_of(store, "alice", Entry.RELEASE) == [open_task.id]


async def test_max_in_flight(store: Store) -> None:
    who = await owner(store)
    assert await store.set_application("alice", max_in_flight=2)
    first = await create(store, priced_task(who))
    await create(store, priced_task(who))
    with pytest.raises(TooManyInFlight):
        await create(store, priced_task(who))
    assert await finish_task(store, first.id, fail_outcome())
    await create(store, priced_task(who))  # a finished task frees its place
    app = await store.find_application("alice")
    assert app is not None and app.in_flight == 2


async def test_a_grant_meters_an_unmetered_application_from_then_on(store: Store) -> None:
    who = await owner(store)
    task = await create(store, priced_task(who))
    assert await finish_task(store, task.id, succeed_outcome())
    assert await _balance(store) == (-5, 0)  # used while unmetered
    app = await store.grant_credits("alice", 8, time.time(), note="top-up")
    assert app.metered and (app.balance, app.held, app.available) == (8, 0, 8)
    await create(store, priced_task(who))
    with pytest.raises(QuotaUsedUp):
        await create(store, priced_task(who))
    app = await store.grant_credits("alice", -3, time.time())  # an adjustment
    assert (app.balance, app.available) == (5, 0)
    kinds = [e.entry for e in await store.ledger_entries(user_name="alice")]
    assert kinds.count(Entry.ADJUSTMENT) == 2 and kinds.count(Entry.GRANT) == 1
    with pytest.raises(UnknownApplication):
        await store.grant_credits("nobody", 1, time.time())


async def test_default_credits_meter_a_new_application(store: Store) -> None:
    await store.ensure_account("carol", time.time(), default_credits=12)
    again = await store.ensure_account("carol", time.time(), default_credits=12)
    app = await store.find_application("carol")
    assert app is not None and app.metered and app.balance == 12 and app.id == again[1]
    names = [a.user_name for a in await store.list_applications()]
    assert names == ["carol"]


async def test_a_refund_gives_back_a_settled_charge_once(store: Store) -> None:
    who = await owner(store)
    await store.grant_credits("alice", 10, time.time())
    task = await create(store, priced_task(who))
    failed = await create(store, priced_task(who))
    assert await finish_task(store, task.id, succeed_outcome())
    assert await finish_task(store, failed.id, fail_outcome())
    assert await store.refund_task(failed.id, time.time()) == 0  # never charged
    assert await store.refund_task(task.id, time.time(), note="bad video") == 5
    assert await store.refund_task(task.id, time.time()) == 0
    assert await _balance(store) == (10, 0)
    report = usage_report(await store.ledger_entries(user_name="alice"), by="model")
    (row,) = report.rows
    assert (row.key, row.tasks, row.credits, row.failed, row.refunded) == ("kling-v1", 1, 0, 1, 5)


async def test_usage_totals_match_the_ledger(store: Store) -> None:
    alice, bob = await owner(store), await owner(store, "bob")
    since = time.time() - 1
    for who, outcomes in ((alice, [succeed_outcome(), fail_outcome()]), (bob, [succeed_outcome()])):
        for outcome in outcomes:
            task = await create(store, priced_task(who, mode="pro"))
            assert await finish_task(store, task.id, outcome)
    entries = await store.ledger_entries(since=since)
    report = usage_report(entries, by="day", since=since)
    settled = -sum(e.credits for e in entries if e.entry is Entry.SETTLE)
    assert report.total_credits == settled == 20
    assert [(r.user, r.tasks, r.failed) for r in report.rows] == [("alice", 1, 1), ("bob", 1, 0)]
    assert await store.ledger_entries(since=time.time() + 60) == []


async def test_a_task_without_a_price_holds_nothing(store: Store) -> None:
    who = await owner(store)
    await store.grant_credits("alice", 0, time.time())
    task = new_task(who)  # no usage: a zero price, admitted with no credits
    await create(store, task)
    assert await finish_task(store, task.id, succeed_outcome())
    assert await _balance(store) == (0, 0)


# -- the concurrency invariants of issue 15


async def test_concurrent_creates_never_overspend(store: Store, store_url: str) -> None:
    who = await owner(store)
    await store.grant_credits("alice", 500, time.time())  # covers 100 tasks of 5 credits
    # On PostgreSQL the 1,000 queue for a pool of 10: they may wait as long as they need.
    racing = await patient_store(store, store_url)

    async def one() -> bool:
        try:
            await create(racing, priced_task(who))
        except QuotaUsedUp:
            return False
        return True

    try:
        accepted = await asyncio.gather(*(one() for _ in range(1000)))
    finally:
        if racing is not store:
            await racing.close()
    assert sum(accepted) == 100
    app = await store.find_application("alice")
    assert app is not None and app.available == 0 and app.held == 500 and app.in_flight == 100
    for e in await store.ledger_entries(user_name="alice"):
        assert e.entry in (Entry.GRANT, Entry.HOLD)


async def test_failures_racing_the_deadline_sweep_release_each_hold_once(store: Store) -> None:
    who = await owner(store)
    await store.grant_credits("alice", 1000, time.time())
    tasks = [await create(store, priced_task(who)) for _ in range(200)]
    now = time.time()
    # Every task is past its deadline and due later: the sweep makes them due again while
    # the first worker writes their failures, and a second worker claims what it can and
    # ends it at its deadline.
    stored = {s.task.id: s for s in await store.claim_due_tasks("w1", now, 500, LEASE)}
    assert len(stored) == 200
    await store.release_tasks("w1", list(stored), now + 3600)

    async def fail_all() -> None:
        for task in tasks:
            fresh = await store.load_task(task.id)
            if fresh is not None:
                await finish_stored(store, fresh, fail_outcome(), worker_id="w1")

    async def sweep_and_end() -> None:
        for _ in range(20):
            await store.make_overdue_due(time.time() + 7200)
            for claimed in await store.claim_due_tasks("w2", time.time() + 7200, 50, LEASE):
                await finish_stored(store, claimed, Deadline(), worker_id="w2")
            await asyncio.sleep(0)

    await asyncio.gather(fail_all(), sweep_and_end())
    released = await entries_of(store, "alice", Entry.RELEASE)
    assert sorted(released) == sorted(t.id for t in tasks)
    assert await _balance(store) == (1000, 0)


async def test_the_quota_migrates_to_credits(sql_backend: str, fresh_url: str) -> None:
    st = await migrated_store_before(fresh_url, "0011")
    try:
        user_id, app_id = await st.ensure_account("alice", time.time())
        await st._write(  # type: ignore[attr-defined]
            lambda tx: tx.execute(
                "UPDATE applications SET quota_remaining = 3 WHERE id = ?", app_id
            )
        )
        await st.ensure_account("bob", time.time())  # unlimited: stays unmetered
        applied = await st.migrate()
        assert any(name.startswith("0011") for name in applied)
        alice, bob = await st.find_application("alice"), await st.find_application("bob")
        assert alice is not None and alice.metered and alice.balance == 3
        assert bob is not None and not bob.metered and bob.balance == 0
        assert user_id == alice.user_id
    finally:
        await st.close()


async def patient_store(store: Store, url: str) -> Store:
    if not url.startswith("postgres"):
        return store
    st = store_for_url(url, PoolLimits(command_timeout=600.0, acquire_timeout=600.0))
    await st.open()
    return st


async def migrated_store_before(url: str, number: str) -> Store:
    """A store with the migrations before ``number`` applied (and recorded) only."""
    st = await open_store(url)
    backend = "postgres" if url.startswith("postgres") else "sqlite"
    scripts = [(n, sql) for n, sql in migration_scripts(backend) if n < number]

    async def flow(tx: object) -> None:
        await tx.execute(  # type: ignore[attr-defined]
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(name TEXT PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
        )
        for name, sql in scripts:
            await tx.script(sql)  # type: ignore[attr-defined]
            await tx.execute(  # type: ignore[attr-defined]
                "INSERT INTO schema_migrations VALUES (?, ?)", name, time.time()
            )

    await st._write(flow)  # type: ignore[attr-defined]
    return st


async def test_an_application_by_id_and_its_own_ledger(store: Store) -> None:
    """What GET /kling/usage reads for a token: its application, and only its entries."""
    alice, bob = await owner(store), await owner(store, "bob")
    await store.grant_credits("alice", 20, time.time())
    await store.grant_credits("bob", 3, time.time())
    by_name = await store.find_application("alice")
    assert await store.get_application(alice.application_id) == by_name
    assert await store.get_application("no-such-application") is None
    mine = await store.ledger_entries(application_id=alice.application_id)
    assert [(e.application_id, e.credits) for e in mine] == [(alice.application_id, 20)]
    both = await store.ledger_entries(user_name="bob", application_id=bob.application_id)
    assert [e.credits for e in both] == [3]
    assert await store.ledger_entries(user_name="bob", application_id=alice.application_id) == []
