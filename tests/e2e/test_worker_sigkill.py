"""A worker killed with SIGKILL mid-run and restarted: every task finishes, exactly once."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from tests.e2e.proc import EXE, clean_env, cli, free_port, running, stop

TASKS = 30


class Receiver:
    """A loopback callback receiver: webhook ids seen per task id."""

    def __init__(self) -> None:
        self.by_task: dict[str, set[str]] = defaultdict(set)
        self.lock = threading.Lock()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                with receiver.lock:
                    receiver.by_task[body["task_id"]].add(self.headers["webhook-id"])
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        return Handler


@contextmanager
def receiving() -> Iterator[tuple[Receiver, str]]:
    receiver = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), receiver.handler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver, f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()


def worker(data: Path, log: Path) -> subprocess.Popen[str]:
    args = [
        EXE, "worker", "--data-dir", str(data), "--local-delay", "1.5", "--local-max-side", "64",
        "--provider-timeout", "2", "--lease-seconds", "3", "--check-interval", "0.2",
        "--idle-poll-seconds", "0.2", "--callback-allow-private", "--worker-concurrency", "8",
    ]  # fmt: skip
    return subprocess.Popen(args, stdout=log.open("a"), stderr=subprocess.STDOUT, text=True,
                            env=clean_env())  # fmt: skip


def records(client: httpx.Client, ids: list[str]) -> list[dict[str, object]]:
    body = {"action": "retrieve_batch", "ids": ids}
    items: list[dict[str, object]] = client.post("/kling/tasks", json=body).json()["items"]
    return items


def wait_until(predicate: object, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError("condition not reached in time")


def test_sigkilled_worker_loses_nothing_and_finishes_each_task_once(tmp_path: Path) -> None:
    data, log = tmp_path / "data", tmp_path / "worker.log"
    token = cli("tokens", "create", "--user", "alice", "--data-dir", str(data)).strip()
    port = free_port()
    api = ["--data-dir", str(data), "--no-worker", "--callback-allow-private"]
    with receiving() as (receiver, hook), running(*api, port=port):
        headers = {"authorization": f"Bearer {token}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers) as client:
            body = {"action": "text2video", "prompt": "a mug", "callback_url": hook}
            ids = [client.post("/kling/videos", json=body).json()["task_id"] for _ in range(TASKS)]
            first = worker(data, log)
            # Kill it once it has submitted some tasks and before it has finished them all.
            wait_until(lambda: sum("job_id" in r for r in records(client, ids)) >= 8)
            first.send_signal(signal.SIGKILL)
            first.wait()
            unfinished = [r for r in records(client, ids) if "finished_at" not in r]
            assert unfinished, "the worker finished everything before it was killed"
            second = worker(data, log)
            try:
                wait_until(lambda: all("finished_at" in r for r in records(client, ids)))
                wait_until(lambda: len(receiver.by_task) == TASKS)
            finally:
                assert stop(second) == 0  # SIGTERM: a clean, graceful exit
            final = records(client, ids)
    assert {r["response"]["state"] for r in final} == {"succeed"}  # type: ignore[index]
    # Exactly one final callback delivery per task: each finished exactly once.
    assert all(len(webhook_ids) == 1 for webhook_ids in receiver.by_task.values())
    listed = json.loads(cli("callbacks", "list", "--json", "--data-dir", str(data)))
    assert sorted(row["task_id"] for row in listed) == sorted(ids)
    # Local jobs are derived from the task, so a resubmission after the kill is the same job.
    assert len({r["job_id"] for r in final}) == TASKS
