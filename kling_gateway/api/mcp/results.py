"""What the MCP tools answer: a task's record with the facts an agent looks for first, and
errors in the REST API's error shape (docs/contract.md §4), marked as tool errors."""

from __future__ import annotations

from typing import Any

import msgspec
from mcp import types

from kling_gateway.protocol.errors import ApiError

# Copied from the record's response (§3) to the top of a result, where they exist.
_HEADLINE = ("video_url", "video_id", "duration", "error")


def task_result(record: bytes) -> dict[str, Any]:
    """``{"task_id", "state", "finished", [video_url, video_id, duration | error], "record"}``."""
    return task_summary(msgspec.json.decode(record))


def task_summary(decoded: dict[str, Any]) -> dict[str, Any]:
    """``task_result`` of a record already decoded."""
    response: dict[str, Any] = decoded.get("response") or {}
    result: dict[str, Any] = {
        "task_id": decoded.get("id"),
        "state": response.get("state", "pending"),
        "finished": "finished_at" in decoded,
    }
    result.update({key: response[key] for key in _HEADLINE if key in response})
    result["record"] = decoded
    return result


def error_result(error: ApiError, trace_id: str) -> types.CallToolResult:
    """A tool error with the body the REST API answers for ``error`` (its code and message)."""
    body = {
        "success": False,
        "error": {"code": error.code, "message": error.message},
        "trace_id": trace_id,
    }
    text = msgspec.json.encode(body).decode()
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)],
        structuredContent=body,
        isError=True,
    )
