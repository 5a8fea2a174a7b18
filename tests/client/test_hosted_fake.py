"""The SDK against a real loopback HTTP server that fakes the hosted Kling service.

The fake speaks the wire format of the seed and the contract (no long poll, no idempotency);
tests script its next responses to exercise errors and retries. Time is faked: the SDK's
``sleep`` and ``clock`` hooks advance a counter, so nothing here waits on the wall clock.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from kling_gateway.client import (
    LONG_POLL_HEADER,
    ApiError,
    AsyncClient,
    BadGatewayError,
    BadRequestError,
    Client,
    InvalidTokenError,
    KlingError,
    RateLimitError,
    TransportError,
    UnknownError,
    WaitTimeoutError,
    task_outcome,
)
from kling_gateway.client import errors as client_errors

TOKEN = "good-token"
SEED_ID = "20068983-0cc9-4c6a-aeb6-9c6a3c668be0"
VIDEO_URL = "https://cdn.klingai.com/bs2/upload-kling-api/7822108635/text2video/x.mp4"


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Scripted:
    status: int
    body: Any = None
    text: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


def _record(task_id: str, created_at: float, state: str | None) -> dict[str, Any]:
    record: dict[str, Any] = {
        "_id": uuid.uuid4().hex[:24],
        "id": task_id,
        "api_id": "29187cb2-1acb-43b8-baf5-3f3f709292eb",
        "application_id": "f35762fe-e8a4-4613-bb70-e5c1be4f9fc2",
        "created_at": created_at,
        "credential_id": "ce81345f-7e2a-4871-b539-aefb5f725220",
        "request": {"action": "text2video", "model": "kling-v1", "prompt": "a mug"},
        "trace_id": str(uuid.uuid4()),
        "type": "videos",
        "user_id": "ad7afe47-cea9-4cda-980f-2ad8810e51cf",
    }
    if state in ("pending", "processing"):
        record["response"] = {"task_id": task_id, "state": state}
    elif state == "succeed":
        record["response"] = {
            "success": True,
            "video_id": "030bb06d-98d4-4044-9042-0aa0822e8c8c",
            "video_url": VIDEO_URL,
            "duration": "5.1",
            "state": "succeed",
            "task_id": task_id,
        }
        record["duration"] = record["elapsed"] = 317.13
        record["finished_at"] = created_at + 317.13
    elif state == "failed":
        record["response"] = {
            "success": False,
            "task_id": task_id,
            "state": "failed",
            "error": {"code": "content_policy", "message": "rejected"},
        }
    return record


class FakeHosted:
    """The hosted service's wire behaviour, with scripted responses in front of it."""

    def __init__(self) -> None:
        self.url = ""
        self.app = Starlette(
            routes=[
                Route("/kling/tasks", self._tasks, methods=["POST"]),
                Route("/kling/videos", self._videos, methods=["POST"]),
            ]
        )
        self.reset()

    def reset(self) -> None:
        self.seen: list[Seen] = []
        self.scripted: deque[Scripted] = deque()
        self.records: dict[str, dict[str, Any]] = {}
        self.progress: dict[str, deque[str]] = {}
        self.long_poll = False

    def script(self, *responses: Scripted) -> None:
        self.scripted.extend(responses)

    def add_task(self, task_id: str, *states: str, created_at: float = 1740969535.333) -> None:
        """A task whose state moves one step along ``states`` at each retrieve."""
        self.records[task_id] = _record(task_id, created_at, states[0] if states else None)
        self.progress[task_id] = deque(states[1:])

    def bodies(self, path: str = "/kling/tasks") -> list[Any]:
        return [seen.body for seen in self.seen if seen.path == path]

    # -- handlers --

    async def _front(self, request: Request) -> tuple[Any, Response | None]:
        raw = await request.body()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
        self.seen.append(Seen(request.url.path, dict(request.headers), body))
        if self.scripted:
            return body, self._scripted(self.scripted.popleft())
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return body, _error(401, "invalid_token", "invalid or missing authorization token")
        if not isinstance(body, dict):
            return body, _error(400, "bad_request", "the body is not a JSON object")
        return body, None

    def _scripted(self, item: Scripted) -> Response:
        headers = {"x-trace-id": "trace-scripted", **item.headers}
        if item.text is not None:
            return PlainTextResponse(item.text, item.status, headers=headers)
        return JSONResponse(item.body, item.status, headers=headers)

    async def _tasks(self, request: Request) -> Response:
        body, early = await self._front(request)
        if early is not None:
            return early
        action = body.get("action", "retrieve")
        if action == "retrieve":
            return self._retrieve(body)
        if action == "retrieve_batch" and "ids" in body:
            items = [self.records[i] for i in dict.fromkeys(body["ids"]) if i in self.records]
            return _ok({"items": items, "count": len(items)})
        if action == "retrieve_batch":
            return self._page(body)
        if action == "delete":
            return _ok(
                {"id": body["id"], "deleted": self.records.pop(body["id"], None) is not None}
            )
        return _error(400, "api_not_implemented", f"unknown action: {action}")

    def _retrieve(self, body: dict[str, Any]) -> Response:
        task_id = body.get("id")
        record = self.records.get(task_id) if isinstance(task_id, str) else None
        if record is None:
            return _ok({})
        steps = self.progress[record["id"]]
        if steps:
            self.records[record["id"]] = _record(
                record["id"], record["created_at"], steps.popleft()
            )
        headers = {LONG_POLL_HEADER: "1"} if self.long_poll and "wait" in body else {}
        return _ok(record, headers)

    def _page(self, body: dict[str, Any]) -> Response:
        rows = sorted(self.records.values(), key=lambda r: r["created_at"], reverse=True)
        rows = [r for r in rows if r["created_at"] >= body.get("created_at_min", 0)]
        offset, limit = body.get("offset", 0), body.get("limit", 100)
        return _ok({"items": rows[offset : offset + limit], "count": len(rows)})

    async def _videos(self, request: Request) -> Response:
        body, early = await self._front(request)
        if early is not None:
            return early
        task_id = str(uuid.uuid4())
        if body.get("callback_url") or body.get("async"):
            self.add_task(task_id, "pending", "processing", "succeed")
            return _ok({"task_id": task_id, "trace_id": "trace-create"})
        self.add_task(task_id, "succeed")
        return _ok({**self.records[task_id]["response"], "trace_id": "trace-create"})


