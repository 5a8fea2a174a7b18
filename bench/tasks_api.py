"""Group tasks_api: the gateway's POST /kling/tasks against the raw reference (R) under wrk.

(R) runs beside the gateway on the same CPU, on the same database file; the two are measured in
alternating rounds (so a disturbance on the machine hits both) and the best round of each is
compared: (a) retrieve vs (R) retrieve, (b) retrieve_batch of 100 ids vs (R) doing the same
100-id query, (c) retrieve with 1,000,000 stored tasks vs (a).
"""

from __future__ import annotations

import dataclasses
import functools
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import msgspec

from bench.common import (
    BIN,
    HOST,
    SERVER_CPU,
    Server,
    WrkResult,
    cpu_busy_seconds,
    free_port,
    gateway_cmd,
    log,
    resident_share,
    run_wrk,
    warm_page_cache,
)
from bench.dataset import Dataset, ensure_dataset

SIZES = {"a": ("tasks-100k", 100_000), "c": ("tasks-1m", 1_000_000)}
TARGETS = {"a": 0.60, "b": 0.80, "c": 0.85}


@dataclass
class Options:
    duration: float = 10.0
    warmup: float = 2.0
    connections: int = 32
    rounds: int = 3


@dataclass
class Measurement:
    label: str
    what: str
    runs: list[WrkResult] = field(default_factory=list)

    @property
    def best(self) -> WrkResult:
        """The least disturbed round: the most requests per second."""
        return max(self.runs, key=lambda r: r.requests_per_s)

    @property
    def cpu_us(self) -> float:
        """Server CPU per request, the least of the rounds (the least disturbed)."""
        return min(r.server_cpu_us for r in self.runs)


@dataclass
class TasksApiResult:
    options: Options
    datasets: dict[str, Dataset]
    built: dict[str, bool]
    measurements: dict[str, Measurement]
    peak_rss_mb: dict[str, float]
    ratios: dict[str, tuple[float, float, bool]]  # key -> (ratio, target, pass) on req/s
    cpu_ratios: dict[str, tuple[float, float, bool]]  # the same on server CPU per request
    loadavg: list[str]
    record_sample: str
    residency: list[str] = field(default_factory=list)


def reference_cmd(port: int) -> list[str]:
    return [
        str(BIN / "python"),
        "-m",
        "uvicorn",
        "bench.reference_app:app",
        "--host",
        HOST,
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
    ]


def start_pair(dataset: Dataset, tag: str) -> tuple[Server, Server]:
    gateway_port, reference_port = free_port(), free_port()
    gateway = Server(
        f"gateway-{tag}",
        gateway_cmd(dataset.data_dir, gateway_port, "--rate-limit-per-minute", "0"),
        port=gateway_port,
    )
    reference = Server(
        f"reference-{tag}",
        reference_cmd(reference_port),
        port=reference_port,
        env={"BENCH_DB": str(dataset.db_path), "BENCH_USER_ID": dataset.user_id},
    )
    return gateway, reference


def url(server: Server) -> str:
    return f"http://{HOST}:{server.port}/kling/tasks"


def check_answers(server: Server, dataset: Dataset) -> None:
    """Both servers must return the stored record: a bench of `{}` answers would be a lie."""
    ids = Path(dataset.ids_file).read_text().split()[:100]
    headers = {"authorization": f"Bearer {dataset.token}"}
    with httpx.Client(timeout=10) as client:
        one = client.post(url(server), json={"action": "retrieve", "id": ids[7]}, headers=headers)
        one.raise_for_status()
        assert msgspec.json.decode(one.content)["id"] == ids[7], one.text[:200]
        many = client.post(
            url(server), json={"action": "retrieve_batch", "ids": ids}, headers=headers
        )
        many.raise_for_status()
        body = msgspec.json.decode(many.content)
        assert body["count"] == 100 and [r["id"] for r in body["items"]] == ids, server.name


def measure(server: Server, dataset: Dataset, mode: str, opts: Options) -> WrkResult:
    wrk = functools.partial(
        run_wrk,
        url(server),
        ids_file=dataset.ids_file,
        token=dataset.token,
        mode=mode,
        connections=opts.connections,
        warmup=0,
    )
    if opts.warmup > 0:
        wrk(duration=opts.warmup)
    busy, own, clock = cpu_busy_seconds(SERVER_CPU), server.cpu_seconds(), time.monotonic()
    result = wrk(duration=opts.duration)
    elapsed = time.monotonic() - clock
    spent = server.cpu_seconds() - own
    # Whatever else ran on the server's CPU meanwhile (other jobs on the machine; the idle
    # neighbour server): how disturbed this run was.
    others = (cpu_busy_seconds(SERVER_CPU) - busy - spent) / elapsed
    result = dataclasses.replace(
        result,
        others_on_server_cpu=max(others, 0.0),
        server_cpu_us=spent * 1e6 / max(result.requests, 1),
    )
    log(
        f"  {server.name:<16} {mode:<15} {result.requests_per_s:>7,.0f} req/s  "
        f"p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms  "
        f"{result.server_cpu_us:5.0f} us CPU/req  {result.bytes_per_response:,.0f} B/resp  "
        f"others on CPU {SERVER_CPU}: {result.others_on_server_cpu:.0%} {result.errors}"
    )
    if not result.ok:
        raise RuntimeError(f"{server.name} {mode}: {result.errors}")
    return result


