"""`python -m bench.callbacks_bench`: callbacks of many tasks that finish at once.

The bench of "Dependable callbacks": deliveries per second to a loopback receiver with
``--tasks`` tasks finishing at once, and the time from a task finishing to its callback
arriving.

One `kling-gateway serve` (API, worker and callback deliverer in one process, SQLite, the local
provider without rendering, ``--callback-allow-private``, pinned to CPU 0) gets ``--tasks``
asynchronous video tasks, each with a ``callback_url`` on the receiver. The tasks become ready
``--delay`` seconds after creation, later than the last one is created, so they all finish in
one burst as the worker checks them. The receiver is this module run with ``--receiver``: a
raw HTTP/1.1 server on asyncio streams (keep-alive, answers 204 at once) in its own process on
CPU 1, which notes the wall clock at which each callback's body has been read, with its
headers and body. For each task:

    latency = the receiver's clock when the callback arrived - the record's `finished_at`

(the server's clock, written by the worker when it finished the task; same machine, same
clock). So it covers the outbox row becoming due, the deliverer noticing and claiming it,
signing, the POST and the receiver reading it. Deliveries per second are the tasks over the
span from the first arrival to the last. Every `webhook-signature` is checked against the
user's secret (`kling-gateway callbacks secret`), and every `webhook-id` must arrive once.
Results go to ``bench/callbacks_results.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import datetime
import hashlib
import hmac
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import httpx

from bench.common import (
    BENCH_DIR,
    BIN,
    HOST,
    LOAD_CPU,
    Server,
    free_port,
    gateway_cmd,
    log,
    machine,
)
from bench.longpoll import issue_token, percentile, post

RESULTS_FILE = BENCH_DIR / "callbacks_results.md"
CREATE_CONCURRENCY = 64
BATCH = 500  # ids per retrieve_batch (the server allows up to 1000)
USER = "bench"
SAMPLE_SECONDS = 0.1


@dataclass(frozen=True, slots=True)
class Options:
    tasks: int = 1000
    delay: float = 15.0  # seconds from creation until a task can finish
    check_interval: float = 0.5  # the worker's first wait between checks of a task
    worker_concurrency: int = 64  # the product's default
    idle_poll_seconds: float = 1.0  # the product's default (the deliverer's idle rest too)
    timeout: float = 120.0  # how long to wait for every callback once the tasks are created


# -- the receiver (its own process) ------------------------------------------------------------


class Receiver:
    """Every callback POST as it arrived; GET /stats and GET /arrivals report them."""

    def __init__(self) -> None:
        self.arrivals: list[dict[str, Any]] = []
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                method, path, headers = _parse_head(head)
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if method == "POST":
                    arrived = time.time()
                    self.arrivals.append(
                        {
                            "arrived": arrived,
                            "id": headers.get("webhook-id"),
                            "timestamp": headers.get("webhook-timestamp"),
                            "signature": headers.get("webhook-signature"),
                            "user_agent": headers.get("user-agent"),
                            "body": body.decode(),
                        }
                    )
                    writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                elif path == "/arrivals":
                    _answer_json(writer, {"arrivals": self.arrivals})
                else:
                    stats = {"arrivals": len(self.arrivals), "connections": self.connections}
                    _answer_json(writer, stats)
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    return
        finally:
            writer.close()


def _parse_head(raw: bytes) -> tuple[str, str, dict[str, str]]:
    lines = raw.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    return method, path, headers


def _answer_json(writer: asyncio.StreamWriter, value: object) -> None:
    payload = json.dumps(value).encode()
    head = (
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        f"content-length: {len(payload)}\r\n\r\n"
    )
    writer.write(head.encode() + payload)


async def _receive(port: int) -> None:
    receiver = Receiver()
    server = await asyncio.start_server(receiver.handle, HOST, port, backlog=1024)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def receiver_main(port: int) -> int:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency of the gateway
        asyncio.run(_receive(port))
    else:
        uvloop.run(_receive(port))
    return 0


# -- the run -------------------------------------------------------------------------------------


@dataclass
class Outcome:
    options: Options
    ids: list[str]
    records: dict[str, dict[str, Any]]
    arrivals: list[dict[str, Any]]
    secret: str
    create_seconds: float
    last_created_at: float  # client wall clock when the last creation was answered
    receiver_connections: int
    cpu_samples: list[tuple[float, float]]  # (wall clock, server CPU seconds so far)


async def create_tasks(port: int, token: str, count: int, hook: str) -> tuple[list[str], float]:
    gate = asyncio.Semaphore(CREATE_CONCURRENCY)
    last = 0.0

    async def one(i: int) -> str:
        nonlocal last
        async with gate:
            body = {
                "action": "text2video",
                "prompt": f"bench {i}",
                "async": True,
                "callback_url": f"{hook}?n={i}",
            }
            answer = await post(port, "/kling/videos", token, body)
        assert answer.status == 200, answer.record
        last = max(last, answer.received_at)
        return str(answer.record["task_id"])

    ids = list(await asyncio.gather(*(one(i) for i in range(count))))
    return ids, last


async def wait_for_arrivals(
    client: httpx.AsyncClient, server: Server, count: int, timeout: float
) -> tuple[int, list[tuple[float, float]]]:
    """Until ``count`` callbacks arrived; the server's CPU time sampled on the way."""
    deadline = time.monotonic() + timeout
    seen, samples = 0, []
    while time.monotonic() < deadline:
        samples.append((time.time(), server.cpu_seconds()))
        seen = int((await client.get("/stats")).json()["arrivals"])
        if seen >= count:
            break
        await asyncio.sleep(SAMPLE_SECONDS)
    samples.append((time.time(), server.cpu_seconds()))
    return seen, samples


