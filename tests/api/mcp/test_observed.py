"""/mcp is observed as every other route (api/instrument.py): counted in /metrics under route
``/mcp`` (its refusals too), one access-log line with its trace id, user and the task a tool
made (the tool runs in the SDK's task, still in the request's log context), one x-trace-id."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from tests.api.test_metrics import delta, scrape
from tests.harness import AppHarness, make_settings

MCP_HEADERS = {"accept": "application/json, text/event-stream"}
CREATE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "tools/call",
    "params": {"name": "kling_generate_video", "arguments": {"prompt": "a mug"}},
}
REQUESTS = "kling_gateway_http_requests_total"


def _result(text: str) -> dict[str, object]:
    """The JSON-RPC result of an answer, plain JSON or one SSE event."""
    body = next((line[5:] for line in text.splitlines() if line.startswith("data:")), text)
    result: dict[str, object] = json.loads(body)["result"]
    return result


async def test_mcp_requests_are_counted_logged_and_traced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path, worker=False, access_log=True)
    async with AppHarness.start(settings) as gateway:
        await gateway.add_user("alice")
        before = await scrape(gateway)
        with caplog.at_level(logging.INFO, logger="kling_gateway.access"):
            refused = await gateway.client.post("/mcp", json=CREATE, headers=MCP_HEADERS)
            headers = {**gateway.headers(), **MCP_HEADERS}
            created = await gateway.client.post("/mcp", json=CREATE, headers=headers)
        after = await scrape(gateway)
    assert refused.status_code == 401 and created.status_code == 200, created.text
    for answer in (refused, created):
        assert len(answer.headers.get_list("x-trace-id")) == 1
    assert delta(before, after, REQUESTS, route="/mcp", status="401") == 1
    assert delta(before, after, REQUESTS, route="/mcp", status="200") == 1
    task_id = _result(created.text)["structuredContent"]["task_id"]  # type: ignore[index]
    lines = [r.getMessage() for r in caplog.records if r.name == "kling_gateway.access"]
    assert len(lines) == 2
    assert "POST /mcp 401 " in lines[0] and refused.headers["x-trace-id"] in lines[0]
    trace_id = created.headers["x-trace-id"]
    assert "POST /mcp 200 " in lines[1] and f"trace_id={trace_id} user=alice" in lines[1]
    assert f"task_id={task_id}" in lines[1]
