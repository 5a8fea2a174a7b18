"""Running the real gateway app in a test: settings, store, lifespan, tokens and an HTTP client.

The app is exercised through httpx's ASGI transport (the full ASGI stack, no server socket);
tests that need real sockets use ``serve_asgi`` from ``tests/servers.py``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from kling_gateway.api.app import GatewayApp
from kling_gateway.domain.ids import new_object_id, new_task_id
from kling_gateway.domain.task import Task
from kling_gateway.domain.videos import params_from_stored
from kling_gateway.protocol.task import TaskState
from kling_gateway.runtime.serve import build_app
from kling_gateway.runtime.settings import Settings, load_settings
from kling_gateway.storage.base import Outcome, Store
from kling_gateway.storage.sqlite import SQLiteStore
from kling_gateway.storage.tokens import issue_token
from tests.storage.helpers import truncate_postgres

DEFAULTS: dict[str, Any] = {
    "local_delay": 0.0,
    "local_max_side": 64,
    "rate_limit_per_minute": 0,
    "callback_allow_private": True,
    "check_interval": 0.2,
    "idle_poll_seconds": 0.2,
    "bootstrap_token": False,
}


# The store of the settings made here: None for SQLite in the data directory, else the URL
# of a database (the API suites run once per backend; see ``store_backend`` in conftest.py).
_database_url: str | None = None


def use_database(url: str | None) -> None:
    """Make ``make_settings`` point the gateway at ``url`` (None: back to SQLite)."""
    global _database_url
    _database_url = url


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values = {**DEFAULTS, "data_dir": str(tmp_path / "data"), **overrides}
    if _database_url is not None:
        values.setdefault("database_url", _database_url)
    return load_settings(environ={}, **values)


async def open_sqlite_store(tmp_path: Path) -> SQLiteStore:
    store = SQLiteStore(f"sqlite:///{tmp_path / 'store.db'}")
    await store.open()
    await store.migrate()
    return store


def make_task(user_id: str, *, created_at: float | None = None, **request: Any) -> Task:
    now = time.time() if created_at is None else created_at
    return Task(
        id=new_task_id(),
        object_id=new_object_id(now),
        user_id=user_id,
        application_id="app",
        credential_id="cred",
        trace_id=new_task_id(),
        request=(body := {"action": "text2video", "prompt": "a mug", **request}),
        params=params_from_stored(body),
        created_at=now,
    )


async def insert_finished(store: Store, task: Task, *, video_id: str = "vid-1") -> Task:
    """Store ``task`` and carry it to ``succeed`` through the compare-and-set path."""
    await store.insert_task(task, next_check_at=task.created_at, deadline_at=task.created_at + 3600)
    task.state = TaskState.SUCCEED
    task.job_id = "job-" + task.id[:8]
    task.started_at = task.created_at + 1
    task.finished_at = task.created_at + 5.1
    task.response = {
        "success": True,
        "video_id": video_id,
        "video_url": f"http://cdn.example/{video_id}.mp4",
        "duration": "5.1",
        "state": "succeed",
        "task_id": task.id,
    }
    saved = await store.save_task(
        task, expected_version=0, worker_id=None, outcome=Outcome(next_check_at=None)
    )
    assert saved
    return task


@dataclass
class AppHarness:
    settings: Settings
    app: GatewayApp
    client: httpx.AsyncClient
    tokens: dict[str, str] = field(default_factory=dict)
    user_ids: dict[str, str] = field(default_factory=dict)

    @property
    def store(self) -> Store:
        return self.app.ctx.store

    @classmethod
    @asynccontextmanager
    async def start(cls, settings: Settings) -> AsyncIterator[AppHarness]:
        app = build_app(settings)
        await app.ctx.store.open()
        await app.ctx.store.migrate()
        if settings.uses_postgres:
            # One database per test module: each test starts empty, as on SQLite.
            await truncate_postgres(settings.resolved_database_url)
        async with app.lifespan():
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
                harness = cls(settings, app, client)
                await harness.add_user("alice")
                yield harness

    async def add_user(self, name: str, apis: tuple[str, ...] | None = None) -> str:
        kwargs = {} if apis is None else {"apis": apis}
        issued = await issue_token(self.store, name, **kwargs)
        self.tokens[name] = issued.token
        self.user_ids[name] = issued.user_id
        return issued.token

    def headers(self, user: str = "alice") -> dict[str, str]:
        return {"authorization": f"Bearer {self.tokens[user]}", "accept": "application/json"}

    async def tasks(self, body: Any, user: str = "alice", **kw: Any) -> httpx.Response:
        return await self.client.post("/kling/tasks", json=body, headers=self.headers(user), **kw)

    async def videos(self, body: Any, user: str = "alice", **kw: Any) -> httpx.Response:
        return await self.create("/kling/videos", body, user, **kw)

    async def create(self, path: str, body: Any, user: str = "alice", **kw: Any) -> httpx.Response:
        """POST to one of the create endpoints (``/kling/videos``, ``/kling/motion``, ...)."""
        headers = {**self.headers(user), **kw.pop("headers", {})}
        return await self.client.post(path, json=body, headers=headers, **kw)