async def fetch_records(port: int, token: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), BATCH):
        body: dict[str, object] = {"action": "retrieve_batch", "ids": ids[start : start + BATCH]}
        answer = await post(port, "/kling/tasks", token, body)
        assert answer.status == 200, answer.record
        items: list[dict[str, Any]] = answer.record["items"]  # type: ignore[assignment]
        found.update((str(item["id"]), item) for item in items)
    return found


def user_secret(data_dir: str) -> str:
    cmd = [str(BIN / "kling-gateway"), "callbacks", "secret", "--user", USER]
    done = subprocess.run([*cmd, "--data-dir", data_dir], capture_output=True, text=True)
    done.check_returncode()
    return done.stdout.splitlines()[0].strip()


def run(options: Options) -> Outcome:
    data_dir = tempfile.mkdtemp(prefix="kg-callbacks-")
    token = issue_token(data_dir)
    secret = user_secret(data_dir)  # made now, so the deliverer's first lookup finds it
    port, hook_port = free_port(), free_port()
    receiver_cmd = [sys.executable, "-m", "bench.callbacks_bench", "--receiver", str(hook_port)]
    extra = (
        "--no-local-render",
        "--callback-allow-private",
        f"--local-delay={options.delay}",
        f"--check-interval={options.check_interval}",
        "--check-max-interval=1",
        "--rate-limit-per-minute=0",
        f"--worker-concurrency={options.worker_concurrency}",
        f"--idle-poll-seconds={options.idle_poll_seconds}",
    )
    receiver = Server("callbacks-receiver", receiver_cmd, port=hook_port, cpu=LOAD_CPU)
    server = Server("callbacks", gateway_cmd(data_dir, port, *extra), port=port)
    try:
        with receiver, server:
            if (os.cpu_count() or 1) >= 2:
                os.sched_setaffinity(0, {int(LOAD_CPU)})
            return asyncio.run(_measure(options, server, hook_port, token, secret))
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


async def _measure(
    options: Options, server: Server, hook_port: int, token: str, secret: str
) -> Outcome:
    port = server.port
    assert port is not None
    hook = f"http://{HOST}:{hook_port}/hook"
    started = time.monotonic()
    ids, last_created_at = await create_tasks(port, token, options.tasks, hook)
    create_seconds = time.monotonic() - started
    log(f"created {len(ids)} tasks in {create_seconds:.1f} s; waiting for their callbacks")
    async with httpx.AsyncClient(base_url=f"http://{HOST}:{hook_port}", trust_env=False) as rx:
        seen, samples = await wait_for_arrivals(
            rx, server, len(ids), options.delay + options.timeout
        )
        # A moment more, so that a duplicate sent just after the last first arrival is caught.
        await asyncio.sleep(1.0)
        log(f"{seen} callbacks arrived; reading the records")
        stats = (await rx.get("/stats")).json()
        arrivals: list[dict[str, Any]] = (await rx.get("/arrivals")).json()["arrivals"]
    records = await fetch_records(port, token, ids)
    return Outcome(
        options,
        ids,
        records,
        arrivals,
        secret,
        create_seconds,
        last_created_at,
        int(stats["connections"]),
        samples,
    )


