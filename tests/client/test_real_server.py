"""Every SDK method and every error class against the real gateway over loopback HTTP.

The gateway runs as `serve` composes it (API, worker, local provider). Tests that need the
server in a particular condition (a rate limit, a broken store, a short blocking wait) patch
the running app's context for their duration.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from kling_gateway.api.asgi import ASGIApp, Message, Receive, Scope, Send, read_body
from kling_gateway.client import (
    LONG_POLL_HEADER,
    ApiError,
    ApiNotImplementedError,
    AsyncClient,
    BadRequestError,
    Client,
    DisabledError,
    GatewayTimeoutError,
    InvalidTokenError,
    KlingError,
    NoApiError,
    RateLimitError,
    TaskNotFoundError,
    TokenExpiredError,
    TokenMismatchedError,
    UsedUpError,
    task_outcome,
)
from kling_gateway.infra.ratelimit import MemoryRateLimiter
from tests.harness import make_settings
from tests.real_gateway import RealGateway, finish_task, real_gateway

PROMPT = "White ceramic coffee mug on marble"


def _settings(data: Path, port: int) -> Any:
    return make_settings(data, worker=True, local_delay=0.3, port=port)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealGateway]:
    data = tmp_path_factory.mktemp("sdk")
    with real_gateway(lambda port: _settings(data, port)) as gw:
        gw.add_user("alice")
        gw.add_user("mallory")
        yield gw


def as_hosted(app: ASGIApp) -> ASGIApp:
    """The gateway as the hosted service behaves: `wait` ignored, no long-poll header."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def receive_without_wait() -> Message:
            body = await read_body(receive, 1 << 20)
            fields = json.loads(body) if body else {}
            if isinstance(fields, dict):
                fields.pop("wait", None)
            return {"type": "http.request", "body": json.dumps(fields).encode()}

        async def send_without_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    (k, v) for k, v in message["headers"] if k.decode() != LONG_POLL_HEADER
                ]
            await send(message)

        await app(scope, receive_without_wait, send_without_header)

    return wrapped


@pytest.fixture(scope="module")
def hosted_like(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealGateway]:
    """No worker: tests finish their tasks themselves (``finish_task``)."""
    data = tmp_path_factory.mktemp("hosted")
    settings_for = lambda port: make_settings(data, worker=False, port=port)  # noqa: E731
    with real_gateway(settings_for, wrap=as_hosted) as gw:
        gw.add_user("alice")
        yield gw


class Recorder(httpx.HTTPTransport):
    """A real HTTP transport that remembers the JSON body of every request it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[dict[str, Any]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(httpx.Response(200, content=request.content).json())
        return super().handle_request(request)


class Sleeps:
    """The SDK's sleep hook: records each pause (pausing only briefly for real), and can run
    an action at the n-th pause."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._actions: dict[int, Callable[[], None]] = {}

    def then(self, nth: int, action: Callable[[], None]) -> None:
        self._actions[nth] = action

    def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)
        action = self._actions.pop(len(self.seconds), None)
        if action is not None:
            action()
        time.sleep(min(seconds, 0.01))


def client_for(server: RealGateway, user: str = "alice", **kwargs: Any) -> Client:
    return Client(server.url, token=server.tokens[user], **kwargs)


@pytest.fixture
def client(server: RealGateway) -> Iterator[Client]:
    with client_for(server, max_retries=0) as c:
        yield c


@pytest.fixture
async def aclient(server: RealGateway) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(server.url, token=server.tokens["alice"], max_retries=0) as c:
        yield c


# -- every method, sync ------------------------------------------------------------------------


def test_blocking_create_returns_the_final_body(client: Client) -> None:
    body = client.videos.create(PROMPT, duration=5, aspect_ratio="1:1")
    assert body["success"] is True and body["state"] == "succeed"
    assert body["video_url"].startswith(client._core.base_url + "/files/videos/")
    assert body["trace_id"]


def test_async_create_retrieve_wait_batch_list_delete(client: Client) -> None:
    first = client.videos.create(PROMPT, async_=True)
    second = client.videos.create(PROMPT, model="kling-v1-6", async_=True)
    assert set(first) == {"task_id", "trace_id", "usage"}
    record = client.tasks.retrieve(first["task_id"])
    assert record["id"] == first["task_id"] and record["trace_id"] == first["trace_id"]
    updates: list[str | None] = []
    final = client.tasks.wait(
        first["task_id"], on_update=lambda r: updates.append(r.get("response", {}).get("state"))
    )
    assert task_outcome(final) == "succeeded" and updates[-1] == "succeed"
    assert client.tasks.retrieve(first["task_id"], wait=5)["finished_at"] == final["finished_at"]
    ids = [second["task_id"], "no-such-task", first["task_id"], second["task_id"]]
    batch = client.tasks.retrieve_batch(ids)
    assert [item["id"] for item in batch["items"]] == [second["task_id"], first["task_id"]]
    assert batch["count"] == 2
    listed = [r["id"] for r in client.tasks.list(type="videos", page_size=1)]
    assert listed.index(second["task_id"]) < listed.index(first["task_id"])  # newest first
    assert len(listed) == len(set(listed))
    assert client.tasks.delete(first["task_id"]) == {"id": first["task_id"], "deleted": True}
    assert client.tasks.retrieve(first["task_id"]) == {}
    assert client.tasks.delete(first["task_id"])["deleted"] is False


