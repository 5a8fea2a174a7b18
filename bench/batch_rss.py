"""Server memory during 8 concurrent 1,000-id retrieve_batch calls over large records.

`python -m bench.batch_rss [--source DIR] [--label NAME]` stores 1,000 tasks whose records
carry ~150 KB each (unknown request fields, as older gateways stored them), starts
`kling-gateway serve` on them (from DIR's code when given: the code before a change, for a
before/after), runs 8 concurrent batches of all 1,000 ids, samples the server's RSS every
20 ms and prints the baseline, the peak and the answer size. Loopback only; bounded in count.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from kling_gateway.runtime.serve import migrate
from kling_gateway.runtime.settings import load_settings
from kling_gateway.storage import open_store
from kling_gateway.storage.tokens import issue_token
from tests.e2e.proc import clean_env, free_port, wait_healthy
from tests.harness import make_task

TASKS, CONCURRENT, PAD = 1000, 8, 150_000
MAIN = "import sys; from kling_gateway.cli import main; sys.exit(main())"


async def populate(data: Path, database_url: str) -> tuple[str, list[str]]:
    settings = load_settings(environ={}, data_dir=str(data), database_url=database_url)
    await migrate(settings)
    store = open_store(settings.resolved_database_url)
    await store.open()
    try:
        issued = await issue_token(store, "bench")
        ids = []
        for i in range(TASKS):
            task = make_task(issued.user_id, padding=f"{i:06d}" + "p" * PAD)
            await store.insert_task(task, next_check_at=0, deadline_at=time.time() + 3600)
            ids.append(task.id)
        return issued.token, ids
    finally:
        await store.close()


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def sample(pid: int, stop: threading.Event, peak: list[int]) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], rss_kib(pid))
        time.sleep(0.02)


async def batches(url: str, token: str, ids: list[str], concurrent: int) -> list[bytes]:
    headers = {"authorization": f"Bearer {token}"}
    body = {"action": "retrieve_batch", "ids": ids}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=300) as http:

        async def one() -> bytes:
            response = await http.post("/kling/tasks", json=body)
            response.raise_for_status()
            return response.content

        return await asyncio.gather(*(one() for _ in range(concurrent)))


def run(source: Path | None, label: str, database_url: str, concurrent: int) -> None:
    with tempfile.TemporaryDirectory(prefix="kg-batch-rss-") as tmp:
        data = Path(tmp) / "data"
        token, ids = asyncio.run(populate(data, database_url))
        port = free_port()
        env = clean_env()
        if source is not None:
            env["PYTHONPATH"] = str(source)
        args = ["serve", "--port", str(port), "--data-dir", str(data), "--no-worker"]
        args += ["--rate-limit-per-minute", "0", "--no-bootstrap-token"]
        if database_url:
            args += ["--database-url", database_url]
        proc = subprocess.Popen([sys.executable, "-c", MAIN, *args], env=env)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_healthy(url, proc)
            baseline = rss_kib(proc.pid, "VmHWM")
            stop, peak = threading.Event(), [baseline]
            sampler = threading.Thread(target=sample, args=(proc.pid, stop, peak))
            sampler.start()
            started = time.monotonic()
            answers = asyncio.run(batches(url, token, ids, concurrent))
            took = time.monotonic() - started
            stop.set()
            sampler.join()
            # The kernel's own high-water mark: no peak between two samples is missed.
            peak[0] = max(peak[0], rss_kib(proc.pid, "VmHWM"))
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    digest = {hashlib.sha256(a).hexdigest()[:16] for a in answers}
    print(
        f"{label}: baseline {baseline / 1024:.0f} MiB, peak {peak[0] / 1024:.0f} MiB, "
        f"answer {len(answers[0]) / 1e6:.1f} MB x {concurrent}, {took:.1f} s, "
        f"answers identical: {len(digest) == 1} (sha256 {sorted(digest)[0]})",
        flush=True,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", type=Path, help="a checkout whose code the server runs")
    parser.add_argument("--label", default="this tree")
    parser.add_argument("--concurrent", type=int, default=CONCURRENT)
    parser.add_argument(
        "--database-url", default="", help="an empty PostgreSQL database (default: SQLite)"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("PYTHONHASHSEED", "0")
    run(args.source, args.label, args.database_url, args.concurrent)


if __name__ == "__main__":
    main()
