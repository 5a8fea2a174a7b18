"""Lag of the kling provider: N tasks in flight on the fake upstream, finishing within 60 s.

    python -m bench.kling_lag --tasks 500
    python -m bench.kling_lag --tasks 5000 --check-interval 2

Starts the fake upstream and the gateway (API and worker, ``provider=kling``) as two real
subprocesses on loopback, creates N async tasks through the gateway's API, then measures, for
each task, the time from the fake finishing it (``/fake-admin/finished``) to the gateway's
record showing it finished (``retrieve_batch`` of the tasks finished upstream but not yet seen
finished, every ``--poll`` seconds: the lag measured is an upper bound, by up to that much).
Upstream requests per task come from the fake's counters. Prints a markdown table row.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

AK, SK = "bench-access-key", "bench-secret-key-0123456789abcdef"
CALLBACK_SECRET = "bench-callback-secret"
ROOT = Path(__file__).resolve().parent.parent
FINISHED = ("succeed", "failed")


# --- the two servers -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run_fake(args: argparse.Namespace) -> None:
    """The child process of the fake upstream (``--role fake``)."""
    import uvicorn

    from kling_gateway.fake_upstream import FakeUpstreamConfig, create_fake_upstream

    config = FakeUpstreamConfig(
        access_key=AK,
        secret_key=SK,
        processing_after=min(0.5, args.finish_min),
        finish_after=(args.finish_min, args.finish_max),
        seed=args.seed,
        callback_timeout=10.0,
    )
    app = create_fake_upstream(config)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


def gateway_env(args: argparse.Namespace, data_dir: Path, port: int, fake_url: str) -> Any:
    settings = {
        "host": "127.0.0.1",
        "port": port,
        "data_dir": data_dir,
        "log_level": "warning",
        "provider": "kling",
        "kling_base_url": fake_url,
        "kling_access_key": AK,
        "kling_secret_key": SK,
        "kling_callback_secret": CALLBACK_SECRET if args.callbacks else "",
        "worker_concurrency": args.tasks + 64,
        "check_interval": args.check_interval,
        "check_max_interval": args.check_max_interval or args.check_interval,
        "rate_limit_per_minute": 0,
        "bootstrap_token": False,
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("KLING_GATEWAY_")}
    env.update({f"KLING_GATEWAY_{k.upper()}": str(v) for k, v in settings.items()})
    return env


def issue_bench_token(env: dict[str, str]) -> str:
    from kling_gateway.runtime.serve import with_store
    from kling_gateway.runtime.settings import load_settings
    from kling_gateway.storage.tokens import issue_token

    settings = load_settings(environ=env)
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    issued = asyncio.run(with_store(settings, lambda store: issue_token(store, "bench")))
    return issued.token


@contextlib.contextmanager
def child(argv: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[None]:
    """A subprocess for the length of the block; stopped with SIGTERM (then SIGKILL)."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def wait_up(url: str, timeout: float = 30.0) -> None:
    async with httpx.AsyncClient(timeout=2) as client, asyncio.timeout(timeout):
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url)).status_code == 200:
                    return
            await asyncio.sleep(0.1)


# --- the measurement -----------------------------------------------------------------------


@dataclass
class Tracking:
    expected: int
    ids: list[str] = field(default_factory=list)
    finished_upstream: dict[str, float] = field(default_factory=dict)
    created_upstream: dict[str, float] = field(default_factory=dict)
    seen: dict[str, float] = field(default_factory=dict)
    states: dict[str, str] = field(default_factory=dict)

    def unseen(self) -> list[str]:
        return [i for i in self.finished_upstream if i not in self.seen]

    def lags(self) -> list[float]:
        return sorted(self.seen[i] - self.finished_upstream[i] for i in self.seen)

    def peak_in_flight(self) -> int:
        """The most tasks created and not yet finished upstream at any one time."""
        moves = [(t, 1) for t in self.created_upstream.values()]
        moves += [(t, -1) for t in self.finished_upstream.values()]
        level = peak = 0
        for _, step in sorted(moves):
            level += step
            peak = max(peak, level)
        return peak


async def create_tasks(
    gateway: httpx.AsyncClient, count: int, ids: list[str], parallel: int = 8
) -> float:
    """Create ``count`` tasks into ``ids`` (watched meanwhile); the seconds it took."""
    body = {"action": "text2video", "prompt": "a paper boat on a pond", "async": True}
    queue = iter(range(count))
    started = time.time()

    async def creator() -> None:
        for _ in queue:
            response = await gateway.post("/kling/videos", json=body)
            response.raise_for_status()
            ids.append(response.json()["task_id"])

    await asyncio.gather(*(creator() for _ in range(parallel)))
    return time.time() - started