def _ok(body: Any, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(body, headers={"x-trace-id": "trace-ok", **(headers or {})})


def _error(status: int, code: str, message: str) -> Response:
    body = {"success": False, "error": {"code": code, "message": message}, "trace_id": "trace-e"}
    return JSONResponse(body, status, headers={"x-trace-id": "trace-e"})


class FakeTime:
    """``sleep``/``clock`` hooks: sleeping records the pause and moves the clock on."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


@pytest.fixture(scope="module")
def server() -> Iterator[FakeHosted]:
    fake = FakeHosted()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    fake.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = uvicorn.Config(fake.app, log_level="warning", lifespan="off", access_log=False)
    runner = uvicorn.Server(config)
    thread = threading.Thread(target=runner.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(500):
        if runner.started:
            break
        time.sleep(0.01)
    assert runner.started, "the fake hosted server did not start"
    yield fake
    runner.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture
def hosted(server: FakeHosted) -> FakeHosted:
    server.reset()
    return server


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def client(hosted: FakeHosted, fake_time: FakeTime) -> Iterator[Client]:
    with Client(hosted.url, token=TOKEN, sleep=fake_time.sleep, clock=fake_time.clock) as c:
        yield c


@pytest.fixture
async def aclient(hosted: FakeHosted, fake_time: FakeTime) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(
        hosted.url, token=TOKEN, sleep=fake_time.asleep, clock=fake_time.clock
    ) as c:
        yield c


# -- request shapes ----------------------------------------------------------------------------


def test_create_sends_the_documented_request(client: Client, hosted: FakeHosted) -> None:
    result = client.videos.create(
        "a mug",
        model="kling-v1-6",
        duration=5.0,
        camera_control={"type": "simple", "config": {"zoom": 0.5}},
        callback_url="https://hook.example/x",
        async_=True,
        timeout=30,
    )
    assert set(result) == {"task_id", "trace_id"}
    [seen] = hosted.seen
    assert seen.path == "/kling/videos"
    assert seen.headers["authorization"] == f"Bearer {TOKEN}"
    assert seen.headers["accept"] == "application/json"
    assert seen.headers["content-type"] == "application/json"
    assert uuid.UUID(seen.headers["idempotency-key"]).version == 4
    assert seen.body == {
        "action": "text2video",
        "model": "kling-v1-6",
        "prompt": "a mug",
        "duration": 5.0,
        "camera_control": {"type": "simple", "config": {"zoom": 0.5}},
        "callback_url": "https://hook.example/x",
        "async": True,
        "timeout": 30,
    }


def test_create_blocking_returns_the_final_body(client: Client, hosted: FakeHosted) -> None:
    result = client.videos.create(
        action="extend", video_id="v-1", prompt="more", idempotency_key="key-1"
    )
    assert result["state"] == "succeed" and task_outcome(result) == "succeeded"
    assert hosted.seen[0].headers["idempotency-key"] == "key-1"
    assert hosted.seen[0].body == {"action": "extend", "prompt": "more", "video_id": "v-1"}


def test_retrieve_sends_wait_only_when_given(client: Client, hosted: FakeHosted) -> None:
    hosted.add_task(SEED_ID, "succeed")
    assert client.tasks.retrieve(SEED_ID)["id"] == SEED_ID
    client.tasks.retrieve(SEED_ID, wait=5)
    assert hosted.bodies() == [
        {"action": "retrieve", "id": SEED_ID},
        {"action": "retrieve", "id": SEED_ID, "wait": 5},
    ]


def test_retrieve_of_an_unknown_id_is_empty(client: Client) -> None:
    assert client.tasks.retrieve("no-such-task") == {}


def test_delete(client: Client, hosted: FakeHosted) -> None:
    hosted.add_task(SEED_ID, "succeed")
    assert client.tasks.delete(SEED_ID) == {"id": SEED_ID, "deleted": True}
    assert client.tasks.delete(SEED_ID) == {"id": SEED_ID, "deleted": False}
    assert hosted.bodies()[0] == {"action": "delete", "id": SEED_ID}


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", sorted(client_errors.ERRORS_BY_CODE))
def test_every_error_code_maps_to_its_class(
    hosted: FakeHosted, fake_time: FakeTime, code: str
) -> None:
    cls = client_errors.ERRORS_BY_CODE[code]
    assert cls.status is not None
    body = {"success": False, "error": {"code": code, "message": "m-" + code}, "trace_id": "t-1"}
    hosted.script(Scripted(cls.status, body, headers={"retry-after": "4"}))
    c = Client(hosted.url, token=TOKEN, max_retries=0, sleep=fake_time.sleep)
    with c, pytest.raises(cls) as caught:
        c.tasks.retrieve(SEED_ID)
    error = caught.value
    assert type(error) is cls
    assert (error.code, error.status, error.message, error.trace_id) == (
        code,
        cls.status,
        "m-" + code,
        "t-1",
    )
    if isinstance(error, RateLimitError):
        assert error.retry_after == 4.0


def test_real_auth_failure_is_typed(hosted: FakeHosted) -> None:
    with Client(hosted.url, token="wrong") as c, pytest.raises(InvalidTokenError) as caught:
        c.tasks.retrieve(SEED_ID)
    assert caught.value.trace_id == "trace-e"


def test_non_json_error_is_typed_by_status(client: Client, hosted: FakeHosted) -> None:
    hosted.script(*[Scripted(502, text="<html>Bad Gateway</html>")] * 3)
    with pytest.raises(BadGatewayError) as caught:
        client.tasks.retrieve(SEED_ID)
    assert caught.value.status == 502
    assert caught.value.trace_id == "trace-scripted"
    assert "Bad Gateway" in caught.value.message


def test_unknown_code_keeps_the_code_and_types_by_status(
    client: Client, hosted: FakeHosted
) -> None:
    body = {"success": False, "error": {"code": "brand_new", "message": "x"}, "trace_id": "t"}
    hosted.script(Scripted(400, body), Scripted(418, {"error": "teapot"}))
    with pytest.raises(BadRequestError) as bad:
        client.tasks.retrieve(SEED_ID)
    assert bad.value.code == "brand_new"
    with pytest.raises(UnknownError) as unknown:
        client.tasks.retrieve(SEED_ID)
    assert (unknown.value.code, unknown.value.status, unknown.value.message) == (
        "http_418",
        418,
        "teapot",
    )


def test_non_json_success_body_is_an_error(client: Client, hosted: FakeHosted) -> None:
    hosted.script(Scripted(200, text="ok"))
    with pytest.raises(UnknownError) as caught:
        client.tasks.retrieve(SEED_ID)
    assert caught.value.code == "invalid_response"


# -- retries -----------------------------------------------------------------------------------


def test_retries_honour_retry_after_then_back_off(
    client: Client, hosted: FakeHosted, fake_time: FakeTime
) -> None:
    rate = {"success": False, "error": {"code": "too_many_requests", "message": "slow"}}
    hosted.script(Scripted(429, rate, headers={"retry-after": "7"}), Scripted(503, text="down"))
    result = client.videos.create("a mug", async_=True)
    assert "task_id" in result
    assert fake_time.sleeps[0] == 7.0
    assert 2.0 <= fake_time.sleeps[1] <= 2.5  # min(2**1, 8) plus at most 25% jitter
    keys = {seen.headers["idempotency-key"] for seen in hosted.seen}
    assert len(hosted.seen) == 3 and len(keys) == 1  # one key across the retries


def test_retries_give_up_after_max_retries(
    client: Client, hosted: FakeHosted, fake_time: FakeTime
) -> None:
    failure = {"success": False, "error": {"code": "api_error", "message": "fetch failed"}}
    hosted.script(*[Scripted(500, failure)] * 3)
    with pytest.raises(ApiError):
        client.tasks.retrieve(SEED_ID)
    assert len(hosted.seen) == 3
    assert [1.0 <= fake_time.sleeps[0] <= 1.25, 2.0 <= fake_time.sleeps[1] <= 2.5] == [True] * 2


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
def test_every_retryable_status_is_retried(client: Client, hosted: FakeHosted, status: int) -> None:
    hosted.add_task(SEED_ID, "succeed")
    hosted.script(Scripted(status, text="try again"))
    assert client.tasks.retrieve(SEED_ID)["id"] == SEED_ID
    assert len(hosted.seen) == 2


def test_client_errors_are_not_retried(client: Client, hosted: FakeHosted) -> None:
    hosted.script(Scripted(400, {"error": {"code": "bad_request", "message": "id: required"}}))
    with pytest.raises(BadRequestError, match="id: required"):
        client.tasks.retrieve(SEED_ID)
    assert len(hosted.seen) == 1


def test_transport_errors_are_retried_then_raised(fake_time: FakeTime) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    c = Client(f"http://127.0.0.1:{port}", token=TOKEN, sleep=fake_time.sleep)
    with c, pytest.raises(TransportError) as caught:
        c.tasks.retrieve(SEED_ID)
    assert isinstance(caught.value, KlingError) and caught.value.status is None
    assert isinstance(caught.value.__cause__, httpx.TransportError)
    assert len(fake_time.sleeps) == 2


# -- batches and pages -------------------------------------------------------------------------


def test_retrieve_batch_chunks_and_merges_in_order(hosted: FakeHosted) -> None:
    for name in "abcd":
        hosted.add_task(name, "succeed")
    with Client(hosted.url, token=TOKEN, max_batch_size=2) as c:
        result = c.tasks.retrieve_batch(["a", "b", "c", "a", "missing", "d", "b"])
    assert [item["id"] for item in result["items"]] == ["a", "b", "c", "d"]
    assert result["count"] == 4
    assert [body["ids"] for body in hosted.bodies()] == [["a", "b"], ["c", "missing"], ["d"]]
    assert all(body["action"] == "retrieve_batch" for body in hosted.bodies())


def test_retrieve_batch_of_nothing_sends_nothing(client: Client, hosted: FakeHosted) -> None:
    assert client.tasks.retrieve_batch([]) == {"items": [], "count": 0}
    assert hosted.seen == []
    with pytest.raises(TypeError):
        client.tasks.retrieve_batch("abc")


def test_list_pages_through_every_task(client: Client, hosted: FakeHosted) -> None:
    for n in range(7):
        hosted.add_task(f"t{n}", "succeed", created_at=1000.0 + n)
    ids = [record["id"] for record in client.tasks.list(type="videos", page_size=3)]
    assert ids == [f"t{n}" for n in range(6, -1, -1)]
    assert hosted.bodies() == [
        {"action": "retrieve_batch", "type": "videos", "limit": 3, "offset": offset}
        for offset in (0, 3, 6)
    ]


def test_list_does_not_repeat_a_task_shifted_by_a_new_one(
    client: Client, hosted: FakeHosted
) -> None:
    for n in range(4):
        hosted.add_task(f"t{n}", "succeed", created_at=1000.0 + n)
    pages = client.tasks.list(created_at_min=1000, page_size=2)
    first = [next(pages)["id"], next(pages)["id"]]
    hosted.add_task("newest", "succeed", created_at=2000.0)  # shifts t1 onto the next page
    rest = [record["id"] for record in pages]
    assert first + rest == ["t3", "t2", "t1", "t0"]
    assert hosted.bodies()[0]["created_at_min"] == 1000


def test_list_rejects_a_page_size_out_of_range(client: Client) -> None:
    with pytest.raises(ValueError):
        client.tasks.list(page_size=101)


# -- waiting -----------------------------------------------------------------------------------


def test_wait_polls_with_backoff_when_long_poll_is_absent(
    client: Client, hosted: FakeHosted, fake_time: FakeTime
) -> None:
    hosted.add_task(SEED_ID, "pending", "processing", "processing", "processing", "succeed")
    updates: list[str] = []
    record = client.tasks.wait(SEED_ID, on_update=lambda r: updates.append(r["response"]["state"]))
    assert record["response"]["state"] == "succeed"
    assert updates == ["pending", "processing", "succeed"]
    bodies = hosted.bodies()
    assert bodies[0] == {"action": "retrieve", "id": SEED_ID, "wait": 30.0}
    assert all("wait" not in body for body in bodies[1:])  # the hosted service ignored it
    assert len(bodies) == 5 and len(fake_time.sleeps) == 4
    assert 3.0 <= fake_time.sleeps[0] <= 3.6  # poll_interval plus jitter
    assert fake_time.sleeps[2] > fake_time.sleeps[1] * 1.2  # no news: the pause grows
    assert all(pause < 30 for pause in fake_time.sleeps)


def test_wait_long_polls_when_the_server_says_so(
    client: Client, hosted: FakeHosted, fake_time: FakeTime
) -> None:
    hosted.long_poll = True
    hosted.add_task(SEED_ID, "pending", "processing", "succeed")
    record = client.tasks.wait(SEED_ID, timeout=100)
    assert task_outcome(record) == "succeeded"
    assert [body.get("wait") for body in hosted.bodies()] == [30.0, 30.0, 30.0]
    assert fake_time.sleeps == []


def test_wait_returns_a_failed_task(client: Client, hosted: FakeHosted) -> None:
    hosted.add_task(SEED_ID, "processing", "failed")
    record = client.tasks.wait(SEED_ID, poll_interval=1)
    assert task_outcome(record) == "failed"
    assert record["response"]["error"]["code"] == "content_policy"


def test_wait_times_out(client: Client, hosted: FakeHosted, fake_time: FakeTime) -> None:
    hosted.add_task(SEED_ID, "processing")
    with pytest.raises(WaitTimeoutError) as caught:
        client.tasks.wait(SEED_ID, timeout=20, poll_interval=3)
    assert caught.value.record["response"]["state"] == "processing"
    assert isinstance(caught.value, TimeoutError)
    assert sum(fake_time.sleeps) == pytest.approx(20.0)


# -- the async client: same flows, awaited ----------------------------------------------------


async def test_async_client_end_to_end(
    aclient: AsyncClient, hosted: FakeHosted, fake_time: FakeTime
) -> None:
    hosted.script(Scripted(429, text="slow", headers={"retry-after": "2"}))
    created = await aclient.videos.create("a mug", async_=True)
    record = await aclient.tasks.wait(created["task_id"], poll_interval=2)
    assert task_outcome(record) == "succeeded"
    assert fake_time.sleeps[0] == 2.0
    batch = await aclient.tasks.retrieve_batch([created["task_id"], "missing"])
    assert batch["count"] == 1
    listed = [item["id"] async for item in aclient.tasks.list(page_size=1)]
    assert listed == [created["task_id"]]
    assert await aclient.tasks.retrieve("missing") == {}


async def test_async_errors_are_typed(aclient: AsyncClient, hosted: FakeHosted) -> None:
    body = {"success": False, "error": {"code": "used_up", "message": "quota"}, "trace_id": "q"}
    hosted.script(Scripted(403, body))
    with pytest.raises(client_errors.UsedUpError) as caught:
        await aclient.tasks.delete(SEED_ID)
    assert caught.value.trace_id == "q"


async def test_async_calls_run_concurrently(hosted: FakeHosted) -> None:
    hosted.add_task(SEED_ID, "succeed")
    async with AsyncClient(hosted.url, token=TOKEN) as c:
        results = await asyncio.gather(*(c.tasks.retrieve(SEED_ID) for _ in range(5)))
    assert all(result["id"] == SEED_ID for result in results)
