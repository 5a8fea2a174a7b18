"""The create tools' answer (api/mcp/creates.py): the REST asynchronous answer (`usage`
included) plus the record, its links made absolute as in every record sent."""

from __future__ import annotations

from typing import Any

from kling_gateway.api.mcp.creates import CREATE_KINDS, create_tool
from kling_gateway.api.mcp.tool import Call
from kling_gateway.domain.links import video_link
from kling_gateway.domain.task import Task
from kling_gateway.protocol.task import TaskState
from kling_gateway.storage.base import Outcome, Principal
from kling_gateway.storage.tokens import hash_token
from tests.api.mcp.test_observed import CREATE, MCP_HEADERS, _result
from tests.harness import AppHarness, make_task


async def _principal(gateway: AppHarness, user: str = "alice") -> Principal:
    principal = await gateway.store.find_principal(hash_token(gateway.tokens[user]))
    assert principal is not None
    return principal


async def _no_progress(done: float, total: float, message: str) -> None:
    return None


async def test_a_create_answers_what_the_rest_async_answer_carries(
    gateway: AppHarness,
) -> None:
    rest = await gateway.videos({"action": "text2video", "prompt": "a mug", "async": True})
    headers = {**gateway.headers(), **MCP_HEADERS}
    answer = await gateway.client.post("/mcp", json=CREATE, headers=headers)
    made: dict[str, Any] = _result(answer.text)["structuredContent"]  # type: ignore[assignment]
    assert set(rest.json()) == {"task_id", "trace_id", "usage"}, rest.text
    assert made["usage"] == rest.json()["usage"] == {"credits": 5, "duration": 5.0}
    assert made["trace_id"] == answer.headers["x-trace-id"]
    assert made["record"]["usage"] == made["usage"]


async def test_a_created_record_is_sent_with_absolute_links(gateway: AppHarness) -> None:
    """A create may answer a task already finished (a replayed create): its stored link
    (``/files/videos/...``) goes out absolute."""
    principal = await _principal(gateway)
    finished = make_task(principal.user_id)

    async def creates(who: Principal, body: bytes, trace_id: str) -> Task:
        store = gateway.store
        due = finished.created_at
        await store.insert_task(finished, next_check_at=due, deadline_at=due + 60)
        finished.state = TaskState.SUCCEED
        finished.response = {"success": True, "video_url": video_link("v-1"), "state": "succeed"}
        outcome = Outcome(next_check_at=None)
        assert await store.save_task(finished, expected_version=0, worker_id=None, outcome=outcome)
        return finished

    (video,) = [kind for kind in CREATE_KINDS if kind.name == "kling_generate_video"]
    tool = create_tool(gateway.app.ctx, video, creates)
    made = await tool.run(Call(principal, "trace-1", _no_progress), {"prompt": "a mug"})
    url = made["record"]["response"]["video_url"]
    assert url.startswith(("http://", "https://")) and url.endswith("/files/videos/v-1.mp4")
    assert made["task_id"] == finished.id and made["trace_id"] == "trace-1"
