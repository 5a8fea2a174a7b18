"""`kling-gateway status`: the queue, the oldest waiting task, in-flight tasks per worker and
per upstream account, as text and as JSON."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from kling_gateway.cli import main
from kling_gateway.domain.accounts import Account
from tests.harness import make_task, open_sqlite_store


async def test_status_shows_queue_workers_and_accounts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = await open_sqlite_store(tmp_path)
    now = time.time()
    try:
        waiting = [make_task("alice", created_at=now - age) for age in (120, 60, 5)]
        for task in waiting:
            await store.insert_task(task, next_check_at=now, deadline_at=now + 3600)
        await store.claim_due_tasks("host:1:w", now, 1, 120.0)  # the oldest, leased
        await store.add_upstream_account(
            Account(name="sg-1", access_key="ak", max_concurrency=5), "v1:sealed", now
        )
    finally:
        await store.close()
    url = f"sqlite:///{tmp_path / 'store.db'}"

    assert await asyncio.to_thread(main, ["status", "--database-url", url]) == 0
    text = capsys.readouterr().out
    assert "queue depth: 3 waiting to be submitted" in text
    assert f"oldest waiting: {waiting[0].id}" in text and "(120 s ago)" in text
    assert "host:1:w  1" in text
    assert "sg-1     0/5        enabled" in text

    assert await asyncio.to_thread(main, ["status", "--json", "--database-url", url]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["queue_depth"] == 3
    assert doc["tasks"] == [{"kind": "videos", "state": "pending", "count": 3}]
    assert doc["oldest_waiting"]["task_id"] == waiting[0].id
    assert doc["in_flight_by_worker"] == {"host:1:w": 1}
    assert doc["accounts"] == [
        {"name": "sg-1", "in_flight": 0, "max_concurrency": 5, "state": "enabled",
         "last_error": None}
    ]  # fmt: skip