async def follow_upstream(fake: httpx.AsyncClient, track: Tracking, every: float) -> None:
    since = 0.0
    while len(track.finished_upstream) < track.expected:
        items = (await fake.get("/fake-admin/finished", params={"since": since})).json()
        for item in items:
            track.finished_upstream[item["external_task_id"]] = item["finished_at"]
            track.created_upstream[item["external_task_id"]] = item["created_at"]
            since = max(since, item["finished_at"])
        await asyncio.sleep(every)


async def progress(fake: httpx.AsyncClient, track: Tracking, every: float = 10.0) -> None:
    started = time.time()
    while True:
        await asyncio.sleep(every)
        creates = (await fake.get("/fake-admin/counters")).json()["creates"]
        print(
            f"{time.time() - started:5.0f}s: {creates} created upstream, "
            f"{len(track.finished_upstream)} finished there, {len(track.seen)} seen finished",
            file=sys.stderr,
        )


async def follow_gateway(gateway: httpx.AsyncClient, track: Tracking, every: float) -> None:
    while len(track.seen) < track.expected:
        unseen = track.unseen()
        for start in range(0, len(unseen), 1000):
            await look(gateway, track, unseen[start : start + 1000])
        await asyncio.sleep(every)


async def look(gateway: httpx.AsyncClient, track: Tracking, ids: list[str]) -> None:
    response = await gateway.post("/kling/tasks", json={"action": "retrieve_batch", "ids": ids})
    now = time.time()
    for item in response.json()["items"]:
        state = (item.get("response") or {}).get("state")
        if state in FINISHED:
            track.seen[item["id"]] = now
            track.states[item["id"]] = state


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


# --- the run -------------------------------------------------------------------------------


async def measure(args: argparse.Namespace, fake_url: str, gw_url: str, token: str) -> Any:
    await wait_up(f"{fake_url}/fake-admin/counters")
    await wait_up(f"{gw_url}/healthz")
    limits = httpx.Limits(max_connections=8)
    headers = {"authorization": f"Bearer {token}"}
    async with (
        httpx.AsyncClient(base_url=fake_url, timeout=30) as fake,
        httpx.AsyncClient(base_url=gw_url, headers=headers, timeout=60, limits=limits) as gw,
    ):
        started = time.time()
        track = Tracking(args.tasks)
        reporter = asyncio.create_task(progress(fake, track))
        # Watched from the first create on: a task may finish while others are being created.
        async with asyncio.timeout(args.finish_max + 300):
            created, *_ = await asyncio.gather(
                create_tasks(gw, args.tasks, track.ids),
                follow_upstream(fake, track, args.poll),
                follow_gateway(gw, track, args.poll),
            )
        reporter.cancel()
        if args.dump:
            doc = {"started": started, "up": track.finished_upstream, "seen": track.seen}
            args.dump.write_text(json.dumps(doc))
        counters = (await fake.get("/fake-admin/counters")).json()
    return report(args, track, counters, created, time.time() - started)


def report(
    args: argparse.Namespace,
    track: Tracking,
    counters: dict[str, Any],
    created: float,
    total: float,
) -> dict[str, Any]:
    lags, n = track.lags(), track.expected
    routes: dict[str, int] = counters["requests_by_route"]
    api = sum(routes.get(r, 0) for r in ("create", "get", "list"))
    return {
        "tasks": n,
        "peak_in_flight": track.peak_in_flight(),
        "check_interval": args.check_interval,
        "check_max_interval": args.check_max_interval or args.check_interval,
        "callbacks": args.callbacks,
        "lag_p50": statistics.median(lags),
        "lag_p90": percentile(lags, 0.90),
        "lag_p99": percentile(lags, 0.99),
        "lag_max": lags[-1],
        "per_task": api / n,
        "by_route": {r: round(routes.get(r, 0) / n, 2) for r in ("create", "get", "list")},
        "succeeded": sum(1 for s in track.states.values() if s == "succeed"),
        "failed": sum(1 for s in track.states.values() if s == "failed"),
        "creates": counters["creates"],
        "create_seconds": created,
        "run_seconds": total,
    }


HEADER = (
    "| tasks (peak in flight) | check interval (s) | callbacks | lag p50 (s) | lag p90 (s) | "
    "lag p99 (s) | lag max (s) | upstream requests / task (create + get + list) | "
    "succeeded / failed | upstream creates | run (s) |\n"
    "|---:|---:|:-:|---:|---:|---:|---:|:--|:-:|---:|---:|"
)


