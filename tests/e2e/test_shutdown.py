"""SIGTERM/SIGINT with waiting requests and events streams open: each waiting request is
answered 503 `service_unavailable` in the error shape with Retry-After at once, each stream
ends cleanly, and the server exits without a traceback or the graceful-timeout cancel."""

from __future__ import annotations

import concurrent.futures
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.proc import EXE, clean_env, cli, free_port, wait_healthy

PROMPT = {"action": "text2video", "prompt": "a mug"}


def start(data: Path, port: int, log: Path) -> subprocess.Popen[str]:
    args = ["serve", "--port", str(port), "--data-dir", str(data), "--no-bootstrap-token"]
    # The worker renders nothing for an hour: every waiting request is still waiting.
    args += ["--local-delay", "3600", "--rate-limit-per-minute", "0"]
    out = log.open("w")
    return subprocess.Popen(
        [EXE, *args], stdout=out, stderr=subprocess.STDOUT, text=True, env=clean_env()
    )


def until(condition: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_shutdown_answers_waiting_requests_and_ends_streams(tmp_path: Path, sig: int) -> None:
    data, port, log = tmp_path / "data", free_port(), tmp_path / "serve.log"
    token = cli("tokens", "create", "--user", "alice", "--data-dir", str(data)).strip()
    url = f"http://127.0.0.1:{port}"
    headers = {"authorization": f"Bearer {token}"}
    proc = start(data, port, log)
    try:
        wait_healthy(url, proc)
        with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
            task_id = http.post("/kling/videos", json={**PROMPT, "async": True}).json()["task_id"]
            opened: list[str] = []

            def blocking() -> httpx.Response:
                return http.post("/kling/videos", json=PROMPT)

            def long_poll() -> httpx.Response:
                return http.post(
                    "/kling/tasks", json={"action": "retrieve", "id": task_id, "wait": 60}
                )

            def stream() -> list[str]:
                lines: list[str] = []
                with http.stream("GET", f"/kling/tasks/{task_id}/events") as response:
                    assert response.status_code == 200
                    for line in response.iter_lines():
                        lines.append(line)
                        if line.startswith("data:"):
                            opened.append(line)
                return lines

            pool = concurrent.futures.ThreadPoolExecutor(4)
            try:
                waits = [pool.submit(blocking), pool.submit(long_poll)]
                streamed = pool.submit(stream)
                # (the worker's claim may already have sent a second event)
                until(lambda: len(opened) >= 1)
                until(
                    lambda: http.get("/healthz").json() == {"ok": True, "waiting": 2, "streams": 1}
                )
                proc.send_signal(sig)
                for future in waits:
                    response = future.result(timeout=60)
                    assert response.status_code == 503, response.text
                    body = response.json()
                    assert body["success"] is False
                    assert body["error"]["code"] == "service_unavailable"
                    assert body["trace_id"] == response.headers["x-trace-id"]
                    assert int(response.headers["retry-after"]) >= 1
                lines = streamed.result(timeout=60)  # ended cleanly: no exception
                assert any(line.startswith("data:") for line in lines)
            finally:
                if proc.poll() is None and not all(f.done() for f in [*waits, streamed]):
                    proc.kill()  # a failed check: end the requests rather than wait for them
                pool.shutdown(wait=True)
        # uvicorn re-raises the signal once it has shut down: SIGTERM ends the process by the
        # signal; SIGINT ends it with 0 or 130.
        assert proc.wait(timeout=60) in (0, 130, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert "Traceback" not in text, text
    assert "timeout graceful shutdown exceeded" not in text, text
    assert "ERROR" not in text, text
