"""Group postgres: the Tasks API and the task machinery on PostgreSQL (and Redis).

``python -m bench.postgres_group`` runs it alone and writes bench/postgres_results.md;
``run(options)`` is what ``bench/__main__.py`` can register.

(p1) retrieve and retrieve_batch of 100 ids under wrk on the same 100,000 finished tasks:
SQLite (one process), PostgreSQL with 1 API process, PostgreSQL with 2 API processes
(`serve --processes 2`). On a machine of a few cores the API processes, PostgreSQL and wrk
share the CPUs, so the servers are not pinned here (wrk is, as in tasks_api); CPU per request
is given for the API processes and for PostgreSQL separately.

(p2) the machinery of `machinery.py` (1,000 asynchronous creates, the local provider doing no
work) on PostgreSQL with `serve --no-worker` and 1, then 3, `kling-gateway worker` processes,
woken through Redis; the pair in alternating rounds (the machine's load drifts between runs),
each measured once every process has finished starting (its CPU at rest), and with the
PostgreSQL transactions per task beside the CPU: the same count for 1 and 3 workers means
the same work done, whatever the CPU per task says about the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import asyncpg

from bench.common import BIN, WORK, Server, WrkResult, free_port, gateway_cmd, log, run_wrk
from bench.dataset import LAYOUT, Dataset, _rows, ensure_dataset
from bench.machinery import (
    WORKER_FLAGS,
    _create_all,
    _percentile,
    _records_when_finished,
)
from kling_gateway.storage.postgres import PostgresStore
from kling_gateway.storage.rows import TASK_COLUMNS
from kling_gateway.storage.tokens import IssuedToken, issue_token

RESULTS = Path(__file__).resolve().parent / "postgres_results.md"
SIZE = 100_000
BENCH_DB = "kling_gateway_bench_100k"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379/14"
COLUMNS = [c.strip() for c in TASK_COLUMNS.split(",")] + [
    "idempotency_key",
    "request_hash",
]


@dataclass
class Options:
    postgres_url: str = DEFAULT_POSTGRES  # an administrative URL: databases are made beside it
    redis_url: str = DEFAULT_REDIS
    duration: float = 10.0
    warmup: float = 2.0
    connections: int = 32
    rounds: int = 2
    machinery_rounds: int = 3


@dataclass
class ApiFigure:
    setup: str
    mode: str
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    api_cpu_us: float
    postgres_cpu_us: float


@dataclass
class MachineryFigure:
    workers: int
    tasks: int
    succeeded: int
    tasks_per_s: float
    c2s_p50_ms: float
    c2s_p99_ms: float
    cpu_ms_per_task: dict[str, float] = field(default_factory=dict)
    transactions_per_task: float = 0.0


# -- /proc: a process tree's CPU, PostgreSQL's CPU ----------------------------------------------


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _cpu(fields: list[str]) -> float:
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _all_stats() -> dict[int, tuple[str, list[str]]]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                comm = (entry / "comm").read_text().strip()
                found[int(entry.name)] = (comm, _stat(int(entry.name)))
    return found


def tree_cpu(root: int) -> float:
    """CPU seconds of ``root`` and every live descendant (uvicorn's worker processes)."""
    stats = _all_stats()
    children: dict[int, list[int]] = {}
    for pid, (_, fields) in stats.items():
        children.setdefault(int(fields[1]), []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            total += _cpu(stats[pid][1])
        todo.extend(children.get(pid, []))
    return total


def postgres_cpu() -> float:
    """CPU seconds of every PostgreSQL process on the machine (backends included)."""
    return sum(_cpu(fields) for comm, fields in _all_stats().values() if comm == "postgres")


def wait_at_rest(pids: list[int], timeout: float = 60.0) -> None:
    """Until ``pids`` together use under 2% of a CPU over half a second: a process still
    importing or connecting would put its start-up into the measured CPU (with 3 workers on
    2 cores a fixed second of sleep was not enough)."""
    deadline = time.monotonic() + timeout
    last = sum(tree_cpu(pid) for pid in pids)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = sum(tree_cpu(pid) for pid in pids)
        if now - last < 0.01:
            return
        last = now
    raise RuntimeError(f"processes {pids} never came to rest")


async def _transactions(url: str) -> int:
    """Transactions committed or rolled back in ``url``'s database so far. A backend publishes
    its counts when it exits (an idle one may hold them for up to 10 s), so the count after a
    run is read once its processes have stopped; what they did at start-up is in it too (a
    few dozen transactions a process)."""
    conn = await asyncpg.connect(url)
    try:
        sql = (
            "SELECT xact_commit + xact_rollback FROM pg_stat_database "
            "WHERE datname = current_database()"
        )
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


# -- the PostgreSQL dataset: the same 100,000 tasks as tasks-100k -------------------------------


def with_db(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


async def _admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _load(url: str, ids: list[str]) -> IssuedToken:
    """Migrate, issue the bench token, COPY the tasks in; their ids are appended to ``ids``."""
    store = PostgresStore(url)
    await store.open()
    try:
        await store.migrate()
        issued = await issue_token(store, "bench")
    finally:
        await store.close()
    conn = await asyncpg.connect(url)
    try:
        for chunk, records in _rows(
            SIZE, issued.user_id, issued.application_id, issued.credential_id, ids
        ):
            await conn.copy_records_to_table("tasks", records=chunk, columns=COLUMNS)
            await conn.copy_records_to_table("task_records", records=records)
        await conn.execute("ANALYZE tasks")
        await conn.execute("ANALYZE task_records")
    finally:
        await conn.close()
    return issued


def ensure_postgres_dataset(admin_url: str) -> tuple[Dataset, str]:
    """The 100,000-task database (kept and reused, like the SQLite ones) and its URL."""
    data_dir = WORK / "pg-100k"
    meta = data_dir / "dataset.json"
    url = with_db(admin_url, BENCH_DB)
    if meta.exists():
        kept = Dataset(**json.loads(meta.read_text()))
        if kept.layout == LAYOUT:
            return kept, url
    data_dir.mkdir(parents=True, exist_ok=True)
    log(f"building the PostgreSQL dataset: {SIZE:,} finished tasks in {BENCH_DB}")
    started = time.perf_counter()
    asyncio.run(_admin(admin_url, f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)'))
    asyncio.run(_admin(admin_url, f'CREATE DATABASE "{BENCH_DB}"'))
    ids_file = data_dir / "ids.txt"
    ids: list[str] = []
    issued = asyncio.run(_load(url, ids))
    ids_file.write_text("\n".join(ids) + "\n")
    dataset = Dataset(
        name="pg-100k",
        size=SIZE,
        data_dir=str(data_dir),
        token=issued.token,
        user_id=issued.user_id,
        ids_file=str(ids_file),
        mean_record_bytes=0.0,
        seconds_to_build=round(time.perf_counter() - started, 1),
        layout=LAYOUT,
    )
    meta.write_text(json.dumps(asdict(dataset), indent=2))
    return dataset, url


# -- (p1) retrieve and retrieve_batch -----------------------------------------------------------


def measure_api(
    setup: str, server: Server, dataset: Dataset, mode: str, opts: Options
) -> ApiFigure:
    url = f"http://127.0.0.1:{server.port}/kling/tasks"
    common = {"ids_file": dataset.ids_file, "token": dataset.token, "mode": mode}
    run_wrk(url, **common, duration=opts.warmup, warmup=0, connections=opts.connections)
    api0, pg0 = tree_cpu(server.pid), postgres_cpu()
    result: WrkResult = run_wrk(
        url, **common, duration=opts.duration, warmup=0, connections=opts.connections
    )
    if not result.ok:
        raise RuntimeError(f"{setup} {mode}: {result.errors}")
    n = max(result.requests, 1)
    figure = ApiFigure(
        setup,
        mode,
        result.requests_per_s,
        result.p50_ms,
        result.p99_ms,
        (tree_cpu(server.pid) - api0) * 1e6 / n,
        (postgres_cpu() - pg0) * 1e6 / n,
    )
    log(
        f"  {setup:<28} {mode:<15} {figure.requests_per_s:>7,.0f} req/s  p99 "
        f"{figure.p99_ms:6.2f} ms  API {figure.api_cpu_us:4.0f} us/req  "
        f"PostgreSQL {figure.postgres_cpu_us:4.0f} us/req"
    )
    return figure


def api_servers(opts: Options) -> list[tuple[str, Server, Dataset]]:
    sqlite, _ = ensure_dataset("tasks-100k", SIZE)
    pg, pg_url = ensure_postgres_dataset(opts.postgres_url)
    flags = ["--rate-limit-per-minute", "0", "--no-worker"]
    servers = [("SQLite, 1 process", sqlite.data_dir, sqlite, [])]
    for n in (1, 2):
        extra = ["--database-url", pg_url, "--processes", str(n)]
        servers.append((f"PostgreSQL, {n} API process(es)", pg.data_dir, pg, extra))
    found = []
    for setup, data_dir, dataset, extra in servers:
        port = free_port()
        cmd = gateway_cmd(data_dir, port, *flags, *extra)
        found.append((setup, Server(f"pg-group-{port}", cmd, port=port, cpu=None), dataset))
    return found


def run_api(opts: Options) -> list[ApiFigure]:
    figures: dict[tuple[str, str], ApiFigure] = {}
    log(f"postgres (p1): {SIZE:,} tasks, best of {opts.rounds} rounds of {opts.duration:g} s")
    for setup, server, dataset in api_servers(opts):
        with server:
            for _ in range(opts.rounds):
                for mode in ("retrieve", "retrieve_batch"):
                    f = measure_api(setup, server, dataset, mode, opts)
                    best = figures.get((setup, mode))
                    if best is None or f.requests_per_s > best.requests_per_s:
                        figures[(setup, mode)] = f
    return list(figures.values())


# -- (p2) the machinery with 1 and 3 workers -----------------------------------------------------


@contextlib.contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    name = f"kg_bench_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin(admin_url, f'CREATE DATABASE "{name}"'))
    try:
        yield with_db(admin_url, name)
    finally:
        asyncio.run(_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _token(url: str) -> IssuedToken:
    store = PostgresStore(url)
    await store.open()
    try:
        await store.migrate()
        return await issue_token(store, "bench")
    finally:
        await store.close()


def run_machinery(workers: int, opts: Options) -> MachineryFigure:
    with fresh_database(opts.postgres_url) as url:
        issued = asyncio.run(_token(url))
        xacts = asyncio.run(_transactions(url))
        shared = ["--database-url", url, "--redis-url", opts.redis_url]
        port = free_port()
        data_dir = str(WORK / "pg-machinery")
        api = Server(
            "pg-machinery-api",
            gateway_cmd(data_dir, port, "--rate-limit-per-minute", "0", "--no-worker", *shared),
            port=port,
            cpu=None,
        )
        worker_cmd = [str(BIN / "kling-gateway"), "worker", "--data-dir", data_dir]
        worker_cmd += ["--log-level", "warning", *WORKER_FLAGS, *shared]
        procs = [
            Server(f"pg-machinery-worker-{n}", worker_cmd, port=None, cpu=None)
            for n in range(workers)
        ]
        with api, contextlib.ExitStack() as stack:
            for proc in procs:
                stack.enter_context(proc)
            wait_at_rest([api.pid, *(p.pid for p in procs)])
            before = (tree_cpu(api.pid), sum(p.cpu_seconds() for p in procs), postgres_cpu())
            ids, _, _ = asyncio.run(_create_all(port, issued.token))
            records = _records_when_finished(
                f"http://127.0.0.1:{port}/kling/tasks", issued.token, ids
            )
            after = (tree_cpu(api.pid), sum(p.cpu_seconds() for p in procs), postgres_cpu())
        time.sleep(1.0)  # the processes' backends have exited, and published their counts
        xacts = asyncio.run(_transactions(url)) - xacts - 1  # less our own first read
    n = len(records)
    created = [float(r["created_at"]) for r in records]  # type: ignore[arg-type]
    finished = [float(r["finished_at"]) for r in records]  # type: ignore[arg-type]
    c2s = [float(r["duration"]) * 1000 for r in records]  # type: ignore[arg-type]
    figure = MachineryFigure(
        workers=workers,
        tasks=n,
        succeeded=sum(1 for r in records if r.get("response", {}).get("state") == "succeed"),  # type: ignore[union-attr]
        tasks_per_s=n / (max(finished) - min(created)),
        c2s_p50_ms=_percentile(c2s, 0.5),
        c2s_p99_ms=_percentile(c2s, 0.99),
        cpu_ms_per_task={
            name: (a - b) * 1000 / n
            for name, a, b in zip(("API", "workers", "PostgreSQL"), after, before, strict=True)
        },
        transactions_per_task=xacts / n,
    )
    log(
        f"  {workers} worker(s): {figure.tasks_per_s:7.1f} tasks/s  create->succeed p50 "
        f"{figure.c2s_p50_ms:.0f} ms p99 {figure.c2s_p99_ms:.0f} ms  CPU/task "
        + ", ".join(f"{k} {v:.2f} ms" for k, v in figure.cpu_ms_per_task.items())
        + f"  {figure.transactions_per_task:.2f} transactions/task"
    )
    return figure


def workers_ratios(machinery: list[MachineryFigure]) -> list[float]:
    """Workers' CPU per task of 3 workers over 1 worker, per round (each pair back to back)."""
    ones = [m for m in machinery if m.workers == 1]
    threes = [m for m in machinery if m.workers == 3]
    return [
        three.cpu_ms_per_task["workers"] / one.cpu_ms_per_task["workers"]
        for one, three in zip(ones, threes, strict=True)
    ]


# -- the group ------------------------------------------------------------------------------


@dataclass
class PostgresGroupResult:
    options: Options
    api: list[ApiFigure]
    machinery: list[MachineryFigure]


def run(opts: Options) -> PostgresGroupResult:
    api = run_api(opts)
    log("postgres (p2): 1,000 async tasks, local provider doing no work")
    machinery = [run_machinery(n, opts) for _ in range(opts.machinery_rounds) for n in (1, 3)]
    return PostgresGroupResult(opts, api, machinery)


def markdown(result: PostgresGroupResult, load: str) -> str:
    o = result.options
    lines = [
        "# PostgreSQL group",
        "",
        f"`python -m bench.postgres_group`; wrk with {o.connections} connections, best of "
        f"{o.rounds} rounds of {o.duration:g} s (after {o.warmup:g} s of warm-up); load average "
        f"{load}. Servers unpinned (API processes, PostgreSQL and wrk share the machine's "
        "CPUs); CPU per request from /proc.",
        "",
        "## (p1) retrieve and retrieve_batch (100 ids), 100,000 stored tasks",
        "",
        "| setup | request | req/s | p50 ms | p99 ms | API CPU µs/req | PostgreSQL CPU µs/req |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in result.api:
        lines.append(
            f"| {f.setup} | {f.mode} | {f.requests_per_s:,.0f} | {f.p50_ms:.2f} "
            f"| {f.p99_ms:.2f} | {f.api_cpu_us:,.0f} | {f.postgres_cpu_us:,.0f} |"
        )
    lines += [
        "",
        "## (p2) task machinery on PostgreSQL: 1,000 async tasks, `serve --no-worker` + workers",
        "",
        f"{o.machinery_rounds} rounds, 1 then 3 workers in each, in the order run.",
        "",
        "| workers | tasks | succeeded | tasks/s | create→succeed p50 ms | p99 ms "
        "| API CPU ms/task | workers CPU ms/task | PostgreSQL CPU ms/task "
        "| PostgreSQL transactions/task |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in result.machinery:
        cpu = m.cpu_ms_per_task
        lines.append(
            f"| {m.workers} | {m.tasks} | {m.succeeded} | {m.tasks_per_s:,.1f} "
            f"| {m.c2s_p50_ms:,.0f} | {m.c2s_p99_ms:,.0f} | {cpu['API']:.2f} "
            f"| {cpu['workers']:.2f} | {cpu['PostgreSQL']:.2f} "
            f"| {m.transactions_per_task:.2f} |"
        )
    ratios = workers_ratios(result.machinery)
    lines += [
        "",
        "Workers' CPU per task, 3 workers over 1, by round: "
        + ", ".join(f"{r:.2f}x" for r in ratios)
        + f"; median **{sorted(ratios)[len(ratios) // 2]:.2f}x** (issue 10 asks for <= 1.2x).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.postgres_group", description=__doc__)
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--machinery-rounds", type=int, default=3)
    args = parser.parse_args(argv)
    opts = Options(
        args.postgres_url,
        args.redis_url,
        args.duration,
        args.warmup,
        args.connections,
        args.rounds,
        args.machinery_rounds,
    )
    result = run(opts)
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    RESULTS.write_text(markdown(result, load))
    log(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
