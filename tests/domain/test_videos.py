"""Every rule of the POST /kling/videos body (docs/contract.md §2, §5), through ``videos.validate``.

Bodies go through ``msgspec.convert(dict, VideoRequestBody)`` as the endpoint does, so type
errors are msgspec's; the rules themselves are ``validate``'s.
"""

from __future__ import annotations

import math
import re
from typing import Any

import msgspec
import pytest

from kling_gateway.api.requests import describe_validation_error
from kling_gateway.domain.params import VideoParams
from kling_gateway.domain.videos import params_from_stored, stored_request, validate
from kling_gateway.protocol.enums import MODELS
from kling_gateway.protocol.errors import ApiError, ApiNotImplemented, BadRequest
from kling_gateway.protocol.requests import VideoRequestBody

V3 = frozenset({"kling-v3", "kling-v3-omni", "kling-v3-turbo"})

TEXT = {"action": "text2video", "prompt": "a ceramic mug on marble"}
IMAGE = {"action": "image2video", "prompt": "it moves", "start_image_url": "https://img.ex/a.png"}
EXTEND = {"action": "extend", "video_id": "030bb06d-98d4-4044-9042-0aa0822e8c8c"}


def check(body: dict[str, Any]) -> VideoParams:
    return validate(msgspec.convert(body, VideoRequestBody))


def refused(body: dict[str, Any], field: str, kind: type[ApiError] = BadRequest) -> str:
    """Assert ``body`` is refused with ``kind`` and a message naming ``field``."""
    with pytest.raises(ApiError) as info:
        check(body)
    assert type(info.value) is kind
    message = info.value.message
    assert f"`{field}`" in message, message
    return message


def type_error(body: dict[str, Any], field: str) -> str:
    """Assert msgspec refuses ``body``'s types and the endpoint's message names ``field``."""
    with pytest.raises(msgspec.ValidationError) as info:
        msgspec.convert(body, VideoRequestBody)
    message = describe_validation_error(info.value)
    # the field itself, or a place inside it (`callback_events[0]`)
    assert re.search(rf"`{re.escape(field)}[`\[]", message), message
    return message


# -- defaults -------------------------------------------------------------------------------------


def test_minimal_text2video_gets_every_default() -> None:
    params = check(TEXT)
    assert params == VideoParams(
        action="text2video",
        model="kling-v1",
        prompt="a ceramic mug on marble",
        negative_prompt=None,
        mode="std",
        duration=5,
        aspect_ratio="16:9",
        cfg_scale=None,
        camera_control=None,
        generate_audio=False,
        start_image_url=None,
        end_image_url=None,
        video_id=None,
        callback_url=None,
        callback_events=(),
        asynchronous=False,
    )


def test_what_the_hosted_cli_sends_is_accepted() -> None:
    body = {**TEXT, "model": "kling-v1", "mode": "std", "aspect_ratio": "16:9", "duration": 5.0}
    params = check(body)
    assert params.duration == 5
    assert type(params.duration) is int


def test_unknown_fields_are_ignored() -> None:
    params = check({**TEXT, "timeout": 300, "filters": {"x": 1}, "foo": None})
    assert params.prompt == TEXT["prompt"]


# -- action ---------------------------------------------------------------------------------------


def test_missing_action_is_a_bad_request() -> None:
    message = refused({"prompt": "x"}, "action")
    assert "required" in message


def test_null_action_is_a_bad_request() -> None:
    refused({"action": None, "prompt": "x"}, "action")


@pytest.mark.parametrize("action", ["retrieve", "TEXT2VIDEO", "text-to-video", "", "image2image"])
def test_unknown_action_is_not_implemented(action: str) -> None:
    with pytest.raises(ApiNotImplemented) as info:
        check({"action": action, "prompt": "x"})
    assert info.value.status == 400
    assert info.value.code == "api_not_implemented"
    assert f"`{action}`" in info.value.message


@pytest.mark.parametrize("body", [TEXT, IMAGE, EXTEND])
def test_each_action_is_accepted(body: dict[str, Any]) -> None:
    assert check(body).action == body["action"]


