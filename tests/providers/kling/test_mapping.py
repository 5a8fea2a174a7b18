from __future__ import annotations

from typing import Any

import msgspec
import pytest

from kling_gateway.domain.outcomes import ProviderError
from kling_gateway.domain.videos import params_from_stored
from kling_gateway.protocol.task import TaskState
from kling_gateway.providers.kling.mapping import (
    MAX_MESSAGE_CHARS,
    camera_control_upstream,
    clean_message,
    created_at_ms,
    duration_string,
    error_from_response,
    parent_video_id,
    parse_retry_after,
    status_from_task,
)
from kling_gateway.providers.kling.mapping import (
    build_create as build_kling_create,
)

TASK_ID = "6f1c1f5e-8d7e-4a55-9a3e-0d6f3c2b1a00"


def build_create(
    request: dict[str, Any], *, task_id: str, callback_url: str | None = None
) -> tuple[str, dict[str, Any]]:
    """The create call of a request as the API validated it (defaults applied)."""
    params = params_from_stored(request)
    assert params is not None, request
    return build_kling_create(params, task_id=task_id, callback_url=callback_url)


GATEWAY_CB = "https://gw.example/internal/kling-callback"


def test_text2video_defaults() -> None:
    kind, body = build_create({"action": "text2video", "prompt": "a cat"}, task_id=TASK_ID)
    assert kind == "text2video"
    # The validated defaults are sent as such: the upstream runs what the gateway validated.
    assert body == {
        "model_name": "kling-v1",
        "prompt": "a cat",
        "mode": "std",
        "aspect_ratio": "16:9",
        "duration": "5",
        "external_task_id": TASK_ID,
    }


def test_text2video_full() -> None:
    request: dict[str, Any] = {
        "action": "text2video",
        "model": "kling-v1-6",
        "prompt": "p",
        "negative_prompt": "n",
        "mode": "pro",
        "duration": 10.0,
        "aspect_ratio": "9:16",
        "cfg_scale": 0.7,
        "camera_control": {"type": "simple", "config": {"zoom": 0.3}},
        "callback_url": "https://client.example/cb",
        "async": True,
        "timeout": 30,
    }
    kind, body = build_create(request, task_id=TASK_ID, callback_url=GATEWAY_CB)
    assert kind == "text2video"
    assert body == {
        "model_name": "kling-v1-6",
        "prompt": "p",
        "negative_prompt": "n",
        "mode": "pro",
        "aspect_ratio": "9:16",
        "duration": "10",
        "cfg_scale": 0.7,
        "camera_control": {
            "type": "simple",
            "config": {"horizontal": 0, "vertical": 0, "pan": 0, "tilt": 0, "roll": 0, "zoom": 3},
        },
        "external_task_id": TASK_ID,
        "callback_url": GATEWAY_CB,
    }


def test_client_callback_url_never_forwarded() -> None:
    request = {"action": "text2video", "prompt": "p", "callback_url": "https://client.example/cb"}
    _, body = build_create(request, task_id=TASK_ID)
    assert "callback_url" not in body


def test_cfg_scale_dropped_for_v2_models() -> None:
    for model in ("kling-v2-master", "kling-v2-1-master", "kling-v2-5-turbo", "kling-v2-6"):
        request = {"action": "text2video", "prompt": "p", "model": model, "cfg_scale": 0.5}
        assert "cfg_scale" not in build_create(request, task_id=TASK_ID)[1]
    request = {"action": "text2video", "prompt": "p", "model": "kling-v3", "cfg_scale": 0.0}
    assert build_create(request, task_id=TASK_ID)[1]["cfg_scale"] == 0.0


def test_v3_duration_and_sound() -> None:
    request = {
        "action": "text2video",
        "prompt": "p",
        "model": "kling-v3",
        "duration": 7,
        "mode": "4k",
        "generate_audio": True,
    }
    body = build_create(request, task_id=TASK_ID)[1]
    assert (body["duration"], body["sound"], body["mode"]) == ("7", "on", "4k")
    request["generate_audio"] = False
    assert build_create(request, task_id=TASK_ID)[1]["sound"] == "off"


