"""Types of the SDK's public API: the request enums of the contract (§2) and the task outcome."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

Record = dict[str, Any]
"""A task record (§1), a batch, a delete result or a video creation result, as JSON."""

OnUpdate = Callable[[Record], object]
"""Called by ``tasks.wait`` with the record each time the task's state changes."""

VideoAction = Literal["text2video", "image2video", "extend"]
VideoModel = Literal[
    "kling-v1",
    "kling-v1-6",
    "kling-v2-master",
    "kling-v2-1-master",
    "kling-v2-5-turbo",
    "kling-v2-6",
    "kling-v3",
    "kling-v3-omni",
    "kling-o1",
]
VideoMode = Literal["std", "pro", "4k"]
AspectRatio = Literal["16:9", "9:16", "1:1"]
CameraType = Literal["simple", "down_back", "forward_up", "left_turn_forward", "right_turn_forward"]

Outcome = Literal["succeeded", "failed", "running"]

# How the hosted service's own clients recognise a finished task (contract §5).
SUCCESS_STATES = frozenset({"succeed", "succeeded", "success", "completed"})
FAILURE_STATES = frozenset({"failed", "error", "cancelled"})
