"""``Store.stats`` (what /metrics and ``status`` read) on every backend: the unfinished tasks
by state, the queue and its oldest task, live leases per worker, slots per account, the
callbacks still to deliver."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from kling_gateway.domain.accounts import Account
from kling_gateway.protocol.task import TaskState
from kling_gateway.storage.base import Outcome, Store
from tests.services import fresh_postgres_database
from tests.storage.helpers import LEASE, finish, insert, migrated_store, owner


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    with fresh_postgres_database("kg_stats") as url:
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


async def test_an_empty_store(store: Store) -> None:
    stats = await store.stats(time.time())
    assert (stats.tasks, stats.queue_depth, stats.oldest_waiting) == ({}, 0, None)
    assert (stats.in_flight_by_worker, stats.accounts) == ({}, ())
    assert (stats.callbacks_pending, stats.callbacks_retrying) == (0, 0)


async def test_tasks_queue_leases_and_slots(store: Store) -> None:
    alice = await owner(store)
    now = time.time()
    oldest = await insert(store, alice, created_at=now - 60)
    await insert(store, alice, created_at=now - 30)
    done = await insert(store, alice, created_at=now - 10)
    # A worker leases all three; one finishes (leaves every count), one goes back.
    claimed = {s.task.id: s for s in await store.claim_due_tasks("w1", time.time(), 10, LEASE)}
    stored = claimed[done.id]
    finish(stored.task)
    callback = (("http://hook.example/", "task.succeed", b"{}"),)
    saved = await store.save_task(
        stored.task,
        expected_version=stored.task.version,
        worker_id="w1",
        outcome=Outcome(next_check_at=None, callbacks=callback),
    )
    assert saved
    await store.release_tasks("w1", [oldest.id], now)
    await store.add_upstream_account(
        Account(name="acct", access_key="ak", max_concurrency=5), "v1:sealed", now
    )

    stats = await store.stats(time.time())
    assert stats.tasks == {("videos", TaskState.PENDING.value): 2}
    assert stats.queue_depth == 2
    assert stats.oldest_waiting is not None and stats.oldest_waiting.task_id == oldest.id
    assert stats.oldest_waiting.created_at == pytest.approx(now - 60)
    assert stats.in_flight_by_worker == {"w1": 1}  # the one still leased
    ((account),) = stats.accounts
    assert (account.name, account.max_concurrency, account.in_flight) == ("acct", 5, 0)
    assert (stats.callbacks_pending, stats.callbacks_retrying) == (1, 0)
