"""GET /kling/tasks/{id}/events over real HTTP, and the long poll's order of events.

No worker runs here: each test moves its task itself, on the server's loop, through the
worker's own compare-and-set write and notification. So every assertion is about the order in
which things happened, never about how long they took.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from kling_gateway.client import LONG_POLL_HEADER
from kling_gateway.domain.ids import new_task_id
from kling_gateway.domain.task import Task
from kling_gateway.protocol.task import TaskState, progress_response, success_response
from kling_gateway.storage.base import Outcome
from tests.harness import make_settings, make_task
from tests.real_gateway import RealGateway, real_gateway


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealGateway]:
    data = tmp_path_factory.mktemp("sse")
    with real_gateway(lambda port: make_settings(Path(data), worker=False, port=port)) as gw:
        gw.add_user("alice")
        gw.add_user("mallory")
        yield gw


@dataclass
class Event:
    id: int
    state: str
    record: dict[str, Any]


class Mover:
    """A task of alice's, moved from state to state as the worker would move it."""

    def __init__(self, server: RealGateway) -> None:
        self.server = server
        self.task = make_task(server.user_ids["alice"])

    async def insert(self) -> Mover:
        store = self.server.app.ctx.store
        await self.server.call(store.insert_task(self.task, next_check_at=1e12, deadline_at=1e12))
        return self

    async def processing(self) -> None:
        self.task.state = TaskState.PROCESSING
        self.task.job_id, self.task.started_at = "job-1", self.task.created_at + 1
        self.task.response = progress_response(self.task.id, TaskState.PROCESSING)
        await self._save(Outcome(next_check_at=1e12))

    async def bump(self) -> None:
        """A write that changes nothing a client sees (a claim bumps the version this way)."""
        await self._save(Outcome(next_check_at=1e12))

    async def succeed(self) -> None:
        task = self.task
        task.state, task.finished_at = TaskState.SUCCEED, task.created_at + 5
        task.response = success_response(
            task.id, video_id="v1", video_url="http://cdn.example/v1.mp4", duration="5.0"
        )
        await self._save(Outcome(next_check_at=None))

    async def _save(self, outcome: Outcome) -> None:
        await self.server.call(self._save_and_publish(outcome))

    async def _save_and_publish(self, outcome: Outcome) -> None:
        ctx = self.server.app.ctx
        version = self.task.version
        saved = await ctx.store.save_task(
            self.task, expected_version=version, worker_id=None, outcome=outcome
        )
        assert saved
        await ctx.events.publish(self.task.id)


def events_url(server: RealGateway, task: Task | str) -> str:
    task_id = task if isinstance(task, str) else task.id
    return f"{server.url}/kling/tasks/{task_id}/events"


def auth(server: RealGateway, user: str = "alice", **extra: str) -> dict[str, str]:
    return {"authorization": f"Bearer {server.tokens[user]}", **extra}


async def read_events(response: httpx.Response) -> AsyncIterator[Event]:
    """The `task` events of an SSE stream; comments (pings) are skipped."""
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line.startswith(":"):
            continue
        if line:
            name, _, value = line.partition(": ")
            fields[name] = value
            continue
        if fields:
            assert fields["event"] == "task"
            record = msgspec.json.decode(fields["data"])
            yield Event(int(fields["id"]), record["response"]["state"], record)
            fields = {}


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


async def test_stream_sends_each_change_then_closes(
    server: RealGateway, http: httpx.AsyncClient
) -> None:
    mover = await Mover(server).insert()
    mover.task.response = progress_response(mover.task.id, TaskState.PENDING)
    await mover.bump()  # the first record with a state to show
    seen: list[Event] = []
    async with http.stream("GET", events_url(server, mover.task), headers=auth(server)) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert resp.headers["x-trace-id"]
        async for event in read_events(resp):
            seen.append(event)
            if event.state == "pending":
                await mover.bump()  # no event for this one
                await mover.processing()
            elif event.state == "processing":
                await mover.succeed()
        # The loop ended: the server closed the stream after the final state.
    assert [e.state for e in seen] == ["pending", "processing", "succeed"]
    assert [e.id for e in seen] == [1, 3, 4]  # version 2 was the invisible bump
    assert seen[-1].record["finished_at"] == pytest.approx(mover.task.created_at + 5, abs=1e-3)