def test_action_of_the_wrong_type() -> None:
    type_error({"action": 5, "prompt": "x"}, "action")


# -- model and mode -------------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_each_model_is_accepted(model: str) -> None:
    assert check({**TEXT, "model": model}).model == model


def test_the_model_list_is_the_contracts() -> None:
    assert set(MODELS) == {
        "kling-v1",
        "kling-v1-6",
        "kling-v2-master",
        "kling-v2-1-master",
        "kling-v2-5-turbo",
        "kling-v2-6",
        "kling-v3",
        "kling-v3-omni",
        "kling-o1",
        "kling-v3-turbo",
    }


@pytest.mark.parametrize("model", ["kling-v4", "Kling-V1", "", "kling-v2"])
def test_unknown_model_is_refused(model: str) -> None:
    refused({**TEXT, "model": model}, "model")


@pytest.mark.parametrize("mode", ["std", "pro"])
@pytest.mark.parametrize("model", MODELS)
def test_std_and_pro_on_every_model(model: str, mode: str) -> None:
    assert check({**TEXT, "model": model, "mode": mode}).mode == mode


@pytest.mark.parametrize("model", ["kling-v3", "kling-v3-omni"])
def test_4k_on_v3_models(model: str) -> None:
    assert check({**TEXT, "model": model, "mode": "4k"}).mode == "4k"


@pytest.mark.parametrize("model", [m for m in MODELS if m not in ("kling-v3", "kling-v3-omni")])
def test_4k_refused_elsewhere(model: str) -> None:
    message = refused({**TEXT, "model": model, "mode": "4k"}, "mode")
    assert "4k" in message


@pytest.mark.parametrize("mode", ["hd", "STD", "", "8k"])
def test_unknown_mode_is_refused(mode: str) -> None:
    refused({**TEXT, "mode": mode}, "mode")


# -- duration -------------------------------------------------------------------------------------


# kling-o1 takes 5 seconds only (docs/contract.md §6)
@pytest.mark.parametrize("model", [m for m in MODELS if m not in V3 and m != "kling-o1"])
@pytest.mark.parametrize("duration", [5, 10, 5.0, 10.0])
def test_non_v3_durations(model: str, duration: float) -> None:
    assert check({**TEXT, "model": model, "duration": duration}).duration == int(duration)


@pytest.mark.parametrize("duration", [3, 4, 6, 9, 11, 15, 0, -5])
def test_non_v3_refuses_other_durations(duration: int) -> None:
    refused({**TEXT, "model": "kling-v2-6", "duration": duration}, "duration")


@pytest.mark.parametrize("model", sorted(V3))
@pytest.mark.parametrize("duration", range(3, 16))
def test_v3_whole_durations_3_to_15(model: str, duration: int) -> None:
    assert check({**TEXT, "model": model, "duration": duration}).duration == duration
    assert check({**TEXT, "model": model, "duration": float(duration)}).duration == duration


@pytest.mark.parametrize("duration", [0, 1, 2, 16, 20, -3])
def test_v3_refuses_durations_out_of_range(duration: int) -> None:
    refused({**TEXT, "model": "kling-v3", "duration": duration}, "duration")


@pytest.mark.parametrize("model", ["kling-v1", "kling-v3"])
@pytest.mark.parametrize("duration", [5.5, 4.999, 10.1, math.nan, math.inf, -math.inf])
def test_fractional_and_non_finite_durations_are_refused(model: str, duration: float) -> None:
    refused({**TEXT, "model": model, "duration": duration}, "duration")


@pytest.mark.parametrize("duration", ["5", True, None, [5]])
def test_duration_of_the_wrong_type(duration: Any) -> None:
    type_error({**TEXT, "duration": duration}, "duration")


# -- aspect ratio ---------------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", ["16:9", "9:16", "1:1"])
def test_aspect_ratios(ratio: str) -> None:
    assert check({**TEXT, "aspect_ratio": ratio}).aspect_ratio == ratio


