"""Tool input schemas derived from the protocol's request structs (api/mcp/schemas.py)."""

from __future__ import annotations

import jsonschema
import msgspec
import pytest

from kling_gateway.api.mcp.schemas import struct_schema, tool_schema
from kling_gateway.protocol.requests import TasksRequestBody, VideoRequestBody


def test_the_struct_is_the_root_and_its_nested_structs_stay_in_defs() -> None:
    schema = struct_schema(VideoRequestBody)
    assert schema["type"] == "object"
    assert schema["properties"]["async"]["anyOf"] == [{"type": "boolean"}, {"type": "null"}]
    assert {"CameraControl", "CameraConfig", "ImageRef"} <= set(schema["$defs"])
    jsonschema.Draft202012Validator.check_schema(schema)


def test_omitted_fields_take_their_shapes_along() -> None:
    omit = ["camera_control", "image_list", "video_list", "multi_prompt", "element_list",
            "voice_list"]  # fmt: skip
    schema = tool_schema(VideoRequestBody, omit=omit, required=["prompt"])
    assert "$defs" not in schema
    assert schema["required"] == ["prompt"]
    kept = tool_schema(VideoRequestBody, omit=["image_list"])
    assert "ImageRef" not in kept["$defs"] and "CameraConfig" in kept["$defs"]


def test_renames_and_notes() -> None:
    schema = tool_schema(
        TasksRequestBody,
        omit=[
            *("action", "ids", "type", "state"),
            *("created_at_min", "created_at_max", "limit", "offset"),
        ],
        required=["id"],
        notes={"id": {"description": "the task"}},
        renames={"id": "task_id"},
    )
    assert set(schema["properties"]) == {"task_id", "wait"}
    assert schema["properties"]["task_id"]["description"] == "the task"
    assert schema["required"] == ["task_id"]


def test_a_name_that_is_no_field_is_refused() -> None:
    with pytest.raises(ValueError, match="no field"):
        tool_schema(TasksRequestBody, omit=["nope"])


def test_what_the_schema_accepts_the_struct_decodes() -> None:
    schema = tool_schema(VideoRequestBody, omit=["action", "async"])
    body = {"prompt": "a mug", "duration": 5, "camera_control": {"type": "simple",
            "config": {"zoom": 0.5}}, "image_list": [{"image_url": "http://x/y.png"}]}  # fmt: skip
    jsonschema.validate(body, schema)
    assert msgspec.convert(body, VideoRequestBody).camera_control is not None
