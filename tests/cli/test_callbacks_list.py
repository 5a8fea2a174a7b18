"""`kling-gateway callbacks list --failed` shows the deliveries failing now: those retrying
after a failed attempt as well as those that gave up; not the delivered or untried ones."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from kling_gateway.cli import main
from kling_gateway.storage.base import Outcome
from tests.harness import make_task, open_sqlite_store


async def test_failed_lists_retrying_and_given_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = await open_sqlite_store(tmp_path)
    try:
        now = time.time()
        task = make_task("alice")
        await store.insert_task(task, next_check_at=now, deadline_at=now + 3600)
        hooks = tuple((f"http://hook.example/{n}", "task.succeed", b"{}") for n in range(3))
        outcome = Outcome(next_check_at=None, callbacks=hooks)
        assert await store.save_task(task, expected_version=0, worker_id=None, outcome=outcome)
        claimed = sorted(
            await store.claim_due_callbacks("d1", now + 1, 5, 60.0), key=lambda d: d.url
        )
        retrying, gave_up, untried = claimed
        retrying.state, retrying.attempts, retrying.last_status = "pending", 1, 503
        retrying.last_error, retrying.next_attempt_at = "HTTP 503", now + 30
        gave_up.state, gave_up.attempts, gave_up.last_status = "failed", 10, 500
        gave_up.last_error = "HTTP 500; gave up after 10 attempts"
        for delivery in (retrying, gave_up):
            await store.finish_callback_attempt(delivery, "d1")
    finally:
        await store.close()

    url = f"sqlite:///{tmp_path / 'store.db'}"
    assert (
        await asyncio.to_thread(main, ["callbacks", "list", "--failed", "--database-url", url]) == 0
    )
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()[1:] if not line.startswith(" ")}
    assert set(lines) == {retrying.id, gave_up.id}
    assert " retrying " in lines[retrying.id] and " failed " in lines[gave_up.id]
    assert "last error: HTTP 503" in out
    assert untried.id not in out
