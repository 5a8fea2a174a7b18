"""Types of the SDK's public API: the request enums (docs/contract.md §2) and the outcome."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from kling_gateway.protocol.enums import AspectRatio, CameraType, VideoAction, VideoMode, VideoModel

Record = dict[str, Any]
"""A task record (docs/contract.md §1), a batch, a delete result or a creation result."""

OnUpdate = Callable[[Record], object]
"""Called by ``tasks.wait`` with the record each time the task's state changes."""

Outcome = Literal["succeeded", "failed", "running"]

# How the hosted service's own clients recognise a finished task (docs/contract.md §5).
SUCCESS_STATES = frozenset({"succeed", "succeeded", "success", "completed"})
FAILURE_STATES = frozenset({"failed", "error", "cancelled"})

__all__ = [
    "AspectRatio",
    "CameraType",
    "OnUpdate",
    "Outcome",
    "Record",
    "VideoAction",
    "VideoMode",
    "VideoModel",
]
