"""The body of POST /kling/videos (docs/contract.md §2): defaults and every validation rule."""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlsplit

import msgspec

from kling_gateway.domain import references as refs
from kling_gateway.domain.outcomes import ProviderError
from kling_gateway.domain.params import ImageReference, VideoParams, VideoReference
from kling_gateway.domain.request_budget import bound_unknown_fields
from kling_gateway.domain.task import Task, is_blank
from kling_gateway.protocol.enums import (
    ACTIONS,
    ASPECT_RATIOS,
    CAMERA_AXES,
    CAMERA_TYPES,
    MAX_PROMPT,
    MODELS,
    MODES,
    TURBO_MODEL,
    V3_MODELS,
)
from kling_gateway.protocol.errors import ApiError, ApiNotImplemented, BadRequest
from kling_gateway.protocol.requests import CameraControl, VideoRequestBody

# The body's fields the contract knows (the rest are kept only within a budget).
KNOWN_FIELDS = frozenset(f.encode_name for f in msgspec.structs.fields(VideoRequestBody))
# Keys a client might send that must never be stored in the task's `request`.
SECRET_KEYS = frozenset({"token", "authorization", "api_key", "access_key", "secret_key"})


def stored_request(raw: dict[str, Any]) -> dict[str, Any]:
    """The request as sent, less anything secret, its unknown fields within their budget
    (``request_budget``)."""
    public = {k: v for k, v in raw.items() if k.lower() not in SECRET_KEYS}
    return bound_unknown_fields(public, KNOWN_FIELDS)


def validate(body: VideoRequestBody) -> VideoParams:
    """Every rule of docs/contract.md §2 and §6; each violation is a 400 naming the field."""
    action = _action(body.action)
    _one_of("model", body.model, MODELS)
    _one_of("mode", body.mode, MODES)
    _one_of("aspect_ratio", body.aspect_ratio, ASPECT_RATIOS)
    refs.check_model_rules(action, body)
    duration = _duration(body.model, body.duration)
    multi_shot, shot_type, shots = refs.storyboard(body, duration)
    prompt = _prompt(action, body.prompt, shot_type == "customize")
    _text("negative_prompt", body.negative_prompt)
    _range("cfg_scale", body.cfg_scale, 0.0, 1.0)
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
        callback_url=_callback_url(body.callback_url),
        callback_events=_callback_events(body.callback_events),
        asynchronous=body.callback_url is not None or body.async_ is True,
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
    """``task.params``, or the provider failure of a task without a valid request."""
    if task.params is None:
        raise ProviderError(
            "the stored request is invalid: it does not pass the request validation",
            code="invalid_request",
        )
    return task.params


def _action(action: str | None) -> str:
    if action is None:
        raise BadRequest("field `action` is required: text2video, image2video or extend")
    if action not in ACTIONS:
        raise ApiNotImplemented(f"action `{action}` is not implemented")
    return action


def _one_of(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise BadRequest(f"field `{name}` must be one of {', '.join(allowed)}; got {value!r}")


def _text(name: str, value: str | None) -> None:
    if value is not None and len(value) > MAX_PROMPT:
        raise BadRequest(f"field `{name}` is longer than {MAX_PROMPT} characters")


def _prompt(action: str, prompt: str | None, storyboard: bool) -> str:
    _text("prompt", prompt)
    # A customised storyboard's prompts are its shots' (§6).
    needed = action in ("text2video", "image2video") and not storyboard
    if needed and (prompt is None or is_blank(prompt)):
        raise BadRequest(f"field `prompt` is required for {action}")
    return prompt or ""


def _range(name: str, value: float | None, low: float, high: float) -> None:
    if value is not None and not (math.isfinite(value) and low <= value <= high):
        raise BadRequest(f"field `{name}` must be between {low:g} and {high:g}")


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
    _http_url("start_image_url", body.start_image_url)
    _http_url("end_image_url", body.end_image_url)
    images = refs.image_references(body, _http_url)
    first = body.start_image_url or any(i.type == "first_frame" for i in images)
    if action == "image2video" and not first:
        raise BadRequest("field `start_image_url` is required for image2video")
    if body.end_image_url and not first:
        raise BadRequest("field `end_image_url` needs `start_image_url`")
    refs.check_frames(body, images)
    framed = bool(first) or body.end_image_url is not None
    return images, refs.video_references(body, _http_url, framed)


def _http_url(name: str, value: str | None) -> None:
    if value is None:
        return
    problem = f"field `{name}` must be an http or https URL"
    if any(ord(c) <= 0x20 or c == "\x7f" for c in value):
        raise BadRequest(f"{problem} without spaces or control characters")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        raise BadRequest(f"{problem}: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest(problem)


def _callback_url(value: str | None) -> str | None:
    _http_url("callback_url", value)
    return value


def _callback_events(events: list[str] | None) -> tuple[str, ...]:
    allowed = ("processing", "succeed", "failed")
    for event in events or ():
        if event not in allowed:
            raise BadRequest(f"field `callback_events` may hold only {', '.join(allowed)}")
    return tuple(dict.fromkeys(events or ()))


def _camera(control: CameraControl | None) -> dict[str, Any] | None:
    if control is None:
        return None
    _one_of("camera_control.type", control.type, CAMERA_TYPES)
    config = control.config
    if config is None:
        if control.type == "simple":
            raise BadRequest("field `camera_control.config` is required for type simple")
        return {"type": control.type}
    values = {axis: getattr(config, axis) for axis in CAMERA_AXES}
    for axis, value in values.items():
        _range(f"camera_control.config.{axis}", value, -1.0, 1.0)
    if control.type == "simple" and sum(1 for v in values.values() if v != 0) != 1:
        raise BadRequest(
            "field `camera_control.config` needs exactly one non-zero value for simple"
        )
    return {"type": control.type, "config": values}