@pytest.mark.parametrize("ratio", ["4:3", "16x9", "", "1:1 "])
def test_unknown_aspect_ratio_is_refused(ratio: str) -> None:
    refused({**TEXT, "aspect_ratio": ratio}, "aspect_ratio")


# -- prompts --------------------------------------------------------------------------------------


@pytest.mark.parametrize("base", [TEXT, IMAGE])
@pytest.mark.parametrize("prompt", [None, "", "   ", "\n\t"])
def test_prompt_required_for_text_and_image(base: dict[str, Any], prompt: str | None) -> None:
    body = {k: v for k, v in base.items() if k != "prompt"}
    if prompt is not None:
        body["prompt"] = prompt
    message = refused(body, "prompt")
    assert base["action"] in message


def test_prompt_not_required_for_extend() -> None:
    assert check(EXTEND).prompt == ""


def test_prompt_of_2500_characters_is_accepted_2501_refused() -> None:
    assert len(check({**TEXT, "prompt": "x" * 2500}).prompt) == 2500
    message = refused({**TEXT, "prompt": "x" * 2501}, "prompt")
    assert "2500" in message


def test_long_prompt_refused_on_extend_too() -> None:
    refused({**EXTEND, "prompt": "y" * 2501}, "prompt")


def test_negative_prompt_limit() -> None:
    assert check({**TEXT, "negative_prompt": "n" * 2500}).negative_prompt == "n" * 2500
    refused({**TEXT, "negative_prompt": "n" * 2501}, "negative_prompt")


@pytest.mark.parametrize(
    ("field", "value"), [("prompt", 5), ("prompt", ["a"]), ("negative_prompt", 1.5)]
)
def test_prompt_of_the_wrong_type(field: str, value: Any) -> None:
    type_error({**TEXT, field: value}, field)


# -- cfg_scale ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 0.0, 0.5, 1, 1.0])
def test_cfg_scale_in_range(value: float) -> None:
    assert check({**TEXT, "cfg_scale": value}).cfg_scale == value


@pytest.mark.parametrize("value", [-0.01, 1.01, 2, -1, math.nan, math.inf])
def test_cfg_scale_out_of_range(value: float) -> None:
    refused({**TEXT, "cfg_scale": value}, "cfg_scale")


def test_cfg_scale_of_the_wrong_type() -> None:
    type_error({**TEXT, "cfg_scale": "0.5"}, "cfg_scale")


# -- camera control -------------------------------------------------------------------------------

CAMERA_TYPES = ["simple", "down_back", "forward_up", "left_turn_forward", "right_turn_forward"]
AXES = ["horizontal", "vertical", "pan", "tilt", "roll", "zoom"]


@pytest.mark.parametrize("kind", CAMERA_TYPES[1:])
def test_preset_camera_types_need_no_config(kind: str) -> None:
    assert check({**TEXT, "camera_control": {"type": kind}}).camera_control == {"type": kind}


@pytest.mark.parametrize("axis", AXES)
def test_simple_camera_with_one_axis(axis: str) -> None:
    control = {"type": "simple", "config": {axis: -0.5}}
    result = check({**TEXT, "camera_control": control}).camera_control
    assert result == {"type": "simple", "config": {a: (-0.5 if a == axis else 0.0) for a in AXES}}


def test_unknown_camera_type_is_refused() -> None:
    refused({**TEXT, "camera_control": {"type": "orbit"}}, "camera_control.type")


def test_simple_camera_needs_a_config() -> None:
    refused({**TEXT, "camera_control": {"type": "simple"}}, "camera_control.config")


@pytest.mark.parametrize(
    "config",
    [{}, {"pan": 0, "zoom": 0}, {"pan": 0.5, "zoom": 0.5}, dict.fromkeys(AXES, 1.0)],
)
def test_simple_camera_needs_exactly_one_non_zero_value(config: dict[str, float]) -> None:
    message = refused(
        {**TEXT, "camera_control": {"type": "simple", "config": config}}, "camera_control.config"
    )
    assert "exactly one" in message


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("value", [1.01, -1.01, 10, math.inf, math.nan])
def test_camera_config_values_in_minus_one_to_one(axis: str, value: float) -> None:
    refused(
        {**TEXT, "camera_control": {"type": "simple", "config": {axis: value}}},
        f"camera_control.config.{axis}",
    )


