"""The validated request of a video task: what everything after validation works from.

``domain.videos.validate`` builds it (every default applied); the store keeps it beside the raw
``request`` (which the record shows as sent) in the ``params`` column, and it comes back on
``Task.params``. Its JSON encoding is also the idempotency hash's input, so its field names and
order are part of the stored data: add fields at the end, with defaults.
"""

from __future__ import annotations

from typing import Any

import msgspec


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
