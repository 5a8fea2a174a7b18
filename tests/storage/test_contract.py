"""The Store contract: one suite, run against every backend (memory, SQLite and PostgreSQL).

Each test gets an opened, migrated, empty store. PostgreSQL runs in a throwaway database per
module (emptied between tests); it is skipped when the server does not answer, unless
KLING_GATEWAY_TEST_REQUIRE_SERVICES=1, where that fails instead (see tests/services.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import pytest

from kling_gateway.domain.task import Task
from kling_gateway.protocol.task import TaskState, progress_response
from kling_gateway.storage.base import (
    CallbackDelivery,
    IdempotencyConflict,
    Outcome,
    Store,
    TaskFilter,
)
from kling_gateway.storage.rows import IDEMPOTENCY_WINDOW, callback_view
from tests.services import fresh_postgres_database
from tests.storage.helpers import (
    LEASE,
    Owner,
    add_token,
    claim_one,
    finish,
    insert,
    migrated_store,
    migration_names,
    new_task,
    open_store,
    owner,
)

# -- fixtures


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    with fresh_postgres_database("kg_contract") as url:
        yield url


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["sqlite", "postgres"])
def sql_backend(request: pytest.FixtureRequest) -> str:
    """The backends with a schema (and so migrations)."""
    return str(request.param)


@pytest.fixture
def store_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "memory":
        return "memory://"
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/store.db"
    return str(request.getfixturevalue("pg_database"))


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    st = await migrated_store(store_url)
    yield st
    await st.close()


@pytest.fixture
def fresh_url(sql_backend: str, tmp_path: Path) -> Iterator[str]:
    """The URL of a store nobody has migrated yet."""
    if sql_backend == "sqlite":
        yield f"sqlite:///{tmp_path}/fresh.db"
        return
    with fresh_postgres_database("kg_fresh") as url:
        yield url


# -- accounts


async def test_ensure_account_is_idempotent(store: Store) -> None:
    first = await store.ensure_account("alice", time.time())
    assert await store.ensure_account("alice", time.time()) == first
    other = await store.ensure_account("bob", time.time())
    assert other[0] != first[0] and other[1] != first[1]


async def test_add_and_find_principal(store: Store) -> None:
    who = await owner(store)
    expires = time.time() + 3600
    cred_id = await add_token(store, who, "tok_alice_1", expires_at=expires)
    found = await store.find_principal("hash-tok_alice_1")
    assert found is not None
    assert (found.user_id, found.user_name) == (who.user_id, "alice")
    assert (found.application_id, found.credential_id) == (who.application_id, cred_id)
    assert found.apis == frozenset({"kling.videos", "kling.tasks"})
    assert found.expires_at == expires
    assert not found.revoked and not found.application_disabled
    assert await store.find_principal("hash-unknown") is None


async def test_list_and_count_credentials(store: Store) -> None:
    who = await owner(store)
    assert await store.count_credentials() == 0
    first = await add_token(store, who, "tok_one", apis=("kling.tasks",))
    await add_token(store, who, "tok_two", expires_at=123.5)
    assert await store.count_credentials() == 2
    infos = await store.list_credentials()
    assert infos[0].id == first
    one, two = infos
    assert (one.user_name, one.application_id, one.token_prefix) == (
        "alice",
        who.application_id,
        "tok_on",
    )
    assert one.apis == ("kling.tasks",) and one.expires_at is None and one.revoked_at is None
    assert two.expires_at == 123.5 and two.apis == ("kling.videos", "kling.tasks")


async def test_a_credential_keeps_its_latest_use(store: Store) -> None:
    who = await owner(store)
    first = await add_token(store, who, "tok_one")
    second = await add_token(store, who, "tok_two")
    assert [c.last_used_at for c in await store.list_credentials()] == [None, None]
    await store.touch_credentials({first: 200.5, second: 100.0})
    await store.touch_credentials({first: 150.0})  # reported late by another process
    used = {c.id: c.last_used_at for c in await store.list_credentials()}
    assert used == {first: 200.5, second: 100.0}


async def test_revoke_by_id_and_by_prefix(store: Store) -> None:
    who = await owner(store)
    by_id = await add_token(store, who, "tok_aaaa")
    await add_token(store, who, "tok_bbbb")
    assert await store.revoke_credential(by_id, 1000.0) == 1
    assert await store.revoke_credential(by_id, 1001.0) == 0  # already revoked
    assert await store.revoke_credential("tok_bb", 1002.0) == 1
    assert await store.revoke_credential("nothing", 1003.0) == 0
    for token in ("tok_aaaa", "tok_bbbb"):
        found = await store.find_principal(f"hash-{token}")
        assert found is not None and found.revoked
    assert sorted(i.revoked_at or 0 for i in await store.list_credentials()) == [1000.0, 1002.0]


async def test_set_application(store: Store) -> None:
    who = await owner(store)
    await add_token(store, who, "tok_app")
    assert await store.set_application("alice", disabled=True)
    found = await store.find_principal("hash-tok_app")
    assert found is not None and found.application_disabled
    assert await store.set_application("alice", max_in_flight=3)  # disabled left as it was
    found = await store.find_principal("hash-tok_app")
    assert found is not None and found.application_disabled
    app = await store.find_application("alice")
    assert app is not None and app.max_in_flight == 3 and app.disabled
    assert await store.set_application("alice", disabled=False)
    app = await store.find_application("alice")
    assert app is not None and app.max_in_flight == 3 and not app.disabled
    assert await store.set_application("alice", max_in_flight=0)  # 0: no limit
    app = await store.find_application("alice")
    assert app is not None and app.max_in_flight is None
    assert not await store.set_application("nobody", disabled=True)


# -- tasks: the API side


async def test_insert_then_get_record(store: Store) -> None:
    alice, bob = await owner(store), await owner(store, "bob")
    task = await insert(store, alice)
    record = await store.get_task_record(alice.user_id, task.id)
    assert type(record) is bytes and record == task.record_json()
    assert await store.get_task_record(bob.user_id, task.id) is None
    assert await store.get_task_record(alice.user_id, "no-such-task") is None


async def test_get_task_records_batch_returns_only_own(store: Store) -> None:
    alice, bob = await owner(store), await owner(store, "bob")
    mine = [await insert(store, alice) for _ in range(3)]
    theirs = await insert(store, bob)
    ids = [t.id for t in mine] + [theirs.id, "no-such-task"]
    records = await store.get_task_records(alice.user_id, ids)
    assert records == {t.id: t.record_json() for t in mine}
    assert all(type(r) is bytes for r in records.values())
    assert await store.get_task_records(alice.user_id, []) == {}


async def test_list_task_records(store: Store) -> None:
    alice, bob = await owner(store), await owner(store, "bob")
    tasks = [
        await insert(store, alice, created_at=1000.0 + i, type_="other" if i % 2 else "videos")
        for i in range(5)
    ]
    await insert(store, bob, created_at=1002.5)
    newest_first = [t.record_json() for t in reversed(tasks)]

    assert await store.list_task_records(alice.user_id, TaskFilter()) == (newest_first, 5)
    page = await store.list_task_records(alice.user_id, TaskFilter(limit=2, offset=1))
    assert page == (newest_first[1:3], 5)
    assert await store.list_task_records(alice.user_id, TaskFilter(offset=10)) == ([], 5)
    videos = await store.list_task_records(alice.user_id, TaskFilter(type="videos"))
    assert videos == ([tasks[4].record_json(), tasks[2].record_json(), tasks[0].record_json()], 3)
    ranged = TaskFilter(created_at_min=1001.0, created_at_max=1003.0)
    assert await store.list_task_records(alice.user_id, ranged) == (newest_first[1:4], 3)
    assert await store.list_task_records("nobody", TaskFilter()) == ([], 0)


async def test_delete_task_own_vs_foreign(store: Store) -> None:
    alice, bob = await owner(store), await owner(store, "bob")
    task = await insert(store, alice)
    assert not await store.delete_task(bob.user_id, task.id)
    assert await store.get_task_record(alice.user_id, task.id) is not None
    assert await store.delete_task(alice.user_id, task.id)
    assert await store.get_task_record(alice.user_id, task.id) is None
    assert not await store.delete_task(alice.user_id, task.id)


async def test_find_user_video(store: Store) -> None:
    alice, bob = await owner(store), await owner(store, "bob")
    done = await insert(store, alice)
    running = await insert(store, alice)
    claimed = {s.task.id: s.task for s in await store.claim_due_tasks("w1", time.time(), 9, LEASE)}
    finish(claimed[done.id], video_id="video-1")
    claimed[running.id].state = TaskState.PROCESSING
    claimed[running.id].response = {"video_id": "video-2", "state": "processing"}
    for task, next_check in ((claimed[done.id], None), (claimed[running.id], 1e12)):
        outcome = Outcome(next_check)
        assert await store.save_task(
            task, expected_version=task.version, worker_id="w1", outcome=outcome
        )
    assert await store.find_user_video(alice.user_id, "video-1") == done.id
    assert await store.find_user_video(bob.user_id, "video-1") is None
    assert await store.find_user_video(alice.user_id, "video-2") is None  # not succeeded
    assert await store.find_user_video(alice.user_id, "nope") is None


async def test_idempotency(store: Store) -> None:
    alice, bob = await owner(store), await owner(store, "bob")
    now = time.time()
    first = await store.insert_task(
        new_task(alice),
        next_check_at=now,
        deadline_at=now + 60,
        idempotency_key="k",
        request_hash="h1",
    )
    again = await store.insert_task(
        new_task(alice),
        next_check_at=now,
        deadline_at=now + 60,
        idempotency_key="k",
        request_hash="h1",
    )
    assert again.id == first.id and again.record_json() == first.record_json()
    with pytest.raises(IdempotencyConflict):
        await store.insert_task(
            new_task(alice),
            next_check_at=now,
            deadline_at=now + 60,
            idempotency_key="k",
            request_hash="h2",
        )
    theirs = await store.insert_task(
        new_task(bob),
        next_check_at=now,
        deadline_at=now + 60,
        idempotency_key="k",
        request_hash="h2",
    )
    assert theirs.id != first.id
    assert (await store.list_task_records(alice.user_id, TaskFilter()))[1] == 1
    assert (await store.list_task_records(bob.user_id, TaskFilter()))[1] == 1


async def test_expired_idempotency_key_is_reused(store: Store) -> None:
    alice = await owner(store)
    now = time.time()
    old = new_task(alice, created_at=now - IDEMPOTENCY_WINDOW - 60)
    await store.insert_task(
        old, next_check_at=now, deadline_at=now, idempotency_key="k", request_hash="h1"
    )
    fresh = await store.insert_task(
        new_task(alice), next_check_at=now, deadline_at=now, idempotency_key="k", request_hash="h2"
    )
    assert fresh.id != old.id
    assert set(await store.get_task_records(alice.user_id, [old.id, fresh.id])) == {
        old.id,
        fresh.id,
    }
    replay = await store.insert_task(
        new_task(alice), next_check_at=now, deadline_at=now, idempotency_key="k", request_hash="h2"
    )
    assert replay.id == fresh.id


# -- tasks: the worker side


async def test_load_task(store: Store) -> None:
    alice = await owner(store)
    task = await insert(store, alice, due=5.0)
    stored = await store.load_task(task.id)
    assert stored is not None and stored.task == task
    # JSON columns keep the request's key order (the record is re-rendered from them).
    assert list(stored.task.request) == list(task.request)
    assert stored.attempts == 0 and stored.lease_owner is None
    assert stored.next_check_at > time.time() and stored.deadline_at > stored.next_check_at
    assert await store.load_task("no-such-task") is None


async def test_claim_due_tasks_only_due_and_limit(store: Store) -> None:
    alice = await owner(store)
    due = [await insert(store, alice, due=-3.0 + i) for i in range(3)]
    later = await insert(store, alice, due=600.0)
    now = time.time()
    first = await store.claim_due_tasks("w1", now, 2, LEASE)
    assert [s.task.id for s in first] and {s.task.id for s in first} == {due[0].id, due[1].id}
    for s in first:
        assert s.lease_owner == "w1" and s.task.version == 1
        assert s.next_check_at == pytest.approx(now + LEASE)
    second = await store.claim_due_tasks("w2", now, 5, LEASE)
    assert [s.task.id for s in second] == [due[2].id]
    assert await store.claim_due_tasks("w3", now, 5, LEASE) == []
    assert later.id not in {s.task.id for s in first + second}


async def test_lease_blocks_claims_until_it_runs_out(store: Store) -> None:
    alice = await owner(store)
    task = await insert(store, alice, due=-1.0)
    now = time.time()
    assert len(await store.claim_due_tasks("w1", now, 10, LEASE)) == 1
    assert await store.claim_due_tasks("w2", now + LEASE - 1, 10, LEASE) == []
    again = await store.claim_due_tasks("w2", now + LEASE + 1, 10, LEASE)
    assert [(s.task.id, s.lease_owner, s.task.version) for s in again] == [(task.id, "w2", 2)]


async def test_save_task_compare_and_set(store: Store) -> None:
    alice = await owner(store)
    stored = await claim_one(store, await insert(store, alice, due=-1.0))
    task, version = stored.task, stored.task.version
    task.state, task.job_id, task.started_at = TaskState.PROCESSING, "job-1", time.time()
    task.response = progress_response(task.id, TaskState.PROCESSING)
    nxt = time.time() + 10
    assert await store.save_task(
        task, expected_version=version, worker_id="w1", outcome=Outcome(nxt, attempts=4)
    )
    assert task.version == version + 1
    assert await store.get_task_record(alice.user_id, task.id) == task.record_json()
    loaded = await store.load_task(task.id)
    assert loaded is not None and loaded.task == task
    assert loaded.task.response is not None and task.response is not None
    assert list(loaded.task.response) == list(task.response)
    assert (loaded.attempts, loaded.next_check_at, loaded.lease_owner) == (4, nxt, None)
    # A stale version loses, and changes nothing.
    task.job_id = "job-stale"
    assert not await store.save_task(
        task, expected_version=version, worker_id="w1", outcome=Outcome(nxt)
    )
    loaded = await store.load_task(task.id)
    assert loaded is not None and loaded.task.job_id == "job-1"


async def test_save_keeps_attempts_and_lease_when_asked(store: Store) -> None:
    alice = await owner(store)
    stored = await claim_one(store, await insert(store, alice, due=-1.0))
    task = stored.task
    outcome = Outcome(time.time() + 5, attempts=2)
    assert await store.save_task(
        task, expected_version=task.version, worker_id="w1", outcome=outcome
    )
    outcome = Outcome(time.time() + 5, keep_lease=True)
    assert await store.save_task(
        task, expected_version=task.version, worker_id="w1", outcome=outcome
    )
    loaded = await store.load_task(task.id)
    assert loaded is not None and (loaded.attempts, loaded.lease_owner) == (2, "w1")


async def test_finished_task_clears_next_check_and_cannot_be_saved(store: Store) -> None:
    alice = await owner(store)
    stored = await claim_one(store, await insert(store, alice, due=-1.0))
    task = stored.task
    finish(task)
    # The outcome's next check is ignored for a terminal state.
    outcome = Outcome(time.time() - 1)
    assert await store.save_task(
        task, expected_version=task.version, worker_id="w1", outcome=outcome
    )
    loaded = await store.load_task(task.id)
    assert (
        loaded is not None
        and loaded.next_check_at == 0.0
        and loaded.task.state is TaskState.SUCCEED
    )
    assert await store.claim_due_tasks("w2", time.time() + 1e6, 10, LEASE) == []
    assert not await store.save_task(
        task, expected_version=task.version, worker_id="w1", outcome=outcome
    )


async def test_callbacks_enqueued_with_the_state(store: Store) -> None:
    alice = await owner(store)
    task = await insert(store, alice, due=-1.0)
    stored = await claim_one(store, task)
    t, v = stored.task, stored.task.version
    finish(t)
    cbs = (("http://hook/a", "processing", b'{"p":1}'), ("http://hook/b", "succeed", b'{"s":1}'))
    # A lost compare-and-set enqueues nothing.
    assert not await store.save_task(
        t, expected_version=v - 1, worker_id="w1", outcome=Outcome(None, callbacks=cbs)
    )
    assert await store.list_callbacks(task_id=t.id) == []
    before = time.time()
    assert await store.save_task(
        t, expected_version=v, worker_id="w1", outcome=Outcome(None, callbacks=cbs)
    )
    rows = sorted(await store.list_callbacks(task_id=t.id), key=lambda d: d.url)
    assert [(d.url, d.event, d.body, d.state, d.attempts) for d in rows] == [
        (url, event, body, "pending", 0) for url, event, body in cbs
    ]
    assert all(d.user_id == alice.user_id and d.next_attempt_at is not None for d in rows)
    # The record shows the final callback as pending, rendered in the same write.
    assert t.callback is not None and t.callback["url"] == "http://hook/b"
    assert t.callback["state"] == "pending" and t.callback["next_attempt_at"] >= before
    assert await store.get_task_record(alice.user_id, t.id) == t.record_json()


async def test_release_tasks(store: Store) -> None:
    alice = await owner(store)
    tasks = [await insert(store, alice, due=-1.0) for _ in range(2)]
    now = time.time()
    assert len(await store.claim_due_tasks("w1", now, 10, LEASE)) == 2
    await store.release_tasks("w2", [t.id for t in tasks], now)  # not w2's leases: no-op
    assert await store.claim_due_tasks("w3", now, 10, LEASE) == []
    await store.release_tasks("w1", [t.id for t in tasks] + ["no-such-task"], now)
    for t in tasks:
        loaded = await store.load_task(t.id)
        assert loaded is not None and loaded.lease_owner is None and loaded.next_check_at == now
    assert len(await store.claim_due_tasks("w3", now, 10, LEASE)) == 2


# -- callbacks


async def _enqueue(store: Store, who: Owner, *events: str) -> Task:
    stored = await claim_one(store, await insert(store, who, due=-1.0))
    task = stored.task
    if any(e in ("succeed", "failed") for e in events):
        finish(task)
    cbs = tuple((f"http://hook/{i}", e, b"{}") for i, e in enumerate(events))
    outcome = Outcome(time.time() + 60, callbacks=cbs)
    assert await store.save_task(
        task, expected_version=task.version, worker_id="w1", outcome=outcome
    )
    return task


async def test_claim_due_callbacks(store: Store) -> None:
    alice = await owner(store)
    await _enqueue(store, alice, "processing", "succeed")
    now = time.time() + 1
    first = await store.claim_due_callbacks("d1", now, 1, LEASE)
    assert len(first) == 1 and first[0].next_attempt_at == pytest.approx(now + LEASE)
    second = await store.claim_due_callbacks("d2", now, 5, LEASE)
    assert len(second) == 1 and second[0].id != first[0].id
    assert await store.claim_due_callbacks("d3", now, 5, LEASE) == []
    assert len(await store.claim_due_callbacks("d3", now + LEASE + 1, 5, LEASE)) == 2


async def _attempt(
    store: Store, delivery: CallbackDelivery, worker: str, state: str, status: int
) -> None:
    delivery.state, delivery.attempts, delivery.last_status = state, delivery.attempts + 1, status
    delivery.next_attempt_at = None
    delivery.delivered_at = time.time() if state == "delivered" else None
    delivery.last_error = None if state == "delivered" else f"HTTP {status}"
    await store.finish_callback_attempt(delivery, worker)


async def test_finish_final_callback_updates_the_record(store: Store) -> None:
    alice = await owner(store)
    task = await _enqueue(store, alice, "processing", "succeed")
    claimed = await store.claim_due_callbacks("d1", time.time() + 1, 5, LEASE)
    by_event = {d.event: d for d in claimed}
    version = (await store.load_task(task.id)).task.version  # type: ignore[union-attr]
    # Not the lease holder: nothing is written.
    await _attempt(store, by_event["succeed"], "intruder", "delivered", 200)
    assert (await store.list_callbacks(task_id=task.id))[0].state == "pending"
    await _attempt(store, by_event["processing"], "d1", "delivered", 200)
    await _attempt(store, by_event["succeed"], "d1", "delivered", 204)
    rows = {d.event: d for d in await store.list_callbacks(task_id=task.id)}
    assert rows["succeed"].state == "delivered" and rows["succeed"].last_status == 204
    loaded = await store.load_task(task.id)
    assert loaded is not None and loaded.task.version == version  # the version is not bumped
    assert loaded.task.callback == callback_view(by_event["succeed"])
    assert await store.get_task_record(alice.user_id, task.id) == loaded.task.record_json()


async def test_list_failed_callbacks_and_redeliver(store: Store) -> None:
    alice = await owner(store)
    task = await _enqueue(store, alice, "processing", "succeed")
    await _enqueue(store, alice, "processing")
    claimed = await store.claim_due_callbacks("d1", time.time() + 1, 5, LEASE)
    failing = next(d for d in claimed if d.task_id == task.id and d.event == "succeed")
    await _attempt(store, failing, "d1", "failed", 500)
    failed = await store.list_callbacks(failed_only=True)
    assert [(d.id, d.state, d.last_error) for d in failed] == [(failing.id, "failed", "HTTP 500")]
    assert len(await store.list_callbacks()) == 3
    assert len(await store.list_callbacks(limit=2)) == 2
    assert len(await store.list_callbacks(task_id=task.id, failed_only=True)) == 1
    record = msgspec.json.decode(await store.get_task_record(alice.user_id, task.id) or b"{}")
    assert record["callback"]["state"] == "failed"
    now = time.time() + 1
    assert await store.redeliver_callback(failing.id, now)
    assert not await store.redeliver_callback("no-such-delivery", now)
    # Queued again after a failure: still failing (retrying) until an attempt goes through.
    (retrying,) = await store.list_callbacks(failed_only=True)
    assert (retrying.id, retrying.state, retrying.attempts) == (failing.id, "pending", 1)
    again = await store.claim_due_callbacks("d2", now, 5, LEASE)
    assert [d.id for d in again] == [failing.id]
    await _attempt(store, again[0], "d2", "delivered", 200)
    assert await store.list_callbacks(failed_only=True) == []


async def test_redeliver_leaves_a_delivery_being_sent_alone(store: Store) -> None:
    alice = await owner(store)
    task = await _enqueue(store, alice, "succeed")
    sent_at = time.time() + 1
    (sending,) = await store.claim_due_callbacks("d1", sent_at, 5, LEASE)
    # An operator's redeliver during the send: no second send, the first one's result stands.
    assert await store.redeliver_callback(sending.id, sent_at + 1)
    assert await store.claim_due_callbacks("d2", sent_at + 1, 5, LEASE) == []
    await _attempt(store, sending, "d1", "failed", 500)
    (failed,) = await store.list_callbacks(task_id=task.id)
    assert (failed.state, failed.last_status) == ("failed", 500)
    # A lease that ran out (its deliverer died) is no send under way: redelivered.
    (stuck,) = await _claim_after_redeliver(store, sending.id, sent_at + 2, "d3")
    late = sent_at + 3 + LEASE
    assert await store.redeliver_callback(stuck.id, late)
    assert [d.id for d in await store.claim_due_callbacks("d4", late, 5, LEASE)] == [stuck.id]


async def _claim_after_redeliver(
    store: Store, delivery_id: str, now: float, worker_id: str
) -> list[CallbackDelivery]:
    assert await store.redeliver_callback(delivery_id, now)
    return await store.claim_due_callbacks(worker_id, now, 5, LEASE)


async def test_failing_callbacks_include_those_retrying(store: Store) -> None:
    alice = await owner(store)
    await _enqueue(store, alice, "succeed")
    (first,) = await store.claim_due_callbacks("d1", time.time() + 1, 5, LEASE)
    assert await store.list_callbacks(failed_only=True) == []  # never attempted: not failing
    await _attempt(store, first, "d1", "pending", 503)
    (retrying,) = await store.list_callbacks(failed_only=True)
    assert (retrying.state, retrying.attempts, retrying.last_status) == ("pending", 1, 503)


# -- concurrency within one store (coroutines of one process)


async def test_concurrent_claims_never_share_a_task(store: Store) -> None:
    alice = await owner(store)
    ids = {(await insert(store, alice, due=-1.0)).id for _ in range(30)}
    now = time.time()

    async def drain(worker: str) -> list[str]:
        got: list[str] = []
        while batch := await store.claim_due_tasks(worker, now, 3, LEASE):
            got += [s.task.id for s in batch]
            await asyncio.sleep(0)
        return got

    runs = await asyncio.gather(*(drain(f"w{i}") for i in range(5)))
    claimed = [task_id for run in runs for task_id in run]
    assert len(claimed) == len(set(claimed)) == 30 and set(claimed) == ids


async def test_concurrent_saves_of_one_version_one_wins(store: Store) -> None:
    alice = await owner(store)
    stored = await claim_one(store, await insert(store, alice, due=-1.0))
    copies = [await store.load_task(stored.task.id) for _ in range(5)]
    callbacks = (("http://h", "processing", b"{}"),)
    results = await asyncio.gather(
        *(
            store.save_task(
                c.task,
                expected_version=stored.task.version,
                worker_id="w1",
                outcome=Outcome(time.time() + 60, callbacks=callbacks),
            )
            for c in copies
            if c is not None
        )
    )
    assert sorted(results) == [False] * 4 + [True]
    assert len(await store.list_callbacks(task_id=stored.task.id)) == 1


async def test_concurrent_idempotent_creates_give_one_task(store: Store) -> None:
    alice = await owner(store)
    now = time.time()
    made = await asyncio.gather(
        *(
            store.insert_task(
                new_task(alice),
                next_check_at=now,
                deadline_at=now + 60,
                idempotency_key="same",
                request_hash="h",
            )
            for _ in range(6)
        )
    )
    assert len({t.id for t in made}) == 1
    assert (await store.list_task_records(alice.user_id, TaskFilter()))[1] == 1


async def test_a_caller_changing_its_task_changes_nothing_stored(store: Store) -> None:
    alice = await owner(store)
    task = await insert(store, alice)
    record = await store.get_task_record(alice.user_id, task.id)
    task.request["prompt"], task.job_id = "changed", "not-saved"
    assert await store.get_task_record(alice.user_id, task.id) == record
    loaded = await store.load_task(task.id)
    assert loaded is not None and loaded.task.request["prompt"] == "a cat"
    loaded.task.state = TaskState.FAILED
    again = await store.load_task(task.id)
    assert again is not None and again.task.state is TaskState.PENDING


# -- signing secrets


async def test_first_secret_is_kept(store: Store) -> None:
    alice, bob = await owner(store), await owner(store, "bob")
    assert await store.find_user_id("alice") == alice.user_id
    assert await store.find_user_id("nobody") is None
    assert await store.put_first_secret(alice.user_id, "whsec_a1", 100.0) == "whsec_a1"
    assert await store.put_first_secret(alice.user_id, "whsec_a2", 101.0) == "whsec_a1"
    assert await store.put_first_secret(bob.user_id, "whsec_b1", 102.0) == "whsec_b1"
    assert await store.signing_secrets(alice.user_id, 200.0) == ["whsec_a1"]


async def test_rotation_keeps_the_old_secret_for_its_grace(store: Store) -> None:
    alice = await owner(store)
    await store.put_first_secret(alice.user_id, "whsec_1", 100.0)
    await store.replace_secret(alice.user_id, "whsec_2", 50.0, 110.0)
    assert await store.signing_secrets(alice.user_id, 120.0) == ["whsec_2", "whsec_1"]
    assert await store.signing_secrets(alice.user_id, 160.0) == ["whsec_2"]  # grace over
    assert await store.put_first_secret(alice.user_id, "whsec_x", 161.0) == "whsec_2"
    # A later rotation drops the expired secret and retires the current one.
    await store.replace_secret(alice.user_id, "whsec_3", 50.0, 170.0)
    assert await store.signing_secrets(alice.user_id, 171.0) == ["whsec_3", "whsec_2"]


async def test_concurrent_rotations_take_turns(store: Store) -> None:
    # Defect: on PostgreSQL two rotations at once both retired the same secret and the second
    # failed on the one-current-secret index.
    alice = await owner(store)
    await store.put_first_secret(alice.user_id, "whsec_0", 100.0)
    new = [f"whsec_{i}" for i in range(1, 9)]
    await asyncio.gather(*(store.replace_secret(alice.user_id, s, 60.0, 110.0) for s in new))
    active = await store.signing_secrets(alice.user_id, 111.0)
    assert sorted(active) == sorted(["whsec_0", *new])  # every one retired in turn, in grace
    assert active[0] in new
    assert await store.put_first_secret(alice.user_id, "whsec_x", 112.0) == active[0]


async def test_concurrent_first_uses_agree(store: Store) -> None:
    alice = await owner(store)
    got = await asyncio.gather(
        *(store.put_first_secret(alice.user_id, f"whsec_{i}", 100.0) for i in range(8))
    )
    assert len(set(got)) == 1
    assert await store.signing_secrets(alice.user_id, 101.0) == [got[0]]


# -- migrations


async def test_migrate_rerun_is_a_noop(store: Store) -> None:
    assert await store.migrate() == []


def test_backends_have_the_same_migrations() -> None:
    assert migration_names("sqlite") == migration_names("postgres")
    assert migration_names("sqlite")[:2] == ["0001_initial.sql", "0002_callbacks.sql"]


async def test_migrate_fresh_then_noop(sql_backend: str, fresh_url: str) -> None:
    st = await open_store(fresh_url)
    try:
        assert await st.migrate() == migration_names(sql_backend)
        assert await st.migrate() == []
        assert await st.count_credentials() == 0
    finally:
        await st.close()
