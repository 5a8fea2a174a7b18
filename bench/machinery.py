"""Group machinery: what the task machinery costs, with the local provider doing no work.

``serve --local-delay 0 --no-local-render``: 1,000 asynchronous POST /kling/videos created as
fast as the API takes them (50 connections), then the records read back with retrieve_batch.
Create-to-succeed times come from the server's own clock (each record's ``finished_at -
created_at``); tasks/s = 1000 / (last finished_at - first created_at). CPU from
/proc/PID/stat (utime + stime) before and after.

Two layouts on the same SQLite store: ``embedded`` (the worker inside `serve`: its CPU figure
includes the API's) and ``split`` (`serve --no-worker` plus a separate `kling-gateway worker`
on the same --data-dir: the worker's CPU alone).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import time
from dataclasses import dataclass, field

import httpx
import msgspec

from bench.common import (
    BIN,
    HOST,
    LOAD_CPU,
    SERVER_CPU,
    WORK,
    Server,
    free_port,
    gateway_cmd,
    log,
)
from bench.dataset import DB_NAME, create_schema_and_token

TASKS = 1000
CONCURRENCY = 50
FINISH_TIMEOUT = 180.0
WORKER_FLAGS = ["--local-delay", "0", "--no-local-render", "--provider", "local"]
BODY = {
    "action": "text2video",
    "model": "kling-v2-6",
    "prompt": "a ceramic mug of coffee steaming on a rainy windowsill, cinematic lighting",
    "duration": 5,
    "aspect_ratio": "16:9",
    "async": True,
}


@dataclass
class MachineryRun:
    layout: str
    tasks: int
    succeeded: int
    create_seconds: float  # wall time of the creating client
    create_p50_ms: float
    create_p99_ms: float
    tasks_per_s: float
    c2s_p50_ms: float
    c2s_p99_ms: float
    c2s_max_ms: float
    cpu_ms_per_task: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: dict[str, float] = field(default_factory=dict)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class _Connection:
    """A bare HTTP/1.1 keep-alive connection: the creating client must not be the bottleneck
    (httpx's async pool managed under 100 requests/s here with 50 connections, while the API
    takes thousands)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> _Connection:
        return cls(*await asyncio.open_connection(HOST, port))

    async def post(self, path: str, body: bytes, token: str) -> tuple[int, bytes]:
        head = (
            f"POST {path} HTTP/1.1\r\nhost: {HOST}\r\ncontent-type: application/json\r\n"
            f"authorization: Bearer {token}\r\ncontent-length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        status_line, *lines = (await self.reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
        length = 0
        for line in lines:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return int(status_line.split()[1]), await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


async def _create_all(port: int, token: str) -> tuple[list[str], list[float], float]:
    """TASKS creates over CONCURRENCY connections; each create's latency in ms."""
    body = msgspec.json.encode(BODY)
    latencies: list[float] = []
    ids: list[str] = []
    todo = iter(range(TASKS))
    conns = [await _Connection.open(port) for _ in range(CONCURRENCY)]

    async def client(conn: _Connection) -> None:
        for _ in todo:
            started = time.perf_counter()
            status, reply = await conn.post("/kling/videos", body, token)
            latencies.append((time.perf_counter() - started) * 1000)
            if status != 200:
                raise RuntimeError(f"create answered {status}: {reply[:200]!r}")
            ids.append(msgspec.json.decode(reply)["task_id"])

    started = time.perf_counter()
    try:
        await asyncio.gather(*(client(conn) for conn in conns))
    finally:
        for conn in conns:
            conn.close()
    return ids, latencies, time.perf_counter() - started


def _records_when_finished(url: str, token: str, ids: list[str]) -> list[dict[str, object]]:
    headers = {"authorization": f"Bearer {token}"}
    deadline = time.monotonic() + FINISH_TIMEOUT
    with httpx.Client(timeout=60) as client:
        while True:
            reply = client.post(url, json={"action": "retrieve_batch", "ids": ids}, headers=headers)
            reply.raise_for_status()
            items = msgspec.json.decode(reply.content)["items"]
            if len(items) == len(ids) and all("finished_at" in r for r in items):
                return list(items)
            if time.monotonic() > deadline:
                done = sum("finished_at" in r for r in items)
                raise RuntimeError(f"only {done} of {len(ids)} tasks finished in time")
            time.sleep(0.25)


def run_layout(layout: str) -> MachineryRun:
    data_dir = WORK / f"machinery-{layout}"
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    issued = asyncio.run(create_schema_and_token(data_dir / DB_NAME))
    port = free_port()
    servers: dict[str, Server] = {}
    if layout == "embedded":
        servers["serve (API + worker)"] = Server(
            "machinery-serve",
            gateway_cmd(str(data_dir), port, "--rate-limit-per-minute", "0", *WORKER_FLAGS),
            port=port,
            cpu=SERVER_CPU,
        )
    else:
        servers["API (serve --no-worker)"] = Server(
            "machinery-api",
            gateway_cmd(str(data_dir), port, "--rate-limit-per-minute", "0", "--no-worker"),
            port=port,
            cpu=SERVER_CPU,
        )
        worker_cmd = [str(BIN / "kling-gateway"), "worker", "--data-dir", str(data_dir)]
        worker_cmd += ["--log-level", "warning", *WORKER_FLAGS]
        servers["worker"] = Server("machinery-worker", worker_cmd, port=None, cpu=LOAD_CPU)
    base = f"http://{HOST}:{port}"
    affinity = os.sched_getaffinity(0)
    try:
        for server in servers.values():
            server.start()
        time.sleep(1.0)  # let startup settle before reading CPU
        if layout == "embedded" and len(affinity) > 1:
            os.sched_setaffinity(0, {int(LOAD_CPU)})  # the client off the server's CPU
        cpu_before = {name: s.cpu_seconds() for name, s in servers.items()}
        ids, latencies, create_seconds = asyncio.run(_create_all(port, issued.token))
        records = _records_when_finished(f"{base}/kling/tasks", issued.token, ids)
        cpu_after = {name: s.cpu_seconds() for name, s in servers.items()}
        peaks = {name: s.peak_rss_mb() for name, s in servers.items()}
    finally:
        os.sched_setaffinity(0, affinity)
        for server in servers.values():
            server.stop()
    created = [float(r["created_at"]) for r in records]  # type: ignore[arg-type]
    finished = [float(r["finished_at"]) for r in records]  # type: ignore[arg-type]
    # "duration" is finished_at - created_at at full precision (the server's clock).
    c2s = [float(r["duration"]) * 1000 for r in records]  # type: ignore[arg-type]
    succeeded = sum(1 for r in records if r.get("response", {}).get("state") == "succeed")  # type: ignore[union-attr]
    result = MachineryRun(
        layout=layout,
        tasks=len(records),
        succeeded=succeeded,
        create_seconds=create_seconds,
        create_p50_ms=statistics.median(latencies),
        create_p99_ms=_percentile(latencies, 0.99),
        tasks_per_s=len(records) / (max(finished) - min(created)),
        c2s_p50_ms=statistics.median(c2s),
        c2s_p99_ms=_percentile(c2s, 0.99),
        c2s_max_ms=max(c2s),
        cpu_ms_per_task={
            name: (cpu_after[name] - cpu_before[name]) * 1000 / len(records) for name in servers
        },
        peak_rss_mb=peaks,
    )
    log(
        f"  {layout:<8} {result.tasks_per_s:7.1f} tasks/s  create->succeed p50 "
        f"{result.c2s_p50_ms:.0f} ms p99 {result.c2s_p99_ms:.0f} ms  CPU/task "
        + ", ".join(f"{k}: {v:.2f} ms" for k, v in result.cpu_ms_per_task.items())
    )
    return result


def run() -> list[MachineryRun]:
    log(f"machinery: {TASKS} async tasks, {CONCURRENCY} creates at a time, local provider")
    return [run_layout("embedded"), run_layout("split")]
