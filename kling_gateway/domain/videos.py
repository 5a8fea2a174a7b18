"""The body of POST /kling/videos (docs/contract.md §2): defaults and every validation rule."""

from __future__ import annotations

import math
from typing import Any

import msgspec

from kling_gateway.domain import references as refs
from kling_gateway.domain import rules
from kling_gateway.domain.params import ImageReference, VideoParams, VideoReference
from kling_gateway.domain.task import Task, is_blank, params_as
from kling_gateway.protocol.enums import (
    ACTIONS,
    ASPECT_RATIOS,
    CAMERA_AXES,
    CAMERA_TYPES,
    MODELS,
    MODES,
    TURBO_MODEL,
    V3_MODELS,
)
from kling_gateway.protocol.errors import ApiError, ApiNotImplemented, BadRequest
from kling_gateway.protocol.requests import CameraControl, VideoRequestBody

# Keys a client might send that must never be stored in the task's `request`.
SECRET_KEYS = frozenset({"token", "authorization", "api_key", "access_key", "secret_key"})
# Fields too large for every read of the record (a lip-sync's base64 `audio_file`, up to some
# 7 MB): the validated params keep them; the record's `request` shows only their size.
BULKY_KEYS = frozenset({"audio_file"})


def stored_request(raw: dict[str, Any]) -> dict[str, Any]:
    """The request as sent, less anything secret, bulky fields by their size."""
    return {
        k: _bulky(v) if k in BULKY_KEYS else v
        for k, v in raw.items()
        if k.lower() not in SECRET_KEYS
    }


def _bulky(value: Any) -> Any:
    if isinstance(value, str) and len(value) > 64:
        return f"<{len(value)} characters, not kept in the record>"
    return value


def validate(body: VideoRequestBody) -> VideoParams:
    """Every rule of docs/contract.md §2 and §6; each violation is a 400 naming the field."""
    action = _action(body.action)
    rules.one_of("model", body.model, MODELS)
    rules.one_of("mode", body.mode, MODES)
    rules.one_of("aspect_ratio", body.aspect_ratio, ASPECT_RATIOS)
    refs.check_model_rules(action, body)
    duration = _duration(body.model, body.duration)
    multi_shot, shot_type, shots = refs.storyboard(body, duration)
    prompt = _prompt(action, body.prompt, shot_type == "customize")
    rules.text("negative_prompt", body.negative_prompt)
    rules.number_range("cfg_scale", body.cfg_scale, 0.0, 1.0)
    refs.check_audio(body)
    images, videos = _check_images(action, body)
    voices = refs.voices(body)
    refs.check_citations(prompt, {"image": len(images), "video": len(videos), "voice": len(voices)})
    if action == "extend" and (body.video_id is None or is_blank(body.video_id)):
        raise BadRequest("field `video_id` is required for extend")
    return VideoParams(
        action=action,
        model=body.model,
        prompt=prompt,
        negative_prompt=body.negative_prompt,
        mode=body.mode,
        duration=duration,
        aspect_ratio=body.aspect_ratio,
        cfg_scale=body.cfg_scale,
        camera_control=_camera(body.camera_control),
        # turbo's audio is always on (§6)
        generate_audio=bool(body.generate_audio) or body.model == TURBO_MODEL,
        start_image_url=body.start_image_url,
        end_image_url=body.end_image_url,
        video_id=body.video_id,
        callback_url=rules.callback_url(body.callback_url),
        callback_events=rules.callback_events(body.callback_events),
        asynchronous=rules.asynchronous(body.callback_url, body.async_),
        image_list=images,
        video_list=videos,
        multi_shot=multi_shot,
        shot_type=shot_type,
        multi_prompt=shots,
        element_list=refs.elements(body),
        voice_list=voices,
    )


def params_from_stored(raw: dict[str, Any]) -> VideoParams | None:
    """The validated request of a task stored before the ``params`` column (migration 0004).

    The one fallback for such rows: the store calls it once when it loads a row without
    ``params``. None when the stored request no longer validates (the task then fails with
    ``invalid_request`` at the provider, see ``params_of``).
    """
    try:
        return validate(msgspec.convert(raw, VideoRequestBody))
    except (ApiError, msgspec.ValidationError):
        return None


def params_of(task: Task) -> VideoParams:
    """``task.params`` of a video task, or the provider failure of a task without a valid
    video request."""
    return params_as(task, VideoParams)


def _action(action: str | None) -> str:
    if action is None:
        raise BadRequest("field `action` is required: text2video, image2video or extend")
    if action not in ACTIONS:
        raise ApiNotImplemented(f"action `{action}` is not implemented")
    return action


def _prompt(action: str, prompt: str | None, storyboard: bool) -> str:
    rules.text("prompt", prompt)
    # A customised storyboard's prompts are its shots' (§6).
    needed = action in ("text2video", "image2video") and not storyboard
    if needed and (prompt is None or is_blank(prompt)):
        raise BadRequest(f"field `prompt` is required for {action}")
    return prompt or ""


def _duration(model: str, value: float) -> int:
    if not math.isfinite(value) or value != int(value):
        raise BadRequest("field `duration` must be a whole number of seconds")
    seconds = int(value)
    if model in V3_MODELS:
        if not 3 <= seconds <= 15:
            raise BadRequest(f"field `duration` must be from 3 to 15 seconds on {model}")
    elif model == "kling-o1":
        if seconds != 5:
            raise BadRequest("field `duration` must be 5 seconds on kling-o1")
    elif seconds not in (5, 10):
        raise BadRequest(f"field `duration` must be 5 or 10 seconds on {model}")
    return seconds


def _check_images(
    action: str, body: VideoRequestBody
) -> tuple[tuple[ImageReference, ...], tuple[VideoReference, ...]]:
    """The frames of §2 and the Omni references of §6, checked together."""
    rules.http_url("start_image_url", body.start_image_url)
    rules.http_url("end_image_url", body.end_image_url)
    images = refs.image_references(body, rules.http_url)
    first = body.start_image_url or any(i.type == "first_frame" for i in images)
    if action == "image2video" and not first:
        raise BadRequest("field `start_image_url` is required for image2video")
    if body.end_image_url and not first:
        raise BadRequest("field `end_image_url` needs `start_image_url`")
    refs.check_frames(body, images)
    framed = bool(first) or body.end_image_url is not None
    return images, refs.video_references(body, rules.http_url, framed)


def _camera(control: CameraControl | None) -> dict[str, Any] | None:
    if control is None:
        return None
    rules.one_of("camera_control.type", control.type, CAMERA_TYPES)
    config = control.config
    if config is None:
        if control.type == "simple":
            raise BadRequest("field `camera_control.config` is required for type simple")
        return {"type": control.type}
    values = {axis: getattr(config, axis) for axis in CAMERA_AXES}
    for axis, value in values.items():
        rules.number_range(f"camera_control.config.{axis}", value, -1.0, 1.0)
    if control.type == "simple" and sum(1 for v in values.values() if v != 0) != 1:
        raise BadRequest(
            "field `camera_control.config` needs exactly one non-zero value for simple"
        )
    return {"type": control.type, "config": values}
