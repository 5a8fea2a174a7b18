"""Redis for several gateway processes: rate limits they share, and task notifications.

``RedisRateLimiter`` is the GCRA of ``infra/ratelimit.py`` run inside Redis as one Lua
script, so concurrent hits from any number of processes are counted atomically, on Redis's
clock (the processes' clocks never enter the decision).

``RedisTaskEvents`` carries ``TaskEvents`` across processes over pub/sub (why pub/sub and not
PostgreSQL LISTEN/NOTIFY: docs/deployment.md, measured with bench/notify_compare.py). Each
process holds one subscriber connection and hands what arrives to a ``LocalTaskEvents``, which
keeps the waiters. Notifications are hints: a message lost while Redis is away costs a waiter
its next store re-read (``api/waiting.py``), never a wrong answer.

Redis is optional at run time: a process whose Redis is down (at start or later) runs
degraded — rate limits counted in this process, wake-ups by store re-reads — says so once,
and goes back to Redis when it answers again. Every call has a short deadline and goes
through a ``Breaker``: after a failure Redis is skipped for a while, so a hung or paused Redis
costs one deadline, not one per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from kling_gateway.infra.notify import WAKEUPS, LocalTaskEvents, Subscription
from kling_gateway.infra.ratelimit import MemoryRateLimiter

log = logging.getLogger("kling_gateway.redis")
T = TypeVar("T")

KEY_PREFIX = "kling-gateway:"
# Requests wait on the limiter: a Redis that stops answering must not hold them for long.
COMMAND_TIMEOUT = 0.25
# After a failure Redis is skipped this long (doubling while it stays away, up to the max).
COOLDOWN_SECONDS = 1.0
COOLDOWN_MAX_SECONDS = 15.0
# How often a quiet subscriber proves its connection alive (a silently dropped connection
# would otherwise look like a quiet channel forever).
HEALTH_CHECK_SECONDS = 10.0
RECONNECT_MAX_SECONDS = 5.0

# GCRA over integer microseconds: Lua numbers are doubles, exact for integers up to 2^53, and
# microseconds since 1970 stay far below that, so no rounding drift accumulates.
# KEYS[1]: the key; ARGV[1]: emission interval (µs); ARGV[2]: burst (µs).
# Returns nil when allowed, else the microseconds until the next hit would be allowed.
GCRA_SCRIPT = """
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local ahead = tat - now
if ahead > burst - interval then
  return ahead - (burst - interval)
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX',
           math.ceil((new_tat - now) / 1000))
return nil
"""


def connect(url: str, role: str, timeout: float = COMMAND_TIMEOUT) -> aioredis.Redis:
    """A client with bounded connect and command times, named ``kling-gateway-ROLE-PID`` so
    that CLIENT LIST tells which process and which part of it holds each connection."""
    client: aioredis.Redis = aioredis.Redis.from_url(
        url,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        health_check_interval=HEALTH_CHECK_SECONDS,
        client_name=f"kling-gateway-{role}-{os.getpid()}",
    )
    return client


async def ping(url: str, timeout: float) -> str | None:
    """None when Redis at ``url`` answers a PING within ``timeout``, else why not."""
    client = connect(url, "probe", timeout)
    try:
        async with asyncio.timeout(timeout):
            await client.ping()
    except (RedisError, OSError, TimeoutError) as exc:
        return str(exc) or type(exc).__name__
    finally:
        await client.aclose()
    return None


class RedisDown(Exception):
    """Redis was skipped (the breaker is open) or failed within its deadline."""


class Breaker:
    """Calls to one Redis, each with a deadline; after a failure, none for a cool-down.

    While open every call fails at once (``RedisDown``); when the cool-down ends one call
    tries Redis again (the others still fail at once) and closes the breaker if it answers.
    The first failure and the recovery are logged once each, not per call.
    """

    def __init__(
        self,
        name: str,
        timeout: float = COMMAND_TIMEOUT,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.timeout = timeout
        self._clock = clock
        self._open_until = 0.0
        self._cooldown = COOLDOWN_SECONDS
        self._trying = False
        self.down = False
        self.skipped = 0  # calls answered at once while open (for tests and benches)

    async def call(self, make: Callable[[], Awaitable[T]]) -> T:
        if self._trying or self._clock() < self._open_until:
            self.skipped += 1
            raise RedisDown(f"{self.name}: Redis skipped for now")
        self._trying = self.down  # a trial call after a cool-down: one at a time
        try:
            async with asyncio.timeout(self.timeout):
                result = await make()
        except (RedisError, OSError, TimeoutError) as exc:
            self.trip(exc)
            raise RedisDown(f"{self.name}: {exc or type(exc).__name__}") from exc
        finally:
            self._trying = False
        self.reset()
        return result

    def trip(self, exc: BaseException) -> None:
        if not self.down:
            log.warning(
                "%s: Redis unavailable (%s); running degraded until it answers again",
                self.name,
                str(exc) or type(exc).__name__,
            )
        else:
            self._cooldown = min(self._cooldown * 2, COOLDOWN_MAX_SECONDS)
        self.down = True
        self._open_until = self._clock() + self._cooldown

    def reset(self) -> None:
        if self.down:
            log.warning("%s: Redis answers again; no longer degraded", self.name)
        self.down = False
        self._cooldown = COOLDOWN_SECONDS
        self._open_until = 0.0


def redis_db(url: str) -> int:
    """The database index a redis:// URL selects (``/N`` or ``?db=N``; default 0)."""
    parts = urlsplit(url)
    path = parts.path.strip("/")
    if path.isdigit():
        return int(path)
    for pair in parts.query.split("&"):
        name, _, value = pair.partition("=")
        if name == "db" and value.isdigit():
            return int(value)
    return 0