# -- the figures -------------------------------------------------------------------------------


def cpu_share(samples: list[tuple[float, float]], start: float, end: float) -> float:
    """The server's CPU time over wall time between the samples around ``start`` and ``end``."""
    before = [s for s in samples if s[0] <= start] or samples[:1]
    after = [s for s in samples if s[0] >= end] or samples[-1:]
    (t0, c0), (t1, c1) = before[-1], after[0]
    return (c1 - c0) / (t1 - t0) if t1 > t0 else float("nan")


def signature_ok(secret: str, arrival: dict[str, Any]) -> bool:
    msg_id, timestamp, header = arrival["id"], arrival["timestamp"], arrival["signature"]
    if not (msg_id and timestamp and header):
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + arrival["body"].encode()
    wanted = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(given, wanted) for given in header.split())


def figures(outcome: Outcome) -> list[tuple[str, str]]:
    """The table's rows: (figure, value)."""
    ids = set(outcome.ids)
    arrivals = sorted(outcome.arrivals, key=lambda a: a["arrived"])
    per_id = collections.Counter(a["id"] for a in arrivals)
    duplicates = sum(n - 1 for n in per_id.values() if n > 1)
    first_by_task: dict[str, float] = {}
    ids_by_task: dict[str, set[str]] = collections.defaultdict(set)
    for a in arrivals:
        task_id = str(json.loads(a["body"]).get("task_id"))
        ids_by_task[task_id].add(a["id"])
        first_by_task.setdefault(task_id, a["arrived"])
    missing = len(ids - set(first_by_task))
    strangers = len(set(first_by_task) - ids)
    bad_signatures = sum(not signature_ok(outcome.secret, a) for a in arrivals)

    finished = {
        t: float(r["finished_at"])
        for t, r in outcome.records.items()
        if isinstance(r.get("finished_at"), (int, float))
    }
    lat = [(first_by_task[t] - f) * 1000 for t, f in finished.items() if t in first_by_task]
    server_lat = [
        (float(r["callback"]["delivered_at"]) - finished[t]) * 1000
        for t, r in outcome.records.items()
        if t in finished and isinstance((r.get("callback") or {}).get("delivered_at"), float)
    ]
    attempts = collections.Counter(
        int((r.get("callback") or {}).get("attempts") or 0) for r in outcome.records.values()
    )
    states = collections.Counter(
        str((r.get("callback") or {}).get("state")) for r in outcome.records.values()
    )
    times = [a["arrived"] for a in arrivals]
    first, last = (times[0], times[-1]) if times else (float("nan"), float("nan"))
    span = last - first
    fin = sorted(finished.values())
    fin_span = fin[-1] - fin[0] if fin else float("nan")
    rate = len(first_by_task) / span if span > 0 else float("nan")
    overall = len(first_by_task) / (last - fin[0]) if fin and last > fin[0] else float("nan")
    all_created_first = bool(fin) and outcome.last_created_at < fin[0]
    busy = cpu_share(outcome.cpu_samples, fin[0] if fin else first, last)

    def ms(values: list[float], q: float) -> str:
        return f"{percentile(values, q):.1f} ms" if values else "n/a"

    rows = [
        ("tasks (all with a callback_url)", f"{len(ids)}"),
        ("tasks finished (with `finished_at`)", f"{len(finished)}"),
        ("callbacks arrived (POSTs)", f"{len(arrivals)}"),
        ("tasks whose callback arrived", f"{len(first_by_task)} (missing: {missing})"),
        ("duplicate arrivals (same `webhook-id` again)", f"{duplicates}"),
        (
            "tasks with more than one `webhook-id`",
            f"{sum(len(v) > 1 for v in ids_by_task.values())}",
        ),
        ("arrivals for unknown task ids", f"{strangers}"),
        ("arrivals with a bad or missing signature", f"{bad_signatures}"),
        (
            "**deliveries per second** (tasks / first to last arrival)",
            f"**{rate:.0f}/s** ({len(first_by_task)} in {span:.2f} s)",
        ),
        ("first finish to last arrival", f"{last - fin[0]:.2f} s ({overall:.0f}/s)"),
        ("first to last finish (the worker's burst)", f"{fin_span:.2f} s"),
        ("**finish -> arrival p50**", f"**{ms(lat, 50)}**"),
        ("finish -> arrival p90", ms(lat, 90)),
        ("**finish -> arrival p99**", f"**{ms(lat, 99)}**"),
        ("finish -> arrival max", ms(lat, 100)),
        ("finish -> arrival min", f"{min(lat):.1f} ms" if lat else "n/a"),
        ("finish -> arrival mean", f"{statistics.fmean(lat):.1f} ms" if lat else "n/a"),
        (
            "finish -> `delivered_at` p50 / p99 (server clock)",
            f"{ms(server_lat, 50)} / {ms(server_lat, 99)}",
        ),
        ("delivery attempts per task", ", ".join(f"{k}: {v}" for k, v in sorted(attempts.items()))),
        ("delivery states", ", ".join(f"{k}: {v}" for k, v in sorted(states.items()))),
        ("server CPU busy, first finish to last arrival", f"{busy:.0%} of one CPU"),
        ("receiver connections opened", f"{outcome.receiver_connections}"),
        ("creating the tasks took", f"{outcome.create_seconds:.1f} s"),
        ("every task created before the first finish", f"{all_created_first}"),
    ]
    return rows


