"""The Redis rate limiter and task notifier against a real Redis (skipped, saying why, when
none answers; failing instead under KLING_GATEWAY_TEST_REQUIRE_SERVICES=1).

Two instances in one test stand for two processes: they share nothing but the Redis server.
Across real processes: tests/e2e/test_scale_out.py.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis

from kling_gateway.infra.notify import CALLBACK_WAKEUP, WORKER_WAKEUP
from kling_gateway.infra.ratelimit import MemoryRateLimiter
from kling_gateway.infra.redis import (
    RedisRateLimiter,
    RedisTaskEvents,
    redis_db,
)
from tests.e2e.private_redis import private_redis
from tests.services import PATIENT_REDIS_TIMEOUT, fresh_redis_url, with_database

pytestmark = pytest.mark.redis
PATIENT = PATIENT_REDIS_TIMEOUT  # the deadline tests at the end set their own


@pytest.fixture
def url() -> str:
    return fresh_redis_url()


@pytest.fixture
async def admin(url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(url)
    try:
        yield client
    finally:
        await client.aclose()


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def new_key() -> str:
    return f"cred-{uuid.uuid4().hex[:8]}"


async def hits(limiter: RedisRateLimiter | MemoryRateLimiter, key: str, n: int) -> list[bool]:
    return [await limiter.hit(key) is None for _ in range(n)]


# -- the rate limiter ---------------------------------------------------------------------


async def test_limit_is_shared_by_two_limiters_and_refuses_with_retry_after(url: str) -> None:
    one, two = RedisRateLimiter(url, 4, timeout=PATIENT), RedisRateLimiter(url, 4, timeout=PATIENT)
    key = new_key()
    try:
        allowed = [await (one if i % 2 else two).hit(key) is None for i in range(8)]
        assert allowed == [True] * 4 + [False] * 4
        wait = await one.hit(key)
        assert wait is not None and 0 < wait <= 15.0  # one request's allowance: every 15 s
        assert await two.hit(new_key()) is None  # another token is counted apart
    finally:
        await one.aclose()
        await two.aclose()


@pytest.mark.parametrize("per_minute", [1, 7, 60])
async def test_burst_is_the_same_as_the_memory_limiter(url: str, per_minute: int) -> None:
    shared = RedisRateLimiter(url, per_minute, timeout=PATIENT)
    # A frozen clock: the memory limiter's burst, with no refill while it runs.
    memory = MemoryRateLimiter(per_minute, clock=lambda: 1000.0)
    try:
        key = new_key()
        expected = await hits(memory, key, per_minute + 3)
        assert expected == [True] * per_minute + [False] * 3
        # Redis's clock moves while this runs, and may refill an allowance (of at least a
        # second here) before the end; the burst itself is the same.
        got = await hits(shared, key, per_minute + 3)
        assert got[:per_minute] == expected[:per_minute]
        assert False in got[per_minute:]
    finally:
        await shared.aclose()


async def test_keys_carry_the_prefix_and_expire(url: str, admin: aioredis.Redis) -> None:
    prefix = f"test-{uuid.uuid4().hex[:6]}:"
    limiter = RedisRateLimiter(url, 6, prefix=prefix, timeout=PATIENT)
    try:
        await limiter.hit("k")
        assert await admin.keys(prefix + "*") == [f"{prefix}k".encode()]
        ttl_ms = await admin.pttl(prefix + "k")
        # The key lives exactly as long as it holds state: one 10 s interval after one hit.
        assert 0 < ttl_ms <= 10_000
    finally:
        await limiter.aclose()


async def test_the_script_is_loaded_again_after_a_script_flush(
    url: str, admin: aioredis.Redis
) -> None:
    limiter = RedisRateLimiter(url, 2, timeout=PATIENT)
    key = new_key()
    try:
        assert await limiter.hit(key) is None
        await admin.script_flush()  # as after a Redis restart: EVALSHA answers NOSCRIPT
        assert await limiter.hit(key) is None
        assert await limiter.hit(key) is not None
    finally:
        await limiter.aclose()


async def test_without_redis_this_process_counts_the_limit_itself() -> None:
    # Degraded, not open: the limit still protects the service (once per process).
    limiter = RedisRateLimiter(f"redis://127.0.0.1:{free_port()}/0", 2)
    try:
        assert await hits(limiter, "k", 3) == [True, True, False]
        assert await hits(limiter, "other", 1) == [True]
        assert limiter.breaker.down
    finally:
        await limiter.aclose()


# -- task notifications ---------------------------------------------------------------------


@pytest.fixture
async def pair(url: str) -> AsyncIterator[tuple[RedisTaskEvents, RedisTaskEvents]]:
    one, two = RedisTaskEvents(url, timeout=PATIENT), RedisTaskEvents(url, timeout=PATIENT)
    await one.start()
    await two.start()
    try:
        yield one, two
    finally:
        await one.aclose()
        await two.aclose()


async def until(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` (a state of this process, so no notification to wait on)."""
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the condition never held")


async def until_waiting(events: RedisTaskEvents, n: int = 1) -> None:
    await until(lambda: events.waiting >= n)


async def test_a_publish_in_one_instance_wakes_a_waiter_in_another(
    pair: tuple[RedisTaskEvents, RedisTaskEvents],
) -> None:
    one, two = pair
    for task_id in ("task-1", WORKER_WAKEUP):
        waiter = asyncio.create_task(one.wait(task_id, 30.0))
        await until_waiting(one)
        await two.publish(task_id)
        assert await waiter is True


