"""The fake's rules for the fields added after 0.1.0 (upstream spec "More endpoints"): the
omni-video endpoint, storyboards, element and voice lists on text2video / image2video."""

from __future__ import annotations

from typing import Any, Final

from kling_gateway.fake_upstream.validation_base import http_url, invalid, is_number

OMNI_MODELS: Final = frozenset({"kling-video-o1", "kling-v3-omni"})
STORYBOARD_FIELDS: Final = frozenset({"multi_shot", "shot_type", "multi_prompt"})
LIST_FIELDS: Final = frozenset({"element_list", "voice_list"})
OMNI_FIELDS: Final = frozenset(
    {
        "model_name",
        "prompt",
        "image_list",
        "video_list",
        "element_list",
        "sound",
        "mode",
        "aspect_ratio",
        "duration",
        "callback_url",
        "external_task_id",
        *STORYBOARD_FIELDS,
    }
)


def _items(body: dict[str, Any], name: str, high: int) -> list[dict[str, Any]]:
    value = body.get(name)
    if not isinstance(value, list) or not 1 <= len(value) <= high:
        raise invalid(f"{name} must be an array of 1 to {high} items")
    if not all(isinstance(item, dict) for item in value):
        raise invalid(f"{name} items must be objects")
    return value


def _choice(item: dict[str, Any], name: str, allowed: tuple[str, ...], where: str) -> None:
    if item.get(name) is not None and item[name] not in allowed:
        raise invalid(f"{where}.{name} must be one of {list(allowed)}")


def check_image_list(body: dict[str, Any]) -> None:
    if body.get("image_list") is None:
        return
    items = _items(body, "image_list", 4 if body.get("video_list") is not None else 7)
    for item in items:
        url = item.get("image_url")
        if not isinstance(url, str) or not url:
            raise invalid("image_list.image_url is required")
        _choice(item, "type", ("first_frame", "end_frame"), "image_list")
    types = [item.get("type") for item in items]
    if types.count("first_frame") > 1 or types.count("end_frame") > 1:
        raise invalid("image_list takes one first_frame and one end_frame at most")
    if "end_frame" in types and "first_frame" not in types:
        raise invalid("image_list: an end_frame needs a first_frame")


def check_video_list(body: dict[str, Any]) -> None:
    if body.get("video_list") is None:
        return
    (item,) = _items(body, "video_list", 1)
    url = item.get("video_url")
    if not isinstance(url, str) or not http_url(url):
        raise invalid("video_list.video_url must be an http(s) URL")
    _choice(item, "refer_type", ("base", "feature"), "video_list")
    _choice(item, "keep_original_sound", ("yes", "no"), "video_list")
    frames = [i.get("type") for i in body.get("image_list") or [] if isinstance(i, dict)]
    if item.get("refer_type", "base") == "base" and any(frames):
        raise invalid("video_list: a base video cannot be combined with first or end frames")


def check_storyboard(body: dict[str, Any], duration: str) -> None:
    if not any(name in body for name in STORYBOARD_FIELDS):
        return
    if body.get("multi_shot") is not True:
        raise invalid("shot_type and multi_prompt need multi_shot true")
    shot_type = body.get("shot_type")
    if shot_type == "intelligence":
        if "multi_prompt" in body:
            raise invalid("multi_prompt is not allowed with shot_type intelligence")
        if not body.get("prompt"):
            raise invalid("prompt is required with shot_type intelligence")
        return
    if shot_type != "customize":
        raise invalid("shot_type must be intelligence or customize")
    total = 0
    for i, shot in enumerate(_items(body, "multi_prompt", 6), start=1):
        if shot.get("index") != i:
            raise invalid(f"multi_prompt index {i} is missing")
        prompt, seconds = shot.get("prompt"), shot.get("duration")
        if not isinstance(prompt, str) or not 1 <= len(prompt) <= 512:
            raise invalid("multi_prompt.prompt must be 1 to 512 characters")
        # Durations are strings, like the task's own.
        if not isinstance(seconds, str) or not seconds.isdigit() or int(seconds) < 1:
            raise invalid("multi_prompt.duration must be a string of whole seconds")
        total += int(seconds)
    if str(total) != duration:
        raise invalid(f"multi_prompt durations sum to {total}, not {duration}")


def check_asset_lists(body: dict[str, Any]) -> None:
    for name, key, high in (("element_list", "element_id", 3), ("voice_list", "voice_id", 2)):
        if body.get(name) is None:
            continue
        for item in _items(body, name, high):
            value = item.get(key)
            if not (isinstance(value, str) and value) and not is_number(value):
                raise invalid(f"{name}.{key} is required")
