"""The real `kling-gateway serve`: JSON logs for every record (uvicorn's too) with the access
line a client's trace id finds; a task failure and a failed callback attempt logged with
their reasons; /metrics summed over the processes of `serve --processes 2`; a worker alone
serving its own on --metrics-port."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.proc import EXE, clean_env, cli, free_port, running, stop
from tests.services import fresh_postgres_database


def json_lines(log: Path) -> list[dict[str, Any]]:
    """Every line of the log as JSON (a line that is not fails here)."""
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def metric(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


def wait_for(check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError("the condition never held")


def test_json_logs_find_a_request_by_its_trace_id(tmp_path: Path) -> None:
    data, log, port = tmp_path / "data", tmp_path / "gateway.log", free_port()
    token = cli("tokens", "create", "--user", "alice", "--data-dir", str(data)).strip()
    closed = f"http://127.0.0.1:{free_port()}"
    args = ["--data-dir", str(data), "--log-format", "json", "--access-log"]
    args += ["--callback-allow-private", "--local-delay", "0", "--no-bootstrap-token"]
    base = f"http://127.0.0.1:{port}"
    headers = {"authorization": f"Bearer {token}"}
    with running(*args, port=port, log=log):
        body = {
            "action": "image2video",
            "prompt": "a mug",
            "start_image_url": f"{closed}/start.png",
            "callback_url": f"{closed}/hook",
            "async": True,
        }
        created = httpx.post(f"{base}/kling/videos", json=body, headers=headers, timeout=10)
        assert created.status_code == 200
        trace_id, task_id = created.headers["x-trace-id"], created.json()["task_id"]

        def failed() -> bool:
            retrieve = {"id": task_id}
            record = httpx.post(f"{base}/kling/tasks", json=retrieve, headers=headers).json()
            return record.get("response", {}).get("state") == "failed"

        wait_for(failed)
        wait_for(lambda: "callback" in log.read_text() and "attempt 1" in log.read_text())
    records = json_lines(log)
    assert any(r["logger"].startswith("uvicorn") for r in records)  # one format for all
    (access,) = [r for r in records if r.get("trace_id") == trace_id]
    assert access["logger"] == "kling_gateway.access"
    assert (access["route"], access["status"], access["user"]) == ("/kling/videos", 200, "alice")
    assert access["task_id"] == task_id and access["duration"] >= 0
    (failure,) = [r for r in records if r["logger"] == "kling_gateway.tasks"]
    assert failure["task_id"] == task_id and "image_fetch_failed" in failure["message"]
    attempt = next(r for r in records if r["logger"] == "kling_gateway.callbacks")
    assert attempt["task_id"] == task_id and "attempt 1, next in" in attempt["message"]


def writers(metrics_dir: Path) -> set[str]:
    """The pids of the processes that wrote counters into the multi-process directory."""
    return {path.stem.rsplit("_", 1)[1] for path in metrics_dir.glob("counter_*.db")}


@pytest.mark.postgres
def test_metrics_are_summed_over_the_api_processes(tmp_path: Path) -> None:
    requests, port = 20, free_port()
    metrics_dir = tmp_path / "metrics"
    with fresh_postgres_database("kg_obs") as url:
        env = clean_env(KLING_GATEWAY_DATABASE_URL=url, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
        token = cli("tokens", "create", "--user", "alice", env=env).strip()
        args = ["--processes", "2", "--no-worker", "--data-dir", str(tmp_path / "data")]
        with running(*args, port=port, env=env):
            base = f"http://127.0.0.1:{port}"
            headers = {"authorization": f"Bearer {token}", "connection": "close"}
            # A new connection each, until both processes have served some: each adds its
            # counts every second to a file of its own, named by its pid.
            sent, deadline = 0, time.monotonic() + 60
            while len(writers(metrics_dir)) < 2 or sent < requests:
                answer = httpx.post(f"{base}/kling/tasks", json={"id": "x"}, headers=headers)
                assert answer.status_code == 200
                sent += 1
                assert time.monotonic() < deadline, "one process served every request"
                if sent >= requests:
                    time.sleep(0.05)
            # Any one process scraped reports the sum (the others' counts within a second),
            # and then every time.
            route = {"route": "/kling/tasks", "status": "200"}

            def counted() -> float:
                text = httpx.get(f"{base}/metrics", headers={"connection": "close"}).text
                assert metric(text, "kling_gateway_store_up") == 1
                return metric(text, "kling_gateway_http_requests_total", **route)

            wait_for(lambda: counted() == sent)
            assert [counted() for _ in range(6)] == [sent] * 6


def test_a_worker_alone_serves_its_metrics_on_metrics_port(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "data"
    cli("migrate", "--data-dir", str(data))
    args = ["worker", "--data-dir", str(data), "--metrics-port", str(port)]
    proc = subprocess.Popen([EXE, *args], env=clean_env(), stderr=subprocess.PIPE, text=True)
    try:

        def scraped() -> str | None:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1).text
            except httpx.TransportError:
                assert proc.poll() is None, "the worker exited"
                return None

        text = wait_for(scraped)
        slots = wait_for(
            lambda: metric(scraped() or "", "kling_gateway_worker_slots", slots="total")
        )
        assert slots == 64 and "kling_gateway_tasks_finished_total" in text
    finally:
        assert stop(proc) == 0


def test_a_metrics_port_in_use_stops_the_worker_naming_the_flag(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [EXE, "worker", "--data-dir", str(tmp_path / "data"), "--metrics-port", str(port)],
            env=clean_env(), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 2
    assert "--metrics-port: cannot listen on 127.0.0.1:" in done.stderr