def test_sound_off_dropped_for_models_without_audio() -> None:
    request = {"action": "text2video", "prompt": "p", "generate_audio": False}
    assert "sound" not in build_create(request, task_id=TASK_ID)[1]
    # The API refuses audio on kling-v1; were it let through, the upstream must refuse it.
    params = params_from_stored(request)
    assert params is not None
    audio = msgspec.structs.replace(params, generate_audio=True)
    assert build_kling_create(audio, task_id=TASK_ID)[1]["sound"] == "on"


def test_image2video_images() -> None:
    request = {
        "action": "image2video",
        "prompt": "p",
        "start_image_url": "https://img.example/a.png",
        "end_image_url": "https://img.example/b.png",
    }
    kind, body = build_create(request, task_id=TASK_ID)
    assert kind == "image2video"
    assert body["image"] == "https://img.example/a.png"
    assert body["image_tail"] == "https://img.example/b.png"
    assert "start_image_url" not in body and "end_image_url" not in body


def test_extend_body() -> None:
    request = {
        "action": "extend",
        "video_id": "vid-1",
        "prompt": "more",
        "negative_prompt": "less",
        "cfg_scale": 0.4,
        "duration": 5,
        "model": "kling-v1-6",
    }
    kind, body = build_create(request, task_id=TASK_ID, callback_url=GATEWAY_CB)
    assert kind == "video-extend"
    assert body == {
        "video_id": "vid-1",
        "prompt": "more",
        "negative_prompt": "less",
        "cfg_scale": 0.4,
        "callback_url": GATEWAY_CB,
    }


def test_unknown_action() -> None:
    with pytest.raises(ProviderError) as info:
        params = params_from_stored({"action": "text2video", "prompt": "p"})
        assert params is not None
        build_kling_create(msgspec.structs.replace(params, action="paint"), task_id=TASK_ID)
    assert not info.value.retryable


@pytest.mark.parametrize(("value", "text"), [(5, "5"), (10.0, "10"), (3, "3"), (15.0, "15")])
def test_duration_string(value: float, text: str) -> None:
    assert duration_string(value) == text


@pytest.mark.parametrize("value", [5.5, "5", True, float("nan")])
def test_duration_string_rejects(value: Any) -> None:
    with pytest.raises(ProviderError):
        duration_string(value)


def test_camera_scaling_precision_and_non_simple() -> None:
    out = camera_control_upstream({"type": "simple", "config": {"pan": -0.35}})
    assert out["config"]["pan"] == -3.5
    assert camera_control_upstream({"type": "forward_up"}) == {"type": "forward_up"}


def test_status_processing() -> None:
    for word in ("submitted", "processing"):
        status = status_from_task({"task_id": "1", "task_status": word})
        assert status.state is TaskState.PROCESSING


def test_status_succeed() -> None:
    task = {
        "task_id": "1",
        "task_status": "succeed",
        "task_result": {"videos": [{"id": "v1", "url": "https://cdn/x.mp4", "duration": "5.1"}]},
        "final_unit_deduction": "1",
    }
    status = status_from_task(task)
    assert status.state is TaskState.SUCCEED
    assert status.video is not None
    assert (status.video.video_id, status.video.video_url, status.video.duration) == (
        "v1",
        "https://cdn/x.mp4",
        "5.1",
    )


def test_status_failed() -> None:
    status = status_from_task({"task_id": "1", "task_status": "failed", "task_status_msg": "boom"})
    assert status.state is TaskState.FAILED
    assert (status.error_code, status.error_message) == ("generation_failed", "boom")


@pytest.mark.parametrize(
    "task",
    [
        {"task_id": "1", "task_status": "succeeded"},
        {"task_id": "1", "task_status": "succeed", "task_result": {"videos": []}},
        {"task_id": "1"},
    ],
)
def test_status_protocol_errors(task: dict[str, Any]) -> None:
    with pytest.raises(ProviderError) as info:
        status_from_task(task)
    assert info.value.code == "upstream_protocol_error"


