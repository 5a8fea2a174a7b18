"""SIGTERM with MCP requests open: a `kling_wait_task` still waiting is answered at once with
the tool error `service_unavailable` (as a REST long poll is answered 503), a `GET /mcp` stream
ends, and the server exits without a traceback or the graceful-timeout cancel."""

from __future__ import annotations

import concurrent.futures
import json
import signal
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.proc import cli, free_port, stop, wait_healthy
from tests.e2e.test_shutdown import start, until

ACCEPT = {"accept": "application/json, text/event-stream"}


def call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    params = {"name": name, "arguments": arguments, "_meta": {"progressToken": "p"}}
    return {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}


def result_of(http: httpx.Client, body: dict[str, Any], seen: list[str]) -> dict[str, Any]:
    """The JSON-RPC result on a POST's event stream; each message's method goes to ``seen``."""
    with http.stream("POST", "/mcp", json=body, headers=ACCEPT) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue
            message = json.loads(line[5:])
            seen.append(message.get("method", "result"))
            if "result" in message:
                result: dict[str, Any] = message["result"]
                return result
    raise AssertionError("the stream ended without a result")


def test_shutdown_answers_a_waiting_tool_call_and_ends_get_streams(tmp_path: Path) -> None:
    data, port, log = tmp_path / "data", free_port(), tmp_path / "serve.log"
    token = cli("tokens", "create", "--user", "alice", "--data-dir", str(data)).strip()
    url = f"http://127.0.0.1:{port}"
    proc = start(data, port, log)
    try:
        wait_healthy(url, proc)
        headers = {"authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
            made = result_of(http, call("kling_generate_video", {"prompt": "a mug"}), [])
            task_id = made["structuredContent"]["task_id"]
            seen: list[str] = []

            def get_stream() -> int:
                with http.stream("GET", "/mcp", headers={"accept": "text/event-stream"}) as r:
                    assert r.status_code == 200
                    return sum(1 for _ in r.iter_lines())

            pool = concurrent.futures.ThreadPoolExecutor(2)
            try:
                waited = pool.submit(
                    result_of, http, call("kling_wait_task", {"task_id": task_id}), seen
                )
                streamed = pool.submit(get_stream)
                until(lambda: "notifications/progress" in seen)
                until(lambda: http.get("/healthz").json()["streams"] == 1)
                proc.send_signal(signal.SIGTERM)
                result = waited.result(timeout=60)
                assert result["isError"] is True
                assert result["structuredContent"]["error"]["code"] == "service_unavailable"
                streamed.result(timeout=60)  # ended, without an exception
            finally:
                if proc.poll() is None and not (waited.done() and streamed.done()):
                    proc.kill()  # a failed check: end the requests rather than wait for them
                pool.shutdown(wait=True)
        assert proc.wait(timeout=60) in (0, -signal.SIGTERM)
    finally:
        stop(proc)
    text = log.read_text()
    assert "Traceback" not in text, text
    assert "timeout graceful shutdown exceeded" not in text, text
    assert "ERROR" not in text, text
