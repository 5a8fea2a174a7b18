"""The MCP endpoint (``/mcp``): the gateway's tasks as tools for AI agents, on the REST API's
tokens, limits and code paths (docs/contract.md §8.10)."""

from __future__ import annotations

from collections.abc import Mapping

from kling_gateway.api.context import AppContext
from kling_gateway.api.mcp.creates import create_tools
from kling_gateway.api.mcp.endpoint import McpEndpoint
from kling_gateway.api.mcp.info import info_tools
from kling_gateway.api.mcp.task_tools import task_tools
from kling_gateway.api.routes.tasks import TasksEndpoint
from kling_gateway.api.routes.videos import CreateEndpoint

MCP_PATH = "/mcp"


def mcp_endpoint(
    ctx: AppContext, tasks: TasksEndpoint, creates: Mapping[str, CreateEndpoint]
) -> McpEndpoint:
    """The endpoint over the REST routes' own endpoints (their create and retrieve paths),
    ``creates`` by path. It reads bodies as large as the largest create endpoint reads."""
    tools = [*create_tools(ctx, creates), *task_tools(ctx, tasks)]
    max_body = max([ctx.settings.max_body_bytes, *(c.max_body for c in creates.values())])
    return McpEndpoint(ctx, [*tools, *info_tools(tools)], max_body)