def run(opts: Options) -> TasksApiResult:
    datasets: dict[str, Dataset] = {}
    built: dict[str, bool] = {}
    for key, (name, size) in SIZES.items():
        datasets[key], built[key] = ensure_dataset(name, size)
    m = {
        "R": Measurement("(R)", "reference raw ASGI, retrieve, 100k tasks"),
        "a": Measurement("(a)", "gateway retrieve, 100k tasks"),
        "Rb": Measurement("(R-b)", "reference raw ASGI, same 100-id query, 100k tasks"),
        "b": Measurement("(b)", "gateway retrieve_batch of 100 ids, 100k tasks"),
        "c": Measurement("(c)", "gateway retrieve, 1,000,000 tasks"),
        "Rc": Measurement("(R-c)", "reference raw ASGI, retrieve, 1,000,000 tasks (context)"),
    }
    peak: dict[str, float] = {}
    loads = [f"start {_loadavg()}"]
    small, large = datasets["a"], datasets["c"]

    log(f"tasks_api: 100k tasks, {opts.rounds} alternating rounds of {opts.duration:g} s")
    residency: list[str] = []

    def cached(dataset: Dataset, when: str) -> None:
        share = resident_share(dataset.db_path)
        if share is not None:
            residency.append(f"{dataset.name} {share:.0%} {when}")

    warm_page_cache(small.db_path)
    cached(small, "before its runs")
    gateway, reference = start_pair(small, "100k")
    try:
        gateway.start()
        reference.start()
        check_answers(gateway, small)
        check_answers(reference, small)
        for _ in range(opts.rounds):
            m["R"].runs.append(measure(reference, small, "retrieve", opts))
            m["a"].runs.append(measure(gateway, small, "retrieve", opts))
            m["Rb"].runs.append(measure(reference, small, "retrieve_batch", opts))
            m["b"].runs.append(measure(gateway, small, "retrieve_batch", opts))
        peak["gateway, 100k tasks"] = gateway.peak_rss_mb()
        peak["reference, 100k tasks"] = reference.peak_rss_mb()
    finally:
        gateway.stop()
        reference.stop()
    loads.append(f"after 100k {_loadavg()}")
    cached(small, "after")
    warm_page_cache(large.db_path)
    cached(large, "before its runs")

    log("tasks_api: 1,000,000 tasks")
    gateway, reference = start_pair(large, "1m")
    try:
        gateway.start()
        reference.start()
        check_answers(gateway, large)
        check_answers(reference, large)
        # A longer warm-up: the page caches of a million-task store fill over more requests.
        warm = dataclasses.replace(opts, warmup=max(opts.warmup, 5.0))
        for _ in range(opts.rounds):
            m["c"].runs.append(measure(gateway, large, "retrieve", warm))
            m["Rc"].runs.append(measure(reference, large, "retrieve", warm))
        peak["gateway, 1M tasks"] = gateway.peak_rss_mb()
        peak["reference, 1M tasks"] = reference.peak_rss_mb()
    finally:
        gateway.stop()
        reference.stop()
    loads.append(f"end {_loadavg()}")
    cached(large, "after")

    ratios, cpu_ratios = {}, {}
    for key, num, den in (("a", "a", "R"), ("b", "b", "Rb"), ("c", "c", "a")):
        ratio = m[num].best.requests_per_s / m[den].best.requests_per_s
        ratios[key] = (ratio, TARGETS[key], ratio >= TARGETS[key])
        ratio = m[den].cpu_us / m[num].cpu_us
        cpu_ratios[key] = (ratio, TARGETS[key], ratio >= TARGETS[key])
    return TasksApiResult(
        opts, datasets, built, m, peak, ratios, cpu_ratios, loads, _sample(small), residency
    )


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _sample(dataset: Dataset) -> str:
    conn = sqlite3.connect(dataset.db_path)
    try:
        row = conn.execute("SELECT record FROM task_records LIMIT 1").fetchone()
    finally:
        conn.close()
    return bytes(row[0]).decode()