async def test_a_publish_wakes_waiters_of_that_task_only(
    pair: tuple[RedisTaskEvents, RedisTaskEvents],
) -> None:
    one, two = pair
    other = asyncio.create_task(one.wait("task-other", 30.0))
    mine = asyncio.create_task(one.wait("task-mine", 30.0))
    await until_waiting(one, 2)
    await two.publish("task-mine")
    assert await mine is True
    assert not other.done()
    await two.publish("task-other")
    assert await other is True


async def test_instances_on_other_databases_are_not_woken(url: str) -> None:
    assert redis_db(url) == 15
    other_db = with_database(url, "14")
    here, there = RedisTaskEvents(url, timeout=PATIENT), RedisTaskEvents(other_db, timeout=PATIENT)
    await here.start()
    await there.start()
    try:
        assert here.channel != there.channel
        waiter = asyncio.create_task(there.wait("task-1", 30.0))
        await until_waiting(there)
        await here.publish("task-1")
        await here.publish(WORKER_WAKEUP)
        # Our own subscriber has the messages back, so the other's would have had them too.
        await until(lambda: here.received >= 2)
        assert there.received == 0 and not waiter.done()
        waiter.cancel()
    finally:
        await here.aclose()
        await there.aclose()


async def test_a_process_without_task_waiters_hears_only_the_wake_ups(url: str) -> None:
    api, worker = (
        RedisTaskEvents(url, timeout=PATIENT),
        RedisTaskEvents(url, task_changes=False, timeout=PATIENT),
    )
    await api.start()
    await worker.start()
    try:
        woken = asyncio.create_task(worker.wait(CALLBACK_WAKEUP, 30.0))
        await until_waiting(worker)
        for task_id in ("task-1", "task-2", WORKER_WAKEUP, CALLBACK_WAKEUP):
            await api.publish(task_id)
        assert await woken is True
        await until(lambda: api.received >= 4)  # the API process hears all four back
        assert worker.received == 2  # the worker parsed the two wake-ups, no task change
    finally:
        await api.aclose()
        await worker.aclose()


async def test_after_losing_its_connection_it_resubscribes_and_wakes_every_waiter(
    pair: tuple[RedisTaskEvents, RedisTaskEvents], admin: aioredis.Redis
) -> None:
    one, two = pair
    waiter = asyncio.create_task(one.wait("task-never-published", 300.0))
    await until_waiting(one)
    # Kill the subscriber connections of this process (by name: other tests' Redis clients
    # stay alone). Whatever was published meanwhile is lost, so every waiter must re-check.
    for client in await admin.client_list(_type="pubsub"):
        if client["name"].startswith("kling-gateway-events-"):
            await admin.client_kill_filter(_id=client["id"])
    assert await waiter is True
    # And it listens again: a later publish arrives.
    again = asyncio.create_task(one.wait("task-2", 300.0))
    await until_waiting(one)
    await two.publish("task-2")
    assert await again is True


async def test_a_redis_down_at_start_leaves_it_degraded_until_redis_answers() -> None:
    with private_redis(started=False) as server:
        events = RedisTaskEvents(server.url, start_timeout=0.2)
        other = RedisTaskEvents(server.url, start_timeout=0.2)
        try:
            await events.start()  # does not raise: the process starts degraded
            assert events.degraded and events.breaker.down
            # Local waiters still work while Redis is away.
            waiter = asyncio.create_task(events.wait("t-local", 30.0))
            await until_waiting(events)
            await events.publish("t-local")
            assert await waiter is True
            server.start()
            await until(lambda: not events.degraded)
            await other.start()
            assert not other.degraded
            remote = asyncio.create_task(events.wait("t-remote", 30.0))
            await until_waiting(events)
            await other.publish("t-remote")
            assert await remote is True
        finally:
            await events.aclose()
            await other.aclose()


async def through_redis(limiter: RedisRateLimiter) -> None:
    """Hit other keys until one is counted by Redis (its breaker closed after the call)."""
    for _ in range(300):
        await limiter.hit(new_key())
        if not limiter.breaker.down:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("Redis never answered within the deadline")


async def test_a_paused_redis_costs_one_deadline_then_is_skipped() -> None:
    with private_redis() as server:
        limiter = RedisRateLimiter(server.url, 3, timeout=0.2)
        try:
            await through_redis(limiter)  # connected (a loaded machine may miss one 0.2 s)
            key = new_key()
            assert await hits(limiter, key, 1) == [True]  # through Redis
            assert not limiter.breaker.down
            server.pause()
            # The first call runs into the deadline and opens the breaker; the rest skip
            # Redis without waiting and are counted by this process alone (3 per minute).
            assert await hits(limiter, key, 4) == [True, True, True, False]
            assert limiter.breaker.down and limiter.breaker.skipped == 3
            server.resume()
            await through_redis(limiter)  # back once a trial call after the cool-down answers
        finally:
            server.resume()
            await limiter.aclose()


async def test_a_paused_redis_does_not_hold_publishers() -> None:
    with private_redis() as server:
        events = RedisTaskEvents(server.url, timeout=0.2)
        try:
            await events.start()
            server.pause()
            for _ in range(20):
                await events.publish("t")  # at most one deadline in all, then skipped
            assert events.breaker.down and events.breaker.skipped >= 19
        finally:
            server.resume()
            await events.aclose()
