"""The create-request rules of the official API, as the spec page states them."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any, Final

from kling_gateway.fake_upstream import references as refs
from kling_gateway.fake_upstream.validation_base import FakeApiError, http_url, invalid, is_number
from kling_gateway.fake_upstream.validation_kinds import KIND_FIELDS, check_motion

__all__ = ["CreateRequest", "FakeApiError", "invalid", "validate_create"]

MODELS: Final = frozenset(
    {
        "kling-v1",
        "kling-v1-5",
        "kling-v1-6",
        "kling-v2-master",
        "kling-v2-1",
        "kling-v2-1-master",
        "kling-v2-5-turbo",
        "kling-v2-6",
        "kling-v3",
        "kling-v3-omni",
        "kling-o1",
        "kling-v3-turbo",
    }
)
V3_MODELS: Final = frozenset({"kling-v3", "kling-v3-omni", "kling-v3-turbo"})
SOUND_MODELS: Final = frozenset(
    {"kling-v2-6", "kling-v3", "kling-v3-omni", "kling-v3-turbo", "kling-video-o1"}
)
ASPECT_RATIOS: Final = frozenset({"16:9", "9:16", "1:1"})
CAMERA_TYPES: Final = frozenset(
    {"simple", "down_back", "forward_up", "left_turn_forward", "right_turn_forward"}
)
CAMERA_AXES: Final = frozenset({"horizontal", "vertical", "pan", "tilt", "roll", "zoom"})
MAX_PROMPT: Final = 2500
MAX_EXTERNAL_ID: Final = 128

_TEXT_FIELDS: Final = frozenset(
    {
        "model_name",
        "prompt",
        "negative_prompt",
        "cfg_scale",
        "mode",
        "camera_control",
        "aspect_ratio",
        "duration",
        "sound",
        "callback_url",
        "external_task_id",
    }
)
# text2video / image2video on v3 models also take storyboards and element / voice lists.
TEXT_FIELDS: Final = _TEXT_FIELDS | refs.STORYBOARD_FIELDS | refs.LIST_FIELDS
FIELDS_BY_KIND: Final = {
    "text2video": TEXT_FIELDS,
    "image2video": TEXT_FIELDS | {"image", "image_tail"},
    "omni-video": refs.OMNI_FIELDS,
    "video-extend": frozenset(
        {"video_id", "prompt", "negative_prompt", "cfg_scale", "callback_url"}
    ),
    **KIND_FIELDS,
}


@dataclass(frozen=True, slots=True)
class CreateRequest:
    """A validated create call."""

    kind: str
    model: str
    duration: str
    prompt: str | None
    external_task_id: str | None
    callback_url: str | None
    video_id: str | None
    body: dict[str, Any]
    # The seconds of the result when the create decides them (advanced-lip-sync).
    result_seconds: float | None = None


def _string(body: dict[str, Any], name: str, *, limit: int | None = None) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid(f"{name} must be a string")
    if limit is not None and len(value) > limit:
        raise invalid(f"{name} must be at most {limit} characters")
    return value


_is_number = is_number
_http_url = http_url


def _check_model(body: dict[str, Any], kind: str) -> str:
    if kind == "video-extend":
        return "kling-v1"
    model = _string(body, "model_name") or (
        "kling-video-o1" if kind == "omni-video" else "kling-v1"
    )
    allowed = refs.OMNI_MODELS if kind == "omni-video" else MODELS
    if model not in allowed:
        raise FakeApiError(404, 1203, f"model {model} does not exist")
    return model


def _check_duration(body: dict[str, Any], model: str) -> str:
    value = body.get("duration", "5")
    if not isinstance(value, str):
        raise invalid("duration must be a string")
    if model in V3_MODELS:
        allowed = {str(n) for n in range(3, 16)}
    else:
        allowed = {"5"} if model == "kling-video-o1" else {"5", "10"}
    if value not in allowed:
        raise invalid(f"duration {value!r} is not supported by {model}")
    return value


def _check_choices(body: dict[str, Any], model: str) -> None:
    modes = {"std", "pro", "4k"} if model in ("kling-v3", "kling-v3-omni") else {"std", "pro"}
    if body.get("mode") is not None and body["mode"] not in modes:
        raise invalid(f"mode must be one of {sorted(modes)} for {model}")
    if body.get("aspect_ratio") is not None and body["aspect_ratio"] not in ASPECT_RATIOS:
        raise invalid(f"aspect_ratio must be one of {sorted(ASPECT_RATIOS)}")
    sound = body.get("sound")
    if sound is not None:
        if sound not in ("on", "off"):
            raise invalid("sound must be 'on' or 'off'")
        if model not in SOUND_MODELS:
            raise invalid(f"sound is not supported by {model}")


def _check_cfg_scale(body: dict[str, Any], model: str) -> None:
    value = body.get("cfg_scale")
    if value is None:
        return
    if not _is_number(value) or not 0 <= value <= 1:
        raise invalid("cfg_scale must be a number within [0, 1]")
    if model.startswith("kling-v2"):
        raise invalid(f"cfg_scale is not supported by {model}")


def _check_camera(body: dict[str, Any]) -> None:
    control = body.get("camera_control")
    if control is None:
        return
    if not isinstance(control, dict) or control.get("type") not in CAMERA_TYPES:
        raise invalid(f"camera_control.type must be one of {sorted(CAMERA_TYPES)}")
    config = control.get("config")
    if control["type"] != "simple":
        if config is not None:
            raise invalid("camera_control.config is only for type simple")
        return
    if not isinstance(config, dict) or not set(config) <= CAMERA_AXES:
        raise invalid(f"camera_control.config must be an object of {sorted(CAMERA_AXES)}")
    values = list(config.values())
    if not all(_is_number(v) and -10 <= v <= 10 for v in values):
        raise invalid("camera_control.config values must be numbers within [-10, 10]")
    if sum(1 for v in values if v != 0) != 1:
        raise invalid("camera_control.config must have exactly one non-zero value")


def _check_image(body: dict[str, Any], name: str) -> None:
    value = _string(body, name)
    if value is None or _http_url(value):
        return
    if value.startswith("data:"):
        raise invalid(f"{name} must be a URL or raw base64 without a data: prefix")
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise invalid(f"{name} is neither a URL nor base64") from exc


def _check_images(body: dict[str, Any]) -> None:
    if body.get("image") in (None, "") and body.get("image_tail") in (None, ""):
        raise invalid("image or image_tail is required")
    _check_image(body, "image")
    _check_image(body, "image_tail")


def _check_links(body: dict[str, Any]) -> tuple[str | None, str | None]:
    callback = _string(body, "callback_url")
    if callback is not None and not _http_url(callback):
        raise invalid("callback_url must be an http(s) URL")
    external = _string(body, "external_task_id", limit=MAX_EXTERNAL_ID)
    if external == "":
        raise invalid("external_task_id must not be empty")
    return callback, external


def validate_create(kind: str, body: Any, *, strict_fields: bool) -> CreateRequest:
    """Check a create body field by field; raise ``FakeApiError`` as the upstream would."""
    if not isinstance(body, dict):
        raise FakeApiError(400, 1200, "the request body must be a JSON object")
    unknown = set(body) - FIELDS_BY_KIND[kind]
    if strict_fields and unknown:
        raise invalid(f"unknown fields for {kind}: {sorted(unknown)}")
    if kind in KIND_FIELDS:
        return _validate_kind(kind, body)
    model = _check_model(body, kind)
    prompt = _string(body, "prompt", limit=MAX_PROMPT)
    _string(body, "negative_prompt", limit=MAX_PROMPT)
    _check_cfg_scale(body, model)
    callback, external = _check_links(body)
    video_id = None
    duration = "5"
    if kind == "video-extend":
        video_id = _string(body, "video_id")
        if not video_id:
            raise invalid("video_id is required")
    else:
        storyboard = body.get("shot_type") == "customize"
        if kind in ("text2video", "omni-video") and not prompt and not storyboard:
            raise invalid("prompt is required")
        duration = _check_duration(body, model)
        _check_choices(body, model)
        _check_camera(body)
        if kind == "image2video":
            _check_images(body)
        refs.check_image_list(body)
        refs.check_video_list(body)
        refs.check_storyboard(body, duration)
        refs.check_asset_lists(body)
    return CreateRequest(
        kind=kind,
        model=model,
        duration=duration,
        prompt=prompt,
        external_task_id=None if kind == "video-extend" else external,
        callback_url=callback,
        video_id=video_id,
        body=body,
    )


def _validate_kind(kind: str, body: dict[str, Any]) -> CreateRequest:
    """motion-control, and the part of advanced-lip-sync that needs no session (the state
    checks the session, the face and the audio: ``lip_sync.LipSyncWorld.check_create``)."""
    model = check_motion(body) if kind == "motion-control" else "kling-lip-sync"
    prompt = _string(body, "prompt", limit=MAX_PROMPT)
    callback, external = _check_links(body)
    return CreateRequest(
        kind=kind,
        model=model,
        duration="5",
        prompt=prompt,
        external_task_id=external,
        callback_url=callback,
        video_id=None,
        body=body,
    )
