"""The request bodies as JSON types (docs/contract.md §1, §2): decoded once, validated by
``kling_gateway.domain`` (videos) and the tasks route. Unknown fields are ignored (§5).

The OpenAPI document's request schemas have exactly these fields, these JSON types and these
defaults (tests/api/test_openapi_protocol.py)."""

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


class ImageRef(msgspec.Struct):
    """One item of ``image_list`` (docs/contract.md §6)."""

    image_url: str
    type: str | None = None


class VideoRef(msgspec.Struct):
    """The item of ``video_list`` (docs/contract.md §6)."""

    video_url: str
    refer_type: str | None = None
    keep_original_sound: str | None = None


class ShotPrompt(msgspec.Struct):
    """One shot of a customised storyboard's ``multi_prompt`` (docs/contract.md §6)."""

    index: float
    prompt: str
    duration: float


class ElementRef(msgspec.Struct):
    element_id: str


class VoiceRef(msgspec.Struct):
    voice_id: str


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
    # docs/contract.md §6
    image_list: list[ImageRef] | None = None
    video_list: list[VideoRef] | None = None
    multi_shot: bool | None = None
    shot_type: str | None = None
    multi_prompt: list[ShotPrompt] | None = None
    element_list: list[ElementRef] | None = None
    voice_list: list[VoiceRef] | None = None


class TasksRequestBody(msgspec.Struct):
    """The body of POST /kling/tasks, every action's fields at once (§1). ``limit`` and
    ``offset`` are any number here: the route checks that they are whole and in range."""

    action: str = "retrieve"
    id: str | None = None
    ids: list[str] | None = None
    type: str | None = None
    created_at_min: float | None = None
    created_at_max: float | None = None
    limit: float | None = None
    offset: float | None = None
    wait: float | None = None


# docs/contract.md §7: the other endpoints reported by /kling/tasks. Enumerated and required
# fields are optional here so that their absence is the validator's 400 naming the field.


class WatermarkInfo(msgspec.Struct):
    enabled: bool = False


class MotionRequestBody(msgspec.Struct, rename={"async_": "async"}):
    """POST /kling/motion (§7): the character of the image performs the motion of the video."""

    image_url: str | None = None
    video_url: str | None = None
    character_orientation: str | None = None
    mode: str | None = None
    model_name: str = "kling-v2-6"
    keep_original_sound: str = "yes"
    watermark_info: WatermarkInfo | None = None
    prompt: str | None = None
    callback_url: str | None = None
    callback_events: list[str] | None = None
    async_: bool | None = None


class LipSyncRequestBody(msgspec.Struct, rename={"async_": "async"}):
    """POST /kling/lip-sync (§7): a video (one of ``video_id``, ``video_url``) speaks the audio
    (``audio2video``: ``audio_url`` or base64 ``audio_file``) or the text (``text2video``)."""

    mode: str | None = None
    video_id: str | None = None
    video_url: str | None = None
    audio_type: str | None = None
    audio_url: str | None = None
    audio_file: str | None = None
    text: str | None = None
    voice_id: str | None = None
    voice_language: str = "zh"
    voice_speed: float = 1.0
    callback_url: str | None = None
    callback_events: list[str] | None = None
    async_: bool | None = None


class TalkingPhotoRequestBody(msgspec.Struct, rename={"async_": "async"}):
    """POST /kling/talking-photo (§7): the image animated (image2video), then lip-synced to the
    audio."""

    image_url: str | None = None
    audio_url: str | None = None
    prompt: str | None = None
    model: str = "kling-v2-1-master"
    duration: float = 5.0
    mode: str = "pro"
    callback_url: str | None = None
    callback_events: list[str] | None = None
    async_: bool | None = None
