"""The tools that create a task, each a few lines over one generic create-by-kind.

A kind names the REST endpoint whose create path it calls (by its path), the protocol struct
that endpoint decodes (the input schema comes from it) and the fields the tool sets itself
(``action``). The tool's
arguments become that endpoint's JSON body, always asynchronous (``async: true``: the tool
answers at once with the new task's record; ``kling_wait_task`` waits for it), and go through
the endpoint's own decoding, validation, ownership checks, quota and storage.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from kling_gateway.api.context import AppContext
from kling_gateway.api.mcp.results import task_result
from kling_gateway.api.mcp.schemas import tool_schema
from kling_gateway.api.mcp.tool import Call, Tool, as_body
from kling_gateway.api.routes.videos import VideosEndpoint
from kling_gateway.domain.task import Task
from kling_gateway.protocol.enums import ASPECT_RATIOS, MODELS, MODES
from kling_gateway.protocol.requests import VideoRequestBody
from kling_gateway.protocol.task import API_VIDEOS
from kling_gateway.storage.base import Principal

# An endpoint's create path: validate the JSON body, store the task (the REST route's own).
Creates = Callable[[Principal, bytes, str], Awaitable[Task]]


@dataclass(frozen=True, slots=True)
class CreateKind:
    name: str
    description: str
    path: str  # the REST endpoint
    struct: type[msgspec.Struct]
    api: str
    fixed: Mapping[str, Any] = field(default_factory=dict)  # set by the tool, not offered
    omit: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    notes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def create_tool(ctx: AppContext, kind: CreateKind, creates: Creates) -> Tool:
    # `async` is always true and callback_events is for webhooks: neither is the agent's.
    hidden = {"async", "callback_events"} & set(kind.struct.__struct_encode_fields__)
    omit = (*kind.fixed, *sorted(hidden), *kind.omit)
    schema = tool_schema(kind.struct, omit=omit, required=kind.required, notes=kind.notes)

    async def run(call: Call, arguments: dict[str, Any]) -> dict[str, Any]:
        body = as_body({**arguments, **kind.fixed, "async": True})
        task = await creates(call.principal, body, call.trace_id)
        record = await ctx.store.get_task_record(call.principal.user_id, task.id)
        # The REST API's asynchronous answer (docs/contract.md §2) with the new record.
        created = {"task_id": task.id, "trace_id": call.trace_id}
        return {**(task_result(record) if record is not None else {}), **created}

    return Tool(kind.name, kind.description, schema, kind.api, run)


# -- POST /kling/videos

VIDEOS_PATH = "/kling/videos"
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

CREATE_KINDS = (
    CreateKind(
        "kling_generate_video",
        "Generate a video from a text prompt (text2video). Answers at once with the new task; "
        "kling_wait_task waits for it to finish and gives the video URL.",
        VIDEOS_PATH,
        VideoRequestBody,
        API_VIDEOS,
        fixed={"action": "text2video"},
        omit=(*_FRAMES, "video_id"),
        required=("prompt",),
        notes=_VIDEO_NOTES,
    ),
    CreateKind(
        "kling_generate_video_from_image",
        "Generate a video from a first frame (start_image_url) and optionally a last frame "
        "(end_image_url) (image2video). Answers at once with the new task.",
        VIDEOS_PATH,
        VideoRequestBody,
        API_VIDEOS,
        fixed={"action": "image2video"},
        omit=("video_id",),
        required=("prompt", "start_image_url"),
        notes=_VIDEO_NOTES,
    ),
    CreateKind(
        "kling_extend_video",
        "Extend an earlier video of yours by its video_id (the video_id of a finished task). "
        "Answers at once with the new task.",
        VIDEOS_PATH,
        VideoRequestBody,
        API_VIDEOS,
        fixed={"action": "extend"},
        omit=(*_FRAMES, *_OMNI, "aspect_ratio", "camera_control", "generate_audio"),
        required=("video_id", "prompt"),
        notes=_VIDEO_NOTES,
    ),
)


def create_tools(ctx: AppContext, endpoints: Mapping[str, Creates]) -> list[Tool]:
    """A tool per kind whose endpoint (by path) is in ``endpoints``."""
    return [create_tool(ctx, k, endpoints[k.path]) for k in CREATE_KINDS if k.path in endpoints]


def video_creates(videos: VideosEndpoint) -> Creates:
    async def creates(principal: Principal, body: bytes, trace_id: str) -> Task:
        task, _ = await videos.submit(principal, body, trace_id)
        return task

    return creates