class RedisRateLimiter:
    """``per_minute`` requests per key with a burst of the same size, shared by every process
    using the same Redis; the same answers as ``MemoryRateLimiter``.

    While Redis does not answer, this process counts the limit alone (``MemoryRateLimiter``):
    the limit still protects the service, at worst once per process.
    """

    def __init__(
        self,
        url: str,
        per_minute: int,
        *,
        prefix: str = KEY_PREFIX + "rl:",
        timeout: float = COMMAND_TIMEOUT,
    ) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be greater than 0")
        self._redis = connect(url, "limiter", timeout)
        self._prefix = prefix
        self._interval_us = max(1, 60_000_000 // per_minute)
        self._burst_us = 60_000_000
        # register_script runs EVALSHA and loads the script on NOSCRIPT (after a Redis restart
        # or SCRIPT FLUSH), so the script text crosses the network once per server lifetime.
        self._script = self._redis.register_script(GCRA_SCRIPT)
        self.breaker = Breaker("rate limiter", timeout)
        self._local = MemoryRateLimiter(per_minute)

    async def hit(self, key: str) -> float | None:
        try:
            wait_us = await self.breaker.call(
                lambda: self._script(
                    keys=[self._prefix + key], args=[self._interval_us, self._burst_us]
                )
            )
        except RedisDown:
            return await self._local.hit(key)
        return None if wait_us is None else int(wait_us) / 1_000_000

    async def aclose(self) -> None:
        await self._redis.aclose()


class RedisTaskEvents:
    """``TaskEvents`` shared by every process on one Redis, over two pub/sub channels.

    Wake-ups of workers and callback deliverers (``WAKEUPS``) go on one channel and task
    changes on the other. A process that serves no waiters of tasks (a stand-alone worker:
    ``task_changes=False``) subscribes to the wake-ups alone, so it does not parse a message
    for every change of every task in the cluster.
    """

    def __init__(
        self,
        url: str,
        *,
        channel: str | None = None,
        task_changes: bool = True,
        start_timeout: float = 2.0,
        timeout: float = COMMAND_TIMEOUT,
    ) -> None:
        self._redis = connect(url, "events", timeout)
        # Pub/sub ignores the database index: without it in the name, gateways sharing a Redis
        # server through different databases would wake each other's waiters.
        self.channel = channel or f"{KEY_PREFIX}{redis_db(url)}:tasks"
        self.wakeup_channel = f"{self.channel}:wakeups"
        self._channels = [self.wakeup_channel, *([self.channel] if task_changes else [])]
        self._local = LocalTaskEvents()
        self._start_timeout = start_timeout
        self._subscribed = asyncio.Event()
        self._listener: asyncio.Task[None] | None = None
        self.breaker = Breaker("task events", timeout)
        self.received = 0  # messages taken off the channel (for tests and benches)

    @property
    def waiting(self) -> int:
        return self._local.waiting

    @property
    def degraded(self) -> bool:
        """No subscription now: other processes' changes arrive by store re-reads only."""
        return not self._subscribed.is_set() or self.breaker.down

    async def publish(self, task_id: str) -> None:
        # Waiters in this process are woken at once; our own message, arriving back through
        # the subscriber, then finds nobody left to wake.
        self._local.deliver(task_id)
        with contextlib.suppress(RedisDown):  # a hint: waiters re-read the store anyway
            channel = self.wakeup_channel if task_id in WAKEUPS else self.channel
            await self.breaker.call(lambda: self._redis.publish(channel, task_id))

    def subscribe(self, task_id: str) -> Subscription:
        return self._local.subscribe(task_id)

    async def wait(self, task_id: str, timeout: float) -> bool:
        return await self._local.wait(task_id, timeout)

    async def start(self) -> None:
        """Subscribe; return once subscribed, so nothing published after start() is missed.

        A Redis that does not answer within ``start_timeout`` does not stop the start: the
        process runs degraded (logged once) and subscribes as soon as Redis answers.
        """
        if self._listener is not None:
            return
        self._listener = asyncio.create_task(self._listen(), name="redis-task-events")
        try:
            async with asyncio.timeout(self._start_timeout):
                await self._subscribed.wait()
        except TimeoutError:
            self.breaker.trip(RedisUnavailable(f"no subscription within {self._start_timeout}s"))

    async def aclose(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
        await self._redis.aclose()

    async def _listen(self) -> None:
        delay = 0.0
        while True:
            subscribed = asyncio.Event()
            try:
                await self._subscribe_and_dispatch(subscribed)
            except (RedisError, OSError, TimeoutError) as exc:
                self._subscribed.clear()
                self.breaker.trip(exc)
            # Back off while Redis stays away; start over after a subscription that worked.
            delay = 0.1 if subscribed.is_set() else min(max(delay * 2, 0.1), RECONNECT_MAX_SECONDS)
            await asyncio.sleep(delay)

    async def _subscribe_and_dispatch(self, subscribed: asyncio.Event) -> None:
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        try:
            async with asyncio.timeout(max(1.0, self.breaker.timeout * 4)):
                await pubsub.subscribe(*self._channels)
            subscribed.set()
            self._subscribed.set()
            self.breaker.reset()
            # Messages sent while we were away are gone: let every waiter re-read the store
            # now rather than at the end of its wait slice.
            self._local.deliver_all()
            while True:
                # A timeout, not a blocking read, so the health check (a PING) runs.
                message = await pubsub.get_message(timeout=HEALTH_CHECK_SECONDS)
                if message is not None and message["type"] == "message":
                    self.received += 1
                    self._local.deliver(message["data"].decode())
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]  # untyped in redis-py


class RedisUnavailable(RuntimeError):
    """Redis did not answer when the gateway needed it."""
