"""Helpers of the store tests: opening stores by URL, and making accounts and tasks."""

from __future__ import annotations

import time
import uuid
from typing import Any

import msgspec

from kling_gateway.domain.task import Task
from kling_gateway.protocol.task import TaskState, success_response
from kling_gateway.storage import open_store as store_for_url
from kling_gateway.storage.base import Store, StoredTask
from kling_gateway.storage.migrations import migration_scripts

LEASE = 30.0


async def open_store(url: str) -> Store:
    store = store_for_url(url)
    await store.open()
    return store


async def migrated_store(url: str) -> Store:
    """An opened, migrated store with no rows."""
    st = await open_store(url)
    try:
        await st.migrate()
        if url.startswith("postgresql"):
            await truncate_postgres(url)
    except BaseException:
        await st.close()
        raise
    return st


async def truncate_postgres(url: str) -> None:
    """Empty every table of the database at ``url`` but the migration record."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        names = await conn.fetchval(
            "SELECT string_agg(quote_ident(tablename), ', ') FROM pg_tables "
            "WHERE schemaname = current_schema() AND tablename <> 'schema_migrations'"
        )
        await conn.execute(f"TRUNCATE {names}")
    finally:
        await conn.close()


def migration_names(backend: str) -> list[str]:
    return [name for name, _ in migration_scripts(backend)]


class Owner(msgspec.Struct):
    user_id: str
    application_id: str
    credential_id: str


async def owner(store: Store, name: str = "alice") -> Owner:
    user_id, app_id = await store.ensure_account(name, time.time())
    return Owner(user_id, app_id, f"cred-{name}")


def new_task(
    who: Owner, *, created_at: float | None = None, type_: str = "videos", prompt: str = "a cat"
) -> Task:
    task_id = str(uuid.uuid4())
    return Task(
        id=task_id,
        object_id=uuid.uuid4().hex[:24],
        user_id=who.user_id,
        application_id=who.application_id,
        credential_id=who.credential_id,
        trace_id=str(uuid.uuid4()),
        # Keys deliberately out of sorted order: the record must keep them as sent.
        request={"prompt": prompt, "model_name": "kling-v1", "duration": "5", "mode": "std"},
        created_at=time.time() if created_at is None else created_at,
        type=type_,
    )


async def insert(store: Store, who: Owner, *, due: float = 0.0, **kw: Any) -> Task:
    task = new_task(who, **kw)
    now = time.time()
    return await store.insert_task(task, next_check_at=now + due, deadline_at=now + 3600)


async def claim_one(store: Store, task: Task, worker: str = "w1") -> StoredTask:
    claimed = await store.claim_due_tasks(worker, time.time(), 100, LEASE)
    (stored,) = [s for s in claimed if s.task.id == task.id]
    return stored


async def add_token(store: Store, who: Owner, token: str, **kw: Any) -> str:
    args: dict[str, Any] = {"apis": ("kling.videos", "kling.tasks"), "expires_at": None}
    args.update(kw)
    return await store.add_credential(
        user_id=who.user_id,
        application_id=who.application_id,
        token_hash=f"hash-{token}",
        token_prefix=token[:6],
        now=time.time(),
        **args,
    )


def finish(task: Task, state: TaskState = TaskState.SUCCEED, video_id: str = "v1") -> None:
    task.state = state
    task.finished_at = time.time()
    task.response = success_response(
        task.id, video_id=video_id, video_url="http://x/v.mp4", duration="5.0"
    )
