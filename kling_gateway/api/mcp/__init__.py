"""The MCP endpoint (``/mcp``): the gateway's tasks as tools for AI agents, on the REST API's
tokens, limits and code paths (docs/contract.md §8.8)."""

from __future__ import annotations

from kling_gateway.api.context import AppContext
from kling_gateway.api.mcp.creates import VIDEOS_PATH, create_tools, video_creates
from kling_gateway.api.mcp.endpoint import McpEndpoint
from kling_gateway.api.mcp.info import info_tools
from kling_gateway.api.mcp.task_tools import task_tools
from kling_gateway.api.routes.tasks import TasksEndpoint
from kling_gateway.api.routes.videos import VideosEndpoint

MCP_PATH = "/mcp"


def mcp_endpoint(ctx: AppContext, tasks: TasksEndpoint, videos: VideosEndpoint) -> McpEndpoint:
    """The endpoint over the REST routes' own endpoints (their create and retrieve paths)."""
    creates = {VIDEOS_PATH: video_creates(videos)}
    tools = [*create_tools(ctx, creates), *task_tools(ctx, tasks)]
    return McpEndpoint(ctx, [*tools, *info_tools(tools)])
