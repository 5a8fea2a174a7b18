"""The local provider through the whole gateway (API, worker, callback deliverer): the
``processing`` callback fires offline, and a deleted task takes its video file along (its
callbacks being dropped is tested with the deliverer, tests/callbacks/test_delivery.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.harness import AppHarness, make_settings
from tests.servers import serve_asgi

TEXT2VIDEO = {"action": "text2video", "prompt": "a paper boat on a pond", "async": True}


@dataclass
class Receiver:
    """A callback receiver on loopback, keeping the bodies it got."""

    url: str = ""
    bodies: list[dict[str, Any]] = field(default_factory=list)

    def events(self) -> list[str]:
        return [str(body.get("state")) for body in self.bodies]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    seen = Receiver()

    async def hook(request: Request) -> Response:
        seen.bodies.append(msgspec.json.decode(await request.body()))
        return Response(status_code=204)

    app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    with serve_asgi(app) as url:
        seen.url = f"{url}/hook"
        yield seen


async def until(condition: Any, what: str, tries: int = 300) -> None:
    for _ in range(tries):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


async def record_of(gateway: AppHarness, task_id: str) -> dict[str, Any]:
    record: dict[str, Any] = (await gateway.tasks({"id": task_id})).json()
    return record


async def test_the_processing_callback_fires_offline(tmp_path: Path, receiver: Receiver) -> None:
    settings = make_settings(tmp_path, worker=True, local_delay=0.3, check_interval=5.0)
    async with AppHarness.start(settings) as gateway:
        request = {**TEXT2VIDEO, "callback_url": receiver.url, "callback_events": ["processing"]}
        created = await gateway.videos(request)
        assert created.status_code == 200, created.text
        task_id = created.json()["task_id"]

        await until(lambda: "succeed" in receiver.events(), "the succeed callback")

    # `processing` first (as soon as the worker took the task), then the final state.
    assert receiver.events() == ["processing", "succeed"]
    assert all(body["task_id"] == task_id for body in receiver.bodies)


async def test_delete_removes_the_video_file_and_its_public_url(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, worker=True, local_delay=0.0)
    async with AppHarness.start(settings) as gateway:
        created = await gateway.videos({**TEXT2VIDEO, "async": False})
        body = created.json()
        assert body["state"] == "succeed", body
        task_id, video_id = body["task_id"], body["video_id"]
        public = settings.resolved_public_url
        path = settings.videos_dir / f"{video_id}.mp4"
        assert path.is_file()
        # Nothing of the task id is in the video id (its URL cannot be worked out from it).
        assert task_id not in video_id
        assert (await gateway.client.get(body["video_url"].removeprefix(public))).status_code == 200

        deleted = await gateway.tasks({"action": "delete", "id": task_id})

        assert deleted.json() == {"id": task_id, "deleted": True}
        assert not path.exists()
        gone = await gateway.client.get(body["video_url"].removeprefix(public))
        assert gone.status_code == 404


async def test_delete_by_another_user_removes_nothing(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, worker=True, local_delay=0.0)
    async with AppHarness.start(settings) as gateway:
        await gateway.add_user("mallory")
        body = (await gateway.videos({**TEXT2VIDEO, "async": False})).json()
        path = settings.videos_dir / f"{body['video_id']}.mp4"

        answer = await gateway.tasks({"action": "delete", "id": body["task_id"]}, user="mallory")

        assert answer.json() == {"id": body["task_id"], "deleted": False}
        assert path.is_file()