def test_the_same_idempotency_key_twice_gives_one_task(server: RealGateway) -> None:
    token = server.add_user(f"idem-{uuid.uuid4().hex[:8]}")
    key = str(uuid.uuid4())
    with Client(server.url, token=token) as client:
        a = client.videos.create(PROMPT, async_=True, idempotency_key=key)
        b = client.videos.create(PROMPT, async_=True, idempotency_key=key)
        assert a["task_id"] == b["task_id"]
        assert [r["id"] for r in client.tasks.list()] == [a["task_id"]]
        with pytest.raises(BadRequestError) as caught:
            client.videos.create("another prompt", async_=True, idempotency_key=key)
    assert "Idempotency-Key" in caught.value.message


def test_wait_long_polls_against_the_gateway(server: RealGateway) -> None:
    transport, sleeps = Recorder(), Sleeps()
    with client_for(server, transport=transport, sleep=sleeps) as client:
        task_id = client.videos.create(PROMPT, async_=True)["task_id"]
        final = client.tasks.wait(task_id, timeout=60)
    assert task_outcome(final) == "succeeded"
    retrieves = [b for b in transport.bodies if b.get("action") == "retrieve"]
    assert retrieves and all("wait" in body for body in retrieves)
    assert sleeps.seconds == []  # the server held each call: no pause between them


@pytest.mark.parametrize("whose", ["unknown", "deleted", "foreign"])
def test_wait_on_a_task_the_server_does_not_know_raises_at_once(
    server: RealGateway, whose: str
) -> None:
    transport, sleeps = Recorder(), Sleeps()
    with client_for(server, transport=transport, sleep=sleeps) as client:
        task_id = str(uuid.uuid4())
        if whose != "unknown":
            owner = client_for(server, "mallory") if whose == "foreign" else client
            task_id = owner.videos.create(PROMPT, async_=True)["task_id"]
            if whose == "deleted":
                client.tasks.delete(task_id)
        with pytest.raises(TaskNotFoundError) as caught:
            client.tasks.wait(task_id, timeout=600)
    assert caught.value.task_id == task_id and caught.value.code == "not_found"
    retrieves = [b for b in transport.bodies if b.get("action") == "retrieve"]
    assert len(retrieves) == 1 and sleeps.seconds == []


@pytest.mark.parametrize("hosted", [True])
def test_wait_on_an_unknown_task_raises_against_a_server_without_long_poll(
    hosted_like: RealGateway, hosted: bool
) -> None:
    sleeps = Sleeps()
    with client_for(hosted_like, sleep=sleeps) as client, pytest.raises(TaskNotFoundError):
        client.tasks.wait(str(uuid.uuid4()), timeout=600)
    assert sleeps.seconds == []


def test_wait_polls_a_server_without_long_poll(hosted_like: RealGateway) -> None:
    transport, sleeps = Recorder(), Sleeps()
    with client_for(hosted_like, transport=transport, sleep=sleeps) as client:
        task_id = client.videos.create(PROMPT, async_=True)["task_id"]
        # The task finishes while the SDK pauses for the second time between polls.
        sleeps.then(2, lambda: _run(hosted_like, finish_task(hosted_like, task_id)))
        final = client.tasks.wait(task_id, timeout=60)
    assert task_outcome(final) == "succeeded"
    retrieves = [b for b in transport.bodies if b.get("action") == "retrieve"]
    assert "wait" in retrieves[0]  # tried once; not honoured, so never again
    assert len(retrieves) == 3 and all("wait" not in body for body in retrieves[1:])
    assert sleeps.seconds == [3.0, 3.0]  # paced by the server's retry hint


def _run(server: RealGateway, coro: Any) -> None:
    server.submit(coro).result(10)


# -- every method, async -----------------------------------------------------------------------


async def test_async_client_every_method(aclient: AsyncClient) -> None:
    blocking = await aclient.videos.create(PROMPT)
    assert blocking["state"] == "succeed"
    created = await aclient.videos.create(PROMPT, async_=True)
    task_id = created["task_id"]
    assert (await aclient.tasks.retrieve(task_id))["id"] == task_id
    final = await aclient.tasks.wait(task_id, timeout=60)
    assert task_outcome(final) == "succeeded"
    assert (await aclient.tasks.retrieve(task_id, wait=1))["id"] == task_id
    batch = await aclient.tasks.retrieve_batch([task_id, task_id])
    assert [item["id"] for item in batch["items"]] == [task_id]
    listed = [record["id"] async for record in aclient.tasks.list(page_size=2)]
    assert task_id in listed
    assert (await aclient.tasks.delete(task_id))["deleted"] is True


