"""The operators' listings (storage/listing.py) on every backend: users with their counts, and
every user's tasks with the filters, the state filter included."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from kling_gateway.protocol.task import TaskState
from kling_gateway.storage.base import Outcome, Store, TaskFilter
from tests.services import fresh_postgres_database
from tests.storage.helpers import add_token, finish, insert, migrated_store, owner


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    with fresh_postgres_database("kg_listing") as url:
        yield url


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    url = {"memory": "memory://", "sqlite": f"sqlite:///{tmp_path}/store.db"}.get(request.param)
    st = await migrated_store(url or str(request.getfixturevalue("pg_database")))
    yield st
    await st.close()


async def test_list_users_counts_tokens_and_tasks(store: Store) -> None:
    assert await store.list_users() == []
    alice = await owner(store)
    await owner(store, "bob")
    await add_token(store, alice, "tok_a1")
    revoked = await add_token(store, alice, "tok_a2")
    await store.revoke_credential(revoked, 1.0)
    await insert(store, alice)
    await insert(store, alice)

    first, second = await store.list_users()
    assert (first.name, first.id, first.tokens, first.tasks) == ("alice", alice.user_id, 1, 2)
    assert (second.name, second.tokens, second.tasks) == ("bob", 0, 0)


async def test_list_all_task_records_across_users_with_filters(store: Store) -> None:
    alice, bob = await owner(store), await owner(store, "bob")
    a1 = await insert(store, alice, created_at=1000.0)
    b1 = await insert(store, bob, created_at=1001.0, type_="other")
    a2 = await insert(store, alice, created_at=1002.0)
    finish(a2)
    assert await store.save_task(
        a2, expected_version=0, worker_id=None, outcome=Outcome(next_check_at=None)
    )

    everything = await store.list_all_task_records(TaskFilter())
    assert everything == ([a2.record_json(), b1.record_json(), a1.record_json()], 3)
    assert await store.list_all_task_records(TaskFilter(), bob.user_id) == ([b1.record_json()], 1)
    succeeded = TaskFilter(state=TaskState.SUCCEED.value)
    assert await store.list_all_task_records(succeeded) == ([a2.record_json()], 1)
    pending = TaskFilter(state="pending", type="videos")
    assert await store.list_all_task_records(pending) == ([a1.record_json()], 1)
    assert await store.list_all_task_records(TaskFilter(limit=1, offset=1)) == (
        [b1.record_json()],
        3,
    )
    ranged = TaskFilter(created_at_min=1000.5, created_at_max=1001.5)
    assert await store.list_all_task_records(ranged) == ([b1.record_json()], 1)
    # The user's own listing takes the state filter too (retrieve_batch's `state`).
    own = await store.list_task_records(alice.user_id, TaskFilter(state="pending"))
    assert own == ([a1.record_json()], 1)
