"""Several processes sharing one PostgreSQL database: two stores (two pools) at once never
claim the same task, lose a compare-and-set together, split an idempotent create or trip
over each other's secret rotations; and the stored record's layout.

Skipped when PostgreSQL does not answer, unless KLING_GATEWAY_TEST_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from kling_gateway.storage.base import Outcome, Store, TaskFilter
from tests.services import fresh_postgres_database
from tests.storage.helpers import (
    LEASE,
    claim_one,
    insert,
    migrated_store,
    migration_names,
    new_task,
    open_store,
    owner,
)


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    with fresh_postgres_database("kg_concurrency") as url:
        yield url


@pytest.fixture
async def pg_store(pg_database: str) -> AsyncIterator[Store]:
    st = await migrated_store(pg_database)
    yield st
    await st.close()


@pytest.fixture
def fresh_pg_url() -> Iterator[str]:
    with fresh_postgres_database("kg_fresh") as url:
        yield url


async def test_concurrent_migrate(fresh_pg_url: str) -> None:
    stores = [await open_store(fresh_pg_url) for _ in range(3)]
    try:
        results = await asyncio.gather(*(s.migrate() for s in stores))
        assert sorted(results) == [[], [], migration_names("postgres")]
    finally:
        for s in stores:
            await s.close()


async def test_two_stores_never_claim_the_same_task(pg_store: Store, pg_database: str) -> None:
    alice = await owner(pg_store)
    ids = {(await insert(pg_store, alice, due=-1.0)).id for _ in range(200)}
    other = await open_store(pg_database)
    now = time.time()

    async def drain(st: Store, worker: str) -> list[str]:
        got: list[str] = []
        while batch := await st.claim_due_tasks(worker, now, 7, LEASE):
            got += [s.task.id for s in batch]
        return got

    try:
        runs = await asyncio.gather(
            *(drain(st, f"w{i}-{j}") for i, st in enumerate((pg_store, other)) for j in range(4))
        )
    finally:
        await other.close()
    claimed = [task_id for run in runs for task_id in run]
    assert len(claimed) == len(set(claimed)) == 200 and set(claimed) == ids
    assert sum(1 for run in runs if run) > 1  # the claims really did interleave


async def test_concurrent_saves_one_wins(pg_store: Store, pg_database: str) -> None:
    alice = await owner(pg_store)
    stored = await claim_one(pg_store, await insert(pg_store, alice, due=-1.0))
    other = await open_store(pg_database)
    try:
        copies = [
            (await st.load_task(stored.task.id)) for st in (pg_store, other) for _ in range(3)
        ]
        stores = [pg_store] * 3 + [other] * 3
        results = await asyncio.gather(
            *(
                st.save_task(
                    c.task,
                    expected_version=stored.task.version,
                    worker_id="w1",
                    outcome=Outcome(
                        time.time() + 60, callbacks=(("http://h", "processing", b"{}"),)
                    ),
                )
                for st, c in zip(stores, copies, strict=True)
                if c is not None
            )
        )
    finally:
        await other.close()
    assert sorted(results) == [False] * 5 + [True]
    assert len(await pg_store.list_callbacks(task_id=stored.task.id)) == 1


async def test_concurrent_idempotent_creates_agree(pg_store: Store, pg_database: str) -> None:
    alice = await owner(pg_store)
    other = await open_store(pg_database)
    now = time.time()
    try:
        made = await asyncio.gather(
            *(
                st.insert_task(
                    new_task(alice),
                    next_check_at=now,
                    deadline_at=now + 60,
                    idempotency_key="same",
                    request_hash="h",
                )
                for st in (pg_store, other) * 4
            )
        )
    finally:
        await other.close()
    assert len({t.id for t in made}) == 1
    assert (await pg_store.list_task_records(alice.user_id, TaskFilter()))[1] == 1


async def test_concurrent_ensure_account_agrees(pg_store: Store, pg_database: str) -> None:
    other = await open_store(pg_database)
    try:
        got = await asyncio.gather(
            *(st.ensure_account("carol", time.time()) for st in (pg_store, other) * 4)
        )
    finally:
        await other.close()
    assert len(set(got)) == 1


async def test_two_stores_rotating_secrets_take_turns(pg_store: Store, pg_database: str) -> None:
    alice = await owner(pg_store)
    await pg_store.put_first_secret(alice.user_id, "whsec_0", 100.0)
    other = await open_store(pg_database)
    new = [f"whsec_{i}" for i in range(1, 11)]
    try:
        await asyncio.gather(
            *(
                st.replace_secret(alice.user_id, s, 60.0, 110.0)
                for st, s in zip((pg_store, other) * 5, new, strict=True)
            )
        )
    finally:
        await other.close()
    active = await pg_store.signing_secrets(alice.user_id, 111.0)
    assert sorted(active) == sorted(["whsec_0", *new]) and active[0] in new


async def test_records_are_stored_once_and_uncompressed(pg_store: Store, pg_database: str) -> None:
    import asyncpg

    alice = await owner(pg_store)
    # A long, compressible prompt: a record well past the 2 KB at which PostgreSQL would
    # compress the largest column of a row.
    task = await insert(pg_store, alice, prompt="a cat " * 1000)
    conn = await asyncpg.connect(pg_database)
    try:
        columns = await conn.fetch(
            "SELECT attrelid::regclass::text AS rel, attstorage::text FROM pg_attribute "
            "WHERE attname = 'record' AND NOT attisdropped "
            "AND attrelid IN ('tasks'::regclass, 'task_records'::regclass)"
        )
        assert [(c["rel"], c["attstorage"]) for c in columns] == [("task_records", "e")]
        compression = await conn.fetchval(
            "SELECT pg_column_compression(record) FROM task_records WHERE id = $1", task.id
        )
        assert compression is None
    finally:
        await conn.close()
    assert await pg_store.get_task_record(alice.user_id, task.id) == task.record_json()


async def test_record_ids_compare_bytewise_and_batches_probe_the_key(
    pg_store: Store, pg_database: str
) -> None:
    import asyncpg

    alice = await owner(pg_store)
    tasks = [await insert(pg_store, alice) for _ in range(3)]
    conn = await asyncpg.connect(pg_database)
    try:
        collation = await conn.fetchval(
            "SELECT collname FROM pg_attribute a JOIN pg_collation c ON c.oid = a.attcollation "
            "WHERE a.attrelid = 'task_records'::regclass AND a.attname = 'id'"
        )
        assert collation == "C"
        # The store's batch query still uses the primary key under the column's collation.
        await conn.execute("SET enable_seqscan = off")
        rows = await conn.fetch(
            "EXPLAIN SELECT id, record FROM task_records WHERE id = ANY($1::text[]) "
            "AND user_id = $2",
            [t.id for t in tasks],
            alice.user_id,
        )
        assert "task_records_pkey" in "\n".join(row[0] for row in rows)
    finally:
        await conn.close()
    found = await pg_store.get_task_records(alice.user_id, [t.id for t in tasks])
    assert sorted(found) == sorted(t.id for t in tasks)
