"""`python -m bench.longpoll`: many concurrent long-poll waiters on one API process.

One `kling-gateway serve` (API and worker in one process, SQLite, the local provider without
rendering) gets ``--tasks`` video tasks, then one `retrieve` with ``wait`` per task, all held
at once. The tasks become ready ``--delay`` seconds after creation, later than every waiter is
in place, and finish as the worker gets to them. For each answer:

    latency = the client's clock when the whole answer was read - the record's `finished_at`

(the server's clock, written by the worker when it finished the task; same machine, same
clock). So it covers the store write, the notification, the waiter's re-read, the answer and
the client reading it. Memory is the server's VmRSS before the waiters connect, its highest
VmRSS sampled while they are held, and VmHWM at the end.

The client uses raw asyncio streams (one connection per waiter, no pool) so that its own cost
stays small beside the server's; it runs on the other CPU than the server when there are two.
Results go to ``bench/longpoll_results.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

from bench.common import (
    BENCH_DIR,
    BIN,
    HOST,
    LOAD_CPU,
    Server,
    _status_kb,
    free_port,
    gateway_cmd,
    log,
    machine,
)

RESULTS_FILE = BENCH_DIR / "longpoll_results.md"
WAIT_SECONDS = 60  # the server's maximum
CREATE_CONCURRENCY = 64
SAMPLE_SECONDS = 0.2


@dataclass(frozen=True, slots=True)
class Options:
    tasks: int = 2000
    delay: float = 20.0  # seconds from creation until a task can finish
    check_interval: float = 0.5  # the worker's first wait between checks of a task
    worker_concurrency: int = 64  # the product's default


@dataclass
class Answer:
    sent_at: float  # client wall clock, once the request was written
    received_at: float  # client wall clock, after the whole answer was read
    status: int
    long_poll: bool
    record: dict[str, object]

    @property
    def finished_at(self) -> float | None:
        value = self.record.get("finished_at")
        return float(value) if isinstance(value, (int, float)) else None


@dataclass
class Memory:
    pid: int
    baseline_mb: float = 0.0
    peak_rss_mb: float = 0.0
    samples: list[float] = field(default_factory=list)

    def sample(self) -> float:
        mb = _status_kb(self.pid, "VmRSS") / 1024
        self.samples.append(mb)
        self.peak_rss_mb = max(self.peak_rss_mb, mb)
        return mb


# -- raw HTTP/1.1 over asyncio streams ---------------------------------------------------------


async def post(port: int, path: str, token: str, body: dict[str, object]) -> Answer:
    """One POST on its own connection; the answer once fully read."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        payload = json.dumps(body).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nhost: {HOST}:{port}\r\n"
            f"authorization: Bearer {token}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(payload)}\r\nconnection: close\r\n\r\n"
        )
        writer.write(head.encode() + payload)
        await writer.drain()
        sent_at = time.time()
        status, headers = await _read_head(reader)
        content = await reader.readexactly(int(headers.get("content-length", "0")))
        received_at = time.time()
    finally:
        writer.close()
    long_poll = headers.get("x-kling-gateway-long-poll") == "1"
    return Answer(sent_at, received_at, status, long_poll, json.loads(content or b"{}"))


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    return status, headers


# -- the run -----------------------------------------------------------------------------------


async def create_tasks(port: int, token: str, count: int) -> list[str]:
    gate = asyncio.Semaphore(CREATE_CONCURRENCY)

    async def one(i: int) -> str:
        async with gate:
            body = {"action": "text2video", "prompt": f"bench {i}", "async": True}
            answer = await post(port, "/kling/videos", token, body)
        assert answer.status == 200, answer.record
        return str(answer.record["task_id"])

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def hold_waiters(port: int, token: str, ids: list[str], memory: Memory) -> list[Answer]:
    waiters = [
        asyncio.create_task(
            post(port, "/kling/tasks", token, {"action": "retrieve", "id": i, "wait": WAIT_SECONDS})
        )
        for i in ids
    ]
    pending: set[asyncio.Task[Answer]] = set(waiters)
    while pending:
        memory.sample()
        _, pending = await asyncio.wait(pending, timeout=SAMPLE_SECONDS)
    return [w.result() for w in waiters]


def issue_token(data_dir: str) -> str:
    cmd = [str(BIN / "kling-gateway"), "tokens", "create", "--user", "bench"]
    done = subprocess.run([*cmd, "--data-dir", data_dir], capture_output=True, text=True)
    done.check_returncode()
    return done.stdout.strip()


@dataclass
class Outcome:
    options: Options
    answers: list[Answer]
    memory: Memory
    peak_hwm_mb: float
    create_seconds: float
    all_held_before_first_finish: bool

    def latencies_ms(self) -> list[float]:
        return [
            (a.received_at - a.finished_at) * 1000
            for a in self.answers
            if a.finished_at is not None
        ]


