"""Links in records do not depend on which process wrote them (issue 13): a worker that knows
another address (or none: its default ``http://127.0.0.1:8000``) finishes the task, and every
answer of the API links the video under the API's own public URL; the callbacks that worker
delivers link it under the worker's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kling_gateway.infra.notify import LocalTaskEvents
from kling_gateway.runtime.worker import start_worker
from tests.harness import AppHarness, make_settings

MUG = {"action": "text2video", "prompt": "White ceramic coffee mug on marble", "duration": 5}
API_URL = "https://kling.example"


async def test_a_record_written_by_another_worker_links_under_the_apis_url(
    tmp_path: Path,
) -> None:
    api = make_settings(tmp_path, worker=False, public_url=API_URL)
    # The stand-alone worker: the same data directory, no public URL of its own.
    worker = make_settings(tmp_path, local_delay=0.05)
    assert worker.resolved_files_url == "http://127.0.0.1:8000"
    async with AppHarness.start(api) as gateway:
        events = LocalTaskEvents()
        stop = await start_worker(worker, gateway.store, events)
        try:
            created = (await gateway.videos({**MUG, "async": True})).json()
            task_id = created["task_id"]
            done = await gateway.tasks({"action": "retrieve", "id": task_id, "wait": 30})
        finally:
            await stop()
        link = f"{API_URL}/files/videos/{_video_id(done.json())}.mp4"
        assert done.json()["response"]["video_url"] == link
        plain = await gateway.tasks({"action": "retrieve", "id": task_id})
        assert plain.json()["response"]["video_url"] == link
        batch = await gateway.tasks({"action": "retrieve_batch", "ids": [task_id]})
        assert [item["response"]["video_url"] for item in batch.json()["items"]] == [link]
        listing = await gateway.tasks({"action": "retrieve_batch"})
        assert [item["response"]["video_url"] for item in listing.json()["items"]] == [link]
        events = await gateway.client.get(
            f"/kling/tasks/{task_id}/events", headers=gateway.headers()
        )
        assert events.status_code == 200 and f'"video_url":"{link}"' in events.text
        # Stored: the stable path only, whatever the writer's address.
        stored = await gateway.store.get_task_record(gateway.user_ids["alice"], task_id)
        assert stored is not None and b'"video_url":"/files/videos/' in stored
        assert b"127.0.0.1:8000" not in stored


def _video_id(record: dict[str, Any]) -> str:
    assert record["response"]["state"] == "succeed", record
    return str(record["response"]["video_id"])
