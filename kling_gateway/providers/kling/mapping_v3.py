"""The upstream side of docs/contract.md §6 (upstream spec "More endpoints"): Omni requests go
to ``omni-video``; storyboards, element and voice lists and turbo's sound ride on text2video /
image2video. Element and voice ids are sent as the upstream ids the API resolved them to,
never the gateway's."""

from __future__ import annotations

from typing import Any, Final

from kling_gateway.domain.outcomes import ProviderError
from kling_gateway.domain.params import AssetReference, VideoParams
from kling_gateway.protocol.enums import TURBO_MODEL

KIND_OMNI_VIDEO: Final = "omni-video"
# Our model name -> upstream model_name on omni-video.
OMNI_MODEL_NAMES: Final = {"kling-o1": "kling-video-o1", "kling-v3-omni": "kling-v3-omni"}


def is_omni(params: VideoParams) -> bool:
    """Whether a request is created on ``omni-video``: always for kling-o1 (an omni-only
    model upstream), and for kling-v3-omni when it carries Omni references or elements."""
    if params.model == "kling-o1":
        return True
    return params.model == "kling-v3-omni" and bool(
        params.image_list or params.video_list or params.element_list
    )


def _upstream_ids(refs: tuple[AssetReference, ...], key: str) -> list[dict[str, str]]:
    out = []
    for ref in refs:
        if ref.upstream_id is None:
            raise ProviderError(f"{key} {ref.id!r} was never resolved", code="invalid_request")
        out.append({key: ref.upstream_id})
    return out


def _storyboard(params: VideoParams, body: dict[str, Any]) -> None:
    if not params.multi_shot:
        return
    body["multi_shot"] = True
    body["shot_type"] = params.shot_type
    if params.multi_prompt:
        # Durations as strings, like the task's own (upstream spec).
        body["multi_prompt"] = [
            {"index": s.index, "prompt": s.prompt, "duration": str(s.duration)}
            for s in params.multi_prompt
        ]


def _images(params: VideoParams) -> list[dict[str, str]]:
    """``image_list`` with ``start_image_url`` / ``end_image_url`` as its frames (§6 counts
    them towards the same list). They come after the client's own items, so that the prompt's
    ``<<<image_N>>>`` still names the client's N-th image upstream."""
    images = [
        {"image_url": ref.url, **({"type": ref.type} if ref.type else {})}
        for ref in params.image_list
    ]
    if params.start_image_url is not None:
        images.append({"image_url": params.start_image_url, "type": "first_frame"})
    if params.end_image_url is not None:
        images.append({"image_url": params.end_image_url, "type": "end_frame"})
    return images


def omni_body(params: VideoParams, task_id: str) -> dict[str, Any]:
    """The ``POST /v1/videos/omni-video`` body of an Omni request."""
    body: dict[str, Any] = {
        "model_name": OMNI_MODEL_NAMES[params.model],
        "prompt": params.prompt,
        "mode": params.mode,
        "aspect_ratio": params.aspect_ratio,
        "duration": str(params.duration),
        "external_task_id": task_id,
    }
    if images := _images(params):
        body["image_list"] = images
    if params.video_list:
        body["video_list"] = [
            {
                "video_url": v.url,
                "refer_type": v.refer_type,
                "keep_original_sound": "yes" if v.keep_original_sound else "no",
            }
            for v in params.video_list
        ]
    if params.element_list:
        body["element_list"] = _upstream_ids(params.element_list, "element_id")
    if params.generate_audio:
        body["sound"] = "on"
    _storyboard(params, body)
    return body


def add_v3_fields(params: VideoParams, body: dict[str, Any]) -> None:
    """The §6 fields text2video / image2video take: storyboards, element and voice lists,
    and turbo's sound, which is always on."""
    _storyboard(params, body)
    if params.element_list:
        body["element_list"] = _upstream_ids(params.element_list, "element_id")
    if params.voice_list:
        body["voice_list"] = _upstream_ids(params.voice_list, "voice_id")
    if params.model == TURBO_MODEL:
        body["sound"] = "on"
