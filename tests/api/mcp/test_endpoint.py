"""/mcp with the official MCP client against a live gateway (real uvicorn on loopback, its
worker and the local provider): the tools, the create-wait-get-list-delete round, the same
tokens and errors as the REST API, and a foreign task read as a missing one."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kling_gateway.api.mcp.creates import CREATE_KINDS
from kling_gateway.domain.kinds import KINDS
from kling_gateway.protocol.enums import MODELS
from kling_gateway.protocol.task import API_TASKS
from tests.api.mcp.client import mcp_session, structured, tool_error
from tests.harness import make_settings
from tests.real_gateway import RealGateway, finish_task, real_gateway

TOOLS = {
    "kling_generate_video",
    "kling_generate_video_from_image",
    "kling_extend_video",
    "kling_generate_motion",
    "kling_lip_sync",
    "kling_talking_photo",
    "kling_get_task",
    "kling_get_tasks_batch",
    "kling_list_tasks",
    "kling_delete_task",
    "kling_wait_task",
    "kling_list_models",
    "kling_list_actions",
}
JSONRPC_LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
MCP_HEADERS = {"accept": "application/json, text/event-stream"}


async def _get(url: str) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.get(url)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealGateway]:
    data = tmp_path_factory.mktemp("mcp")
    settings_for = lambda port: make_settings(  # noqa: E731
        data, worker=True, local_delay=0.05, local_max_side=64, port=port
    )
    with real_gateway(settings_for) as gw:
        gw.add_user("alice")
        gw.add_user("bob")
        gw.add_user("reader", apis=(API_TASKS,))
        yield gw


@pytest.fixture(scope="module")
def idle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealGateway]:
    """A gateway without a worker: its tasks stay pending until a test finishes them."""
    data = tmp_path_factory.mktemp("mcp-idle")
    settings_for = lambda port: make_settings(data, worker=False, port=port)  # noqa: E731
    with real_gateway(settings_for) as gw:
        gw.add_user("alice")
        yield gw


async def test_lists_the_tools_with_schemas_of_the_request_structs(server: RealGateway) -> None:
    async with mcp_session(server.url, server.tokens["alice"]) as session:
        listed = {tool.name: tool for tool in (await session.list_tools()).tools}
    assert set(listed) == TOOLS
    text = listed["kling_generate_video"].inputSchema
    assert text["required"] == ["prompt"]
    assert text["properties"]["model"]["enum"] == list(MODELS)
    assert text["properties"]["camera_control"]["anyOf"][0]["$ref"] == "#/$defs/CameraControl"
    assert {"action", "async", "start_image_url", "video_id"}.isdisjoint(text["properties"])
    image = listed["kling_generate_video_from_image"].inputSchema
    assert image["required"] == ["prompt", "start_image_url"]
    extend = listed["kling_extend_video"].inputSchema
    assert extend["required"] == ["video_id", "prompt"]
    assert "image_list" not in extend["properties"]
    assert listed["kling_get_task"].inputSchema["required"] == ["task_id"]
    assert listed["kling_get_tasks_batch"].inputSchema["required"] == ["task_ids"]


async def test_generate_wait_get_list_delete(server: RealGateway) -> None:
    async with mcp_session(server.url, server.tokens["alice"]) as session:
        made = structured(
            await session.call_tool("kling_generate_video", {"prompt": "a mug", "duration": 5})
        )
        task_id = made["task_id"]
        assert made["record"]["id"] == task_id
        assert made["record"]["request"]["action"] == "text2video"
        assert made["record"]["request"]["async"] is True

        done = structured(await session.call_tool("kling_wait_task", {"task_id": task_id}))
        assert done["finished"] is True and done["state"] == "succeed", done
        video = await _get(done["video_url"])
        assert video.status_code == 200 and video.content[4:8] == b"ftyp"

        got = structured(await session.call_tool("kling_get_task", {"task_id": task_id}))
        assert got["record"] == done["record"]
        batch = structured(
            await session.call_tool("kling_get_tasks_batch", {"task_ids": [task_id, "nope"]})
        )
        assert [item["task_id"] for item in batch["items"]] == [task_id]
        listed = structured(await session.call_tool("kling_list_tasks", {"limit": 100}))
        assert task_id in [item["task_id"] for item in listed["items"]]

        gone = structured(await session.call_tool("kling_delete_task", {"task_id": task_id}))
        assert gone == {"id": task_id, "deleted": True}
        after = tool_error(await session.call_tool("kling_get_task", {"task_id": task_id}))
        assert after["code"] == "not_found"
    assert (await _get(done["video_url"])).status_code == 404


async def test_extend_a_finished_video(server: RealGateway) -> None:
    async with mcp_session(server.url, server.tokens["alice"]) as session:
        first = structured(await session.call_tool("kling_generate_video", {"prompt": "a fox"}))
        done = structured(await session.call_tool("kling_wait_task", {"task_id": first["task_id"]}))
        arguments = {"video_id": done["video_id"], "prompt": "it runs on"}
        more = structured(await session.call_tool("kling_extend_video", arguments))
        assert more["record"]["request"]["video_id"] == done["video_id"]


async def test_a_wait_is_bounded_and_reports_progress(idle: RealGateway) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def progress(done: float, total: float | None, message: str | None) -> None:
        seen.append((done, total, message))

    async with mcp_session(idle.url, idle.tokens["alice"]) as session:
        made = structured(await session.call_tool("kling_generate_video", {"prompt": "a mug"}))
        arguments = {"task_id": made["task_id"], "wait": 0.5}
        waited = await session.call_tool("kling_wait_task", arguments, progress_callback=progress)
        still = structured(waited)
        assert still["finished"] is False and still["state"] == "pending"
        assert seen and all(total == 0.5 and message == "pending" for _, total, message in seen)

        await finish_task(idle, made["task_id"])
        done = structured(await session.call_tool("kling_wait_task", arguments))
        assert done["finished"] is True and done["video_url"] == "http://cdn.example/v1.mp4"


async def test_a_wait_longer_than_the_blocking_bound_is_the_rest_400(idle: RealGateway) -> None:
    bound = idle.settings.blocking_wait_seconds
    async with mcp_session(idle.url, idle.tokens["alice"]) as session:
        arguments = {"task_id": str(uuid.uuid4()), "wait": bound + 1}
        error = tool_error(await session.call_tool("kling_wait_task", arguments))
    message = f"field `wait` must be between 0 and {bound:g}"
    assert error == {"code": "bad_request", "message": message}


@pytest.mark.parametrize(
    ("tool", "arguments", "body"),
    [
        ("kling_generate_video", {"prompt": "a mug", "duration": 7}, {"action": "text2video"}),
        ("kling_generate_video", {"duration": 5}, {"action": "text2video"}),
        ("kling_generate_video_from_image", {"prompt": "go"}, {"action": "image2video"}),
        ("kling_extend_video", {"video_id": "v-unknown", "prompt": "on"}, {"action": "extend"}),
        ("kling_generate_video", {"prompt": "a", "model": "kling-v9"}, {"action": "text2video"}),
    ],
)
async def test_a_refused_create_is_the_rest_error(
    server: RealGateway, tool: str, arguments: dict[str, Any], body: dict[str, Any]
) -> None:
    token = server.tokens["alice"]
    async with httpx.AsyncClient() as http:
        rest = await http.post(
            f"{server.url}/kling/videos",
            json={**arguments, **body, "async": True},
            headers={"authorization": f"Bearer {token}"},
        )
    assert rest.status_code == 400
    async with mcp_session(server.url, token) as session:
        error = tool_error(await session.call_tool(tool, arguments))
    assert error == rest.json()["error"]


async def test_a_task_id_must_be_given_as_rest_says(server: RealGateway) -> None:
    async with mcp_session(server.url, server.tokens["alice"]) as session:
        error = tool_error(await session.call_tool("kling_get_task", {}))
    assert error == {"code": "bad_request", "message": "field `id` is required"}


async def test_a_foreign_task_reads_as_a_missing_one(server: RealGateway) -> None:
    async with mcp_session(server.url, server.tokens["bob"]) as session:
        made = structured(await session.call_tool("kling_generate_video", {"prompt": "bob's"}))
    foreign, missing = made["task_id"], str(uuid.uuid4())
    async with mcp_session(server.url, server.tokens["alice"]) as session:
        answers = {}
        for task_id in (foreign, missing):
            get = tool_error(await session.call_tool("kling_get_task", {"task_id": task_id}))
            wait = tool_error(
                await session.call_tool("kling_wait_task", {"task_id": task_id, "wait": 1})
            )
            batch = structured(
                await session.call_tool("kling_get_tasks_batch", {"task_ids": [task_id]})
            )
            delete = structured(await session.call_tool("kling_delete_task", {"task_id": task_id}))
            answers[task_id] = [get, wait, batch, delete]
    # The same answers, once the id itself is taken out of them.
    blank = lambda task_id: repr(answers[task_id]).replace(task_id, "ID")  # noqa: E731
    assert blank(foreign) == blank(missing)
    assert answers[foreign][0]["code"] == "not_found"
    async with mcp_session(server.url, server.tokens["bob"]) as session:
        still = structured(await session.call_tool("kling_get_task", {"task_id": foreign}))
    assert still["task_id"] == foreign  # alice's delete did not touch it


async def test_a_token_without_the_videos_api_may_only_read(server: RealGateway) -> None:
    async with mcp_session(server.url, server.tokens["reader"]) as session:
        error = tool_error(await session.call_tool("kling_generate_video", {"prompt": "a mug"}))
        listed = structured(await session.call_tool("kling_list_tasks", {}))
    assert error["code"] == "token_mismatched"
    assert listed == {"items": [], "count": 0}


@pytest.mark.parametrize("authorization", [None, "Bearer not-a-token", "Basic abc"])
def test_a_bad_token_is_refused_as_the_rest_api_refuses_it(
    server: RealGateway, authorization: str | None
) -> None:
    headers = {**MCP_HEADERS, **({"authorization": authorization} if authorization else {})}
    answer = httpx.post(f"{server.url}/mcp", json=JSONRPC_LIST, headers=headers)
    rest = httpx.post(f"{server.url}/kling/tasks", json={"id": "x"}, headers=headers)
    assert answer.status_code == rest.status_code == 401
    assert answer.json()["error"] == rest.json()["error"]
    assert answer.json()["trace_id"] == answer.headers["x-trace-id"]


async def test_the_official_client_fails_on_a_bad_token(server: RealGateway) -> None:
    with pytest.raises(ExceptionGroup) as raised:
        async with mcp_session(server.url, "not-a-token"):
            pass
    refused = raised.value.exceptions[0]
    assert isinstance(refused, httpx.HTTPStatusError)
    assert refused.response.status_code == 401


def test_a_plain_post_needs_no_session(server: RealGateway) -> None:
    """Stateless: any process behind a balancer answers any request, without initialize."""
    headers = {**MCP_HEADERS, "authorization": f"Bearer {server.tokens['alice']}"}
    answer = httpx.post(f"{server.url}/mcp", json=JSONRPC_LIST, headers=headers)
    assert answer.status_code == 200, answer.text
    assert "kling_wait_task" in answer.text
    assert answer.headers["x-trace-id"]


async def test_list_models_and_actions(server: RealGateway) -> None:
    async with mcp_session(server.url, server.tokens["alice"]) as session:
        models = structured(await session.call_tool("kling_list_models", {}))
        actions = structured(await session.call_tool("kling_list_actions", {}))
    assert [m["model"] for m in models["models"]] == list(MODELS)
    assert {t["tool"] for t in actions["tools"]} == TOOLS
    assert {kind.name for kind in CREATE_KINDS} <= TOOLS


async def test_a_spent_quota_is_the_rest_used_up(server: RealGateway) -> None:
    server.add_user("trial")
    # enough credits for one default video (5 s std: docs/billing.md's default table)
    server.submit(server.app.ctx.store.grant_credits("trial", 5, time.time())).result(10)
    async with mcp_session(server.url, server.tokens["trial"]) as session:
        first = await session.call_tool("kling_generate_video", {"prompt": "one"})
        spent = tool_error(await session.call_tool("kling_generate_video", {"prompt": "two"}))
    assert not first.isError
    assert spent["code"] == "used_up"
    assert spent["message"].startswith("the application's credits are used up")


def test_mcp_and_rest_requests_share_the_rate_limit(tmp_path: Path) -> None:
    settings_for = lambda port: make_settings(  # noqa: E731
        tmp_path, worker=False, port=port, rate_limit_per_minute=3
    )
    with real_gateway(settings_for) as gw:
        headers = {**MCP_HEADERS, "authorization": f"Bearer {gw.add_user('alice')}"}
        mcp, rest = f"{gw.url}/mcp", f"{gw.url}/kling/tasks"
        answers = [
            httpx.post(mcp, json=JSONRPC_LIST, headers=headers),
            httpx.post(rest, json={"id": "x"}, headers=headers),
            httpx.post(mcp, json=JSONRPC_LIST, headers=headers),
            httpx.post(mcp, json=JSONRPC_LIST, headers=headers),
        ]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[3].json()["error"]["code"] == "too_many_requests"
    assert int(answers[3].headers["retry-after"]) >= 1


def test_a_get_opens_an_event_stream_for_a_valid_token_only(server: RealGateway) -> None:
    stream = {"accept": "text/event-stream"}
    refused = httpx.get(f"{server.url}/mcp", headers=stream)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_token"
    headers = {**stream, "authorization": f"Bearer {server.tokens['alice']}"}
    with httpx.stream("GET", f"{server.url}/mcp", headers=headers) as opened:
        assert opened.status_code == 200
        assert opened.headers["content-type"].startswith("text/event-stream")


def test_a_body_over_the_cap_is_the_rest_400(server: RealGateway) -> None:
    headers = {**MCP_HEADERS, "authorization": f"Bearer {server.tokens['alice']}"}
    # As large as the largest create endpoint reads (a lip-sync's audio_file).
    limit = max(server.settings.max_body_bytes, *(kind.max_body_bytes for kind in KINDS))
    big = {**JSONRPC_LIST, "params": {"pad": "x" * limit}}
    answer = httpx.post(f"{server.url}/mcp", json=big, headers=headers)
    assert answer.status_code == 400
    assert answer.json()["error"]["message"] == f"request body is larger than {limit} bytes"


def test_a_client_that_leaves_ends_its_wait(idle: RealGateway) -> None:
    headers = {**MCP_HEADERS, "authorization": f"Bearer {idle.tokens['alice']}"}
    with httpx.Client(base_url=idle.url, headers=headers, timeout=30) as http:
        task_id = http.post("/kling/videos", json={"prompt": "a", "action": "text2video",
                                                   "async": True}).json()["task_id"]  # fmt: skip
        params = {"name": "kling_wait_task", "arguments": {"task_id": task_id, "wait": 60},
                  "_meta": {"progressToken": 1}}  # fmt: skip
        body = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": params}
        with http.stream("POST", "/mcp", json=body) as waiting:
            data = next(line for line in waiting.iter_lines() if line.startswith("data:"))
            assert json.loads(data[5:])["method"] == "notifications/progress"  # it waits
        # The connection is closed: the gateway stops waiting for nobody.
        for _ in range(500):
            if http.get("/healthz").json()["waiting"] == 0:
                break
        assert http.get("/healthz").json()["waiting"] == 0


async def test_a_foreign_video_reads_as_a_missing_one(server: RealGateway) -> None:
    async with mcp_session(server.url, server.tokens["bob"]) as session:
        made = structured(await session.call_tool("kling_generate_video", {"prompt": "bob's"}))
        done = structured(await session.call_tool("kling_wait_task", {"task_id": made["task_id"]}))
    foreign, missing = done["video_id"], "v-" + uuid.uuid4().hex
    async with mcp_session(server.url, server.tokens["alice"]) as session:
        errors = [
            tool_error(
                await session.call_tool("kling_extend_video", {"video_id": v, "prompt": "on"})
            )
            for v in (foreign, missing)
        ]
    assert errors[0]["code"] == "bad_request"
    assert errors[0]["message"].replace(foreign, "ID") == errors[1]["message"].replace(
        missing, "ID"
    )
