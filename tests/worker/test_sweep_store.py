"""``Store.make_overdue_due``, the worker's deadline sweep, on every backend."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from kling_gateway.domain.task import Task
from kling_gateway.protocol.task import TaskState, failure_response
from kling_gateway.storage.base import Outcome, Store
from tests.harness import make_task
from tests.services import fresh_postgres_database
from tests.storage.helpers import migrated_store


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    with fresh_postgres_database("kg_sweep") as url:
        yield url


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "memory":
        url = "memory://"
    elif request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/store.db"
    else:
        url = str(request.getfixturevalue("pg_database"))
    st = await migrated_store(url)
    yield st
    await st.close()


async def add(store: Store, *, next_check_at: float, deadline_at: float) -> Task:
    task = make_task("user-1")
    await store.insert_task(task, next_check_at=next_check_at, deadline_at=deadline_at)
    return task


async def next_check(store: Store, task: Task) -> float | None:
    found = await store.load_task(task.id)
    assert found is not None
    return found.next_check_at


async def test_overdue_tasks_scheduled_later_are_made_due(store: Store) -> None:
    now = time.time()
    overdue = await add(store, next_check_at=now + 1e8, deadline_at=now - 1)
    in_time = await add(store, next_check_at=now + 60, deadline_at=now + 600)
    held = await add(store, next_check_at=now, deadline_at=now - 1)
    [claimed] = await store.claim_due_tasks("w1", now, 10, 1e6)
    due_already = await add(store, next_check_at=now - 5, deadline_at=now - 1)
    finished = await add(store, next_check_at=now + 1e8, deadline_at=now - 1)
    finished.state = TaskState.FAILED
    finished.response = failure_response(finished.id, code="x", message="y")
    assert await store.save_task(
        finished, expected_version=0, worker_id=None, outcome=Outcome(next_check_at=None)
    )

    assert await store.make_overdue_due(now) == 1
    assert await next_check(store, overdue) == now
    assert await next_check(store, in_time) == now + 60
    assert await next_check(store, due_already) == now - 5
    assert await next_check(store, held) == claimed.next_check_at  # a worker holds it
    found = await store.load_task(finished.id)
    assert found is not None and found.task.state is TaskState.FAILED
    assert await store.make_overdue_due(now) == 0