def run(options: Options) -> Outcome:
    data_dir = tempfile.mkdtemp(prefix="kg-longpoll-")
    token = issue_token(data_dir)
    port = free_port()
    extra = (
        "--no-local-render",
        f"--local-delay={options.delay}",
        f"--check-interval={options.check_interval}",
        "--check-max-interval=1",
        "--rate-limit-per-minute=0",
        f"--worker-concurrency={options.worker_concurrency}",
    )
    with Server("longpoll", gateway_cmd(data_dir, port, *extra), port=port) as server:
        if (os.cpu_count() or 1) >= 2:
            os.sched_setaffinity(0, {int(LOAD_CPU)})
        return asyncio.run(_measure(options, server, port, token))


async def _measure(options: Options, server: Server, port: int, token: str) -> Outcome:
    memory = Memory(server.pid)
    started = time.monotonic()
    ids = await create_tasks(port, token, options.tasks)
    create_seconds = time.monotonic() - started
    log(f"created {len(ids)} tasks in {create_seconds:.1f} s; holding {len(ids)} waiters")
    memory.baseline_mb = memory.sample()
    answers = await hold_waiters(port, token, ids, memory)
    finishes = [a.finished_at for a in answers if a.finished_at is not None]
    # Every waiter sent before the first task finished: each latency is then a held waiter
    # being woken, never a late request that found its task finished already.
    all_held = bool(finishes) and max(a.sent_at for a in answers) < min(finishes)
    return Outcome(options, answers, memory, server.peak_rss_mb(), create_seconds, all_held)


# -- the report --------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
    return ordered[index]


def report(outcome: Outcome) -> str:
    lat = outcome.latencies_ms()
    answers = outcome.answers
    unfinished = sum(1 for a in answers if a.finished_at is None)
    memory = outcome.memory
    per_waiter_kb = (memory.peak_rss_mb - memory.baseline_mb) * 1024 / max(1, len(answers))
    host = machine()
    rows = [
        ("waiters held at once", f"{len(answers)}"),
        ("answers with the task finished", f"{len(lat)} (unfinished: {unfinished})"),
        ("answers with the long-poll header", f"{sum(a.long_poll for a in answers)}"),
        ("non-200 answers", f"{sum(a.status != 200 for a in answers)}"),
        ("finish -> answer p50", f"{percentile(lat, 50):.1f} ms"),
        ("finish -> answer p90", f"{percentile(lat, 90):.1f} ms"),
        ("finish -> answer p99", f"{percentile(lat, 99):.1f} ms"),
        ("finish -> answer max", f"{max(lat, default=float('nan')):.1f} ms"),
        ("finish -> answer mean", f"{statistics.fmean(lat) if lat else float('nan'):.1f} ms"),
        ("server VmRSS before the waiters", f"{memory.baseline_mb:.1f} MB"),
        ("server VmRSS highest while held", f"{memory.peak_rss_mb:.1f} MB"),
        ("server VmHWM at the end", f"{outcome.peak_hwm_mb:.1f} MB"),
        ("memory per held waiter (RSS delta)", f"{per_waiter_kb:.1f} KB"),
        ("creating the tasks took", f"{outcome.create_seconds:.1f} s"),
        ("every waiter sent before the first finish", f"{outcome.all_held_before_first_finish}"),
    ]
    table = "\n".join(f"| {name} | {value} |" for name, value in rows)
    o = outcome.options
    return f"""# Long-poll waiters on one API process

`.venv/bin/python -m bench.longpoll --tasks {o.tasks} --delay {o.delay:g} --worker-concurrency
{o.worker_concurrency}` on {host["nproc"]}
CPUs ({host["cpu"]}), {host["memory"]}, Python {host["python"]}.

One `kling-gateway serve` process (API and worker, SQLite, local provider without rendering,
check interval {o.check_interval:g} s, worker concurrency {o.worker_concurrency}, pinned to
CPU 0); the client (raw asyncio streams, one
connection per waiter, pinned to CPU 1) creates {o.tasks} tasks, then sends one `retrieve`
with `wait: {WAIT_SECONDS}` per task and holds them all. The tasks become ready {o.delay:g} s
after creation and finish as the worker checks them.

Latency is from the task's `finished_at` in its record (the worker's clock when it finished
the task) to the client having read the whole answer (same machine, same clock): the store
write, the notification, the waiter's re-read, the answer and the client's read.

| figure | value |
|---|---|
{table}

Notes: the worker runs in the same process, so its work (finishing {o.tasks} tasks in bursts)
competes with the answers for the one event loop, and the RSS includes it. Answers to tasks
that finish in the same burst queue behind each other, which is what p99 shows.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.longpoll", description=__doc__)
    defaults = Options()
    parser.add_argument("--tasks", type=int, default=defaults.tasks, help="waiters (one per task)")
    parser.add_argument("--delay", type=float, default=defaults.delay, help="seconds to ready")
    parser.add_argument(
        "--worker-concurrency", type=int, default=defaults.worker_concurrency, help="of the worker"
    )
    args = parser.parse_args(argv)
    outcome = run(Options(args.tasks, args.delay, worker_concurrency=args.worker_concurrency))
    text = report(outcome)
    RESULTS_FILE.write_text(text)
    log(f"wrote {RESULTS_FILE}")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
