"""The callback deliverer against real loopback receivers and a real SQLite store.

Time is an injected clock stepped through the retry schedule; nothing sleeps for schedule
times. Refused targets are refused before any connection: a recording network backend proves
no connection was even tried, and refuses to connect anywhere but loopback as a safety net.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpcore
import msgspec
import pytest
from standardwebhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kling_gateway.callbacks import admin
from kling_gateway.callbacks.delivery import (
    AttemptResult,
    CallbackDeliverer,
    GuardedTransport,
    apply_result,
    parse_retry_after,
    retry_delay,
)
from kling_gateway.callbacks.secrets import SecretStore
from kling_gateway.cli import callbacks as printing
from kling_gateway.domain.ids import new_object_id, new_task_id, new_trace_id
from kling_gateway.domain.links import Links, video_link
from kling_gateway.domain.task import Task
from kling_gateway.domain.videos import params_from_stored
from kling_gateway.infra import egress
from kling_gateway.protocol.task import TaskState, success_response
from kling_gateway.storage.base import CallbackDelivery, Outcome
from kling_gateway.storage.crypto import SecretBox, generate_key, parse_key
from kling_gateway.storage.sqlite import SQLiteStore
from tests.servers import serve_asgi

SCHEDULE = (10.0, 20.0, 30.0, 200.0)
LOOPBACK = {"127.0.0.1", "::1"}
SEALER = SecretBox(parse_key(generate_key()))  # signing secrets are sealed at rest


# -- the receiver ---------------------------------------------------------------------------


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    base: str
    hits: list[Hit] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def to(self, path: str) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if h.path == path]

    @property
    def port(self) -> int:
        return int(self.base.rsplit(":", 1)[1])


def receiver_app(receiver: Receiver) -> Starlette:
    async def hook(request: Request) -> Response:
        body = await request.body()
        path = request.url.path
        with receiver.lock:
            receiver.hits.append(Hit(path, dict(request.headers), body))
            count = sum(1 for h in receiver.hits if h.path == path)
        return await answer(request, path, count)

    return Starlette(routes=[Route("/{name:path}", hook, methods=["POST"])])


async def answer(request: Request, path: str, count: int) -> Response:
    if path == "/flaky":
        return Response(status_code=200 if count > 3 else 503)
    if path == "/always-500":
        return Response(status_code=500)
    if path == "/gone":
        return Response(status_code=410)
    if path == "/gone-once":
        return Response(status_code=410 if count == 1 else 204)
    if path == "/redirect":
        return Response(status_code=302, headers={"location": "/ok"})
    if path == "/busy":
        return Response(status_code=429, headers={"retry-after": "120"})
    if path == "/hang":
        for _ in range(400):
            if await request.is_disconnected():
                break
            await asyncio.sleep(0.025)
    return Response(b'{"ok":true}', media_type="application/json")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    holder = Receiver(base="")
    with serve_asgi(receiver_app(holder)) as base:
        holder.base = base
        yield holder


# -- store, tasks, clock ----------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        # Just after the store's own time.time() stamps, so new rows are due at once; the
        # signatures' timestamps stay near real time, which standardwebhooks checks (±5 min).
        self.now = time.time() + 1.0

    def __call__(self) -> float:
        return self.now


async def open_store(path: Path) -> SQLiteStore:
    store = SQLiteStore(f"sqlite:///{path}")
    await store.open()
    await store.migrate()
    return store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = await open_store(tmp_path / "gateway.db")
    yield opened
    await opened.close()


@pytest.fixture
async def user_id(store: SQLiteStore) -> str:
    uid, _ = await store.ensure_account("alice", time.time())
    return uid


async def finished_task(
    store: SQLiteStore, user_id: str, url: str, video_url: str = "https://cdn.example/v.mp4"
) -> tuple[Task, bytes]:
    """A task saved as succeeded with its callback, the way the worker saves it."""
    task_id = new_task_id()
    task = Task(
        id=task_id,
        object_id=new_object_id(),
        user_id=user_id,
        application_id="app-1",
        credential_id="cred-1",
        trace_id=new_trace_id(),
        request=(body := {"action": "text2video", "prompt": "a cat", "callback_url": url}),
        params=params_from_stored(body),
        created_at=time.time(),
    )
    await store.insert_task(task, next_check_at=time.time(), deadline_at=time.time() + 3600)
    task.state = TaskState.SUCCEED
    task.finished_at = time.time()
    task.response = success_response(task_id, video_id="v-1", video_url=video_url, duration="5.1")
    body = msgspec.json.encode(task.response)
    outcome = Outcome(next_check_at=None, callbacks=((url, "succeed", body),))
    assert await store.save_task(task, expected_version=0, worker_id=None, outcome=outcome)
    return task, body


async def only_delivery(store: SQLiteStore, task_id: str) -> CallbackDelivery:
    (found,) = await store.list_callbacks(task_id=task_id)
    return found


async def callback_field(store: SQLiteStore, user_id: str, task_id: str) -> dict[str, Any]:
    record = await store.get_task_record(user_id, task_id)
    assert record is not None
    view: dict[str, Any] = msgspec.json.decode(record)["callback"]
    return view


def deliverer(
    store: SQLiteStore,
    clock: Clock,
    *,
    allow_private: bool = True,
    timeout: float = 5.0,
    worker_id: str = "worker-1",
    transport: GuardedTransport | None = None,
) -> CallbackDeliverer:
    return CallbackDeliverer(
        store,
        SecretStore(store, SEALER),
        schedule=SCHEDULE,
        timeout=timeout,
        allow_private=allow_private,
        worker_id=worker_id,
        transport=transport,
        clock=clock,
        rng=random.Random(7),
    )


def verify_hit(hit: Hit, secrets: Iterable[str]) -> None:
    for secret in secrets:
        Webhook(secret).verify(hit.body, hit.headers)


# -- retries and outcomes ------------------------------------------------------------------


async def test_callbacks_of_a_deleted_task_are_dropped_unsent(
    store: SQLiteStore, user_id: str, receiver: Receiver
) -> None:
    task, _ = await finished_task(store, user_id, f"{receiver.base}/ok")
    assert await store.delete_task(user_id, task.id)
    async with deliverer(store, Clock()) as d:
        assert await d.deliver_due() == 1
        assert await d.deliver_due() == 0  # dropped for good, not retried
    assert receiver.to("/ok") == []
    row = await only_delivery(store, task.id)
    assert (row.state, row.attempts) == ("failed", 1)
    assert row.last_error == "the task was deleted; callback dropped"


async def test_fails_three_times_then_succeeds(
    store: SQLiteStore, user_id: str, receiver: Receiver
) -> None:
    clock = Clock()
    task, body = await finished_task(store, user_id, f"{receiver.base}/flaky")
    async with deliverer(store, clock) as d:
        for attempt, interval in enumerate(SCHEDULE[:3], start=1):
            assert await d.deliver_due() == 1
            row = await only_delivery(store, task.id)
            assert (row.state, row.attempts, row.last_status) == ("pending", attempt, 503)
            assert row.last_error == "receiver answered HTTP 503"
            assert row.next_attempt_at is not None
            assert interval * 0.9 <= row.next_attempt_at - clock.now <= interval * 1.1
            view = await callback_field(store, user_id, task.id)
            assert (view["state"], view["attempts"], view["last_status"]) == (
                "pending",
                attempt,
                503,
            )
            assert await d.deliver_due() == 0  # not due before its time
            clock.now = row.next_attempt_at
        assert await d.deliver_due() == 1

    row = await only_delivery(store, task.id)
    assert (row.state, row.attempts, row.last_status, row.last_error) == (
        "delivered",
        4,
        200,
        None,
    )
    assert row.delivered_at == clock.now and row.next_attempt_at is None
    view = await callback_field(store, user_id, task.id)
    assert view == {
        "url": f"{receiver.base}/flaky",
        "state": "delivered",
        "attempts": 4,
        "last_status": 200,
        "last_error": None,
        "next_attempt_at": None,
        "delivered_at": clock.now,
    }
    hits = receiver.to("/flaky")
    assert len(hits) == 4
    assert {h.headers["webhook-id"] for h in hits} == {row.id}  # the same id on every retry
    assert all(h.body == body for h in hits)
    assert all(h.headers["content-type"] == "application/json" for h in hits)
    assert all(h.headers["user-agent"].startswith("kling-gateway") for h in hits)
    secret = await SecretStore(store, SEALER).get_or_create_secret(user_id)
    for hit in hits:
        assert msgspec.json.decode(hit.body)["state"] == "succeed"
        verify_hit(hit, [secret])


async def test_schedule_exhausted_marks_failed_visibly(
    store: SQLiteStore, user_id: str, receiver: Receiver
) -> None:
    clock = Clock()
    task, _ = await finished_task(store, user_id, f"{receiver.base}/always-500")
    async with deliverer(store, clock) as d:
        for _ in range(len(SCHEDULE) + 1):
            assert await d.deliver_due() == 1
            row = await only_delivery(store, task.id)
            if row.next_attempt_at is not None:
                clock.now = row.next_attempt_at
        assert await d.deliver_due() == 0
    row = await only_delivery(store, task.id)
    assert (row.state, row.attempts, row.last_status, row.next_attempt_at) == (
        "failed",
        len(SCHEDULE) + 1,
        500,
        None,
    )
    assert row.last_error is not None and "gave up after 5 attempts" in row.last_error
    view = await callback_field(store, user_id, task.id)
    assert (view["state"], view["attempts"], view["delivered_at"]) == ("failed", 5, None)
    assert len(receiver.to("/always-500")) == 5
    assert [r["id"] for r in await admin.list_deliveries(store, failed_only=True)] == [row.id]


async def test_a_hanging_receiver_times_out_and_is_retried(
    store: SQLiteStore, user_id: str, receiver: Receiver
) -> None:
    clock = Clock()
    task, _ = await finished_task(store, user_id, f"{receiver.base}/hang")
    async with deliverer(store, clock, timeout=0.3) as d:
        assert await d.deliver_due() == 1
    row = await only_delivery(store, task.id)
    assert (row.state, row.attempts, row.last_status) == ("pending", 1, None)
    assert row.last_error == "timed out after 0.3s"
    assert row.next_attempt_at is not None
    assert 9.0 <= row.next_attempt_at - clock.now <= 11.0
    view = await callback_field(store, user_id, task.id)
    assert (view["state"], view["last_error"]) == ("pending", "timed out after 0.3s")


async def test_410_gone_stops_for_good(
    store: SQLiteStore, user_id: str, receiver: Receiver
) -> None:
    clock = Clock()
    task, _ = await finished_task(store, user_id, f"{receiver.base}/gone")
    async with deliverer(store, clock) as d:
        assert await d.deliver_due() == 1
        clock.now += 10_000
        assert await d.deliver_due() == 0
    row = await only_delivery(store, task.id)
    assert (row.state, row.attempts, row.last_status, row.next_attempt_at) == (
        "failed",
        1,
        410,
        None,
    )
    assert row.last_error is not None and "410 Gone" in row.last_error
    view = await callback_field(store, user_id, task.id)
    assert (view["state"], view["last_status"]) == ("failed", 410)
    assert len(receiver.to("/gone")) == 1


async def test_redirects_are_not_followed(
    store: SQLiteStore, user_id: str, receiver: Receiver
) -> None:
    clock = Clock()
    task, _ = await finished_task(store, user_id, f"{receiver.base}/redirect")
    async with deliverer(store, clock) as d:
        assert await d.deliver_due() == 1
    row = await only_delivery(store, task.id)
    assert (row.state, row.attempts, row.last_status) == ("pending", 1, 302)
    assert row.last_error is not None and "not followed" in row.last_error
    assert len(receiver.to("/redirect")) == 1
    assert receiver.to("/ok") == []


async def test_retry_after_is_honoured_when_longer(
    store: SQLiteStore, user_id: str, receiver: Receiver
) -> None:
    clock = Clock()
    task, _ = await finished_task(store, user_id, f"{receiver.base}/busy")
    async with deliverer(store, clock) as d:
        assert await d.deliver_due() == 1
        row = await only_delivery(store, task.id)
        assert (row.state, row.last_status) == ("pending", 429)
        assert row.next_attempt_at is not None
        assert row.next_attempt_at - clock.now == pytest.approx(120.0)  # not the schedule's 10
        clock.now += 60
        assert await d.deliver_due() == 0
        clock.now = row.next_attempt_at
        assert await d.deliver_due() == 1
    assert len(receiver.to("/busy")) == 2


# -- signatures and rotation ------------------------------------------------------------------


async def test_rotation_sends_both_signatures_during_the_grace_period(
    store: SQLiteStore, user_id: str, receiver: Receiver
) -> None:
    clock = Clock()
    secrets = SecretStore(store, SEALER)
    old = await secrets.get_or_create_secret(user_id, now=clock.now)
    async with deliverer(store, clock) as d:
        await finished_task(store, user_id, f"{receiver.base}/ok")
        assert await d.deliver_due() == 1
        before = receiver.to("/ok")[-1]
        assert len(before.headers["webhook-signature"].split(" ")) == 1
        verify_hit(before, [old])

        new = await secrets.rotate_secret(user_id, 240.0, now=clock.now)
        assert new != old
        assert await secrets.active_secrets(user_id, now=clock.now) == [new, old]
        await finished_task(store, user_id, f"{receiver.base}/ok")
        assert await d.deliver_due() == 1
        during = receiver.to("/ok")[-1]
        assert len(during.headers["webhook-signature"].split(" ")) == 2
        verify_hit(during, [old])  # a receiver still holding only the old secret
        verify_hit(during, [new])  # one already holding only the new secret

        clock.now += 241.0  # the grace period is over
        await finished_task(store, user_id, f"{receiver.base}/ok")
        assert await d.deliver_due() == 1
        after = receiver.to("/ok")[-1]
        assert len(after.headers["webhook-signature"].split(" ")) == 1
        verify_hit(after, [new])
        with pytest.raises(Exception, match="No matching signature"):
            verify_hit(after, [old])


async def test_admin_secret_commands(store: SQLiteStore, user_id: str) -> None:
    secrets = SecretStore(store, SEALER)
    first = await admin.user_secrets(secrets, "alice")
    again = await admin.user_secrets(secrets, "alice")
    assert first.current == again.current and first.user_id == user_id
    assert printing.format_secrets(first).splitlines() == [first.current]
    rotated = await admin.user_secrets(secrets, "alice", rotate=True, grace_seconds=60)
    assert rotated.current != first.current and rotated.previous == (first.current,)
    assert "rotated" in printing.format_secrets(rotated, 60)
    with pytest.raises(admin.UnknownUser):
        await admin.user_secrets(secrets, "nobody")


async def test_a_stored_link_is_sent_absolute_and_signed_so(
    store: SQLiteStore, user_id: str, receiver: Receiver
) -> None:
    await finished_task(store, user_id, f"{receiver.base}/ok", video_link("v-1"))
    clock = Clock()
    d = CallbackDeliverer(
        store,
        SecretStore(store, SEALER),
        schedule=SCHEDULE,
        timeout=5.0,
        allow_private=True,
        worker_id="worker-1",
        clock=clock,
        links=Links("https://kling.example"),
    )
    async with d:
        assert await d.deliver_due() == 1
    secret = await SecretStore(store, SEALER).get_or_create_secret(user_id)
    (hit,) = receiver.to("/ok")
    assert (
        msgspec.json.decode(hit.body)["video_url"] == "https://kling.example/files/videos/v-1.mp4"
    )
    verify_hit(hit, [secret])  # signed over the body as sent


# -- the SSRF guard at delivery ---------------------------------------------------------------


class RecordingBackend(httpcore.AsyncNetworkBackend):
    """Connects to loopback only, recording every connection asked for."""

    def __init__(self) -> None:
        self.connects: list[str] = []
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.connects.append(host)
        if host not in LOOPBACK:
            raise AssertionError(f"a test tried to connect to {host}")
        return await self._inner.connect_tcp(host, port, timeout=timeout)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def refused_urls(port: int) -> list[str]:
    return [
        f"http://127.0.0.1:{port}/ok",
        "http://10.0.0.1:9/hook",
        "http://169.254.169.254/latest/meta-data/",
        f"http://[::1]:{port}/ok",
        f"http://0.0.0.0:{port}/ok",
        f"http://localhost:{port}/ok",
    ]


async def test_private_targets_are_refused_before_any_connection(
    store: SQLiteStore, user_id: str, receiver: Receiver
) -> None:
    clock = Clock()
    backend = RecordingBackend()
    tasks = [(await finished_task(store, user_id, url))[0] for url in refused_urls(receiver.port)]
    transport = GuardedTransport(allow_private=False, backend=backend)
    async with deliverer(store, clock, allow_private=False, transport=transport) as d:
        assert await d.deliver_due(limit=10) == len(tasks)
        clock.now += 10_000
        assert await d.deliver_due(limit=10) == 0  # refused is final: never retried
    assert backend.connects == []
    assert receiver.hits == []
    for task in tasks:
        row = await only_delivery(store, task.id)
        assert (row.state, row.attempts, row.last_status, row.next_attempt_at) == (
            "failed",
            1,
            None,
            None,
        )
        assert row.last_error is not None and row.last_error.startswith("refused: "), row
        view = await callback_field(store, user_id, task.id)
        assert view["state"] == "failed" and view["last_error"].startswith("refused: ")


async def test_the_default_transport_refuses_loopback(
    store: SQLiteStore, user_id: str, receiver: Receiver
) -> None:
    clock = Clock()
    task, _ = await finished_task(store, user_id, f"{receiver.base}/ok")
    async with deliverer(store, clock, allow_private=False) as d:
        assert await d.deliver_due() == 1
    row = await only_delivery(store, task.id)
    assert row.state == "failed"
    assert row.last_error == "refused: callback address 127.0.0.1 is not public"
    assert receiver.hits == []


async def test_connects_to_the_checked_address_keeping_the_host_name(
    store: SQLiteStore, user_id: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rebinding name: resolved once, checked, and that very address is connected to."""
    answers = iter([["127.0.0.1"], ["10.9.9.9"]])  # a second lookup would get a private one
    lookups: list[str] = []

    async def rebinding(host: str, port: int) -> list[str]:
        lookups.append(host)
        return next(answers)

    monkeypatch.setattr(egress, "resolve", rebinding)
    clock = Clock()
    backend = RecordingBackend()
    transport = GuardedTransport(allow_private=True, backend=backend)
    task, _ = await finished_task(store, user_id, f"http://rebind.test:{receiver.port}/ok")
    async with deliverer(store, clock, transport=transport) as d:
        assert await d.deliver_due() == 1
    assert lookups == ["rebind.test"]
    assert backend.connects == ["127.0.0.1"]  # the checked address, not the name
    (hit,) = receiver.to("/ok")
    assert hit.headers["host"] == f"rebind.test:{receiver.port}"
    assert (await only_delivery(store, task.id)).state == "delivered"


