"""The rules of docs/contract.md §6 beyond §2: Omni references, storyboards, element and voice
lists, and the per-model restrictions that involve them. Each violation is a 400 naming the
field and the rule."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence

from kling_gateway.domain.params import AssetReference, ImageReference, Shot, VideoReference
from kling_gateway.domain.task import is_blank
from kling_gateway.protocol.enums import (
    ELEMENT_MODELS,
    EXTEND_MODELS,
    FOUR_K_MODELS,
    IMAGE_REF_TYPES,
    MAX_ELEMENTS,
    MAX_IMAGE_REFS,
    MAX_IMAGE_REFS_WITH_VIDEO,
    MAX_SHOT_PROMPT,
    MAX_SHOTS,
    MAX_VOICES,
    OMNI_MODELS,
    SHOT_TYPES,
    STORYBOARD_MODELS,
    TURBO_ACTIONS,
    TURBO_MODEL,
    VIDEO_REFER_TYPES,
    VOICE_MODELS,
    YES_NO,
)
from kling_gateway.protocol.errors import BadRequest
from kling_gateway.protocol.requests import (
    ElementRef,
    ImageRef,
    ShotPrompt,
    VideoRef,
    VideoRequestBody,
    VoiceRef,
)

_CITATION = re.compile(r"<<<(image|video|voice)_(\d+)>>>")
# Fields turbo refuses (docs/contract.md §6), by the names the client sent.
_TURBO_REFUSES = (
    "end_image_url",
    "camera_control",
    "cfg_scale",
    "negative_prompt",
    "image_list",
    "video_list",
    "element_list",
    "voice_list",
    "multi_shot",
    "shot_type",
    "multi_prompt",
)
# Fields that neither kling-o1 nor a request with Omni references takes.
_NOT_WITH_OMNI = ("negative_prompt", "camera_control", "cfg_scale")


def _sent(body: VideoRequestBody, name: str) -> bool:
    return getattr(body, name) is not None


def check_model_rules(action: str, body: VideoRequestBody) -> None:
    """The per-model table of §6 (durations are checked with the duration itself)."""
    model, omni = body.model, body.image_list is not None or body.video_list is not None
    if body.mode == "4k":
        if model not in FOUR_K_MODELS:
            raise BadRequest("field `mode`: 4k is only available on kling-v3 and kling-v3-omni")
        if body.camera_control is not None:
            raise BadRequest("field `mode`: 4k cannot be combined with `camera_control`")
        if omni:
            raise BadRequest("field `mode`: 4k cannot be combined with Omni references")
    if model == TURBO_MODEL:
        _check_turbo(action, body)
    if action == "extend":
        if model not in EXTEND_MODELS:
            models = ", ".join(sorted(EXTEND_MODELS))
            raise BadRequest(f"field `model`: extend runs only on {models}")
        if omni:
            raise BadRequest("field `image_list`/`video_list`: extend takes no Omni references")
    for name in _NOT_WITH_OMNI:
        if _sent(body, name) and model == "kling-o1":
            raise BadRequest(f"field `{name}` is not available on kling-o1")
        if _sent(body, name) and omni:
            raise BadRequest(f"field `{name}` cannot be combined with Omni references")


def _check_turbo(action: str, body: VideoRequestBody) -> None:
    if action not in TURBO_ACTIONS:
        raise BadRequest(f"field `action`: {TURBO_MODEL} runs text2video and image2video only")
    if body.generate_audio is False:
        raise BadRequest(f"field `generate_audio`: audio is always on with {TURBO_MODEL}")
    for name in _TURBO_REFUSES:
        if _sent(body, name):
            raise BadRequest(f"field `{name}` is not available on {TURBO_MODEL}")


def check_audio(body: VideoRequestBody) -> None:
    if not body.generate_audio:
        return
    if body.model == "kling-o1":
        raise BadRequest("field `generate_audio` is not available on kling-o1")
    if body.model not in ("kling-v2-6", *FOUR_K_MODELS, TURBO_MODEL):
        raise BadRequest("field `generate_audio` needs kling-v2-6 (pro mode) or a kling-v3 model")
    if body.model == "kling-v2-6" and body.mode != "pro":
        raise BadRequest("field `generate_audio` on kling-v2-6 needs mode pro")
    if body.video_list is not None:
        raise BadRequest("field `generate_audio` cannot be combined with `video_list`")


def _list_size(name: str, items: Sequence[object] | None, high: int) -> None:
    if items is not None and not 1 <= len(items) <= high:
        many = "exactly 1 item" if high == 1 else f"1 to {high} items"
        raise BadRequest(f"field `{name}` must hold {many}; got {len(items)}")


def image_references(
    body: VideoRequestBody, http_url: Callable[[str, str], None]
) -> tuple[ImageReference, ...]:
    """``image_list`` checked with ``start_image_url``/``end_image_url`` counted in (§6)."""
    items = body.image_list
    if items is None:
        return ()
    if body.model not in OMNI_MODELS:
        raise BadRequest("field `image_list` needs kling-o1 or kling-v3-omni")
    high = MAX_IMAGE_REFS_WITH_VIDEO if body.video_list is not None else MAX_IMAGE_REFS
    _list_size("image_list", items, high)
    frames = [
        t
        for t in (
            _frame(body.start_image_url, "first_frame"),
            _frame(body.end_image_url, "end_frame"),
        )
        if t
    ]
    if len(items) + len(frames) > high:
        raise BadRequest(
            f"field `image_list`: at most {high} images counting `start_image_url` and "
            "`end_image_url`"
        )
    return tuple(_image(i, item, http_url) for i, item in enumerate(items))


def _frame(url: str | None, kind: str) -> str | None:
    return kind if url is not None else None


def _image(i: int, item: ImageRef, http_url: Callable[[str, str], None]) -> ImageReference:
    http_url(f"image_list[{i}].image_url", item.image_url)
    if item.type is not None and item.type not in IMAGE_REF_TYPES:
        raise BadRequest(
            f"field `image_list[{i}].type` must be one of {', '.join(IMAGE_REF_TYPES)}"
        )
    return ImageReference(url=item.image_url, type=item.type)


def check_frames(body: VideoRequestBody, images: tuple[ImageReference, ...]) -> None:
    """One first frame, one end frame; an end frame needs a first one (§6)."""
    firsts = sum(1 for i in images if i.type == "first_frame") + (body.start_image_url is not None)
    ends = sum(1 for i in images if i.type == "end_frame") + (body.end_image_url is not None)
    if firsts > 1:
        raise BadRequest("field `image_list`: at most one first frame (with `start_image_url`)")
    if ends > 1:
        raise BadRequest("field `image_list`: at most one end frame (with `end_image_url`)")
    if ends and not firsts:
        raise BadRequest("field `image_list`: an end frame needs a first frame")


def video_references(
    body: VideoRequestBody, http_url: Callable[[str, str], None], has_frames: bool
) -> tuple[VideoReference, ...]:
    items = body.video_list
    if items is None:
        return ()
    if body.model not in OMNI_MODELS:
        raise BadRequest("field `video_list` needs kling-o1 or kling-v3-omni")
    _list_size("video_list", items, 1)
    refs = tuple(_video(i, item, http_url) for i, item in enumerate(items))
    if has_frames and any(r.refer_type == "base" for r in refs):
        raise BadRequest(
            "field `video_list`: a base video cannot be combined with first or end frames"
        )
    return refs


def _video(i: int, item: VideoRef, http_url: Callable[[str, str], None]) -> VideoReference:
    http_url(f"video_list[{i}].video_url", item.video_url)
    refer = item.refer_type if item.refer_type is not None else "base"
    if refer not in VIDEO_REFER_TYPES:
        raise BadRequest(
            f"field `video_list[{i}].refer_type` must be one of {', '.join(VIDEO_REFER_TYPES)}"
        )
    sound = item.keep_original_sound if item.keep_original_sound is not None else "no"
    if sound not in YES_NO:
        raise BadRequest(f"field `video_list[{i}].keep_original_sound` must be yes or no")
    return VideoReference(url=item.video_url, refer_type=refer, keep_original_sound=sound == "yes")


def storyboard(body: VideoRequestBody, duration: int) -> tuple[bool, str | None, tuple[Shot, ...]]:
    """``(multi_shot, shot_type, shots)`` of §6's storyboards."""
    if not body.multi_shot:
        for name in ("shot_type", "multi_prompt"):
            if _sent(body, name):
                raise BadRequest(f"field `{name}` needs `multi_shot: true`")
        return False, None, ()
    if body.model not in STORYBOARD_MODELS:
        raise BadRequest("field `multi_shot` needs kling-v3 or kling-v3-omni")
    if body.shot_type not in SHOT_TYPES:
        allowed = ", ".join(SHOT_TYPES)
        raise BadRequest(f"field `shot_type` must be one of {allowed} with multi_shot")
    if body.shot_type == "intelligence":
        if body.multi_prompt is not None:
            raise BadRequest("field `multi_prompt` must not be sent with shot_type intelligence")
        if body.prompt is None or is_blank(body.prompt):
            raise BadRequest("field `prompt` is required with shot_type intelligence")
        return True, "intelligence", ()
    return True, "customize", _shots(body.multi_prompt, duration)


