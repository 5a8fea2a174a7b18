"""The create rules of motion-control and advanced-lip-sync (upstream spec "More endpoints")."""

from __future__ import annotations

from typing import Any, Final

from kling_gateway.fake_upstream.lip_sync import LIP_SYNC_FIELDS
from kling_gateway.fake_upstream.validation_base import http_url, invalid

MOTION_FIELDS: Final = frozenset(
    {
        "image_url",
        "video_url",
        "character_orientation",
        "mode",
        "model_name",
        "keep_original_sound",
        "prompt",
        "watermark_info",
        "callback_url",
        "external_task_id",
    }
)
MOTION_MODELS: Final = frozenset({"kling-v2-6", "kling-v3"})
KIND_FIELDS: Final = {"motion-control": MOTION_FIELDS, "advanced-lip-sync": LIP_SYNC_FIELDS}


def check_motion(body: dict[str, Any]) -> str:
    """The rules of a motion-control create; its model."""
    for name in ("image_url", "video_url"):
        value = body.get(name)
        if not isinstance(value, str) or not http_url(value):
            raise invalid(f"{name} is required, an http(s) URL")
    if body.get("character_orientation") not in ("image", "video"):
        raise invalid("character_orientation must be image or video")
    if body.get("mode") not in ("std", "pro"):
        raise invalid("mode must be std or pro")
    model = body.get("model_name", "kling-v2-6")
    if model not in MOTION_MODELS:
        raise invalid(f"model_name must be one of {sorted(MOTION_MODELS)}")
    if body.get("keep_original_sound", "yes") not in ("yes", "no"):
        raise invalid("keep_original_sound must be yes or no")
    watermark = body.get("watermark_info")
    if watermark is not None and (
        not isinstance(watermark, dict) or not isinstance(watermark.get("enabled"), bool)
    ):
        raise invalid("watermark_info must be {enabled: bool}")
    return str(model)
