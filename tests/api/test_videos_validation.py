"""POST /kling/videos refuses invalid bodies over the ASGI stack (docs/contract.md §2, §4, §5)."""

from __future__ import annotations

import re
from typing import Any

import httpx
import msgspec
import pytest

from kling_gateway.domain.ids import is_uuid
from tests.harness import AppHarness

TEXT: dict[str, Any] = {"action": "text2video", "prompt": "a ceramic mug on marble"}
IMAGE: dict[str, Any] = {
    "action": "image2video",
    "prompt": "it moves",
    "start_image_url": "https://img.example/a.png",
}


def assert_error(response: httpx.Response, status: int, code: str, field: str | None) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"success", "error", "trace_id"}
    assert body["success"] is False
    assert body["error"]["code"] == code
    message: str = body["error"]["message"]
    assert message
    if field is not None:
        # the field itself, or a place inside it (`callback_events[0]`)
        assert re.search(rf"`{re.escape(field)}[`\[]", message), message
    assert body["trace_id"] == response.headers["x-trace-id"]
    assert "Traceback" not in message
    return message


def without(body: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != key}


INVALID: list[tuple[dict[str, Any], str]] = [
    # rules of validate()
    ({"prompt": "x"}, "action"),
    ({**TEXT, "model": "kling-v9"}, "model"),
    ({**TEXT, "mode": "hd"}, "mode"),
    ({**TEXT, "mode": "4k"}, "mode"),
    ({**TEXT, "model": "kling-v2-6", "mode": "4k"}, "mode"),
    ({**TEXT, "duration": 7}, "duration"),
    ({**TEXT, "duration": 5.5}, "duration"),
    ({**TEXT, "model": "kling-v3", "duration": 16}, "duration"),
    ({**TEXT, "model": "kling-v3", "duration": 2}, "duration"),
    ({**TEXT, "aspect_ratio": "4:3"}, "aspect_ratio"),
    (without(TEXT, "prompt"), "prompt"),
    ({**TEXT, "prompt": "  "}, "prompt"),
    ({**TEXT, "prompt": "p" * 2501}, "prompt"),
    ({**TEXT, "negative_prompt": "n" * 2501}, "negative_prompt"),
    ({**TEXT, "cfg_scale": 1.5}, "cfg_scale"),
    ({**TEXT, "cfg_scale": -0.1}, "cfg_scale"),
    ({**TEXT, "camera_control": {"type": "orbit"}}, "camera_control.type"),
    ({**TEXT, "camera_control": {"type": "simple"}}, "camera_control.config"),
    (
        {**TEXT, "camera_control": {"type": "simple", "config": {"pan": 0.5, "zoom": 0.5}}},
        "camera_control.config",
    ),
    (
        {**TEXT, "camera_control": {"type": "simple", "config": {"tilt": 2}}},
        "camera_control.config.tilt",
    ),
    ({**TEXT, "generate_audio": True}, "generate_audio"),
    ({**TEXT, "model": "kling-v2-6", "generate_audio": True}, "generate_audio"),
    (without(IMAGE, "start_image_url"), "start_image_url"),
    ({**TEXT, "end_image_url": "https://img.example/b.png"}, "end_image_url"),
    ({**IMAGE, "start_image_url": "ftp://img.example/a.png"}, "start_image_url"),
    ({**IMAGE, "end_image_url": "file:///etc/passwd"}, "end_image_url"),
    ({"action": "extend"}, "video_id"),
    ({"action": "extend", "video_id": ""}, "video_id"),
    ({**TEXT, "callback_url": "ftp://hook.example/cb"}, "callback_url"),
    ({**TEXT, "callback_url": "not a url"}, "callback_url"),
    ({**TEXT, "async": True, "callback_events": ["done"]}, "callback_events"),
    # wrong JSON types of known fields
    ({**TEXT, "prompt": 5}, "prompt"),
    ({**TEXT, "duration": "5"}, "duration"),
    ({**TEXT, "duration": True}, "duration"),
    ({**TEXT, "generate_audio": "yes"}, "generate_audio"),
    ({**TEXT, "camera_control": []}, "camera_control"),
    (
        {**TEXT, "camera_control": {"type": "simple", "config": {"pan": "1"}}},
        "camera_control.config.pan",
    ),
    ({**TEXT, "model": None}, "model"),
    ({**TEXT, "mode": 4}, "mode"),
    ({**TEXT, "cfg_scale": "0.5"}, "cfg_scale"),
    ({**TEXT, "aspect_ratio": 1.77}, "aspect_ratio"),
    ({**TEXT, "callback_url": 1}, "callback_url"),
    ({**TEXT, "callback_events": "succeed"}, "callback_events"),
    ({**TEXT, "callback_events": [1]}, "callback_events"),
    ({**TEXT, "async": "true"}, "async"),
    ({"action": 5, "prompt": "x"}, "action"),
    ({"action": "extend", "video_id": 42}, "video_id"),
]


