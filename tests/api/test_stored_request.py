"""A create with a large body of unknown fields stores them within their budget: the record
(and every retrieve and batch of it) stays small, and says what was dropped."""

from __future__ import annotations

from kling_gateway.domain.request_budget import DROPPED_KEY, UNKNOWN_FIELDS_BUDGET
from tests.harness import AppHarness


async def test_unknown_fields_beyond_the_budget_are_not_stored(gateway: AppHarness) -> None:
    body = {
        "action": "text2video",
        "prompt": "a mug",
        "async": True,
        "client_tag": "kept",
        "junk": "x" * 900_000,
    }
    created = await gateway.videos(body)
    assert created.status_code == 200, created.text
    task_id = created.json()["task_id"]
    retrieved = await gateway.tasks({"action": "retrieve", "id": task_id})
    assert len(retrieved.content) < 2 * UNKNOWN_FIELDS_BUDGET
    request = retrieved.json()["request"]
    assert request["client_tag"] == "kept" and "junk" not in request
    assert request[DROPPED_KEY]["fields"] == ["junk"]
    stored = await gateway.store.load_task(task_id)
    assert stored is not None and "junk" not in stored.task.request
