"""The validated request of a video task: what everything after validation works from.

``domain.videos.validate`` builds it (every default applied); the store keeps it beside the raw
``request`` (which the record shows as sent) in the ``params`` column, and it comes back on
``Task.params``. Its JSON encoding is also the idempotency hash's input, so its field names and
order are part of the stored data: add fields at the end, with defaults.
"""

from __future__ import annotations

from typing import Any

import msgspec

from kling_gateway.protocol.task import (
    TASK_TYPE_LIP_SYNC,
    TASK_TYPE_MOTION,
    TASK_TYPE_TALKING_PHOTO,
    TASK_TYPE_VIDEOS,
)


class ImageReference(msgspec.Struct, frozen=True, kw_only=True):
    """An Omni image reference; ``type`` is None for a plain (composited) reference."""

    url: str
    type: str | None = None


class VideoReference(msgspec.Struct, frozen=True, kw_only=True):
    url: str
    refer_type: str = "base"
    keep_original_sound: bool = False


class Shot(msgspec.Struct, frozen=True, kw_only=True):
    """One shot of a customised storyboard: its 1-based index, prompt and whole seconds."""

    index: int
    prompt: str
    duration: int


class AssetReference(msgspec.Struct, frozen=True, kw_only=True):
    """An element or voice: the gateway id the client sent and, once the API has checked the
    caller owns it, the upstream (Kling account) id it stands for."""

    id: str
    upstream_id: str | None = None
    # The upstream account the id belongs to (None: registered by an operator, or local).
    account: str | None = None


class VideoParams(msgspec.Struct, frozen=True, kw_only=True):
    """A validated ``POST /kling/videos`` body with every default applied (docs/contract.md §2)."""

    action: str
    model: str
    prompt: str
    negative_prompt: str | None
    mode: str
    duration: int
    aspect_ratio: str
    cfg_scale: float | None
    # {"type": ..., "config": {axis: value in [-1, 1]}} (config only when given).
    camera_control: dict[str, Any] | None
    generate_audio: bool
    start_image_url: str | None
    end_image_url: str | None
    video_id: str | None
    callback_url: str | None
    callback_events: tuple[str, ...]
    asynchronous: bool
    # docs/contract.md §6 (added after 0.1.0; defaults keep older stored params decodable)
    image_list: tuple[ImageReference, ...] = ()
    video_list: tuple[VideoReference, ...] = ()
    multi_shot: bool = False
    shot_type: str | None = None
    multi_prompt: tuple[Shot, ...] = ()
    element_list: tuple[AssetReference, ...] = ()
    voice_list: tuple[AssetReference, ...] = ()
    # The upstream account that made the video an ``extend`` continues (set by the API, as
    # ``LipSyncParams.video_account``: Kling extends a video only on its own account).
    video_account: str | None = None

    @property
    def omni(self) -> bool:
        """Whether the request carries Omni references (upstream ``omni-video``)."""
        return bool(self.image_list or self.video_list)


# The fields added after 0.1.0 (docs/contract.md §6), with the defaults that mean "not sent".
_ADDED_DEFAULTS: dict[str, Any] = {
    "image_list": [],
    "video_list": [],
    "multi_shot": False,
    "shot_type": None,
    "multi_prompt": [],
    "element_list": [],
    "voice_list": [],
}


def hash_input(params: TaskParams) -> bytes:
    """The bytes the idempotency hash covers: the params less any later field left at its
    default, so a request hashed before those fields existed hashes the same after. The other
    kinds' params are prefixed by their kind: one key cannot name tasks of two kinds."""
    if isinstance(params, LipSyncParams):
        # ``video_account`` is the gateway's finding, not the request's: never hashed.
        fields = msgspec.json.decode(msgspec.json.encode(params))
        del fields["video_account"]
        return f"{TASK_TYPE_LIP_SYNC}:".encode() + msgspec.json.encode(fields)
    if not isinstance(params, VideoParams):
        kind = next(t for t, struct in PARAMS_BY_TYPE.items() if isinstance(params, struct))
        return f"{kind}:".encode() + msgspec.json.encode(params)
    data = msgspec.json.decode(msgspec.json.encode(params))
    del data["video_account"]  # the gateway's finding, not the request's: never hashed
    for name, default in _ADDED_DEFAULTS.items():
        if data.get(name) == default:
            del data[name]
    return msgspec.json.encode(data)


# -- docs/contract.md §7: the other kinds of task ---------------------------------------------
# Like ``VideoParams``: every default applied, stored in the ``params`` column (decoded by the
# task's ``type``, see ``PARAMS_BY_TYPE``), fields added later go at the end with defaults.


class MotionParams(msgspec.Struct, frozen=True, kw_only=True):
    """A validated ``POST /kling/motion`` body: the character of ``image_url`` performs the
    motion of ``video_url`` (at most 10 s with orientation ``image``, 30 s with ``video``)."""

    image_url: str
    video_url: str
    character_orientation: str  # image | video
    mode: str  # std | pro
    model: str  # kling-v2-6 | kling-v3 (the request's ``model_name``)
    keep_original_sound: bool
    watermark: bool
    prompt: str | None
    callback_url: str | None
    callback_events: tuple[str, ...]
    asynchronous: bool


class LipSyncParams(msgspec.Struct, frozen=True, kw_only=True):
    """A validated ``POST /kling/lip-sync`` body.

    The video is exactly one of ``video_id`` (the ``video_id`` of a finished task of the
    caller's: on Kling that is the upstream video id) and ``video_url``. The audio:
    ``audio2video`` has exactly one of ``audio_url`` and ``audio_file`` (base64 without any
    ``data:`` prefix, decoded at most 5 MB, ``audio_format`` sniffed from its bytes);
    ``text2video`` has ``text`` spoken by ``voice_id`` in ``voice_language`` at ``voice_speed``.
    """

    mode: str  # audio2video | text2video
    video_id: str | None
    video_url: str | None
    audio_url: str | None
    audio_file: str | None
    audio_format: str | None  # mp3 | wav | m4a | aac, for audio_file
    text: str | None
    voice_id: str | None
    voice_language: str  # zh | en
    voice_speed: float  # 0.8..2.0
    callback_url: str | None
    callback_events: tuple[str, ...]
    asynchronous: bool
    # The upstream account that made the ``video_id`` video (set by the API: Kling finds a
    # video only on its own account, so the task is pinned there).
    video_account: str | None = None


class TalkingPhotoParams(msgspec.Struct, frozen=True, kw_only=True):
    """A validated ``POST /kling/talking-photo`` body: ``image_url`` animated by ``model``
    (image2video, ``duration`` seconds in ``mode``), then lip-synced to ``audio_url``."""

    image_url: str
    audio_url: str
    prompt: str
    model: str
    duration: int  # 5 | 10
    mode: str  # std | pro
    callback_url: str | None
    callback_events: tuple[str, ...]
    asynchronous: bool


TaskParams = VideoParams | MotionParams | LipSyncParams | TalkingPhotoParams

# The params struct of each task ``type`` (docs/contract.md §1, §7); the store decodes the
# ``params`` column with it.
PARAMS_BY_TYPE: dict[str, type[TaskParams]] = {
    TASK_TYPE_VIDEOS: VideoParams,
    TASK_TYPE_MOTION: MotionParams,
    TASK_TYPE_LIP_SYNC: LipSyncParams,
    TASK_TYPE_TALKING_PHOTO: TalkingPhotoParams,
}