async def test_async_errors_are_typed(server: RealGateway) -> None:
    async with AsyncClient(server.url, token="kg-not-a-token", max_retries=0) as bad:
        with pytest.raises(InvalidTokenError):
            await bad.tasks.retrieve("x")
    async with AsyncClient(server.url, token=server.tokens["alice"], max_retries=0) as good:
        with pytest.raises(BadRequestError) as caught:
            await good.videos.create(PROMPT, duration=7)
    assert "duration" in caught.value.message and caught.value.trace_id


# -- every error class the server can produce --------------------------------------------------


def _token(server: RealGateway, **kwargs: Any) -> str:
    return server.add_user(f"user-{uuid.uuid4().hex[:8]}", **kwargs)


def _set_application(server: RealGateway, token: str, **kwargs: Any) -> None:
    name = next(name for name, t in server.tokens.items() if t == token)
    store = server.app.ctx.store
    assert server.submit(store.set_application(name, **kwargs)).result(10)


def _raises(server: RealGateway, token: str, call: str) -> KlingError:
    client = Client(server.url, token=token, max_retries=0)
    with client, pytest.raises(KlingError) as caught:
        if call == "tasks":
            client.tasks.retrieve("any")
        else:
            client.videos.create(PROMPT, async_=True)
    error = caught.value
    assert error.message and error.trace_id and error.status
    return error


def test_invalid_token(server: RealGateway) -> None:
    error = _raises(server, "kg-unknown", "tasks")
    assert isinstance(error, InvalidTokenError) and error.status == 401


def test_token_expired(server: RealGateway) -> None:
    error = _raises(server, _token(server, expires_in_days=-1), "tasks")
    assert isinstance(error, TokenExpiredError) and error.status == 401


def test_token_mismatched(server: RealGateway) -> None:
    error = _raises(server, _token(server, apis=("kling.videos",)), "tasks")
    assert isinstance(error, TokenMismatchedError) and error.status == 400


def test_disabled(server: RealGateway) -> None:
    token = _token(server)
    _set_application(server, token, disabled=True)
    error = _raises(server, token, "tasks")
    assert isinstance(error, DisabledError) and error.status == 400


def test_used_up(server: RealGateway) -> None:
    token = _token(server)
    name = next(name for name, t in server.tokens.items() if t == token)
    server.submit(server.app.ctx.store.grant_credits(name, 0, time.time())).result(10)
    error = _raises(server, token, "videos")
    assert isinstance(error, UsedUpError) and error.status == 403


def test_bad_request_names_the_field(client: Client) -> None:
    with pytest.raises(BadRequestError) as caught:
        client.videos.create(PROMPT, aspect_ratio=cast(Any, "4:3"))
    assert "aspect_ratio" in caught.value.message and caught.value.status == 400


def test_api_not_implemented(client: Client) -> None:
    with pytest.raises(ApiNotImplementedError) as caught:
        client.videos.create(PROMPT, action=cast(Any, "upscale"))
    assert caught.value.status == 400


def test_no_api(server: RealGateway) -> None:
    elsewhere = Client(server.url + "/elsewhere", token=server.tokens["alice"])
    with elsewhere as client, pytest.raises(NoApiError) as caught:
        client.tasks.retrieve("any")
    assert caught.value.status == 404


def test_too_many_requests_carries_retry_after(
    server: RealGateway, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server.app.ctx, "limiter", MemoryRateLimiter(1))
    client.tasks.retrieve("any")  # the minute's one request
    with pytest.raises(RateLimitError) as caught:
        client.tasks.retrieve("any")
    assert caught.value.status == 429
    assert caught.value.retry_after is not None and caught.value.retry_after >= 1


def test_api_error_on_a_server_fault(
    server: RealGateway, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_: Any) -> bytes:
        raise RuntimeError("the disk is on fire")

    monkeypatch.setattr(server.app.ctx.store, "get_task_record", broken)
    with pytest.raises(ApiError) as caught:
        client.tasks.retrieve("any")
    assert caught.value.status == 500
    assert "fire" not in caught.value.message  # no internals in the body


def test_gateway_timeout_of_a_blocking_create(
    server: RealGateway, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = dataclasses.replace(server.app.ctx.settings, blocking_wait_seconds=0.0)
    monkeypatch.setattr(server.app.ctx, "settings", settings)
    with pytest.raises(GatewayTimeoutError) as caught:
        client.videos.create(PROMPT)
    assert caught.value.status == 504
