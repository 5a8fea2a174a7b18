"""Redis for several gateway processes: rate limits they share, and task notifications.

``RedisRateLimiter`` is the GCRA of ``infra/ratelimit.py`` run inside Redis as one Lua
script, so concurrent hits from any number of processes are counted atomically, on Redis's
clock (the processes' clocks never enter the decision).

``RedisTaskEvents`` carries ``TaskEvents`` across processes over pub/sub (why pub/sub and not
PostgreSQL LISTEN/NOTIFY: docs/deployment.md, measured with bench/notify_compare.py). Each
process holds one subscriber connection and hands what arrives to a ``LocalTaskEvents``, which
keeps the waiters. Notifications are hints: a message lost while Redis is away costs a waiter
its next store re-read (``api/waiting.py``), never a wrong answer.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from kling_gateway.infra.notify import LocalTaskEvents, Subscription

log = logging.getLogger("kling_gateway.redis")

KEY_PREFIX = "kling-gateway:"
# Requests wait on the limiter: a Redis that stops answering must not hold them for long.
COMMAND_TIMEOUT = 2.0
# How often a quiet subscriber proves its connection alive (a silently dropped connection
# would otherwise look like a quiet channel forever).
HEALTH_CHECK_SECONDS = 10.0
RECONNECT_MAX_SECONDS = 5.0
# Repeated failures are logged at most this often per limiter or notifier.
LOG_EVERY_SECONDS = 30.0

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


def connect(url: str, role: str) -> aioredis.Redis:
    """A client with bounded connect and command times, named ``kling-gateway-ROLE-PID`` so
    that CLIENT LIST tells which process and which part of it holds each connection."""
    client: aioredis.Redis = aioredis.Redis.from_url(
        url,
        socket_connect_timeout=COMMAND_TIMEOUT,
        socket_timeout=COMMAND_TIMEOUT,
        health_check_interval=HEALTH_CHECK_SECONDS,
        client_name=f"kling-gateway-{role}-{os.getpid()}",
    )
    return client


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


class _Throttled:
    """Log a recurring failure once, then at most every ``LOG_EVERY_SECONDS``."""

    def __init__(self) -> None:
        self._last = -LOG_EVERY_SECONDS

    def warning(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last >= LOG_EVERY_SECONDS:
            self._last = now
            log.warning(message, *args)


class RedisRateLimiter:
    """``per_minute`` requests per key with a burst of the same size, shared by every process
    using the same Redis; the same answers as ``MemoryRateLimiter``.

    When Redis does not answer, requests are let through (and the outage logged): the limit
    protects the service, and refusing every request would be the bigger outage.
    """

    def __init__(
        self,
        url: str,
        per_minute: int,
        *,
        prefix: str = KEY_PREFIX + "rl:",
    ) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be greater than 0")
        self._redis = connect(url, "limiter")
        self._prefix = prefix
        self._interval_us = max(1, 60_000_000 // per_minute)
        self._burst_us = 60_000_000
        # register_script runs EVALSHA and loads the script on NOSCRIPT (after a Redis restart
        # or SCRIPT FLUSH), so the script text crosses the network once per server lifetime.
        self._script = self._redis.register_script(GCRA_SCRIPT)
        self._failures = _Throttled()

    async def hit(self, key: str) -> float | None:
        try:
            wait_us = await self._script(
                keys=[self._prefix + key], args=[self._interval_us, self._burst_us]
            )
        except (RedisError, OSError) as exc:
            self._failures.warning("rate limiter: Redis unavailable, not limiting: %s", exc)
            return None
        return None if wait_us is None else int(wait_us) / 1_000_000

    async def aclose(self) -> None:
        await self._redis.aclose()


class RedisTaskEvents:
    """``TaskEvents`` shared by every process on one Redis, over one pub/sub channel."""

    def __init__(
        self,
        url: str,
        *,
        channel: str | None = None,
        start_timeout: float = 10.0,
    ) -> None:
        self._redis = connect(url, "events")
        # Pub/sub ignores the database index: without it in the name, gateways sharing a Redis
        # server through different databases would wake each other's waiters.
        self.channel = channel or f"{KEY_PREFIX}{redis_db(url)}:tasks"
        self._local = LocalTaskEvents()
        self._start_timeout = start_timeout
        self._subscribed = asyncio.Event()
        self._listener: asyncio.Task[None] | None = None
        self._failures = _Throttled()
        self.received = 0  # messages taken off the channel (for tests and benches)

    @property
    def waiting(self) -> int:
        return self._local.waiting

    async def publish(self, task_id: str) -> None:
        # Waiters in this process are woken at once; our own message, arriving back through
        # the subscriber, then finds nobody left to wake.
        self._local.deliver(task_id)
        try:
            await self._redis.publish(self.channel, task_id)
        except (RedisError, OSError) as exc:
            self._failures.warning("task events: cannot publish to Redis: %s", exc)

    def subscribe(self, task_id: str) -> Subscription:
        return self._local.subscribe(task_id)

    async def wait(self, task_id: str, timeout: float) -> bool:
        return await self._local.wait(task_id, timeout)

    async def start(self) -> None:
        """Subscribe; return once subscribed, so nothing published after start() is missed.

        A Redis that does not answer at start is a configuration error, reported at once;
        later outages are ridden out by reconnecting.
        """
        if self._listener is not None:
            return
        self._listener = asyncio.create_task(self._listen(), name="redis-task-events")
        try:
            async with asyncio.timeout(self._start_timeout):
                await self._subscribed.wait()
        except TimeoutError as exc:
            await self.aclose()
            raise RedisUnavailable(
                f"task events: no subscription to Redis within {self._start_timeout:.0f}s"
            ) from exc

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
            except (RedisError, OSError) as exc:
                self._failures.warning("task events: Redis subscription lost, retrying: %s", exc)
            # Back off while Redis stays away; start over after a subscription that worked.
            delay = 0.1 if subscribed.is_set() else min(max(delay * 2, 0.1), RECONNECT_MAX_SECONDS)
            await asyncio.sleep(delay)

    async def _subscribe_and_dispatch(self, subscribed: asyncio.Event) -> None:
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self.channel)
            subscribed.set()
            if self._subscribed.is_set():
                # Messages sent while we were away are gone: let every waiter re-read the
                # store now rather than at the end of its wait slice.
                self._local.deliver_all()
            self._subscribed.set()
            while True:
                # A timeout, not a blocking read, so the health check (a PING) runs.
                message = await pubsub.get_message(timeout=HEALTH_CHECK_SECONDS)
                if message is not None and message["type"] == "message":
                    self.received += 1
                    self._local.deliver(message["data"].decode())
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]  # untyped in redis-py


class RedisUnavailable(RuntimeError):
    """Redis did not answer when the gateway needed it to start."""