@pytest.mark.parametrize("value", [1, -1, 1.0, -1.0])
def test_camera_config_bounds_are_inclusive(value: float) -> None:
    control = {"type": "simple", "config": {"zoom": value}}
    assert check({**TEXT, "camera_control": control}).camera_control["config"]["zoom"] == value  # type: ignore[index]


def test_unknown_camera_axes_are_ignored() -> None:
    # docs/contract.md §5: unknown fields are ignored, also inside camera_control.config.
    control = {"type": "simple", "config": {"zoom": 0.5, "spin": 1}}
    assert check({**TEXT, "camera_control": control}).camera_control == {
        "type": "simple",
        "config": {"horizontal": 0.0, "vertical": 0.0, "pan": 0.0, "tilt": 0.0, "roll": 0.0,
                   "zoom": 0.5},
    }  # fmt: skip


def test_preset_camera_with_a_config_is_range_checked_too() -> None:
    control = {"type": "down_back", "config": {"pan": 2}}
    refused({**TEXT, "camera_control": control}, "camera_control.config.pan")


@pytest.mark.parametrize(
    ("control", "field"),
    [
        ([], "camera_control"),
        ("simple", "camera_control"),
        ({"config": {"pan": 1}}, "camera_control"),
        ({"type": 5}, "camera_control.type"),
        ({"type": "simple", "config": {"pan": "1"}}, "camera_control.config.pan"),
        ({"type": "simple", "config": []}, "camera_control.config"),
    ],
)
def test_camera_control_of_the_wrong_shape(control: Any, field: str) -> None:
    type_error({**TEXT, "camera_control": control}, field)


# -- generate_audio -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "mode"),
    [("kling-v2-6", "pro"), ("kling-v3", "std"), ("kling-v3", "pro"), ("kling-v3-omni", "4k")],
)
def test_audio_on_the_audio_models(model: str, mode: str) -> None:
    assert check({**TEXT, "model": model, "mode": mode, "generate_audio": True}).generate_audio


def test_audio_on_v2_6_needs_pro() -> None:
    message = refused({**TEXT, "model": "kling-v2-6", "generate_audio": True}, "generate_audio")
    assert "pro" in message


@pytest.mark.parametrize("model", [m for m in MODELS if m not in ("kling-v2-6", *V3)])
def test_audio_refused_on_other_models(model: str) -> None:
    refused({**TEXT, "model": model, "mode": "pro", "generate_audio": True}, "generate_audio")


# but kling-v3-turbo, whose audio is always on (§6)
@pytest.mark.parametrize("model", [m for m in MODELS if m != "kling-v3-turbo"])
def test_audio_false_is_fine_everywhere(model: str) -> None:
    assert check({**TEXT, "model": model, "generate_audio": False}).generate_audio is False


@pytest.mark.parametrize("value", ["yes", "true", 1, 0])
def test_generate_audio_of_the_wrong_type(value: Any) -> None:
    type_error({**TEXT, "generate_audio": value}, "generate_audio")


# -- images ---------------------------------------------------------------------------------------


def test_image2video_needs_a_start_image() -> None:
    body = {k: v for k, v in IMAGE.items() if k != "start_image_url"}
    message = refused(body, "start_image_url")
    assert "image2video" in message


def test_start_and_end_images() -> None:
    params = check({**IMAGE, "end_image_url": "http://img.ex/b.jpg"})
    assert params.start_image_url == "https://img.ex/a.png"
    assert params.end_image_url == "http://img.ex/b.jpg"


def test_end_image_needs_a_start_image() -> None:
    message = refused({**TEXT, "end_image_url": "https://img.ex/b.png"}, "end_image_url")
    assert "`start_image_url`" in message


def test_image2video_with_only_an_end_image_asks_for_the_start() -> None:
    body = {k: v for k, v in IMAGE.items() if k != "start_image_url"}
    refused({**body, "end_image_url": "https://img.ex/b.png"}, "start_image_url")


