"""retrieve_batch answers past the first chunk are streamed from the store chunk by chunk,
with exactly the bytes the one-piece answer had."""

from __future__ import annotations

import random
import time

import pytest

from kling_gateway.api.routes import tasks as tasks_route
from tests.harness import AppHarness, make_task


async def stored_ids(gateway: AppHarness, user: str, n: int, pad: int = 0) -> list[str]:
    ids = []
    for i in range(n):
        task = make_task(gateway.user_ids[user], padding="p" * (pad * (i % 7)))
        await gateway.store.insert_task(task, next_check_at=0, deadline_at=time.time() + 60)
        ids.append(task.id)
    return ids


def expected(records: dict[str, bytes], ids: list[str]) -> bytes:
    items = [records[i] for i in dict.fromkeys(ids) if i in records]
    return b'{"items":[' + b",".join(items) + b'],"count":' + str(len(items)).encode() + b"}"


@pytest.mark.parametrize(("n", "pad"), [(3, 0), (100, 10), (101, 0), (640, 3_000)])
async def test_the_streamed_answer_has_the_same_bytes(
    gateway: AppHarness, monkeypatch: pytest.MonkeyPatch, n: int, pad: int
) -> None:
    # A small budget: the big records come in many small chunks.
    monkeypatch.setattr(tasks_route, "CHUNK_BUDGET_BYTES", 64 * 1024)
    monkeypatch.setattr(tasks_route, "SEND_BYTES", 20_000)
    await gateway.add_user("bob")
    mine = await stored_ids(gateway, "alice", n, pad)
    foreign = await stored_ids(gateway, "bob", 3)
    asked = [*mine, "no-such-id", *foreign, *mine[: n // 2]]
    random.Random(n).shuffle(asked)
    records = await gateway.store.get_task_records(gateway.user_ids["alice"], mine)
    response = await gateway.tasks({"action": "retrieve_batch", "ids": asked})
    assert response.status_code == 200
    assert response.content == expected(records, asked)
    assert response.json()["count"] == n
    streamed = len(set(asked)) > tasks_route.FIRST_CHUNK
    assert ("content-length" in response.headers) is not streamed
    assert response.headers["x-trace-id"]


def test_chunks_shrink_for_large_records_and_grow_for_small_ones() -> None:
    budget = tasks_route.CHUNK_BUDGET_BYTES
    assert tasks_route._next_chunk_size([b"x" * (budget // 10)] * 3) == 10
    assert tasks_route._next_chunk_size([b"x" * budget] * 3) == tasks_route.MIN_CHUNK
    assert tasks_route._next_chunk_size([b"x" * 100] * 3) == tasks_route.MAX_CHUNK
