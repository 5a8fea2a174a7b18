"""The MCP tools of the §7 endpoints (docs/contract.md §7) with the official MCP client
against a live gateway: kling_generate_motion, kling_lip_sync and kling_talking_photo create
through POST /kling/motion, /kling/lip-sync and /kling/talking-photo's own code, and
kling_wait_task carries each to its video (the local provider renders them). Inputs come from
a loopback server (the gateway may fetch private addresses here)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.api.mcp.client import mcp_session, structured, tool_error
from tests.harness import make_settings
from tests.providers.local.media import encode_audio, silence_then_tone
from tests.real_gateway import RealGateway, real_gateway


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealGateway]:
    data = tmp_path_factory.mktemp("mcp-kinds")
    settings_for = lambda port: make_settings(  # noqa: E731
        data, worker=True, local_delay=0.05, local_max_side=64, port=port,
        callback_allow_private=True,
    )  # fmt: skip
    with real_gateway(settings_for) as gw:
        gw.add_user("alice")
        yield gw


async def _made_and_done(server: RealGateway, tool: str, arguments: dict[str, Any]) -> Any:
    async with mcp_session(server.url, server.tokens["alice"]) as session:
        made = structured(await session.call_tool(tool, arguments))
        done = structured(await session.call_tool("kling_wait_task", {"task_id": made["task_id"]}))
    assert done["state"] == "succeed", done
    async with httpx.AsyncClient() as http:
        video = await http.get(done["video_url"])
    assert video.status_code == 200 and video.content[4:8] == b"ftyp"
    return made, done


async def test_motion(server: RealGateway, media: str) -> None:
    arguments = {"image_url": f"{media}/photo.png", "video_url": f"{media}/dance.mp4",
                 "character_orientation": "image", "mode": "std"}  # fmt: skip
    made, done = await _made_and_done(server, "kling_generate_motion", arguments)
    assert done["record"]["type"] == "motion"
    assert made["record"]["request"] == {**arguments, "async": True}
    async with mcp_session(server.url, server.tokens["alice"]) as session:
        page = structured(await session.call_tool("kling_list_tasks", {"type": "motion"}))
    assert made["task_id"] in [item["task_id"] for item in page["items"]]
    assert {item["record"]["type"] for item in page["items"]} == {"motion"}


async def test_lip_sync_with_an_audio_file(server: RealGateway, media: str) -> None:
    clip = base64.b64encode(encode_audio(silence_then_tone(1.5), "wav")).decode()
    arguments = {"mode": "audio2video", "video_url": f"{media}/dance.mp4",
                 "audio_type": "file", "audio_file": clip}  # fmt: skip
    _, done = await _made_and_done(server, "kling_lip_sync", arguments)
    assert done["record"]["type"] == "lip-sync"


async def test_talking_photo(server: RealGateway, media: str) -> None:
    arguments = {"image_url": f"{media}/photo.png", "audio_url": f"{media}/speech.mp3"}
    _, done = await _made_and_done(server, "kling_talking_photo", arguments)
    assert done["record"]["type"] == "talking-photo"


async def test_a_refused_kind_is_the_rest_error(server: RealGateway, media: str) -> None:
    arguments = {"image_url": f"{media}/photo.png", "video_url": f"{media}/dance.mp4"}
    token = server.tokens["alice"]
    async with httpx.AsyncClient() as http:
        rest = await http.post(f"{server.url}/kling/motion", json={**arguments, "async": True},
                               headers={"authorization": f"Bearer {token}"})  # fmt: skip
    assert rest.status_code == 400
    async with mcp_session(server.url, token) as session:
        error = tool_error(await session.call_tool("kling_generate_motion", arguments))
    assert error == rest.json()["error"]


async def test_the_schemas_come_from_the_kinds_bodies(server: RealGateway) -> None:
    async with mcp_session(server.url, server.tokens["alice"]) as session:
        listed = {tool.name: tool.inputSchema for tool in (await session.list_tools()).tools}
    motion = listed["kling_generate_motion"]
    assert motion["properties"]["watermark_info"]["anyOf"][0]["$ref"] == "#/$defs/WatermarkInfo"
    assert listed["kling_lip_sync"]["required"] == ["mode"]
    assert listed["kling_talking_photo"]["required"] == ["image_url", "audio_url"]
    assert all("async" not in schema["properties"] for schema in listed.values())