async def test_a_rebinding_name_answering_private_is_refused(
    store: SQLiteStore, user_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def rebinding(host: str, port: int) -> list[str]:
        return ["93.184.216.34", "169.254.169.254"]

    monkeypatch.setattr(egress, "resolve", rebinding)
    backend = RecordingBackend()
    transport = GuardedTransport(allow_private=False, backend=backend)
    task, _ = await finished_task(store, user_id, "https://rebind.test/hook")
    async with deliverer(store, Clock(), allow_private=False, transport=transport) as d:
        assert await d.deliver_due() == 1
    assert backend.connects == []
    row = await only_delivery(store, task.id)
    assert row.state == "failed"
    assert row.last_error == "refused: callback address 169.254.169.254 is not public"


# -- durability, operators, the loop ---------------------------------------------------------


async def test_a_new_worker_takes_over_an_expired_lease(tmp_path: Path, receiver: Receiver) -> None:
    path = tmp_path / "shared.db"
    first = await open_store(path)
    user, _ = await first.ensure_account("bob", time.time())
    task, _ = await finished_task(first, user, f"{receiver.base}/ok")
    clock = Clock()
    # worker-1 claims the delivery and dies before attempting it.
    crashed = deliverer(first, clock, worker_id="worker-1")
    (claimed,) = await first.claim_due_callbacks(
        "worker-1", clock.now, 10, crashed.lease_seconds(10)
    )
    await crashed.aclose()
    await first.close()

    second = await open_store(path)
    try:
        async with deliverer(second, clock, worker_id="worker-2") as d:
            assert await d.deliver_due() == 0  # still leased by worker-1
            clock.now += d.lease_seconds(10) + 1
            assert await d.deliver_due() == 1
        row = await only_delivery(second, task.id)
        assert (row.id, row.state, row.attempts) == (claimed.id, "delivered", 1)
        # worker-1 coming back late cannot overwrite what worker-2 recorded.
        claimed.state, claimed.attempts = "failed", 9
        await second.finish_callback_attempt(claimed, "worker-1")
        assert (await only_delivery(second, task.id)).state == "delivered"
        assert (await callback_field(second, user, task.id))["state"] == "delivered"
    finally:
        await second.close()
    assert len(receiver.to("/ok")) == 1


async def test_operator_lists_and_redelivers(
    store: SQLiteStore, user_id: str, receiver: Receiver
) -> None:
    clock = Clock()
    task, _ = await finished_task(store, user_id, f"{receiver.base}/gone-once")
    async with deliverer(store, clock) as d:
        await d.deliver_due()
        (failed,) = await admin.list_deliveries(store, failed_only=True)
        assert (failed["task_id"], failed["state"], failed["last_status"]) == (
            task.id,
            "failed",
            410,
        )
        table = printing.format_table([failed])
        assert failed["id"] in table and "410 Gone" in table
        assert msgspec.json.decode(printing.format_json([failed]))[0]["id"] == failed["id"]

        assert await admin.redeliver(store, failed["id"], now=clock.now)
        assert not await admin.redeliver(store, str(uuid.uuid4()), now=clock.now)
        assert await d.deliver_due() == 1
    assert await admin.list_deliveries(store, failed_only=True) == []
    (row,) = await admin.list_deliveries(store, task_id=task.id)
    assert (row["state"], row["attempts"], row["last_status"]) == ("delivered", 2, 204)
    assert (await callback_field(store, user_id, task.id))["state"] == "delivered"
    assert printing.format_table([]) == "no callback deliveries"


async def test_run_delivers_until_stopped(
    store: SQLiteStore, user_id: str, receiver: Receiver
) -> None:
    stop = asyncio.Event()
    async with deliverer(store, Clock()) as d:
        loop = asyncio.create_task(d.run(stop, idle=0.02))
        task, _ = await finished_task(store, user_id, f"{receiver.base}/ok")
        for _ in range(500):
            if (await only_delivery(store, task.id)).state == "delivered":
                break
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(loop, 5)
    assert (await only_delivery(store, task.id)).state == "delivered"


# -- the rules, on their own ------------------------------------------------------------------


def test_parse_retry_after() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after("Tue, 14 Nov 2023 22:15:20 GMT", now) == pytest.approx(120.0)
    assert parse_retry_after("Tue, 14 Nov 2023 22:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after("", now) is None
    assert parse_retry_after(None, now) is None


def test_retry_delay_jitter_retry_after_and_the_end() -> None:
    rng = random.Random(1)
    delays = [retry_delay(1, SCHEDULE, None, rng) for _ in range(200)]
    assert all(d is not None and 9.0 <= d <= 11.0 for d in delays)
    assert len(set(delays)) > 100  # jittered, not fixed
    assert retry_delay(1, SCHEDULE, 150.0, rng) == 150.0
    assert retry_delay(1, SCHEDULE, 10**9, rng) == max(SCHEDULE)  # capped
    later = retry_delay(4, SCHEDULE, 1.0, rng)
    assert later is not None and later >= 180.0
    assert retry_delay(len(SCHEDULE) + 1, SCHEDULE, None, rng) is None


def test_default_schedule_spans_at_least_a_day() -> None:
    from kling_gateway.runtime.settings import Settings

    schedule = Settings().retry_schedule
    assert sum(schedule) * 0.9 >= 24 * 3600


def test_apply_result_keeps_status_and_error() -> None:
    row = CallbackDelivery("d", "t", "u", "http://x", "succeed", b"{}")
    apply_result(row, AttemptResult("retry", 503, "HTTP 503"), 100.0, (5.0,), random.Random(0))
    assert (row.state, row.attempts, row.last_status, row.last_error) == (
        "pending",
        1,
        503,
        "HTTP 503",
    )
    apply_result(row, AttemptResult("delivered", 200, None), 200.0, (5.0,), random.Random(0))
    assert (row.state, row.attempts, row.delivered_at, row.next_attempt_at) == (
        "delivered",
        2,
        200.0,
        None,
    )