def table_row(r: dict[str, Any]) -> str:
    routes = r["by_route"]
    split = f"{routes['create']:g} + {routes['get']:g} + {routes['list']:g}"
    return (
        f"| {r['tasks']} ({r['peak_in_flight']}) | {r['check_interval']:g} | "
        f"{'on' if r['callbacks'] else 'off'} | "
        f"{r['lag_p50']:.2f} | {r['lag_p90']:.2f} | {r['lag_p99']:.2f} | {r['lag_max']:.2f} | "
        f"{r['per_task']:.2f} ({split}) | {r['succeeded']} / {r['failed']} | "
        f"{r['creates']} | {r['run_seconds']:.0f} |"
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    fake_port, gw_port = free_port(), free_port()
    fake_url, gw_url = f"http://127.0.0.1:{fake_port}", f"http://127.0.0.1:{gw_port}"
    with tempfile.TemporaryDirectory(prefix="kling-lag-") as tmp:
        env = gateway_env(args, Path(tmp) / "data", gw_port, fake_url)
        token = issue_bench_token(env)
        me = [sys.executable, "-m", "bench.kling_lag", *child_args(args)]
        gateway = [sys.executable, "-c", "import bench.kling_lag as b; b.run_gateway()"]
        with (
            child([*me, "--role", "fake", "--port", str(fake_port)], Path(tmp) / "fake.log"),
            child(gateway, Path(tmp) / "gateway.log", env),
        ):
            try:
                return asyncio.run(measure(args, fake_url, gw_url, token))
            finally:
                tail(Path(tmp) / "gateway.log")
                if args.keep_log:
                    shutil.copy(Path(tmp) / "gateway.log", args.keep_log)


def child_args(args: argparse.Namespace) -> list[str]:
    return [
        f"--finish-min={args.finish_min}",
        f"--finish-max={args.finish_max}",
        f"--seed={args.seed}",
    ]


def run_gateway() -> None:
    """The child process of the gateway: `serve` with the settings in the environment."""
    from kling_gateway.runtime.serve import serve
    from kling_gateway.runtime.settings import load_settings

    serve(load_settings())


def tail(log: Path, lines: int = 15) -> None:
    text = log.read_text(errors="replace").splitlines() if log.exists() else []
    if text:
        print(f"--- last lines of {log.name} ---", *text[-lines:], sep="\n", file=sys.stderr)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.kling_lag", description=__doc__)
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--check-interval", type=float, default=5.0)
    parser.add_argument(
        "--check-max-interval", type=float, default=0.0, help="backoff cap (0: = check interval)"
    )
    parser.add_argument("--callbacks", action="store_true", help="Kling callbacks on too")
    parser.add_argument("--finish-min", type=float, default=1.0)
    parser.add_argument("--finish-max", type=float, default=60.0)
    parser.add_argument("--poll", type=float, default=0.1, help="seconds between looks")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep-log", type=Path, help="copy the gateway's log here")
    parser.add_argument("--dump", type=Path, help="write every task's times here (JSON)")
    parser.add_argument("--role", choices=("bench", "fake"), default="bench")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--write-results",
        action="store_true",
        help="run at 500 and 5,000 tasks and write bench/kling_lag_results.md",
    )
    return parser.parse_args(argv)


RESULTS_FILE = Path(__file__).resolve().parent / "kling_lag_results.md"
INTRO = """# Kling provider: lag and upstream requests (bench/kling_lag.py)

`python -m bench.kling_lag --write-results` (run by `make bench`) starts the fake upstream and
the gateway (`serve`, API and worker, `provider=kling`, SQLite, results downloaded into the
gateway's file store) as two subprocesses on loopback, creates N async tasks through the API
and watches from the first create on. Each fake task finishes at a uniformly random time
1-60 s after its create. Lag = the first `retrieve_batch` showing the record finished, minus
the time the fake finished the task (`/fake-admin/finished`): an upper bound by up to 0.1 s.
Kling callbacks off: this is the polling path. `check_max_interval` = `check_interval` (a steady
cadence with ±20% jitter; with the default 60 s cap the backoff, not the batching, would set the
lag of long tasks). Requests per task: 1 create, 1 GET (the look-up by `external_task_id` before
every create, which keeps a crash between create and store from paying twice) and the list
pages of every check. For comparison, a gateway polling one task after another with a 1 s pause
needs about N seconds per round: 500 s at 500 pending tasks, 5,000 s at 5,000.
"""


def write_results(args: argparse.Namespace) -> None:
    rows = []
    for tasks in (500, 5000):
        args.tasks = tasks
        rows.append(run(args))
    limit = 2 * args.check_interval
    verdicts = [
        f"* {r['tasks']:,} tasks: p99 {r['lag_p99']:.1f} s against a target of <= {limit:g} s "
        f"(2 x the check interval): {'PASS' if r['lag_p99'] <= limit else 'MISS'}; at most "
        f"{r['peak_in_flight']:,} in flight at once."
        for r in rows
    ]
    body = [INTRO, HEADER, *(table_row(r) for r in rows), "", *verdicts, ""]
    RESULTS_FILE.write_text("\n".join(body))


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.role == "fake":
        run_fake(args)
        return
    if args.write_results:
        write_results(args)
        return
    result = run(args)
    print(HEADER, table_row(result), sep="\n")
    print({k: v for k, v in result.items() if k not in ("by_route",)})


if __name__ == "__main__":
    main()
