"""Redis pub/sub against PostgreSQL LISTEN/NOTIFY as the gateway's cross-process notifier.

``python -m bench.notify_compare [--count N] [--rate R] [--subscribers K]``

For each transport: K subscriber processes listen; this process publishes N messages (each
carrying its CLOCK_MONOTONIC send time, which every process on the machine shares), first
paced at R per second (latency at a steady load), then back to back (throughput). Reported:
latency from publish to delivery in a subscriber, publishes per second, and CPU per message
of the publisher, the subscribers and the server (Redis: INFO cpu; PostgreSQL: the /proc
times of the backends serving the publisher and the subscribers).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import redis.asyncio as aioredis
import uvloop

REDIS_CHANNEL = "kling-gateway:bench:notify"
PG_CHANNEL = "kg_bench_notify"
DEFAULT_REDIS = "redis://127.0.0.1:6379/15"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
TICKS = os.sysconf("SC_CLK_TCK")

Publish = Callable[[str], Awaitable[Any]]


# -- subscriber processes -----------------------------------------------------------------


async def subscribe(transport: str, url: str, count: int) -> dict[str, Any]:
    """Receive ``count`` messages; the latency of each, and this process's CPU."""
    latencies: list[float] = []
    done = asyncio.Event()

    def on_message(payload: str) -> None:
        latencies.append((time.monotonic_ns() - int(payload)) / 1e3)
        if len(latencies) >= count:
            done.set()

    server_cpu = await (_redis_listen if transport == "redis" else _pg_listen)(
        url, on_message, done
    )
    return {"latencies_us": latencies, "cpu": time.process_time(), "server_cpu": server_cpu}


async def _redis_listen(url: str, on_message: Callable[[str], None], done: asyncio.Event) -> float:
    """Listen until done; 0.0: the Redis server's CPU is read by the publisher instead."""
    client = aioredis.Redis.from_url(url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(REDIS_CHANNEL)
    _ready()
    quiet_since = time.monotonic()
    # None also stands for a swallowed subscribe confirmation: stop only after 5 quiet seconds
    # (the publisher is done and something was lost).
    while not done.is_set() and time.monotonic() - quiet_since < 5.0:
        message = await pubsub.get_message(timeout=1.0)
        if message is not None:
            on_message(message["data"].decode())
            quiet_since = time.monotonic()
    await pubsub.aclose()  # type: ignore[no-untyped-call]
    await client.aclose()
    return 0.0


async def _pg_listen(url: str, on_message: Callable[[str], None], done: asyncio.Event) -> float:
    """Listen until done; the CPU its backend spent meanwhile (read before it goes away)."""
    conn = await asyncpg.connect(url)
    pid: int = await conn.fetchval("SELECT pg_backend_pid()")
    await conn.add_listener(PG_CHANNEL, lambda _c, _p, _ch, payload: on_message(payload))
    before = proc_cpu(pid)
    _ready()
    try:
        async with asyncio.timeout(120):
            await done.wait()
        return proc_cpu(pid) - before
    finally:
        await conn.close()


def _ready() -> None:
    print("ready", flush=True)


# -- the publisher -------------------------------------------------------------------------


@dataclass
class Phase:
    transport: str
    mode: str
    count: int
    seconds: float
    latencies_us: list[float]
    publisher_cpu: float
    subscriber_cpu: float
    server_cpu: float
    subscribers: int

    def row(self) -> str:
        lat = sorted(self.latencies_us)
        p50, p99 = lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        received = len(lat)
        per_msg = lambda cpu: f"{cpu / self.count * 1e6:.0f}"  # noqa: E731 - µs of CPU
        return (
            f"| {self.transport} | {self.mode} | {self.count / self.seconds:,.0f} "
            f"| {received}/{self.count * self.subscribers} | {p50:,.0f} | {p99:,.0f} "
            f"| {statistics.fmean(lat):,.0f} | {per_msg(self.publisher_cpu)} "
            f"| {per_msg(self.subscriber_cpu)} | {per_msg(self.server_cpu)} |"
        )


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (from /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def redis_server_cpu(client: aioredis.Redis) -> float:
    info = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def run_phase(
    transport: str, url: str, mode: str, count: int, rate: float, subscribers: int
) -> Phase:
    procs = [_start_subscriber(transport, url, count) for _ in range(subscribers)]
    for p in procs:
        p.stdout.readline()  # type: ignore[union-attr]  # "ready"
    publish, close, server_cpu = await _publisher(transport, url)
    cpu0, server0, t0 = time.process_time(), await server_cpu(), time.perf_counter()
    await _publish_all(publish, count, rate if mode == "paced" else 0.0)
    seconds = time.perf_counter() - t0
    results = [json.loads(p.communicate(timeout=180)[0]) for p in procs]
    server = await server_cpu() - server0 + sum(r["server_cpu"] for r in results)
    publisher = time.process_time() - cpu0
    await close()
    return Phase(
        transport,
        mode,
        count,
        seconds,
        [x for r in results for x in r["latencies_us"]],
        publisher,
        sum(r["cpu"] for r in results) / subscribers,
        server,
        subscribers,
    )


def _start_subscriber(transport: str, url: str, count: int) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "bench.notify_compare", "--subscriber", transport]
    cmd += ["--url", url, "--count", str(count)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)


async def _publisher(
    transport: str, url: str
) -> tuple[Publish, Callable[[], Awaitable[None]], Callable[[], Awaitable[float]]]:
    if transport == "redis":
        client = aioredis.Redis.from_url(url)

        async def redis_cpu() -> float:
            return await redis_server_cpu(client)

        return (lambda p: client.publish(REDIS_CHANNEL, p)), client.aclose, redis_cpu
    conn = await asyncpg.connect(url)
    pid = await conn.fetchval("SELECT pg_backend_pid()")

    async def pg_cpu() -> float:
        return proc_cpu(pid)

    # What a notifier's publish() would send: one autocommitted pg_notify per change.
    return (lambda p: conn.execute("SELECT pg_notify($1, $2)", PG_CHANNEL, p)), conn.close, pg_cpu


async def _publish_all(publish: Publish, count: int, rate: float) -> None:
    start = time.monotonic()
    for i in range(count):
        if rate:
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        await publish(str(time.monotonic_ns()))


HEADER = (
    "| transport | mode | publishes/s | received | p50 µs | p99 µs | mean µs "
    "| publisher CPU µs/msg | subscriber CPU µs/msg | server CPU µs/msg |\n"
    "|---|---|---|---|---|---|---|---|---|---|"
)


async def compare(args: argparse.Namespace) -> list[Phase]:
    phases = []
    for transport, url in (("redis", args.redis_url), ("postgres", args.postgres_url)):
        for mode in ("paced", "burst"):
            phases.append(
                await run_phase(transport, url, mode, args.count, args.rate, args.subscribers)
            )
            print(phases[-1].row(), flush=True)
    return phases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.notify_compare", description=__doc__)
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=2000.0, help="paced publishes per second")
    parser.add_argument("--subscribers", type=int, default=2, help="subscriber processes")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS)
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    parser.add_argument("--subscriber", choices=["redis", "postgres"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.subscriber:
        result = uvloop.run(subscribe(args.subscriber, args.url, args.count))
        print(json.dumps(result), flush=True)
        return 0
    print(f"{args.count} messages, {args.subscribers} subscriber processes, {os.cpu_count()} CPUs")
    print(HEADER)
    uvloop.run(compare(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