def _shots(items: list[ShotPrompt] | None, duration: int) -> tuple[Shot, ...]:
    if items is None:
        raise BadRequest("field `multi_prompt` is required with shot_type customize")
    _list_size("multi_prompt", items, MAX_SHOTS)
    shots = tuple(_shot(i, item) for i, item in enumerate(items))
    if sum(s.duration for s in shots) != duration:
        raise BadRequest(
            f"field `multi_prompt`: the shot durations must sum to `duration` ({duration})"
        )
    return shots


def _shot(i: int, item: ShotPrompt) -> Shot:
    where = f"multi_prompt[{i}]"
    if item.index != i + 1:  # a float, as every number of the wire (a whole 1.0 is 1)
        raise BadRequest(f"field `{where}.index` must be {i + 1}: indices run 1, 2, 3... in order")
    if is_blank(item.prompt) or len(item.prompt) > MAX_SHOT_PROMPT:
        raise BadRequest(f"field `{where}.prompt` must be 1 to {MAX_SHOT_PROMPT} characters")
    value = item.duration
    if not math.isfinite(value) or value != int(value) or value < 1:
        raise BadRequest(f"field `{where}.duration` must be a whole number of seconds, at least 1")
    return Shot(index=i + 1, prompt=item.prompt, duration=int(value))


