"""The request bodies as JSON types (docs/contract.md §2): decoded once, validated by
``kling_gateway.domain``. Unknown fields are ignored (§5)."""

from __future__ import annotations

import msgspec


class CameraConfig(msgspec.Struct):
    horizontal: float = 0.0
    vertical: float = 0.0
    pan: float = 0.0
    tilt: float = 0.0
    roll: float = 0.0
    zoom: float = 0.0


class CameraControl(msgspec.Struct):
    type: str
    config: CameraConfig | None = None


class VideoRequestBody(msgspec.Struct, rename={"async_": "async"}):
    """The fields of §2 with their JSON types; unknown fields are ignored (§5)."""

    action: str | None = None
    model: str = "kling-v1"
    prompt: str | None = None
    negative_prompt: str | None = None
    mode: str = "std"
    duration: float = 5.0
    aspect_ratio: str = "16:9"
    cfg_scale: float | None = None
    camera_control: CameraControl | None = None
    generate_audio: bool | None = None
    start_image_url: str | None = None
    end_image_url: str | None = None
    video_id: str | None = None
    callback_url: str | None = None
    callback_events: list[str] | None = None
    async_: bool | None = None
