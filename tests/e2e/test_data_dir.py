"""One `serve` per SQLite data directory, the split serve + worker layout still allowed, and a
data directory deleted under a running server refusing writes (defect #16), with the real
`kling-gateway` command."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx

from tests.e2e.proc import EXE, clean_env, cli, free_port, running, stop

FAST = ("--local-delay", "0", "--no-local-render", "--idle-poll-seconds", "0.1")


def _token(data: Path) -> str:
    return cli("tokens", "create", "--user", "alice", "--data-dir", str(data)).strip()


def test_a_second_serve_on_the_same_data_directory_refuses_in_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with running("--data-dir", str(data), "--no-worker", port=free_port()) as first:
        second = subprocess.run(
            [EXE, "serve", "--data-dir", str(data), "--port", str(free_port())],
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=60,
        )
        assert second.returncode == 2
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, second.stderr
        assert "--data-dir" in lines[0] and f"pid {first.pid}" in lines[0]
    # The lock goes with its process: the directory serves again at once.
    with running("--data-dir", str(data), "--no-worker", port=free_port()):
        pass


def test_serve_without_worker_and_a_worker_share_a_data_directory(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cli("migrate", "--data-dir", str(data))
    headers = {"authorization": f"Bearer {_token(data)}"}
    port = free_port()
    with running("--data-dir", str(data), "--no-worker", *FAST, port=port):
        worker = subprocess.Popen(
            [EXE, "worker", "--data-dir", str(data), *FAST],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
        )
        try:
            base = f"http://127.0.0.1:{port}"
            body = {"action": "text2video", "prompt": "a mug", "async": True}
            created = httpx.post(f"{base}/kling/videos", json=body, headers=headers).json()
            state = _wait_finished(base, headers, created["task_id"], worker)
        finally:
            assert stop(worker) == 0
    assert state == "succeed"  # finished by the worker process, beside the API process


def _wait_finished(
    base: str, headers: dict[str, str], task_id: str, worker: subprocess.Popen[str]
) -> str:
    poll = {"action": "retrieve", "id": task_id, "wait": 5}
    for _ in range(12):
        assert worker.poll() is None, f"the worker exited: {worker.stderr}"
        record = httpx.post(f"{base}/kling/tasks", json=poll, headers=headers, timeout=30).json()
        state = str(record["response"]["state"])
        if state in ("succeed", "failed"):
            return state
        time.sleep(0.1)
    return state


def test_a_deleted_data_directory_refuses_creates_with_503(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cli("migrate", "--data-dir", str(data))
    headers = {"authorization": f"Bearer {_token(data)}"}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    body = {"action": "text2video", "prompt": "a mug", "async": True}
    with running("--data-dir", str(data), "--no-worker", port=port):
        assert httpx.post(f"{base}/kling/videos", json=body, headers=headers).status_code == 200
        shutil.rmtree(data)
        refused = httpx.post(f"{base}/kling/videos", json=body, headers=headers)
    assert refused.status_code == 503, refused.text
    assert refused.json()["success"] is False
