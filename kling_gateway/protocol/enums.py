"""The request enums of docs/contract.md §2, once: the server, the SDK, the CLI, the OpenAPI
document, the renderer and the Kling mapping all take them from here."""

from __future__ import annotations

from typing import Literal, get_args

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

ACTIONS: tuple[str, ...] = get_args(VideoAction)
MODELS: tuple[str, ...] = get_args(VideoModel)
V3_MODELS = frozenset({"kling-v3", "kling-v3-omni"})
AUDIO_MODELS = frozenset({"kling-v2-6", *V3_MODELS})
MODES: tuple[str, ...] = get_args(VideoMode)
ASPECT_RATIOS: tuple[str, ...] = get_args(AspectRatio)
CAMERA_TYPES: tuple[str, ...] = get_args(CameraType)
CAMERA_AXES = ("horizontal", "vertical", "pan", "tilt", "roll", "zoom")
MAX_PROMPT = 2500
