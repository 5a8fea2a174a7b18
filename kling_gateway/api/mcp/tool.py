"""A tool of the MCP endpoint: its name, what it takes, the API grant it needs, what it does."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec

from kling_gateway.api.mcp.schemas import JsonSchema
from kling_gateway.api.requests import decode_body
from kling_gateway.storage.base import Principal

T = TypeVar("T")
# progress so far, the total it runs to, a word on the state: an MCP progress notification.
Progress = Callable[[float, float, str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Call:
    """One tool call: who calls (authenticated as a REST request is), its trace id and how to
    report progress (a no-op when the client asked for none)."""

    principal: Principal
    trace_id: str
    progress: Progress


ToolRun = Callable[[Call, dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    input_schema: JsonSchema
    api: str | None  # the token's grant it needs (None: any token)
    run: ToolRun


def as_body(arguments: dict[str, Any], renames: Mapping[str, str] | None = None) -> bytes:
    """A tool's arguments as the JSON body of the REST request they stand for; ``renames``
    maps a body field to the tool's name for it (``id`` is offered as ``task_id``)."""
    fields = {argument: field for field, argument in (renames or {}).items()}
    return msgspec.json.encode({fields.get(k, k): v for k, v in arguments.items()})


def decode_arguments(
    arguments: dict[str, Any], kind: type[T], renames: Mapping[str, str] | None = None
) -> T:
    """The arguments decoded as the REST route decodes its body (the same 400s)."""
    return decode_body(as_body(arguments, renames), kind)