def elements(body: VideoRequestBody) -> tuple[AssetReference, ...]:
    items: list[ElementRef] | None = body.element_list
    if items is None:
        return ()
    if body.model not in ELEMENT_MODELS:
        raise BadRequest("field `element_list` needs kling-v3, kling-v3-omni or kling-o1")
    _list_size("element_list", items, MAX_ELEMENTS)
    return tuple(_asset(f"element_list[{i}].element_id", e.element_id) for i, e in enumerate(items))


def voices(body: VideoRequestBody) -> tuple[AssetReference, ...]:
    items: list[VoiceRef] | None = body.voice_list
    if items is None:
        return ()
    if body.model not in VOICE_MODELS or body.mode != "pro" or body.generate_audio is not True:
        raise BadRequest("field `voice_list` needs kling-v2-6 in pro mode with generate_audio true")
    _list_size("voice_list", items, MAX_VOICES)
    return tuple(_asset(f"voice_list[{i}].voice_id", v.voice_id) for i, v in enumerate(items))


def _asset(where: str, value: str) -> AssetReference:
    if is_blank(value) or len(value) > 128:
        raise BadRequest(f"field `{where}` must be 1 to 128 characters")
    return AssetReference(id=value)


def check_citations(prompt: str, counts: dict[str, int]) -> None:
    """The prompt may cite only the references supplied: ``<<<image_N>>>`` with N at most
    the number of ``image_list`` items, and likewise ``video_N`` and ``voice_N`` (§6)."""
    for kind, number in _CITATION.findall(prompt):
        if not 1 <= int(number) <= counts[kind]:
            field = f"{kind}_list"
            raise BadRequest(
                f"field `prompt` cites <<<{kind}_{number}>>> but `{field}` has "
                f"{counts[kind]} item(s)"
            )