async def test_resume_after_a_dropped_connection_sends_only_newer_states(
    server: RealGateway, http: httpx.AsyncClient
) -> None:
    mover = await Mover(server).insert()
    await mover.processing()
    async with http.stream("GET", events_url(server, mover.task), headers=auth(server)) as resp:
        first = await anext(read_events(resp))
    # Dropped after the first event; the task moves on while nobody listens.
    assert first.state == "processing"
    await mover.bump()
    await mover.succeed()
    headers = auth(server, **{"last-event-id": str(first.id)})
    async with http.stream("GET", events_url(server, mover.task), headers=headers) as resp:
        resumed = [event async for event in read_events(resp)]
    assert [e.state for e in resumed] == ["succeed"]
    assert resumed[0].id > first.id


async def test_resume_while_still_running_waits_for_the_next_change(
    server: RealGateway, http: httpx.AsyncClient
) -> None:
    mover = await Mover(server).insert()
    await mover.processing()
    headers = auth(server, **{"last-event-id": str(mover.task.version)})
    states: list[str] = []
    async with http.stream("GET", events_url(server, mover.task), headers=headers) as resp:
        stream = read_events(resp)
        # Nothing is newer than what the client saw: the stream waits, so finishing the task
        # is what produces its one event.
        await mover.succeed()
        states = [event.state async for event in stream]
    assert states == ["succeed"]


async def test_finished_task_seen_to_its_end_answers_204(
    server: RealGateway, http: httpx.AsyncClient
) -> None:
    mover = await Mover(server).insert()
    await mover.succeed()
    headers = auth(server, **{"last-event-id": str(mover.task.version)})
    response = await http.get(events_url(server, mover.task), headers=headers)
    assert response.status_code == 204
    assert response.content == b""
    # Without Last-Event-ID (or an older one) the final record is sent once, then the end.
    for headers in (auth(server), auth(server, **{"last-event-id": "0"})):
        async with http.stream("GET", events_url(server, mover.task), headers=headers) as resp:
            assert [e.state async for e in read_events(resp)] == ["succeed"]


@pytest.mark.parametrize("whose", ["foreign", "unknown"])
async def test_foreign_and_unknown_tasks_are_404(
    server: RealGateway, http: httpx.AsyncClient, whose: str
) -> None:
    mover = await Mover(server).insert()
    task_id = mover.task.id if whose == "foreign" else new_task_id()
    response = await http.get(events_url(server, task_id), headers=auth(server, "mallory"))
    assert response.status_code == 404
    body = response.json()
    assert body["error"]["code"] == "no_api"
    assert body["trace_id"] == response.headers["x-trace-id"]


async def test_events_need_a_valid_token(server: RealGateway, http: httpx.AsyncClient) -> None:
    mover = await Mover(server).insert()
    response = await http.get(events_url(server, mover.task))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_token"


async def test_long_poll_answers_when_the_task_finishes_before_its_wait_runs_out(
    server: RealGateway, http: httpx.AsyncClient
) -> None:
    """Order only: the waiter answers after the finish, and before a waiter that started after
    it with the same wait (on a task that never finishes) has answered: so before the wait
    ran out."""
    mover = await Mover(server).insert()
    idle = await Mover(server).insert()
    order: list[str] = []

    async def retrieve(task: Task, name: str) -> httpx.Response:
        body = {"action": "retrieve", "id": task.id, "wait": 30}
        response = await http.post(f"{server.url}/kling/tasks", json=body, headers=auth(server))
        order.append(name)
        return response

    waiter = asyncio.create_task(retrieve(mover.task, "waiter"))
    await until_waiting(server, 1)
    sentinel = asyncio.create_task(retrieve(idle.task, "sentinel"))
    await until_waiting(server, 2)
    assert not waiter.done()
    order.append("finished")
    await mover.succeed()
    response = await waiter
    assert order == ["finished", "waiter"]
    assert not sentinel.done()
    sentinel.cancel()
    record = response.json()
    assert record["response"]["state"] == "succeed" and "finished_at" in record
    # The long-poll header although the task finished during the wait (the SDK's detection),
    # and no retry hint: there is nothing to ask again for.
    assert response.headers[LONG_POLL_HEADER] == "1"
    assert "retry-after" not in response.headers


async def until_waiting(server: RealGateway, count: int) -> None:
    """Yield until ``count`` requests wait on the server's notifications (an order point)."""
    events: Any = server.app.ctx.events
    for _ in range(4000):
        try:
            if events.waiting >= count:
                return
        except RuntimeError:  # its dict changed size under us, in the server's thread
            pass
        await asyncio.sleep(0.005)
    raise AssertionError(f"never {count} waiters")
