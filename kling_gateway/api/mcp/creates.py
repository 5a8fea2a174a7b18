"""The tools that create a task, each a few lines over one generic create-by-kind.

A tool names the task kind (``domain.kinds``) whose REST endpoint's create path it calls; the
input schema comes from that kind's protocol body, less the fields the tool sets itself
(``action``) or does not offer. The tool's arguments become that endpoint's JSON body, always
asynchronous (``async: true``: the tool answers at once with the new task's record;
``kling_wait_task`` waits for it), and go through the endpoint's own decoding, validation,
ownership checks, quota and storage.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kling_gateway.api.context import AppContext
from kling_gateway.api.mcp.results import task_result
from kling_gateway.api.mcp.schemas import tool_schema
from kling_gateway.api.mcp.tool import Call, Tool, as_body
from kling_gateway.api.routes.videos import CreateEndpoint, async_answer
from kling_gateway.domain.kinds import LIP_SYNC, MOTION, TALKING_PHOTO, VIDEOS, TaskKind
from kling_gateway.domain.task import Task
from kling_gateway.protocol.enums import (
    ASPECT_RATIOS,
    AUDIO_TYPES,
    CHARACTER_ORIENTATIONS,
    LIP_SYNC_MODES,
    MODELS,
    MODES,
    MOTION_MODELS,
    MOTION_MODES,
    TALKING_PHOTO_DURATIONS,
    TALKING_PHOTO_MODELS,
    VOICE_LANGUAGES,
    YES_NO,
)
from kling_gateway.protocol.task import API_VIDEOS
from kling_gateway.storage.base import Principal

# An endpoint's create path: validate the JSON body, store the task (the REST route's own).
Creates = Callable[[Principal, bytes, str], Awaitable[Task]]


@dataclass(frozen=True, slots=True)
class CreateKind:
    name: str
    description: str
    kind: TaskKind  # the REST endpoint (``kind.path``) and its body (``kind.body``)
    fixed: Mapping[str, Any] = field(default_factory=dict)  # set by the tool, not offered
    omit: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    notes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def create_tool(ctx: AppContext, tool: CreateKind, creates: Creates) -> Tool:
    # `async` is always true and callback_events is for webhooks: neither is the agent's.
    body = tool.kind.body
    hidden = {"async", "callback_events"} & set(body.__struct_encode_fields__)
    omit = (*tool.fixed, *sorted(hidden), *tool.omit)
    schema = tool_schema(body, omit=omit, required=tool.required, notes=tool.notes)

    async def run(call: Call, arguments: dict[str, Any]) -> dict[str, Any]:
        sent = as_body({**arguments, **tool.fixed, "async": True})
        task = await creates(call.principal, sent, call.trace_id)
        record = await ctx.store.get_task_record(call.principal.user_id, task.id)
        # The REST API's asynchronous answer (docs/contract.md §2) with the new record, its
        # links absolute as every record sent.
        found = task_result(ctx.links.resolve(record)) if record is not None else {}
        return {**found, **async_answer(task, call.trace_id)}

    # Every kind is part of the videos API (docs/contract.md §7).
    return Tool(tool.name, tool.description, schema, API_VIDEOS, run)


# -- POST /kling/videos

_VIDEO_NOTES: dict[str, dict[str, Any]] = {
    "model": {"enum": list(MODELS), "description": "Kling model (kling_list_models)."},
    "mode": {"enum": list(MODES), "description": "std, pro, or 4k (kling-v3 models only)."},
    "aspect_ratio": {"enum": list(ASPECT_RATIOS)},
    "prompt": {"description": "What the video shows: scene, motion, style (≤ 2500 chars)."},
    "duration": {"description": "Seconds: 5 or 10; 3 to 15 on kling-v3 models; 5 on kling-o1."},
    "callback_url": {"description": "Also POST the finished task's body to this URL."},
}
_FRAMES = ("start_image_url", "end_image_url")
_OMNI = ("image_list", "video_list", "multi_shot", "shot_type", "multi_prompt")

_VIDEO_TOOLS = (
    CreateKind(
        "kling_generate_video",
        "Generate a video from a text prompt (text2video). Answers at once with the new task; "
        "kling_wait_task waits for it to finish and gives the video URL.",
        VIDEOS,
        fixed={"action": "text2video"},
        omit=(*_FRAMES, "video_id"),
        required=("prompt",),
        notes=_VIDEO_NOTES,
    ),
    CreateKind(
        "kling_generate_video_from_image",
        "Generate a video from a first frame (start_image_url) and optionally a last frame "
        "(end_image_url) (image2video). Answers at once with the new task.",
        VIDEOS,
        fixed={"action": "image2video"},
        omit=("video_id",),
        required=("prompt", "start_image_url"),
        notes=_VIDEO_NOTES,
    ),
    CreateKind(
        "kling_extend_video",
        "Extend an earlier video of yours by its video_id (the video_id of a finished task). "
        "Answers at once with the new task.",
        VIDEOS,
        fixed={"action": "extend"},
        omit=(*_FRAMES, *_OMNI, "aspect_ratio", "camera_control", "generate_audio"),
        required=("video_id", "prompt"),
        notes=_VIDEO_NOTES,
    ),
)


# -- POST /kling/motion, /kling/lip-sync, /kling/talking-photo (docs/contract.md §7)

_URL = {"description": "An http or https URL the gateway can fetch."}
_SECTION_7 = (
    CreateKind(
        "kling_generate_motion",
        "Transfer the motion of a reference video (video_url) to the character of an image "
        "(image_url). Answers at once with the new task.",
        MOTION,
        required=("image_url", "video_url", "character_orientation", "mode"),
        notes={
            "image_url": _URL,
            "video_url": _URL,
            "character_orientation": {"enum": list(CHARACTER_ORIENTATIONS)},
            "mode": {"enum": list(MOTION_MODES)},
            "model_name": {"enum": list(MOTION_MODELS)},
            "keep_original_sound": {"enum": list(YES_NO)},
        },
    ),
    CreateKind(
        "kling_lip_sync",
        "Make a video (video_id of a finished task of yours, or video_url) speak an audio "
        "track (audio2video: audio_url, or audio_file as base64) or a text (text2video: text, "
        "voice_id). Answers at once with the new task.",
        LIP_SYNC,
        required=("mode",),
        notes={
            "mode": {"enum": list(LIP_SYNC_MODES)},
            "audio_type": {"enum": list(AUDIO_TYPES)},
            "voice_language": {"enum": list(VOICE_LANGUAGES)},
            "video_url": _URL,
            "audio_url": _URL,
        },
    ),
    CreateKind(
        "kling_talking_photo",
        "Animate a portrait (image_url) speaking an audio track (audio_url). Answers at once "
        "with the new task.",
        TALKING_PHOTO,
        required=("image_url", "audio_url"),
        notes={
            "image_url": _URL,
            "audio_url": _URL,
            "model": {"enum": list(TALKING_PHOTO_MODELS)},
            "mode": {"enum": list(MOTION_MODES)},
            "duration": {"enum": list(TALKING_PHOTO_DURATIONS)},
        },
    ),
)
CREATE_KINDS = (*_VIDEO_TOOLS, *_SECTION_7)


def create_tools(ctx: AppContext, endpoints: Mapping[str, CreateEndpoint]) -> list[Tool]:
    """A tool per kind whose endpoint (by path) is in ``endpoints``."""
    return [
        create_tool(ctx, tool, _creates(endpoints[tool.kind.path]))
        for tool in CREATE_KINDS
        if tool.kind.path in endpoints
    ]


def _creates(endpoint: CreateEndpoint) -> Creates:
    async def creates(principal: Principal, body: bytes, trace_id: str) -> Task:
        task, _ = await endpoint.submit(principal, body, trace_id)
        return task

    return creates