@pytest.mark.parametrize(
    ("http", "code", "ours", "retryable"),
    [
        (401, 1000, "upstream_auth_failed", False),
        (401, 1004, "upstream_auth_failed", False),
        (429, 1100, "upstream_account_error", False),
        (429, 1102, "upstream_account_error", False),
        (403, 1103, "upstream_forbidden", False),
        (400, 1200, "invalid_request", False),
        (400, 1201, "invalid_request", False),
        (404, 1202, "upstream_not_found", False),
        (404, 1203, "upstream_not_found", False),
        (400, 1300, "content_policy_violation", False),
        (400, 1301, "content_policy_violation", False),
        (429, 1302, "upstream_rate_limited", True),
        (429, 1303, "upstream_rate_limited", True),
        (429, 1304, "upstream_ip_not_allowed", False),
        (500, 5000, "upstream_unavailable", True),
        (503, 5001, "upstream_unavailable", True),
        (504, 5002, "upstream_unavailable", True),
        (502, None, "upstream_unavailable", True),
        (418, 9999, "upstream_error", False),
    ],
)
def test_error_table(http: int, code: int | None, ours: str, retryable: bool) -> None:
    error = error_from_response(http, code, "msg")
    assert (error.code, error.retryable) == (ours, retryable)


def test_error_messages_and_retry_after() -> None:
    safety = error_from_response(400, 1301, "Failure to pass the risk control system")
    assert safety.message == "Failure to pass the risk control system"
    limited = error_from_response(429, 1302, "slow down", retry_after="7")
    assert limited.retry_after == 7.0
    assert error_from_response(400, 1201, "bad", retry_after="7").retry_after is None
    assert error_from_response(500, 5000, "").message.startswith("the upstream failed")


def test_parse_retry_after() -> None:
    assert parse_retry_after("2.5") == 2.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-3") == 0.0
    date = "Wed, 21 Oct 2015 07:28:10 GMT"
    assert parse_retry_after(date, now=1445412480.0) == 10.0


def test_parent_video_and_created_at() -> None:
    extend = {"task_info": {"parent_video": {"id": "v-9", "url": "u"}}, "created_at": 1_700_000}
    assert (parent_video_id(extend), created_at_ms(extend)) == ("v-9", 1_700_000.0)
    for odd in ({}, {"task_info": {"parent_video": {"id": ""}}, "created_at": True}):
        assert (parent_video_id(odd), created_at_ms(odd)) == (None, None)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("plain words stay", "plain words stay"),
        ("duration < 5 and > 1", "duration < 5 and > 1"),  # no tags in it
        ("<!-- note --><div class='x'>Hi &lt;there&gt;</div>", "Hi <there>"),
        ("<script>steal()</script><style>p{}</style>\n  spaced \t out  ", "spaced out"),
        ("tab\there\x00nul", "tab here nul"),
    ],
)
def test_clean_message_keeps_the_words_only(raw: str, clean: str) -> None:
    assert clean_message(raw) == clean


def test_clean_message_cuts_long_text_and_huge_markup() -> None:
    long = clean_message("word " * 1000)
    assert len(long) == MAX_MESSAGE_CHARS and long.endswith("…")
    # Unclosed markup of any size: bounded work, bounded answer.
    huge = clean_message("<script>" + "x" * 1_000_000)
    assert len(huge) <= MAX_MESSAGE_CHARS


def test_error_messages_of_the_upstream_are_cleaned() -> None:
    error = error_from_response(502, 5000, "<h1>Bad</h1>" * 1000)
    assert error.message.startswith("Bad Bad") and "<" not in error.message
    assert len(error.message) <= MAX_MESSAGE_CHARS + len(" (kling code 5000)")
    assert error_from_response(500, None, "<br>").message == "the upstream answered HTTP 500"