def report(outcome: Outcome, command: str) -> str:
    table = "\n".join(f"| {name} | {value} |" for name, value in figures(outcome))
    o = outcome.options
    host = machine()
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""# Callbacks of {o.tasks} tasks finishing at once

{date}; `{command}` on {host["nproc"]} CPUs ({host["cpu"]}), {host["memory"]},
Python {host["python"]}, kernel {host["kernel"]}.

One `kling-gateway serve` process (API, worker and callback deliverer; SQLite; local provider
without rendering, ready {o.delay:g} s after creation; check interval {o.check_interval:g} s;
worker concurrency {o.worker_concurrency}; idle poll {o.idle_poll_seconds:g} s;
`--callback-allow-private`; pinned to CPU 0). The receiver (raw HTTP/1.1 on asyncio streams
with uvloop, keep-alive, 204 at once; its own process on CPU 1) notes the wall clock when each
callback's body has been read. The client (CPU 1) creates the {o.tasks} tasks, each with a
`callback_url` on the receiver, and is idle while they finish.

Latency is from the task's `finished_at` in its record (the worker's clock when it finished
the task) to the callback's arrival at the receiver (same machine, same clock). Deliveries per
second are the tasks over the span from the first arrival to the last.

| figure | value |
|---|---|
{table}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.callbacks_bench", description=__doc__)
    defaults = Options()
    parser.add_argument("--tasks", type=int, default=defaults.tasks, help="tasks finishing at once")
    parser.add_argument("--delay", type=float, default=defaults.delay, help="seconds to ready")
    parser.add_argument(
        "--worker-concurrency", type=int, default=defaults.worker_concurrency, help="of the worker"
    )
    parser.add_argument(
        "--idle-poll-seconds",
        type=float,
        default=defaults.idle_poll_seconds,
        help="the worker's (and deliverer's) idle poll",
    )
    parser.add_argument("--receiver", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.receiver is not None:
        return receiver_main(args.receiver)
    options = Options(
        tasks=args.tasks,
        delay=args.delay,
        worker_concurrency=args.worker_concurrency,
        idle_poll_seconds=args.idle_poll_seconds,
    )
    given = sys.argv[1:] if argv is None else argv
    command = " ".join([".venv/bin/python -m bench.callbacks_bench", *given])
    outcome = run(options)
    text = report(outcome, command)
    RESULTS_FILE.write_text(text)
    log(f"wrote {RESULTS_FILE}")
    print(text)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())
