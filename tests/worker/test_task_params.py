"""The typed request is stored beside the raw one (migration 0004) and comes back on
``Task.params``; a row from before the column is validated once from its stored request when
loaded, so an upgraded database keeps working — through the worker, to a finished task."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from kling_gateway.domain.ids import new_object_id, new_task_id
from kling_gateway.domain.task import Task
from kling_gateway.domain.transitions import Policy
from kling_gateway.domain.videos import params_from_stored
from kling_gateway.infra.files import VideoFiles
from kling_gateway.infra.notify import LocalTaskEvents
from kling_gateway.protocol.requests import VideoRequestBody
from kling_gateway.protocol.task import TaskState
from kling_gateway.providers.local.provider import LocalProvider
from kling_gateway.storage.base import Store
from kling_gateway.storage.postgres import PostgresStore
from kling_gateway.worker.loop import Worker, WorkerConfig
from tests.services import fresh_postgres_database
from tests.storage.helpers import migrated_store, open_store

# Unknown fields and no defaults: the record must show exactly this.
SENT: dict[str, Any] = {"prompt": "a kite", "action": "text2video", "x-extra": [1, 2]}


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    with fresh_postgres_database("kg_params") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store.db"
    return str(request.getfixturevalue("pg_database"))


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    st = await migrated_store(store_url)
    yield st
    await st.close()


def new_task(request: dict[str, Any], *, with_params: bool = True) -> Task:
    now = time.time()
    return Task(
        id=new_task_id(),
        object_id=new_object_id(now),
        user_id="u1",
        application_id="a1",
        credential_id="c1",
        trace_id=new_task_id(),
        request=request,
        params=params_from_stored(request) if with_params else None,
        created_at=now,
    )


async def forget_params(store: Store, task_id: str) -> Store:
    """Make the row look like one written before migration 0004 (the migration fills nothing);
    returns the store to go on with (SQLite is edited closed, through its file)."""
    if isinstance(store, PostgresStore):
        await store.pool.execute("UPDATE tasks SET params = NULL WHERE id = $1", task_id)
        return store
    url = store.url
    await store.close()
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        conn.execute("UPDATE tasks SET params = NULL WHERE id = ?", (task_id,))
    reopened = await open_store(url)
    return reopened


async def test_params_are_stored_beside_the_request_as_sent(store: Store) -> None:
    task = new_task(dict(SENT))
    await store.insert_task(task, next_check_at=time.time() + 60, deadline_at=time.time() + 600)

    loaded = await store.load_task(task.id)
    assert loaded is not None
    assert loaded.task.params == task.params
    assert loaded.task.params is not None and loaded.task.params.duration == 5  # a default
    assert loaded.task.request == SENT
    record = await store.get_task_record("u1", task.id)
    assert record is not None and msgspec.json.decode(record)["request"] == SENT


async def test_a_row_without_params_is_validated_from_its_request(store: Store) -> None:
    task = new_task({**SENT, "duration": 10}, with_params=False)
    await store.insert_task(task, next_check_at=time.time() + 60, deadline_at=time.time() + 600)
    store = await forget_params(store, task.id)
    try:
        loaded = await store.load_task(task.id)
        assert loaded is not None
        expected = params_from_stored({**SENT, "duration": 10})
        assert expected is not None and expected.duration == 10
        assert loaded.task.params == expected
    finally:
        await store.close()


async def test_an_upgraded_row_is_driven_to_the_end(store_url: str, tmp_path: Path) -> None:
    store = await migrated_store(store_url)
    task = new_task(dict(SENT))
    await store.insert_task(task, next_check_at=0.0, deadline_at=time.time() + 600)
    store = await forget_params(store, task.id)
    files = VideoFiles(root=tmp_path / "videos", public_url="http://gw.test")
    provider = LocalProvider(files=files, store=store, delay=0.0, render=False)
    policy = Policy(check_interval=0.0, check_max_interval=0.0, deadline_seconds=600)
    events = LocalTaskEvents()
    worker = Worker(store, provider, events, WorkerConfig(policy=policy, idle_poll_seconds=0.05))
    running = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(30):
            while (record := await store.get_task_record("u1", task.id)) is not None:
                if "finished_at" in msgspec.json.decode(record):
                    break
                await events.wait(task.id, 1.0)
        assert record is not None
        response = msgspec.json.decode(record)["response"]
        assert response["state"] == TaskState.SUCCEED.value, response
    finally:
        await worker.stop()
        await running
        await provider.aclose()
        await store.close()


def test_the_params_encoding_is_the_validated_body() -> None:
    # The idempotency hash and the column both encode VideoParams: a struct, all defaults.
    params = params_from_stored(dict(SENT))
    assert params is not None
    doc = msgspec.json.decode(msgspec.json.encode(params))
    assert doc["prompt"] == "a kite" and doc["model"] == VideoRequestBody().model
    assert "x-extra" not in doc
