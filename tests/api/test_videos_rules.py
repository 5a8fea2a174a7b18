"""docs/contract.md §6 over the HTTP API: every row of tests/videos_rules.py, accepted bodies
creating a task and refused ones a 400 ``bad_request`` naming the field and creating none; and
every documented field reaching the provider (the task's ``params``)."""

from __future__ import annotations

import time
from typing import Any

import msgspec
import pytest

from tests.api.test_videos_validation import assert_error
from tests.harness import AppHarness, insert_finished, make_task
from tests.videos_rules import ACCEPTED, IMG, IMG2, REFUSED, VID, strip_none


async def _prepare(gateway: AppHarness, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` as alice sends it: ``VIDEO`` is a finished video of hers, and each
    ``ELEMENT_n`` / ``VOICE_n`` the id of an element / voice registered for her."""
    user, now = gateway.user_ids["alice"], time.time()
    await insert_finished(gateway.store, make_task(user), video_id="VIDEO")
    text = msgspec.json.encode({**strip_none(body), "async": True}).decode()
    for kind, prefix, count in (("element", "ELEMENT", 3), ("voice", "VOICE", 2)):
        for n in range(1, count + 1):
            asset = await gateway.store.add_asset(
                user_id=user, kind=kind, upstream_id=f"up-{kind}-{n}", now=now
            )
            text = text.replace(f'"{prefix}_{n}"', f'"{asset}"')
    sent: dict[str, Any] = msgspec.json.decode(text)
    return sent


async def _count(gateway: AppHarness) -> int:
    listed = (await gateway.tasks({"action": "retrieve_batch"})).json()
    count: int = listed["count"]
    return count


@pytest.mark.parametrize(("rule", "body"), ACCEPTED, ids=[r for r, _ in ACCEPTED])
async def test_accepted(gateway: AppHarness, rule: str, body: dict[str, Any]) -> None:
    response = await gateway.videos(await _prepare(gateway, body))
    assert response.status_code == 200, f"{rule}: {response.text}"
    assert set(response.json()) == {"task_id", "trace_id", "usage"}


@pytest.mark.parametrize(("rule", "body", "field"), REFUSED, ids=[r for r, _, _ in REFUSED])
async def test_refused(gateway: AppHarness, rule: str, body: dict[str, Any], field: str) -> None:
    sent = await _prepare(gateway, body)
    before = await _count(gateway)
    response = await gateway.videos(sent)
    assert_error(response, 400, "bad_request", field)
    assert await _count(gateway) == before


async def _params(gateway: AppHarness, body: dict[str, Any]) -> dict[str, Any]:
    response = await gateway.videos(await _prepare(gateway, body))
    assert response.status_code == 200, response.text
    stored = await gateway.store.load_task(response.json()["task_id"])
    assert stored is not None and stored.task.params is not None
    params: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(stored.task.params))
    return params


OMNI_FULL: dict[str, Any] = {
    "action": "image2video",
    "model": "kling-v3-omni",
    "prompt": "<<<image_1>>> walks in the style of <<<video_1>>>",
    "mode": "pro",
    "duration": 6,
    "aspect_ratio": "9:16",
    "generate_audio": False,
    "start_image_url": IMG,
    "image_list": [{"image_url": IMG2}],
    "video_list": [{"video_url": VID, "refer_type": "feature", "keep_original_sound": "yes"}],
    "element_list": [{"element_id": "ELEMENT_1"}],
    "multi_shot": True,
    "shot_type": "customize",
    "multi_prompt": [
        {"index": 1, "prompt": "one", "duration": 2},
        {"index": 2, "prompt": "two", "duration": 4},
    ],
    "callback_url": "https://hook.example/cb",
    "callback_events": ["succeed"],
}
VOICE_FULL: dict[str, Any] = {
    "action": "image2video",
    "model": "kling-v2-6",
    "prompt": "<<<voice_1>>> speaks",
    "negative_prompt": "blur",
    "mode": "pro",
    "duration": 10,
    "cfg_scale": 0.3,
    "camera_control": {"type": "simple", "config": {"pan": 0.5}},
    "generate_audio": True,
    "start_image_url": IMG,
    "end_image_url": IMG2,
    "voice_list": [{"voice_id": "VOICE_1"}],
}


async def test_every_omni_and_storyboard_field_reaches_the_provider(gateway: AppHarness) -> None:
    params = await _params(gateway, OMNI_FULL)
    assert params["image_list"] == [{"url": IMG2, "type": None}]
    assert params["video_list"] == [
        {"url": VID, "refer_type": "feature", "keep_original_sound": True}
    ]
    assert [e["upstream_id"] for e in params["element_list"]] == ["up-element-1"]
    assert (params["multi_shot"], params["shot_type"]) == (True, "customize")
    assert params["multi_prompt"] == [
        {"index": 1, "prompt": "one", "duration": 2},
        {"index": 2, "prompt": "two", "duration": 4},
    ]
    for name in ("model", "prompt", "mode", "duration", "aspect_ratio", "start_image_url"):
        assert params[name] == OMNI_FULL[name], name
    assert params["generate_audio"] is False
    assert params["callback_url"] == OMNI_FULL["callback_url"]
    assert params["callback_events"] == ["succeed"]


async def test_every_voice_field_reaches_the_provider(gateway: AppHarness) -> None:
    params = await _params(gateway, VOICE_FULL)
    assert [v["upstream_id"] for v in params["voice_list"]] == ["up-voice-1"]
    for name in (
        "prompt",
        "negative_prompt",
        "mode",
        "duration",
        "cfg_scale",
        "start_image_url",
        "end_image_url",
    ):
        assert params[name] == VOICE_FULL[name], name
    assert params["camera_control"]["config"]["pan"] == 0.5
    assert params["generate_audio"] is True


async def test_turbo_is_stored_with_audio_on(gateway: AppHarness) -> None:
    params = await _params(
        gateway, {"action": "text2video", "model": "kling-v3-turbo", "prompt": "x"}
    )
    assert params["generate_audio"] is True