@pytest.mark.parametrize(("body", "field"), INVALID)
async def test_invalid_bodies_are_400_naming_the_field(
    gateway: AppHarness, body: dict[str, Any], field: str
) -> None:
    response = await gateway.videos(body)
    assert_error(response, 400, "bad_request", field)


@pytest.mark.parametrize("action", ["retrieve", "text2image", "TEXT2VIDEO", ""])
async def test_unknown_action_is_api_not_implemented(gateway: AppHarness, action: str) -> None:
    response = await gateway.videos({"action": action, "prompt": "x"})
    message = assert_error(response, 400, "api_not_implemented", None)
    assert f"`{action}`" in message


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "empty"),
        (b"[1, 2]", "JSON object"),
        (b'"text2video"', "JSON object"),
        (b'{"action": "text2video", "prompt": "x", "duration": NaN}', "not valid JSON"),
        (b'{"action": "text2video", "prompt": "x", "duration": 1e400}', "`duration`: number out"),
    ],
)
async def test_malformed_bodies_are_400(gateway: AppHarness, raw: bytes, fragment: str) -> None:
    headers = {**gateway.headers(), "content-type": "application/json"}
    response = await gateway.client.post("/kling/videos", content=raw, headers=headers)
    message = assert_error(response, 400, "bad_request", None)
    assert fragment in message


async def test_a_refused_body_creates_no_task(gateway: AppHarness) -> None:
    await gateway.videos({**TEXT, "duration": 7})
    listed = (await gateway.tasks({"action": "retrieve_batch"})).json()
    assert listed == {"items": [], "count": 0}


@pytest.mark.parametrize(
    "extra",
    [
        {"timeout": 300},
        {"unknown": {"nested": [1, 2]}, "filters": None},
        {"mode": "std", "aspect_ratio": "16:9", "duration": 5.0, "model": "kling-v1"},
    ],
)
async def test_unknown_fields_are_ignored(gateway: AppHarness, extra: dict[str, Any]) -> None:
    response = await gateway.videos({**TEXT, "async": True, **extra})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"task_id", "trace_id", "usage"}
    assert is_uuid(body["task_id"])
    assert body["trace_id"] == response.headers["x-trace-id"]
    record = (await gateway.tasks({"id": body["task_id"]})).json()
    assert record["id"] == body["task_id"]
    # the request is stored as sent, unknown fields included
    assert record["request"] == msgspec.json.decode(
        msgspec.json.encode({**TEXT, "async": True, **extra})
    )


async def test_a_valid_body_of_every_field_is_accepted(gateway: AppHarness) -> None:
    body = {
        "action": "image2video",
        "model": "kling-v3",
        "prompt": "a mug turns",
        "negative_prompt": "blur",
        # 4k takes no camera_control (docs/contract.md §6)
        "mode": "pro",
        "duration": 12,
        "aspect_ratio": "1:1",
        "cfg_scale": 0.5,
        "camera_control": {"type": "simple", "config": {"zoom": -1}},
        "generate_audio": True,
        "start_image_url": "https://img.example/a.png",
        "end_image_url": "https://img.example/b.png",
        "async": True,
    }
    response = await gateway.videos(body)
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"task_id", "trace_id", "usage"}
