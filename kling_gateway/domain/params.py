"""The validated request of a video task: what everything after validation works from.

``domain.videos.validate`` builds it (every default applied); the store keeps it beside the raw
``request`` (which the record shows as sent) in the ``params`` column, and it comes back on
``Task.params``. Its JSON encoding is also the idempotency hash's input, so its field names and
order are part of the stored data: add fields at the end, with defaults.
"""

from __future__ import annotations

from typing import Any

import msgspec


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


def hash_input(params: VideoParams) -> bytes:
    """The bytes the idempotency hash covers: the params less any later field left at its
    default, so a request hashed before those fields existed hashes the same after."""
    data = msgspec.json.decode(msgspec.json.encode(params))
    for name, default in _ADDED_DEFAULTS.items():
        if data.get(name) == default:
            del data[name]
    return msgspec.json.encode(data)
