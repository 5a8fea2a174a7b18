"""kling_list_models and kling_list_actions: what the gateway offers, from the protocol's
values and the registered tools themselves (so neither can go stale)."""

from __future__ import annotations

from typing import Any

from kling_gateway.api.mcp.schemas import JsonSchema
from kling_gateway.api.mcp.tool import Call, Tool
from kling_gateway.protocol.enums import (
    AUDIO_MODELS,
    DURATIONS,
    EXTEND_MODELS,
    FOUR_K_MODELS,
    MODELS,
    MODES,
    OMNI_MODELS,
    STORYBOARD_MODELS,
    V3_DURATION_RANGE,
    V3_MODELS,
)

_NO_ARGUMENTS: JsonSchema = {"type": "object", "properties": {}, "required": []}
_WORKFLOWS = (
    "kling_generate_video -> kling_wait_task",
    "kling_generate_video_from_image -> kling_wait_task",
    "kling_generate_video -> kling_wait_task -> kling_extend_video (its video_id)",
    "kling_generate_motion / kling_talking_photo -> kling_wait_task",
    "kling_generate_video -> kling_wait_task -> kling_lip_sync (its video_id)",
    "kling_list_tasks -> kling_get_tasks_batch / kling_delete_task",
)


def model_facts(model: str) -> dict[str, Any]:
    if model in V3_MODELS:
        low, high = V3_DURATION_RANGE
        durations = list(range(low, high + 1))
    else:
        durations = [5] if model == "kling-o1" else list(DURATIONS)
    return {
        "model": model,
        "modes": [m for m in MODES if m != "4k" or model in FOUR_K_MODELS],
        "durations": durations,
        "generate_audio": model in AUDIO_MODELS,
        "omni_references": model in OMNI_MODELS,
        "storyboard": model in STORYBOARD_MODELS,
        "extend": model in EXTEND_MODELS,
    }


def info_tools(registered: list[Tool]) -> list[Tool]:
    async def list_models(call: Call, arguments: dict[str, Any]) -> dict[str, Any]:
        return {"models": [model_facts(m) for m in MODELS], "default": MODELS[0]}

    async def list_actions(call: Call, arguments: dict[str, Any]) -> dict[str, Any]:
        tools = [{"tool": t.name, "does": t.description} for t in [*registered, *own]]
        return {"tools": tools, "workflows": list(_WORKFLOWS)}

    own = [
        Tool(
            "kling_list_models",
            "The Kling models with their modes, durations and features.",
            _NO_ARGUMENTS,
            None,
            list_models,
        ),
        Tool(
            "kling_list_actions",
            "Every tool of this server and what it does, with common workflows.",
            _NO_ARGUMENTS,
            None,
            list_actions,
        ),
    ]
    return own
