"""The account pool under load: 3 accounts x 5 slots on the fake upstream (issue 14).

    python -m bench.pool                # time scaled by 0.1: tasks 2-4 s, B every 0.5 s
    python -m bench.pool --scale 1      # as the issue states it: tasks 20-40 s, B every 5 s

The fake has no clock to speed up, so time is compressed by ``--scale``: upstream task
durations (20-40 s) and user B's interval (5 s) are multiplied by it. User A submits
``--burst`` tasks at once; user B one task every interval while A's backlog lasts. Both
servers are real subprocesses on loopback (the gateway: ``serve`` with API and worker on
SQLite). Figures, from the fake's own records:

* slot utilisation while a backlog exists: slot-seconds used / (15 x window), the window
  from A's burst to the upstream create of A's last task;
* creates answered 1303, as a share of all creates sent;
* B's wait for a slot (upstream create - submission): p50 / p99, against one task duration
  + 2 s (scaled);
* Jain's index over the users' normalised slot-seconds in the window (each user's slot time
  over its max-min fair share: B's demand, A the rest);
* scheduling CPU: the gateway process's CPU seconds per task (API + worker).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bench.kling_lag import free_port, wait_up

ROOT = Path(__file__).resolve().parent.parent
ACCOUNTS = [
    {"name": f"acct{i}", "access_key": f"bench-ak-{i}", "secret_key": f"bench-sk-{i}-0123456789"}
    for i in (1, 2, 3)
]
SLOTS = 5


@contextlib.contextmanager
def child(
    argv: list[str], log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A subprocess for the length of the block; stopped with SIGTERM (then SIGKILL)."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def gateway_env(data_dir: Path, port: int, fake_url: str, callbacks: bool) -> dict[str, str]:
    first = ACCOUNTS[0]
    settings = {
        "host": "127.0.0.1", "port": port, "data_dir": data_dir, "log_level": "warning",
        "provider": "kling", "kling_base_url": fake_url,
        "kling_access_key": first["access_key"], "kling_secret_key": first["secret_key"],
        "kling_download_results": "false", "worker_concurrency": 256, "check_interval": 0.5,
        "check_max_interval": 1.0, "rate_limit_per_minute": 0, "bootstrap_token": False,
        "idle_poll_seconds": 0.2, "kling_max_concurrency": SLOTS,
        # Kling's status callbacks: a slot frees when the task ends, not at the next check.
        "kling_callback_secret": "bench-callback-secret" if callbacks else "",
    }  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("KLING_GATEWAY_")}
    env.update({f"KLING_GATEWAY_{k.upper()}": str(v) for k, v in settings.items()})
    return env


def prepare(env: dict[str, str]) -> dict[str, str]:
    """Tokens for users A and B, and the two accounts beside the implicit one."""
    from kling_gateway.domain.accounts import Account
    from kling_gateway.runtime.serve import with_store
    from kling_gateway.runtime.settings import load_settings
    from kling_gateway.runtime.worker import server_sealer
    from kling_gateway.storage.base import Store
    from kling_gateway.storage.tokens import issue_token
    from kling_gateway.storage.upstream_keys import add_account

    settings = load_settings(environ=env)
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)

    async def run(store: Store) -> dict[str, str]:
        sealer = server_sealer(settings)
        for doc in ACCOUNTS[1:]:
            account = Account(doc["name"], doc["access_key"], max_concurrency=SLOTS)
            await add_account(store, sealer, account, doc["secret_key"])
        return {user: (await issue_token(store, user)).token for user in ("A", "B")}

    return asyncio.run(with_store(settings, run))


async def create(client: httpx.AsyncClient, token: str) -> tuple[str, float]:
    body = {"action": "text2video", "prompt": "a kite", "async": True}
    headers = {"authorization": f"Bearer {token}"}
    response = await client.post("/kling/videos", json=body, headers=headers)
    response.raise_for_status()
    return response.json()["task_id"], time.time()


async def all_finished(admin: httpx.AsyncClient, count: int) -> None:
    while True:
        if len((await admin.get("/fake-admin/finished?since=0")).json()) >= count:
            return
        await asyncio.sleep(0.5)


def overlap(a: float, b: float, lo: float, hi: float) -> float:
    return max(0.0, min(b, hi) - max(a, lo))


def jain(values: list[float]) -> float:
    return sum(values) ** 2 / (len(values) * sum(v * v for v in values))


async def measure(
    url: str, fake: str, tokens: dict[str, str], burst: int, interval: float, pid: int
) -> dict[str, Any]:
    submitted: dict[str, tuple[str, float]] = {}
    cpu0 = cpu_seconds(pid)
    async with (
        httpx.AsyncClient(base_url=url, timeout=120) as client,
        httpx.AsyncClient(base_url=fake, timeout=30) as admin,
    ):
        start = time.time()
        made = await asyncio.gather(*(create(client, tokens["A"]) for _ in range(burst)))
        submitted.update({task_id: ("A", at) for task_id, at in made})

        async def a_pending() -> bool:
            tasks = (await admin.get("/fake-admin/tasks")).json()
            created = {t["task_info"].get("external_task_id") for t in tasks}
            return any(u == "A" and t not in created for t, (u, _) in submitted.items())

        while await a_pending():
            task_id, at = await create(client, tokens["B"])
            submitted[task_id] = ("B", at)
            await asyncio.sleep(interval)
        await all_finished(admin, len(submitted))
        cpu = cpu_seconds(pid) - cpu0
        finished = (await admin.get("/fake-admin/finished?since=0")).json()
        accounts = (await admin.get("/fake-admin/accounts")).json()
        counters = (await admin.get("/fake-admin/counters")).json()
    return report(start, submitted, finished, accounts, counters, cpu, interval)


def report(
    start: float,
    submitted: dict[str, tuple[str, float]],
    finished: list[dict[str, Any]],
    accounts: list[dict[str, Any]],
    counters: dict[str, Any],
    cpu: float,
    interval: float,
) -> dict[str, Any]:
    spans = {f["external_task_id"]: (f["created_at"], f["finished_at"]) for f in finished}
    end = max(spans[t][0] for t, (user, _) in submitted.items() if user == "A")
    window = end - start
    used = {"A": 0.0, "B": 0.0}
    demand_b = 0.0
    for task_id, (user, _) in submitted.items():
        created, done = spans[task_id]
        used[user] += overlap(created, done, start, end)
        if user == "B":
            demand_b += overlap(created, done, start, end)
    capacity = SLOTS * len(ACCOUNTS) * window
    waits = sorted(spans[t][0] - at for t, (user, at) in submitted.items() if user == "B")
    durations = [done - created for created, done in spans.values()]
    fair = [used["A"] / max(capacity - demand_b, 1e-9), used["B"] / max(demand_b, 1e-9)]
    rejected = sum(a["rejected_over_limit"] for a in accounts)
    creates = counters["creates"]
    return {
        "tasks": len(submitted),
        "tasks_b": len(waits),
        "window_s": round(window, 1),
        "slot_utilisation": round((used["A"] + used["B"]) / capacity, 4),
        "share_1303": round(rejected / (creates + rejected), 4),
        "b_wait_p50_s": round(statistics.median(waits), 2) if waits else None,
        "b_wait_p99_s": round(waits[min(len(waits) - 1, int(0.99 * len(waits)))], 2)
        if waits
        else None,
        "task_duration_max_s": round(max(durations), 2),
        "jain": round(jain(fair), 4),
        "peak_in_flight": {a["name"]: a["peak_in_flight"] for a in accounts},
        "duplicate_creates": sum(n - 1 for n in counters["creates_by_external_id"].values()),
        "cpu_s_per_task": round(cpu / len(submitted), 5),
        "b_interval_s": interval,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pool")
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--burst", type=int, default=500)
    parser.add_argument("--no-callbacks", action="store_true", help="learn ends by polling")
    args = parser.parse_args(argv)
    low, high, interval = 20 * args.scale, 40 * args.scale, 5 * args.scale
    work = Path(tempfile.mkdtemp(prefix="bench-pool-"))
    fake_port, port = free_port(), free_port()
    fake_url, url = f"http://127.0.0.1:{fake_port}", f"http://127.0.0.1:{port}"
    accounts = [{**a, "max_concurrency": SLOTS} for a in ACCOUNTS]
    fake_argv = [
        sys.executable, "-m", "kling_gateway.fake_upstream", "--port", str(fake_port),
        "--finish-min", str(low), "--finish-max", str(high), "--seed", "1",
        "--accounts", json.dumps(accounts),
    ]  # fmt: skip
    env = gateway_env(work / "data", port, fake_url, not args.no_callbacks)
    tokens = prepare(env)
    serve = [str(Path(sys.executable).parent / "kling-gateway"), "serve"]
    with child(fake_argv, work / "fake.log"):
        asyncio.run(wait_up(f"{fake_url}/fake-admin/counters"))
        with child(serve, work / "gateway.log", env=env) as proc:
            asyncio.run(wait_up(f"{url}/healthz"))
            result = asyncio.run(measure(url, fake_url, tokens, args.burst, interval, proc.pid))
    result["scale"] = args.scale
    result["callbacks"] = not args.no_callbacks
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