def test_a_start_image_with_text2video_is_accepted() -> None:
    assert check({**TEXT, "start_image_url": "https://img.ex/a.png"}).start_image_url


@pytest.mark.parametrize(
    "url",
    ["ftp://img.ex/a.png", "file:///etc/passwd", "img.ex/a.png", "", "https://", "data:x"],
)
@pytest.mark.parametrize("field", ["start_image_url", "end_image_url"])
def test_image_urls_must_be_http(field: str, url: str) -> None:
    body = {**IMAGE, field: url}
    refused(body, field)


def test_image_url_of_the_wrong_type() -> None:
    type_error({**IMAGE, "start_image_url": 7}, "start_image_url")


# -- extend ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("video_id", [None, "", "  "])
def test_extend_needs_a_video_id(video_id: str | None) -> None:
    body = {"action": "extend"}
    if video_id is not None:
        body["video_id"] = video_id
    refused(body, "video_id")


def test_extend_keeps_the_video_id() -> None:
    assert check(EXTEND).video_id == EXTEND["video_id"]


def test_video_id_of_the_wrong_type() -> None:
    type_error({**EXTEND, "video_id": 12}, "video_id")


# -- callbacks and the two modes ------------------------------------------------------------------


@pytest.mark.parametrize("url", ["https://hook.example/cb", "http://hook.example:8080/cb?x=1"])
def test_callback_url_switches_to_asynchronous(url: str) -> None:
    params = check({**TEXT, "callback_url": url})
    assert params.callback_url == url
    assert params.asynchronous is True


@pytest.mark.parametrize("url", ["ftp://hook.example", "hook.example/cb", "", "javascript:x"])
def test_callback_url_must_be_http(url: str) -> None:
    refused({**TEXT, "callback_url": url}, "callback_url")


def test_callback_url_of_the_wrong_type() -> None:
    type_error({**TEXT, "callback_url": ["https://hook.example"]}, "callback_url")


@pytest.mark.parametrize(("value", "asynchronous"), [(True, True), (False, False), (None, False)])
def test_async_flag(value: bool | None, asynchronous: bool) -> None:
    assert check({**TEXT, "async": value}).asynchronous is asynchronous


def test_async_false_with_a_callback_is_still_asynchronous() -> None:
    assert check({**TEXT, "async": False, "callback_url": "https://h.ex/cb"}).asynchronous


def test_async_of_the_wrong_type_names_async() -> None:
    type_error({**TEXT, "async": "yes"}, "async")


def test_callback_events_are_kept_in_order_without_duplicates() -> None:
    body = {
        **TEXT,
        "callback_url": "https://h.ex/cb",
        "callback_events": ["processing", "failed", "processing", "succeed"],
    }
    assert check(body).callback_events == ("processing", "failed", "succeed")


@pytest.mark.parametrize("event", ["pending", "succeeded", "done", ""])
def test_unknown_callback_events_are_refused(event: str) -> None:
    body = {**TEXT, "callback_url": "https://h.ex/cb", "callback_events": ["succeed", event]}
    refused(body, "callback_events")


@pytest.mark.parametrize("value", ["succeed", [1], {"succeed": True}])
def test_callback_events_of_the_wrong_type(value: Any) -> None:
    type_error({**TEXT, "callback_events": value}, "callback_events")


# -- stored requests ------------------------------------------------------------------------------


def test_stored_request_drops_secrets_only() -> None:
    raw = {**TEXT, "token": "t", "Authorization": "Bearer x", "api_key": "k", "timeout": 3}
    assert stored_request(raw) == {**TEXT, "timeout": 3}


def test_params_from_stored_revalidates_an_old_row() -> None:
    params = params_from_stored({**TEXT, "duration": 10})
    assert params == check({**TEXT, "duration": 10})
    # No longer valid (or never typed right): no params, the provider fails the task.
    assert params_from_stored({**TEXT, "duration": 7}) is None
    assert params_from_stored({**TEXT, "duration": "five"}) is None
