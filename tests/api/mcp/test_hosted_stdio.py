"""The hosted service's own MCP server (PyPI `mcp-kling`, stdio) pointed at a live gateway:
``ACEDATACLOUD_API_BASE_URL`` is the gateway's URL and ``ACEDATACLOUD_API_TOKEN`` a gateway
token (README, "MCP"). It runs as a subprocess driven by the official MCP stdio client.

`mcp-kling` is installed beside the venv by `make` (HOSTED_MCP in Makefile), not from the lock;
without it this test skips, and fails under KLING_GATEWAY_TEST_REQUIRE_SERVICES=1 (CI)."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from tests.harness import make_settings
from tests.real_gateway import RealGateway, real_gateway
from tests.services import unavailable

HOSTED = Path(sys.prefix) / "hosted-mcp"
# The hosted server's tools that this gateway serves too.
SHARED_TOOLS = {
    "kling_generate_video",
    "kling_generate_video_from_image",
    "kling_extend_video",
    "kling_generate_motion",
    "kling_lip_sync",
    "kling_talking_photo",
    "kling_get_task",
    "kling_get_tasks_batch",
    "kling_list_models",
    "kling_list_actions",
}
RUN = "import sys; sys.argv = ['mcp-kling']; from main import main; main()"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealGateway]:
    if not (HOSTED / "main.py").is_file():
        unavailable("mcp-kling", str(HOSTED), "not installed (make installs it)")
    data = tmp_path_factory.mktemp("hosted-mcp")
    settings_for = lambda port: make_settings(  # noqa: E731
        data, worker=True, local_delay=0.05, local_max_side=64, port=port,
        callback_allow_private=True,
    )  # fmt: skip
    with real_gateway(settings_for) as gw:
        gw.add_user("alice")
        yield gw


@asynccontextmanager
async def hosted_session(gateway: RealGateway, cwd: Path) -> AsyncIterator[ClientSession]:
    env = {
        "PYTHONPATH": str(HOSTED),
        "ACEDATACLOUD_API_BASE_URL": gateway.url,
        "ACEDATACLOUD_API_TOKEN": gateway.tokens["alice"],
        "LOG_LEVEL": "WARNING",
    }
    # cwd: the server reads a `.env` from its working directory; an empty one here.
    params = StdioServerParameters(command=sys.executable, args=["-c", RUN], env=env, cwd=cwd)
    async with (
        stdio_client(params) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def _text(result: Any) -> str:
    return "".join(part.text for part in result.content if part.type == "text")


async def _finished(gateway: RealGateway, task_id: str) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {gateway.tokens['alice']}"}
    async with httpx.AsyncClient(timeout=60) as http:
        answer = await http.post(
            f"{gateway.url}/kling/tasks", json={"id": task_id, "wait": 30}, headers=headers
        )
    record: dict[str, Any] = answer.json()
    assert "finished_at" in record, record
    return record


async def test_the_hosted_stdio_server_works_against_the_gateway(
    server: RealGateway, tmp_path: Path
) -> None:
    async with hosted_session(server, tmp_path) as session:
        names = {tool.name for tool in (await session.list_tools()).tools}
        assert names >= SHARED_TOOLS

        made = await session.call_tool(
            "kling_generate_video", {"prompt": "a mug", "model": "kling-v1", "duration": 5}
        )
        assert not made.isError, _text(made)
        task_id = json.loads(_text(made))["task_id"]
        record = await _finished(server, task_id)
        assert record["request"]["async"] is True  # the hosted server's own body, as sent

        got = await session.call_tool("kling_get_task", {"task_id": task_id})
        assert not got.isError, _text(got)
        shown = json.loads(_text(got))
        assert shown["response"]["state"] == "succeed"
        assert shown["response"]["video_url"] == record["response"]["video_url"]

        batch = await session.call_tool("kling_get_tasks_batch", {"task_ids": [task_id]})
        assert [item["id"] for item in json.loads(_text(batch))["items"]] == [task_id]

        video_id = record["response"]["video_id"]
        extended = await session.call_tool(
            "kling_extend_video", {"video_id": video_id, "prompt": "on", "model": "kling-v1"}
        )
        assert not extended.isError, _text(extended)
        await _finished(server, json.loads(_text(extended))["task_id"])


async def test_the_gateway_error_reaches_the_agent(server: RealGateway, tmp_path: Path) -> None:
    async with hosted_session(server, tmp_path) as session:
        refused = await session.call_tool(
            "kling_extend_video", {"video_id": "not-a-video", "prompt": "on", "model": "kling-v1"}
        )
    assert refused.isError
    assert "no finished video of yours has video_id 'not-a-video'" in _text(refused)


@pytest.mark.parametrize(
    ("tool", "arguments", "task_type"),
    [
        ("kling_generate_motion", {"image_url": "photo.png", "video_url": "dance.mp4"}, "motion"),
        ("kling_lip_sync", {"mode": "audio2video", "video_url": "dance.mp4",
                            "audio_url": "speech.mp3"}, "lip-sync"),
        ("kling_talking_photo", {"image_url": "photo.png", "audio_url": "speech.mp3"},
         "talking-photo"),
    ],
)  # fmt: skip
async def test_the_hosted_section_7_tools_work_against_the_gateway(
    server: RealGateway, media: str, tmp_path: Path, tool: str, arguments: dict[str, str],
    task_type: str,
) -> None:  # fmt: skip
    urls = {k: f"{media}/{v}" if k.endswith("_url") else v for k, v in arguments.items()}
    async with hosted_session(server, tmp_path) as session:
        made = await session.call_tool(tool, urls)
    assert not made.isError, _text(made)
    record = await _finished(server, json.loads(_text(made))["task_id"])
    assert record["type"] == task_type
    assert record["response"]["state"] == "succeed", record
